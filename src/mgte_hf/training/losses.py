"""Training losses of the mGTE recipe, as small modules that return a dict of named parts (`"loss"` is the total).

Scores come from `mgte_hf.scoring` (the functions inference uses), dense prefixes from
`mgte_hf.modeling.dense_embedding` (truncate, then L2 normalise), so training optimises exactly what is served.

Defaults follow the paper (arXiv 2407.19669, see RECIPE.md §2): dense τ = 0.05, sparse τ = 0.01, Matryoshka prefixes
D = {32k ≤ H}. The paper does not report the sparse weight λ nor the prefix weights w_d; the defaults here are
documented on `TRMLoss`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mgte_hf.modeling import dense_embedding
from mgte_hf.scoring import dense_scores, lexical_scores

from .distributed import all_gather_rows, gather_with_grad, max_across_ranks, pad_to_width


DENSE_TEMPERATURE = 0.05  # paper, fine-tuning (MRL) InfoNCE
SPARSE_TEMPERATURE = 0.01  # paper, sparse InfoNCE
MATRYOSHKA_STEP = 32  # paper: D = {32k | k >= 1, 32k <= H}
BGE_M3_SPARSE_WEIGHT = 0.3  # λ of BGE-M3's unified fine-tuning, whose sparse design mGTE follows


def group_size_of(num_queries: int, num_passages: int) -> int:
    """Passages per query (1 positive + k negatives); a clear error when the rows do not split evenly."""
    if num_queries < 1:
        raise ValueError("the batch holds no query.")
    if num_passages < num_queries or num_passages % num_queries:
        raise ValueError(f"passages must hold B·(1+k) rows ordered per query (positive, then its k negatives); got "
                         f"{num_passages} passages for {num_queries} queries.")
    return num_passages // num_queries


def positive_indices(num_queries: int, group_size: int, offset: int, device: torch.device) -> torch.Tensor:
    """`(B,)` column of each query's positive among the (gathered) passages: offset + i·group_size."""
    return offset + torch.arange(num_queries, device=device) * group_size


def info_nce(scores: torch.Tensor, labels: torch.Tensor, temperature: float) -> torch.Tensor:
    """Mean over queries of −log softmax(scores / τ)[label], computed in at least fp32."""
    scores = scores.to(torch.promote_types(scores.dtype, torch.float32))
    return F.cross_entropy(scores / temperature, labels)


def _check_temperature(temperature: float) -> float:
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}.")
    return float(temperature)


def _check_vectors(query: torch.Tensor, passages: torch.Tensor) -> int:
    if query.dim() != 2 or passages.dim() != 2 or query.shape[1] != passages.shape[1]:
        raise ValueError(f"query must be (B, D) and passages (B·(1+k), D) with the same D, got {tuple(query.shape)} "
                         f"and {tuple(passages.shape)}.")
    return group_size_of(query.shape[0], passages.shape[0])


