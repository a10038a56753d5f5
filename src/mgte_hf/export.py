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

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import torch
from torch import nn

from .convert import read_checkpoint
from .hashing import check_model_identity, model_identity
from .inference.common import check_dimension, check_positive_int
from .modeling import MgteForEmbedding, MgteForSequenceClassification
from .modeling.modeling_mgte import dense_embedding, sparse_token_weights
from .outputs import check_output


logger = logging.getLogger(__name__)

INPUT_NAMES = ("input_ids", "attention_mask")
DEFAULT_OPSET = 18
MIN_OPSET = 18  # torch's exporter writes no older opset (it silently raises lower requests to 18)
IDENTITY_KEY = "mgte_hf.model_identity"  # metadata entry: the JSON identity of the exported model
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
        self.dimension = check_dimension(model, dimension)

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
    overwrite: bool = False,
) -> Path:
    """Export `model` to the ONNX file `path` (float32, dynamic batch and sequence axes).

    The file records the model's identity (`mgte_hf.hashing.model_identity` of the weights and config) in its
    metadata (`mgte_hf.model_identity`), which `check_onnx` compares. It is written in a temporary folder beside
    `path` and moved into place once exported (and checked).

    Args:
        model: an `MgteForEmbedding` (outputs dense, sparse) or `MgteForSequenceClassification` (outputs logits).
        path: the .onnx file to write (models over 2 GiB keep their weights in `path.data` beside it).
        dimension: truncate the dense vector to this allowed size (embedding models).
        opset: ONNX opset version (at least `MIN_OPSET`, the oldest the exporter writes).
        check: run the file with onnxruntime on batches of other shapes than the export example and compare with
            the model's own forward; raises ValueError above `atol`.
        atol: tolerance of the check.
        overwrite: replace an existing `path`.

    Returns:
        The path of the ONNX file.
    """
    if model.dtype != torch.float32:
        raise ValueError(f"ONNX export runs in float32; the model is {model.dtype}. Pass a float32 model "
                         "(e.g. from_pretrained(..., dtype=torch.float32)).")
    opset = check_positive_int(opset, "opset")
    if opset < MIN_OPSET:
        raise ValueError(f"opset={opset}: the exporter writes opset {MIN_OPSET} or newer (onnxruntime 1.14+ runs "
                         f"it); choose opset >= {MIN_OPSET}.")
    wrapper, output_names = export_wrapper(model, dimension)
    size = sum(p.numel() * p.element_size() for p in model.parameters())
    external = size >= ONNX_SINGLE_FILE_LIMIT
    path = Path(path)
    for target in (path, *([path.with_name(path.name + ".data")] if external else [])):
        check_output(target, overwrite=overwrite, what="ONNX file")
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    was_training = model.training
    model.eval()
    wrapper.eval()
    try:
        staged = staging / path.name
        input_ids, attention_mask = example_batch(model.config, lengths=[7, 4])
        batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence")
        shapes = {name: {0: batch, 1: seq} for name in INPUT_NAMES}
        torch.onnx.export(wrapper, (input_ids, attention_mask), str(staged), input_names=list(INPUT_NAMES),
                          output_names=list(output_names), opset_version=opset, dynamo=True, dynamic_shapes=shapes,
                          external_data=external)
        _finish_file(staged, opset, model, dimension)
        if check:
            errors = check_onnx(staged, model, dimension=dimension)
            if max(errors.values()) > atol:
                raise ValueError(f"onnxruntime and torch disagree on {path}: max abs differences {errors} > {atol}.")
            logger.info("Checked %s against torch with onnxruntime: max abs differences %s.", path, errors)
        for file in staging.iterdir():
            os.replace(file, path.parent / file.name)
    finally:
        model.train(was_training)
        shutil.rmtree(staging, ignore_errors=True)
    return path


def _finish_file(path: Path, opset: int, model: MgteForEmbedding | MgteForSequenceClassification,
                 dimension: int | None) -> None:
    """Check the opset the exporter wrote and record the model's identity in the file's metadata."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    written = next((entry.version for entry in proto.opset_import if entry.domain in ("", "ai.onnx")), None)
    if written != opset:
        raise ValueError(f"opset={opset} was asked for, but the exporter wrote opset {written}; choose opset "
                         f"{written}.")
    identity = model_identity(model, None)
    for key, value in ((IDENTITY_KEY, json.dumps(identity, sort_keys=True)),
                       ("mgte_hf.architecture", type(model).__name__),
                       ("mgte_hf.dimension", str(dimension if dimension is not None else ""))):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))


def check_onnx(path: str | os.PathLike, model: MgteForEmbedding | MgteForSequenceClassification, *,
               dimension: int | None = None, allow_other_model: bool = False) -> dict[str, float]:
    """Max abs difference per output between onnxruntime on `path` and the model's forward (valid positions).

    Uses two batches of shapes the export example did not have: right padding and left padding. A file that records
    another model's identity is refused (`allow_other_model=True` warns instead).
    """
    import onnx
    import onnxruntime

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # onnx raises protobuf's DecodeError (and others) for a damaged file
        raise ValueError(f"{path} is not a readable ONNX file ({err}).") from None
    recorded = next((json.loads(e.value) for e in proto.metadata_props if e.key == IDENTITY_KEY), None)
    check_model_identity(recorded, model, None, artifact=f"The ONNX file {path}", allow_other_model=allow_other_model)
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
