"""mgte-hf: the mGTE model family (encoder, TRM dense+sparse embedder, reranker) native to Hugging Face."""

from .modeling import (
    MgteConfig,
    MgteEmbeddingOutput,
    MgteForEmbedding,
    MgteForMaskedLM,
    MgteForSequenceClassification,
    MgteForTokenClassification,
    MgteModel,
    MgtePreTrainedModel,
    register_auto_classes,
    token_weights_to_dicts,
)


register_auto_classes()

__version__ = "0.1.0"

__all__ = [
    "MgteConfig",
    "MgteEmbeddingOutput",
    "MgteForEmbedding",
    "MgteForMaskedLM",
    "MgteForSequenceClassification",
    "MgteForTokenClassification",
    "MgteModel",
    "MgtePreTrainedModel",
    "__version__",
    "register_auto_classes",
    "token_weights_to_dicts",
]
