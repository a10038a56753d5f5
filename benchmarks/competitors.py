"""The competitors, each as a zero-argument callable over one prepared workload.

Inputs are built (and moved to the device) once, outside the timed call. Every forward callable returns the
`(batch, hidden)` first-token (CLS) states in the workload's order, so that the competitors can be checked against
each other; every training-step callable returns the detached loss.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import torch
import torch.nn.functional as F
from transformers import GteForMaskedLM, GteModel

from mgte_hf import MgteConfig, MgteForMaskedLM, MgteModel
from mgte_hf.batching import restore_order, token_budget_batches

from .workloads import CLS_ID, EOS_ID, PAD_ID, packed_batch, padded_batch


def ours_forward(model: MgteModel, seqs: list[torch.Tensor]) -> Callable[[], torch.Tensor]:
    """Our encoder on the whole workload packed into one call (automatic attention backend)."""
    device = model.device
    ids, lengths = packed_batch(seqs)
    ids = ids.to(device)  # (T,)

    def run() -> torch.Tensor:
        with torch.inference_mode():
            return model.encode_packed(ids, seqlens=lengths).cls  # (B, H)

    return run


def ours_compiled_forward(model: MgteModel, seqs: list[torch.Tensor],
                          backend: str = "inductor") -> Callable[[], torch.Tensor]:
    """`ours_forward` through `torch.compile(fullgraph=True, dynamic=True)` (the lengths a tensor: one graph for any
    packed batch); the first call compiles."""
    ids, lengths = packed_batch(seqs)
    ids, lengths = ids.to(model.device), torch.as_tensor(lengths, device=model.device)
    encode = torch.compile(model.encode_packed, fullgraph=True, dynamic=True, backend=backend)

    def run() -> torch.Tensor:
        with torch.inference_mode():
            return encode(ids, seqlens=lengths).cls  # (B, H)

    return run


def fixed_batches(n: int, batch_size: int | None) -> list[list[int]]:
    """Indices in input order, `batch_size` at a time (all of them when `None`)."""
    size = n if batch_size is None else batch_size
    return [list(range(start, min(start + size, n))) for start in range(0, n, size)]


def sorted_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Length-sorted mini-batches of `batch_size` (no token cap), via the library's token-budget batching."""
    return token_budget_batches(lengths, max_tokens=sys.maxsize, max_batch_size=batch_size)


def gte_forward(gte: GteModel, seqs: list[torch.Tensor], batches: list[list[int]]) -> Callable[[], torch.Tensor]:
    """transformers' `GteModel` on right-padded batches (each padded to its longest sequence)."""
    device = gte.device
    inputs = [tuple(t.to(device) for t in padded_batch([seqs[i] for i in batch], PAD_ID)) for batch in batches]

    def run() -> torch.Tensor:
        with torch.inference_mode():
            cls = [gte(input_ids=ids, attention_mask=mask).last_hidden_state[:, 0] for ids, mask in inputs]
        return torch.stack(restore_order(batches, cls))  # (B, H) in workload order

    return run


def mlm_labels(seqs: list[torch.Tensor], probability: float = 0.3, seed: int = 0) -> list[torch.Tensor]:
    """MLM labels: the token id at a random `probability` share of ordinary positions, -100 elsewhere.

    Every sequence gets at least one label where it has an ordinary token (30 % is the recipe's masking rate).
    """
    g = torch.Generator().manual_seed(seed)
    labels = []
    for ids in seqs:
        ordinary = (ids != CLS_ID) & (ids != EOS_ID)
        chosen = (torch.rand(ids.shape, generator=g) < probability) & ordinary
        if not chosen.any() and ordinary.any():
            chosen[ordinary.nonzero()[0]] = True
        labels.append(torch.where(chosen, ids, torch.full_like(ids, -100)))
    return labels


def ours_train_step(model: MgteForMaskedLM, seqs: list[torch.Tensor],
                    labels: list[torch.Tensor]) -> Callable[[], torch.Tensor]:
    """Forward + backward of our MLM on the packed workload; logits only at labelled positions."""
    device = model.device
    ids, lengths = packed_batch(seqs)
    ids, packed_labels = ids.to(device), torch.cat(labels).to(device)  # (T,), (T,)

    def run() -> torch.Tensor:
        model.zero_grad(set_to_none=True)
        loss = model(input_ids=ids, seqlens=lengths, labels=packed_labels).loss
        loss.backward()
        return loss.detach()

    return run


def gte_train_step(model: GteForMaskedLM, seqs: list[torch.Tensor], labels: list[torch.Tensor],
                   micro_batch: int | None = None) -> Callable[[], torch.Tensor]:
    """Forward + backward of transformers' MLM on one padded batch, optionally in micro-batches of rows.

    `GteForMaskedLM.forward` would project every padded position onto the 250k vocabulary (32 × 2048 × 250 048
    fp32 logits are 65 GB), so its encoder runs padded and its head only at labelled positions, as ours does: the
    comparison isolates what packing saves. With `micro_batch`, the padded batch (every row at the batch's longest
    length) goes through in groups of that many rows with gradient accumulation: the same work and the same
    gradients, at a fraction of the activation memory (one 2-layer step on the whole skewed batch needs > 24 GB).
    """
    device = model.device
    ids, mask = (t.to(device) for t in padded_batch(seqs, PAD_ID))  # (B, L) at the batch's longest length
    padded_labels = padded_batch(labels, -100)[0].to(device)  # (B, L)
    total = int((padded_labels != -100).sum())
    size = micro_batch or len(seqs)
    rows = [slice(start, start + size) for start in range(0, len(seqs), size)]

    def run() -> torch.Tensor:
        model.zero_grad(set_to_none=True)
        loss_sum = torch.zeros((), device=device)
        for part in rows:
            selected = padded_labels[part] != -100  # (b, L)
            if not selected.any():
                continue
            hidden = model.gte(input_ids=ids[part], attention_mask=mask[part]).last_hidden_state  # (b, L, H)
            logits = model.lm_head(hidden[selected]).float()
            part_sum = F.cross_entropy(logits, padded_labels[part][selected], reduction="sum")
            (part_sum / total).backward()  # the mean over all labelled tokens of the batch, accumulated
            loss_sum += part_sum.detach()
        return loss_sum / total

    return run


FORWARD_COMPETITORS = ("gte-padded", "gte-sorted", "ours")


def base_config(num_layers: int = 12, **overrides) -> MgteConfig:
    """gte-multilingual-base's shape (hidden 768, 12 heads, intermediate 3072, vocab 250 048) with `num_layers`."""
    return MgteConfig(num_hidden_layers=num_layers, **overrides)


def build_encoder(config: MgteConfig, seed: int = 0, dtype: torch.dtype = torch.float32,
                  device: str | torch.device = "cpu") -> MgteModel:
    """Our encoder with the library's random initialisation under a fixed seed, in eval mode."""
    torch.manual_seed(seed)
    return MgteModel(config).to(device=device, dtype=dtype).eval()


def make_forward(name: str, model: MgteModel | GteModel, seqs: list[torch.Tensor],
                 sorted_batch: int = 8) -> Callable[[], torch.Tensor]:
    """The forward callable of competitor `name` (one of `FORWARD_COMPETITORS`) with its model."""
    if name == "ours":
        return ours_forward(model, seqs)
    if name == "gte-padded":
        return gte_forward(model, seqs, fixed_batches(len(seqs), None))
    if name == "gte-sorted":
        return gte_forward(model, seqs, sorted_batches([len(s) for s in seqs], sorted_batch))
    raise ValueError(f"unknown competitor {name!r}; choose from {FORWARD_COMPETITORS}.")
