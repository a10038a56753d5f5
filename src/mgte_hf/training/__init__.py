"""Training for every mGTE stage: collators, samplers, losses, gradient caching, collectives, Trainer subclasses."""

from .arguments import (
    MgteContrastiveTrainingArguments,
    MgteEmbeddingTrainingArguments,
    MgteMLMTrainingArguments,
    MgteRerankerTrainingArguments,
    MgteTrainingArguments,
)
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
from .rope import RopeSetting, rev_ntk_settings, rope_setting
from .samplers import SingleSourceBatchSampler, TokenBudgetBatchSampler, source_probabilities
from .trainers import (
    MgteContrastiveTrainer,
    MgteEmbeddingTrainer,
    MgteMLMTrainer,
    MgteRerankerTrainer,
    MgteTrainer,
    truncate_packed,
)


__all__ = [
    "ContrastiveCollator",
    "GradCache",
    "InfoNCELoss",
    "ListwiseCELoss",
    "MLMCollator",
    "MatryoshkaLoss",
    "MgteContrastiveTrainer",
    "MgteContrastiveTrainingArguments",
    "MgteEmbeddingTrainer",
    "MgteEmbeddingTrainingArguments",
    "MgteMLMTrainer",
    "MgteMLMTrainingArguments",
    "MgteRerankerTrainer",
    "MgteRerankerTrainingArguments",
    "MgteTrainer",
    "MgteTrainingArguments",
    "RerankerCollator",
    "RopeSetting",
    "SingleSourceBatchSampler",
    "SparseInfoNCELoss",
    "TRMLoss",
    "TokenBudgetBatchSampler",
    "all_gather_with_grad",
    "embedding_features",
    "get_rank",
    "get_world_size",
    "is_distributed",
    "rev_ntk_settings",
    "rope_setting",
    "source_probabilities",
    "truncate_packed",
]
