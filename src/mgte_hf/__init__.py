"""mgte-hf: the mGTE model family (encoder, TRM dense+sparse embedder, reranker) native to Hugging Face."""

from .index import HybridIndex, SearchHit
from .inference import EmbeddingResult, MgteEmbedder, MgteReranker, RankResult
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
    "EmbeddingResult",
    "HybridIndex",
    "MgteConfig",
    "MgteEmbeddingOutput",
    "MgteForEmbedding",
    "MgteForMaskedLM",
    "MgteForSequenceClassification",
    "MgteEmbedder",
    "MgteForTokenClassification",
    "MgteModel",
    "MgtePreTrainedModel",
    "MgteReranker",
    "RankResult",
    "SearchHit",
    "__version__",
    "register_auto_classes",
    "token_weights_to_dicts",
]
