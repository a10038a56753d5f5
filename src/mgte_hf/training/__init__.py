"""Training building blocks for the mGTE stages: collators, samplers, losses, gradient caching, collectives."""

from .collators import ContrastiveCollator, MLMCollator, RerankerCollator
from .distributed import all_gather_with_grad, get_rank, get_world_size, is_distributed
from .grad_cache import GradCache
from .losses import (
    InfoNCELoss,
    ListwiseCELoss,
    MatryoshkaLoss,
    SparseInfoNCELoss,
    TRMLoss,
    embedding_features,
)
from .samplers import SingleSourceBatchSampler, TokenBudgetBatchSampler, source_probabilities


__all__ = [
    "ContrastiveCollator",
    "GradCache",
    "InfoNCELoss",
    "ListwiseCELoss",
    "MLMCollator",
    "MatryoshkaLoss",
    "RerankerCollator",
    "SingleSourceBatchSampler",
    "SparseInfoNCELoss",
    "TRMLoss",
    "TokenBudgetBatchSampler",
    "all_gather_with_grad",
    "embedding_features",
    "get_rank",
    "get_world_size",
    "is_distributed",
    "source_probabilities",
]
