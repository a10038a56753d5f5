"""sha256 of bytes and files, and the identity of a model that every artifact built with it records.

    identity = model_identity(embedder.model, embedder.tokenizer)   # saved with an index, shards, an export
    check_model_identity(saved, embedder.model, embedder.tokenizer, artifact="the index in idx/")

A model's identity is the sha256 of its weights (names, dtypes, shapes and bytes of the state dict, in the model's
dtype), of its behavioural config (bookkeeping keys such as `_name_or_path` left out) and of its tokenizer, and its
dtype. Two models of the same shape with other weights have other identities.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch


# Config keys that are bookkeeping, not behaviour: they change with the folder, library version or saving.
CONFIG_BOOKKEEPING = ("_name_or_path", "transformers_version", "dtype", "torch_dtype", "architectures", "auto_map")
_BLOCK = 1 << 20

logger = logging.getLogger(__name__)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    """sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def file_record(path: str | os.PathLike) -> dict[str, Any]:
    """`{"sha256", "bytes"}` of a file, as manifests record it."""
    return {"sha256": sha256_file(path), "bytes": Path(path).stat().st_size}


def file_problem(path: Path, record: Mapping[str, Any]) -> str | None:
    """Why `path` does not match its `{"sha256", "bytes"}` record (missing, size, checksum); None when it does."""
    if not path.is_file():
        return f"{path} is missing"
    size = path.stat().st_size
    if "bytes" in record and size != record["bytes"]:
        return f"{path} has {size} bytes, not the {record['bytes']} recorded (truncated, damaged or edited)"
    if sha256_file(path) != record.get("sha256"):
        return f"{path} does not match its recorded sha256 (damaged or edited)"
    return None


# ============================================================================================== model identity
def model_identity(model: torch.nn.Module, tokenizer: Any) -> dict[str, str | None]:
    """sha256 of the weights (names, dtypes, shapes, bytes), of the behavioural config and of the tokenizer (None
    without one, e.g. for an ONNX export, which holds no tokenizer)."""
    weights = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        weights.update(f"{name}:{flat.dtype}:{tuple(tensor.shape)}\n".encode())
        weights.update(flat.view(torch.uint8).numpy())
    config = {k: v for k, v in model.config.to_dict().items() if k not in CONFIG_BOOKKEEPING}
    return {
        "weights_sha256": weights.hexdigest(),
        "config_sha256": sha256_bytes(json.dumps(config, sort_keys=True).encode()),
        "tokenizer_sha256": None if tokenizer is None else sha256_bytes(_tokenizer_state(tokenizer).encode("utf-8")),
        "dtype": str(model.dtype).removeprefix("torch."),
    }


def _tokenizer_state(tokenizer: Any) -> str:
    """The vocabulary and rules of a tokenizer as canonical JSON (runtime truncation/padding settings left out)."""
    if getattr(tokenizer, "is_fast", False):
        state = json.loads(tokenizer.backend_tokenizer.to_str())
        for key in ("truncation", "padding"):  # runtime settings any tokenizer call rewrites, not the vocabulary
            state.pop(key, None)
        return json.dumps(state, sort_keys=True, ensure_ascii=False)
    return json.dumps(sorted(tokenizer.get_vocab().items()), ensure_ascii=False)


def identity_differences(ours: Mapping, theirs: Any, prefix: str = "", *,
                         labels: tuple[str, str] = ("this run", "on disk")) -> list[str]:
    """`key: ours (label) vs theirs (label)` for every leaf that differs between two nested dicts."""
    if not isinstance(theirs, Mapping):
        return [f"{prefix or 'run'}: {theirs!r}"]
    out = []
    for key in sorted(set(ours) | set(theirs)):
        a, b = ours.get(key), theirs.get(key)
        if isinstance(a, Mapping):
            out += identity_differences(a, b, f"{prefix}{key}.", labels=labels)
        elif a != b:
            out.append(f"{prefix}{key}: {_short(a)} ({labels[0]}) vs {_short(b)} ({labels[1]})")
    return out


def check_model_identity(recorded: Mapping | None, model: torch.nn.Module, tokenizer: Any, *, artifact: str,
                         allow_other_model: bool = False) -> None:
    """Refuse (`ValueError`) a model whose identity differs from the one `artifact` recorded.

    Args:
        recorded: the identity saved with the artifact (`model_identity`); None when it recorded none (warned).
        model, tokenizer: the model about to use the artifact.
        artifact: how the artifact is named in messages, e.g. "the index in idx/".
        allow_other_model: warn instead of refusing (the scores then mix two models' vector spaces).
    """
    if recorded is None:
        logger.warning("%s records no model identity; it cannot be checked against this model.", artifact)
        return
    differences = identity_differences(model_identity(model, tokenizer), recorded, labels=("this model", "recorded"))
    if not differences:
        return
    what = f"{artifact} was built with another model: {'; '.join(differences)}"
    if allow_other_model:
        logger.warning("%s. Used anyway (allow_other_model=True): its scores mix two models.", what)
        return
    raise ValueError(f"{what}. Use the model that built it, or pass allow_other_model=True (--allow-other-model) to "
                     "use it anyway.")


def _short(value: Any) -> str:
    return f"{value[:12]}…" if isinstance(value, str) and len(value) == 64 else repr(value)


__all__ = [
    "CONFIG_BOOKKEEPING",
    "check_model_identity",
    "file_problem",
    "file_record",
    "identity_differences",
    "model_identity",
    "sha256_bytes",
    "sha256_file",
]
