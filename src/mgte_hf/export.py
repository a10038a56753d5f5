"""ONNX export of the mGTE embedder (dense vector and sparse token weights together) and of the reranker.

The packed forward of the model has data-dependent shapes (one attention call per sequence), so the exported graph
runs the same modules on the padded batch instead: embeddings, RoPE and every encoder layer of the model, with the
model's own padded SDPA attention backend and a key-padding mask, then the model's own heads. Inputs are
`input_ids` and `attention_mask` `(batch, seq)` with dynamic batch and sequence axes, left or right padded; token
types are 0 (mGTE's XLM-R inputs have one token type).

Outputs: `dense` `(batch, dimension)` L2-normalised and `sparse` `(batch, seq)` token weights (0 at padding) for an
`MgteForEmbedding`; `logits` `(batch, num_labels)` for an `MgteForSequenceClassification`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from torch import nn

from .convert import read_checkpoint
from .modeling import MgteForEmbedding, MgteForSequenceClassification
from .modeling.modeling_mgte import dense_embedding, sparse_token_weights


logger = logging.getLogger(__name__)

INPUT_NAMES = ("input_ids", "attention_mask")
DEFAULT_OPSET = 18
ONNX_SINGLE_FILE_LIMIT = 2 * 1024**3  # protobuf's limit: larger models keep their weights in an external file


def _cls(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """`(B, L, H)` → `(B, H)` state of each row's first valid token (index 0 under right padding)."""
    first = attention_mask.long().argmax(dim=1)  # (B,)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), first]


class EmbeddingExport(nn.Module):
    """`MgteForEmbedding` as a padded, trace-friendly module: (input_ids, attention_mask) → (dense, sparse)."""

    def __init__(self, model: MgteForEmbedding, dimension: int | None = None):
        super().__init__()
        self.model = model
        self.dimension = model.check_dimension(dimension)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.model.new.encode_padded(input_ids, attention_mask)  # (B, L, H)
        dense = dense_embedding(_cls(hidden, attention_mask), self.dimension)  # (B, dimension)
        sparse = sparse_token_weights(self.model.classifier, hidden) * attention_mask.to(hidden.dtype)  # (B, L)
        return dense, sparse


class RerankerExport(nn.Module):
    """`MgteForSequenceClassification` as a padded, trace-friendly module: (input_ids, attention_mask) → logits."""

    def __init__(self, model: MgteForSequenceClassification):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.model.new.encode_padded(input_ids, attention_mask)  # (B, L, H)
        pooled = self.model.new.pooler(_cls(hidden, attention_mask))
        return self.model.classifier(self.model.dropout(pooled))  # (B, num_labels)


def export_wrapper(model: MgteForEmbedding | MgteForSequenceClassification,
                   dimension: int | None = None) -> tuple[nn.Module, tuple[str, ...]]:
    """The trace-friendly module for `model` and its output names."""
    if isinstance(model, MgteForEmbedding):
        return EmbeddingExport(model, dimension), ("dense", "sparse")
    if isinstance(model, MgteForSequenceClassification):
        if dimension is not None:
            raise ValueError("dimension applies to embedding models, not to a reranker.")
        return RerankerExport(model), ("logits",)
    raise TypeError(f"ONNX export supports MgteForEmbedding and MgteForSequenceClassification, "
                    f"not {type(model).__name__}.")


