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
LAZY = ("MgteEmbeddingFunction", "MilvusIndex")  # need the `milvus` extra; imported on first use


def __getattr__(name: str):
    if name in LAZY:
        from . import milvus

        return getattr(milvus, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "EmbeddingResult",
    "HybridIndex",
    "MgteConfig",
    "MgteEmbeddingFunction",
    "MgteEmbeddingOutput",
    "MgteForEmbedding",
    "MgteForMaskedLM",
    "MgteForSequenceClassification",
    "MgteEmbedder",
    "MgteForTokenClassification",
    "MgteModel",
    "MgtePreTrainedModel",
    "MgteReranker",
    "MilvusIndex",
    "RankResult",
    "SearchHit",
    "__version__",
    "register_auto_classes",
    "token_weights_to_dicts",
]