class InfoNCELoss(nn.Module):
    """InfoNCE over dense scores with in-batch and hard negatives.

    Each query is scored against every passage of the batch (its positive, its hard negatives and all passages of the
    other queries); the target is its own positive.

    Args:
        temperature: τ dividing the scores (the paper: 0.05 in fine-tuning, 0.01 in contrastive pre-training).
        cross_device: score against the passages of all ranks, gathered with gradients.

    Inputs:
        query: `(B, D)` L2-normalised vectors. passages: `(B·(1+k), D)`, per query its positive then k negatives.

    Returns:
        `{"loss"}`: the mean over this rank's queries.
    """

    def __init__(self, temperature: float = DENSE_TEMPERATURE, cross_device: bool = False):
        super().__init__()
        self.temperature = _check_temperature(temperature)
        self.cross_device = cross_device

    def gather(self, query: torch.Tensor, passages: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """All passages scored by this rank (gathered when cross-device) and `(B,)` labels of the positives."""
        group = _check_vectors(query, passages)
        offset = 0
        if self.cross_device:
            passages, offset = gather_with_grad(passages)
        return passages, positive_indices(query.shape[0], group, offset, query.device)

    def scored(self, query: torch.Tensor, passages: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The loss on already gathered passages."""
        return info_nce(dense_scores(query, passages), labels, self.temperature)

    def forward(self, query: torch.Tensor, passages: torch.Tensor) -> dict[str, torch.Tensor]:
        all_passages, labels = self.gather(query, passages)
        return {"loss": self.scored(query, all_passages, labels)}


def resolve_dimensions(dimensions: Sequence[int] | None, hidden_size: int | None) -> list[int]:
    """The Matryoshka prefixes: `dimensions` checked (against `hidden_size` when known), or, for `None`, the
    paper's {32k ≤ H} plus H itself."""
    if dimensions is None:
        return sorted({*range(MATRYOSHKA_STEP, hidden_size + 1, MATRYOSHKA_STEP), hidden_size})
    dims = [int(d) for d in dimensions]
    too_large = hidden_size is not None and max(dims, default=0) > hidden_size
    if not dims or len(set(dims)) != len(dims) or min(dims) < 1 or too_large:
        limit = "" if hidden_size is None else f" up to the vector size {hidden_size}"
        raise ValueError(f"Matryoshka dimensions must be distinct positive sizes{limit}, got {list(dimensions)}.")
    return dims


def resolve_weights(weights: Sequence[float] | None, count: int) -> list[float]:
    """Per-prefix weights; `None` gives equal weights 1/count (the mean over prefixes)."""
    if weights is None:
        return [1.0 / count] * count
    if len(weights) != count or any(not w >= 0 for w in weights):
        raise ValueError(f"need {count} non-negative Matryoshka weights (one per dimension), got {list(weights)}.")
    return [float(w) for w in weights]


class MatryoshkaLoss(nn.Module):
    """A dense InfoNCE loss applied to every Matryoshka prefix of the vectors: Σ_d w_d · L(e[:d]).

    Each prefix is truncated, then L2 normalised (`dense_embedding`, as served). Cross-device passages are gathered
    once at full size and truncated after the gather.

    Args:
        base_loss: the `InfoNCELoss` (its temperature and cross-device setting apply to every prefix).
        dimensions: prefix sizes; `None` resolves to the paper's {32k ≤ H} plus H at the first call.
        weights: one weight per dimension; `None` gives 1/len(dimensions) each, so that the total is the mean over
            prefixes (sentence-transformers' MatryoshkaLoss sums with weight 1: pass `[1.0] * len(dimensions)`).

    Inputs:
        query: `(B, H)` and passages `(B·(1+k), H)` full-size vectors (normalised or raw CLS states).

    Returns:
        `{"loss", "dim_<d>"...}`: the weighted sum and the unweighted loss of each prefix.
    """

    def __init__(self, base_loss: InfoNCELoss, dimensions: Sequence[int] | None = None,
                 weights: Sequence[float] | None = None):
        super().__init__()
        if not isinstance(base_loss, InfoNCELoss):
            raise TypeError(f"MatryoshkaLoss needs an InfoNCELoss as base_loss, got {type(base_loss).__name__}.")
        self.base_loss = base_loss
        self.dimensions = None if dimensions is None else resolve_dimensions(dimensions, None)
        self.weights = None if weights is None else list(weights)
        if self.dimensions is not None:
            resolve_weights(self.weights, len(self.dimensions))

    def forward(self, query: torch.Tensor, passages: torch.Tensor) -> dict[str, torch.Tensor]:
        dims = resolve_dimensions(self.dimensions, query.shape[-1])
        weights = resolve_weights(self.weights, len(dims))
        all_passages, labels = self.base_loss.gather(query, passages)
        out: dict[str, torch.Tensor] = {}
        total = query.new_zeros((), dtype=torch.promote_types(query.dtype, torch.float32))
        for dim, weight in zip(dims, weights, strict=True):
            part = self.base_loss.scored(dense_embedding(query, dim), dense_embedding(all_passages, dim), labels)
            out[f"dim_{dim}"] = part
            total = total + weight * part
        return {"loss": total, **out}


class SparseInfoNCELoss(nn.Module):
    """InfoNCE on the lexical score Σ_{t ∈ q∩d} w_q(t)·w_d(t) (max weight over repeats), via `scoring.lexical_scores`.

    Args:
        temperature: τ (the paper: 0.01).
        ignore_token_ids: ids that never count (cls, eos, pad, unk as at inference: `special_token_ids(tokenizer)`).
        cross_device: score against the passages of all ranks; their weights are gathered with gradients, ids and
            weights right padded to the widest rank first.

    Inputs:
        query_ids, query_weights: `(B, Lq)`; passage_ids, passage_weights: `(B·(1+k), Lp)`, grouped per query.
        query_mask, passage_mask: optional 0/1 masks; weights at 0 are ignored.

    Returns:
        `{"loss"}`: the mean over this rank's queries.
    """

    def __init__(self, temperature: float = SPARSE_TEMPERATURE, ignore_token_ids: Sequence[int] = (),
                 cross_device: bool = False):
        super().__init__()
        self.temperature = _check_temperature(temperature)
        self.ignore_token_ids = tuple(int(i) for i in ignore_token_ids)
        self.cross_device = cross_device

    def forward(self, query_ids: torch.Tensor, query_weights: torch.Tensor, passage_ids: torch.Tensor,
                passage_weights: torch.Tensor, query_mask: torch.Tensor | None = None,
                passage_mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        query_weights = _masked_weights(query_ids, query_weights, query_mask, "query")
        passage_weights = _masked_weights(passage_ids, passage_weights, passage_mask, "passage")
        group = group_size_of(query_ids.shape[0], passage_ids.shape[0])
        offset = 0
        if self.cross_device:
            width = max_across_ranks(passage_ids.shape[1], passage_ids.device)
            passage_weights, offset = gather_with_grad(pad_to_width(passage_weights, width))  # (N_all, W)
            passage_ids = all_gather_rows(pad_to_width(passage_ids, width))[0]  # (N_all, W), weight 0 at padding
        scores = lexical_scores(query_ids, query_weights, passage_ids, passage_weights, self.ignore_token_ids)
        labels = positive_indices(query_ids.shape[0], group, offset, query_ids.device)
        return {"loss": info_nce(scores, labels, self.temperature)}


def _masked_weights(ids: torch.Tensor, weights: torch.Tensor, mask: torch.Tensor | None, name: str) -> torch.Tensor:
    if ids.dim() != 2 or weights.shape != ids.shape or (mask is not None and mask.shape != ids.shape):
        raise ValueError(f"{name} ids, weights and mask must all be (rows, length); got ids {tuple(ids.shape)}, "
                         f"weights {tuple(weights.shape)}" + ("" if mask is None else f", mask {tuple(mask.shape)}"))
    return weights if mask is None else weights * mask.to(weights.dtype)


class TRMLoss(nn.Module):
    """The mGTE TRM fine-tuning loss (paper Eq. 3): dense_weight · Σ_d w_d · L_dense(e[:d]) + sparse_weight · L_sparse.

    Defaults: temperatures are the paper's (0.05 dense, 0.01 sparse); prefixes are the paper's D = {32k ≤ H} (plus H).
    The paper reports neither λ nor w_d: `sparse_weight` defaults to 0.3, BGE-M3's λ for its lexical loss (mGTE's
    sparse head follows BGE-M3), and the prefix weights to 1/|D| so that the dense part is the mean over prefixes,
    on the scale of one InfoNCE loss, which keeps λ meaningful whatever the number of prefixes.

    Args:
        dense_weight: weight of the (Matryoshka) dense part.
        sparse_weight: λ; 0 turns the sparse part off (the inputs then need no sparse weights).
        matryoshka_dimensions: prefix sizes; `None` for the paper's rule; `[H]` for the full vector only.
        matryoshka_weights: one weight per prefix; `None` for 1/|D| each.
        dense_temperature, sparse_temperature: τ of each InfoNCE.
        ignore_token_ids: ids without sparse weight (pass `special_token_ids(tokenizer)`, as inference drops them).
        cross_device: negatives from all ranks for both parts.

    Inputs:
        query, passages: mappings with `"dense"` `(n, H)`, and for the sparse part `"sparse"` `(n, L)` token weights,
        `"input_ids"` `(n, L)` and optionally `"attention_mask"` (see `embedding_features`). Passages are grouped per
        query: positive, then its negatives.

    Returns:
        `{"loss", "dense", "sparse", "dense_dim_<d>"...}`: the total and each unweighted part.
    """

    def __init__(
        self,
        dense_weight: float = 1.0,
        sparse_weight: float = BGE_M3_SPARSE_WEIGHT,
        matryoshka_dimensions: Sequence[int] | None = None,
        matryoshka_weights: Sequence[float] | None = None,
        dense_temperature: float = DENSE_TEMPERATURE,
        sparse_temperature: float = SPARSE_TEMPERATURE,
        ignore_token_ids: Sequence[int] = (),
        cross_device: bool = False,
    ):
        super().__init__()
        if not dense_weight >= 0 or not sparse_weight >= 0 or dense_weight + sparse_weight == 0:
            raise ValueError(f"dense_weight and sparse_weight must be >= 0 and not both 0, got {dense_weight!r} and "
                             f"{sparse_weight!r}.")
        self.dense_weight = float(dense_weight)
        self.sparse_weight = float(sparse_weight)
        self.dense_loss = MatryoshkaLoss(InfoNCELoss(dense_temperature, cross_device), matryoshka_dimensions,
                                         matryoshka_weights)
        self.sparse_loss = SparseInfoNCELoss(sparse_temperature, ignore_token_ids, cross_device)

    def forward(self, query: Mapping[str, torch.Tensor],
                passages: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        total = 0.0
        if self.dense_weight > 0:
            dense = self.dense_loss(_require(query, "dense", "query"), _require(passages, "dense", "passages"))
            out["dense"] = dense["loss"]
            out.update({f"dense_{name}": value for name, value in dense.items() if name != "loss"})
            total = total + self.dense_weight * dense["loss"]
        if self.sparse_weight > 0:
            sparse = self.sparse_loss(
                _require(query, "input_ids", "query"), _require(query, "sparse", "query"),
                _require(passages, "input_ids", "passages"), _require(passages, "sparse", "passages"),
                query.get("attention_mask"), passages.get("attention_mask"))
            out["sparse"] = sparse["loss"]
            total = total + self.sparse_weight * sparse["loss"]
        return {"loss": total, **out}


def _require(features: Mapping[str, torch.Tensor], key: str, name: str) -> torch.Tensor:
    value = features.get(key)
    if value is None:
        raise ValueError(f"TRMLoss needs {name}[{key!r}] (have {sorted(features)}); build the inputs with "
                         "embedding_features(model, inputs) from an MgteForEmbedding forward.")
    return value


def embedding_features(model: nn.Module, inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Run an `MgteForEmbedding` on padded `inputs` and return what `TRMLoss` reads.

    Returns:
        `{"dense": (n, H) full-size normalised vectors, "sparse": (n, L) token weights, "input_ids", "attention_mask"}`
        (`"sparse"` only when the model returned it).
    """
    output = model(**inputs)
    features = {"dense": output.dense, "input_ids": inputs["input_ids"]}
    if output.sparse is not None:
        features["sparse"] = output.sparse
    if inputs.get("attention_mask") is not None:
        features["attention_mask"] = inputs["attention_mask"]
    return features


class ListwiseCELoss(nn.Module):
    """Listwise softmax cross-entropy for the reranker: in each group of G logits the positive is at index 0.

    Args:
        temperature: τ dividing the logits (the paper does not report one; 1.0 is the plain cross-entropy).

    Inputs:
        logits: `(B·G,)` or `(B·G, 1)` relevance logits, grouped per query. group_size: G.

    Returns:
        `{"loss"}`: the mean over groups.
    """

    def __init__(self, temperature: float = 1.0):
        super().__init__()
        self.temperature = _check_temperature(temperature)

    def forward(self, logits: torch.Tensor, group_size: int) -> dict[str, torch.Tensor]:
        if logits.dim() == 2 and logits.shape[1] == 1:
            logits = logits.squeeze(1)
        if logits.dim() != 1:
            raise ValueError(f"reranker logits must be (B·G,) or (B·G, 1), got {tuple(logits.shape)}.")
        if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
            raise ValueError(f"group_size must be a positive int, got {group_size!r}.")
        if logits.shape[0] == 0 or logits.shape[0] % group_size:
            raise ValueError(f"{logits.shape[0]} logits do not split into groups of {group_size} "
                             "(1 positive + negatives per query).")
        grouped = logits.reshape(-1, group_size)  # (B, G)
        labels = torch.zeros(grouped.shape[0], dtype=torch.long, device=logits.device)
        return {"loss": info_nce(grouped, labels, self.temperature)}


__all__ = [
    "BGE_M3_SPARSE_WEIGHT",
    "DENSE_TEMPERATURE",
    "MATRYOSHKA_STEP",
    "SPARSE_TEMPERATURE",
    "InfoNCELoss",
    "ListwiseCELoss",
    "MatryoshkaLoss",
    "SparseInfoNCELoss",
    "TRMLoss",
    "embedding_features",
    "group_size_of",
    "info_nce",
    "positive_indices",
    "resolve_dimensions",
    "resolve_weights",
]