def export_onnx(
    model: MgteForEmbedding | MgteForSequenceClassification,
    path: str | os.PathLike,
    *,
    dimension: int | None = None,
    opset: int = DEFAULT_OPSET,
    check: bool = True,
    atol: float = 1e-4,
) -> Path:
    """Export `model` to the ONNX file `path` (float32, dynamic batch and sequence axes).

    Args:
        model: an `MgteForEmbedding` (outputs dense, sparse) or `MgteForSequenceClassification` (outputs logits).
        path: the .onnx file to write (models over 2 GiB keep their weights in `path.data` beside it).
        dimension: truncate the dense vector to this allowed size (embedding models).
        opset: ONNX opset version.
        check: run the file with onnxruntime on batches of other shapes than the export example and compare with
            the model's own forward; raises ValueError above `atol`.
        atol: tolerance of the check.

    Returns:
        The path of the ONNX file.
    """
    if model.dtype != torch.float32:
        raise ValueError(f"ONNX export runs in float32; the model is {model.dtype}. Pass a float32 model "
                         "(e.g. from_pretrained(..., dtype=torch.float32)).")
    wrapper, output_names = export_wrapper(model, dimension)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    was_training = model.training
    model.eval()
    try:
        input_ids, attention_mask = example_batch(model.config, lengths=[7, 4])
        batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence")
        shapes = {name: {0: batch, 1: seq} for name in INPUT_NAMES}
        size = sum(p.numel() * p.element_size() for p in model.parameters())
        torch.onnx.export(wrapper, (input_ids, attention_mask), str(path), input_names=list(INPUT_NAMES),
                          output_names=list(output_names), opset_version=opset, dynamo=True, dynamic_shapes=shapes,
                          external_data=size >= ONNX_SINGLE_FILE_LIMIT)
        if check:
            errors = check_onnx(path, model, dimension=dimension)
            if max(errors.values()) > atol:
                raise ValueError(f"onnxruntime and torch disagree on {path}: max abs differences {errors} > {atol}.")
            logger.info("Checked %s against torch with onnxruntime: max abs differences %s.", path, errors)
    finally:
        model.train(was_training)
    return path


def check_onnx(path: str | os.PathLike, model: MgteForEmbedding | MgteForSequenceClassification, *,
               dimension: int | None = None) -> dict[str, float]:
    """Max abs difference per output between onnxruntime on `path` and the model's forward (valid positions).

    Uses two batches of shapes the export example did not have: right padding and left padding.
    """
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    errors: dict[str, float] = {}
    for lengths, left in (([5, 11, 1], False), ([9, 3], True)):
        input_ids, attention_mask = example_batch(model.config, lengths, left=left)
        feed = {"input_ids": input_ids.numpy(), "attention_mask": attention_mask.numpy()}
        got = dict(zip((o.name for o in session.get_outputs()), session.run(None, feed)))
        with torch.no_grad():
            if isinstance(model, MgteForEmbedding):
                out = model(input_ids=input_ids, attention_mask=attention_mask, dimension=dimension)
                expected = {"dense": out.dense, "sparse": out.sparse * attention_mask}
            else:
                expected = {"logits": model(input_ids=input_ids, attention_mask=attention_mask).logits}
        for name, value in expected.items():
            diff = float((torch.from_numpy(got[name]) - value).abs().max())
            errors[name] = max(errors.get(name, 0.0), diff)
    return errors


def load_for_export(folder: str | os.PathLike) -> MgteForEmbedding | MgteForSequenceClassification:
    """A float32 model to export from a checkpoint folder of any layout: the reranker for a sequence-classification
    checkpoint, otherwise the embedding model (which needs the sparse head's `classifier`)."""
    checkpoint = read_checkpoint(folder)
    reranker = checkpoint.architecture == "MgteForSequenceClassification"
    cls = MgteForSequenceClassification if reranker else MgteForEmbedding
    model = cls(checkpoint.config).eval()
    missing, unexpected = model.load_state_dict(checkpoint.state_dict, strict=False)
    if missing or unexpected:
        raise ValueError(f"{folder} ({checkpoint.architecture}) cannot be exported as {cls.__name__}: missing "
                         f"{sorted(missing)}, unexpected {sorted(unexpected)}. Export needs an embedding (TRM) or a "
                         "reranker checkpoint.")
    return model


def example_batch(config, lengths: list[int], left: bool = False, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random `(input_ids, attention_mask)` of the given lengths, padded right (or left) with the pad id."""
    generator = torch.Generator().manual_seed(seed)
    width = max(lengths)
    pad = config.pad_token_id if config.pad_token_id is not None else 0
    input_ids = torch.full((len(lengths), width), pad, dtype=torch.long)
    attention_mask = torch.zeros((len(lengths), width), dtype=torch.long)
    for row, n in enumerate(lengths):
        cols = slice(width - n, width) if left else slice(0, n)
        input_ids[row, cols] = torch.randint(0, config.vocab_size, (n,), generator=generator)
        attention_mask[row, cols] = 1
    return input_ids, attention_mask


__all__ = [
    "EmbeddingExport",
    "RerankerExport",
    "check_onnx",
    "example_batch",
    "export_onnx",
    "export_wrapper",
    "load_for_export",
]
