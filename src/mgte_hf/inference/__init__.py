"""The user API of mGTE models: `MgteEmbedder` (dense + sparse) and `MgteReranker` (cross-encoder scores)."""

from .common import DEFAULT_BATCH_TOKENS, DEFAULT_MAX_LENGTH
from .embedder import EmbeddingResult, MgteEmbedder
from .reranker import MgteReranker, RankResult


__all__ = [
    "DEFAULT_BATCH_TOKENS",
    "DEFAULT_MAX_LENGTH",
    "EmbeddingResult",
    "MgteEmbedder",
    "MgteReranker",
    "RankResult",
]
