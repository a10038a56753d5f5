"""Gradient caching (GradCache, Gao et al. 2021): a large contrastive batch in the memory of a small one.

1. Encode every input in row chunks without autograd and cache the representations (and each chunk's RNG state).
2. Compute the loss on the cached representations (all of them: the in-batch negatives of the whole batch) and its
   gradient with respect to the representations only.
3. Re-encode each chunk with autograd, under the RNG state of its first pass (identical dropout), and backpropagate
   the cached representation gradient through it; only one chunk's activations live at a time.

The parameter gradients equal those of the uncached loss (up to float rounding). References: Gao, Zhang, Han, Callan,
"Scaling Deep Contrastive Learning Batch Size under Memory Limited Setup", RepL4NLP 2021.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import get_device_states, set_device_states

from .losses import embedding_features


Representation = torch.Tensor | Mapping[str, torch.Tensor]
EncodeFn = Callable[[nn.Module, Mapping[str, Any]], Representation]
LossFn = Callable[..., Mapping[str, torch.Tensor]]


class RandState:
    """The CPU and accelerator RNG states at one moment, to replay a forward with the same dropout."""

    def __init__(self, *tensors: torch.Tensor):
        self.cpu_state = torch.get_rng_state()
        self.devices, self.device_states = get_device_states(*tensors)
        accelerated = [t.device.type for t in tensors if t.device.type not in ("cpu", "meta")]
        self.device_type = accelerated[0] if accelerated else None

    @contextlib.contextmanager
    def replay(self) -> Iterator[None]:
        """Run the block from the captured states; the RNG states from before the block are restored after it."""
        with torch.random.fork_rng(devices=self.devices, device_type=self.device_type or "cuda"):
            torch.set_rng_state(self.cpu_state)
            if self.devices:
                set_device_states(self.devices, self.device_states, device_type=self.device_type)
            yield


def split_inputs(inputs: Mapping[str, Any], chunk_size: int) -> list[dict[str, Any]]:
    """Row chunks of a padded batch: tensors with the batch's first dimension are sliced, other values copied.

    Args:
        inputs: model keyword arguments with `(B, ...)` tensors (e.g. `input_ids`, `attention_mask`).
        chunk_size: rows per chunk.
    """
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be an integer >= 1, got {chunk_size!r}.")
    if "seqlens" in inputs:
        raise ValueError("GradCache splits padded batches by rows; pass input_ids/attention_mask, not packed seqlens.")
    sizes = {v.shape[0] for v in inputs.values() if isinstance(v, torch.Tensor) and v.dim() > 0}
    if len(sizes) != 1:
        raise ValueError(f"the batch tensors must share one first (batch) dimension, got sizes {sorted(sizes)}.")
    rows = sizes.pop()
    return [{k: v[start : start + chunk_size] if isinstance(v, torch.Tensor) and v.dim() > 0 else v
             for k, v in inputs.items()} for start in range(0, rows, chunk_size)]


def _as_dict(representation: Representation) -> dict[str, torch.Tensor]:
    if isinstance(representation, torch.Tensor):
        return {"": representation}
    if isinstance(representation, Mapping):
        return dict(representation)
    raise TypeError(f"encode_fn must return a tensor or a dict of tensors, got {type(representation).__name__}.")


def _like(template: Representation, values: dict[str, torch.Tensor]) -> Representation:
    return values[""] if isinstance(template, torch.Tensor) else values


class GradCache:
    """Run a contrastive step with gradient caching; gradients equal the uncached loss's.

    Args:
        model: the encoder (an `MgteForEmbedding`, a reranker, or DDP around one). Under DDP every chunk but the last
            runs in `no_sync`, so gradients are reduced once.
        loss_fn: called as `loss_fn(*representations, **loss_kwargs)` and returning a dict with `"loss"` (the losses
            of `mgte_hf.training.losses`).
        chunk_size: rows encoded at once (memory ∝ chunk_size, the loss still sees the whole batch).
        encode_fn: `encode_fn(model, inputs)` → a `(n, ...)` tensor or a dict of them (rows first); default
            `embedding_features` (dense, sparse, input_ids, attention_mask of an `MgteForEmbedding`). Floating
            tensors get gradients; others (token ids, masks) pass through to the loss.

    Example:
        `GradCache(model, TRMLoss(), chunk_size=32).step(batch["query"], batch["passages"])`
    """

    def __init__(self, model: nn.Module, loss_fn: LossFn, chunk_size: int, encode_fn: EncodeFn = embedding_features):
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValueError(f"chunk_size must be an integer >= 1, got {chunk_size!r}.")
        self.model = model
        self.loss_fn = loss_fn
        self.chunk_size = chunk_size
        self.encode_fn = encode_fn

    def step(self, *inputs: Mapping[str, Any], grad_scale: float = 1.0, **loss_kwargs: Any) -> dict[str, torch.Tensor]:
        """Encode `inputs` (e.g. queries, passages), compute the loss and accumulate parameter gradients.

        Args:
            inputs: one padded batch per representation the loss takes, in the loss's argument order.
            grad_scale: factor on the gradients (1 / gradient-accumulation steps, or a fp16 loss scale).
            loss_kwargs: passed to `loss_fn` (e.g. `group_size=` for `ListwiseCELoss`).

        Returns:
            The loss dict, detached.
        """
        chunked = [split_inputs(batch, self.chunk_size) for batch in inputs]
        cached, states, templates = self._first_pass(chunked)
        leaves = [{k: v.detach().requires_grad_(v.is_floating_point()) for k, v in reps.items()} for reps in cached]
        with torch.enable_grad():
            out = self.loss_fn(*(_like(t, r) for t, r in zip(templates, leaves, strict=True)), **loss_kwargs)
            wanted = [(side, k, v) for side, reps in enumerate(leaves) for k, v in reps.items() if v.requires_grad]
            grads = torch.autograd.grad(out["loss"] * grad_scale, [v for _, _, v in wanted], allow_unused=True)
        rep_grads: list[dict[str, torch.Tensor]] = [{} for _ in leaves]
        for (side, key, _), grad in zip(wanted, grads, strict=True):
            if grad is not None:
                rep_grads[side][key] = grad
        self._second_pass(chunked, states, rep_grads)
        return {name: value.detach() for name, value in out.items()}

    def _first_pass(self, chunked: list[list[dict[str, Any]]]
                    ) -> tuple[list[dict[str, torch.Tensor]], list[list[RandState]], list[Representation]]:
        """Representations of every input (chunks concatenated), the RNG state before each chunk, and one chunk's
        representation per input (whether the loss takes a tensor or a dict)."""
        cached, states, templates = [], [], []
        first = next(self.model.parameters(), None)
        reference = [] if first is None else [first]  # the parameters' device RNG drives dropout
        with torch.no_grad():
            for chunks in chunked:
                parts, side_states = [], []
                for chunk in chunks:
                    side_states.append(RandState(*_tensors(chunk), *reference))
                    representation = self.encode_fn(self.model, chunk)
                    parts.append(_as_dict(representation))
                templates.append(representation)
                cached.append({key: torch.cat([part[key] for part in parts], dim=0) for key in parts[0]})
                states.append(side_states)
        return cached, states, templates

    def _second_pass(self, chunked: list[list[dict[str, Any]]], states: list[list[RandState]],
                     rep_grads: list[dict[str, torch.Tensor]]) -> None:
        """Re-encode each chunk with autograd and backpropagate its slice of the representation gradients."""
        jobs = [(side, index, chunk) for side, chunks in enumerate(chunked) if rep_grads[side]
                for index, chunk in enumerate(chunks)]
        no_sync = getattr(self.model, "no_sync", None)
        for number, (side, index, chunk) in enumerate(jobs):
            grads = rep_grads[side]
            start = index * self.chunk_size
            last = number == len(jobs) - 1
            sync = contextlib.nullcontext() if last or no_sync is None else no_sync()
            with sync, states[side][index].replay():
                reps = _as_dict(self.encode_fn(self.model, chunk))
                pairs = [(reps[k], g[start : start + reps[k].shape[0]]) for k, g in grads.items()]
                torch.autograd.backward([r for r, _ in pairs], [g for _, g in pairs])


def _tensors(chunk: Mapping[str, Any]) -> list[torch.Tensor]:
    return [v for v in chunk.values() if isinstance(v, torch.Tensor)]


__all__ = ["GradCache", "RandState", "split_inputs"]
