"""LoRA for mGTE models: a thin layer over PEFT with our module names, a merge back to a plain checkpoint, and the
model inside DDP / accelerate / PEFT wrappers.

PEFT's table of default target modules does not know the model type `"mgte"`, so the names of our linear layers are
given here. Heads that are new for a task (the TRM's sparse `classifier`, the reranker's `pooler` and `classifier`)
train in full and are saved with the adapter (`modules_to_save`).

Example:
    >>> peft_model = apply_lora(MgteForEmbedding.from_pretrained(path), r=16, alpha=32)
    >>> ...  # train with MgteEmbeddingTrainer; checkpoints hold adapter_model.safetensors only
    >>> merged = merge_and_unload(peft_model)  # an MgteForEmbedding again
    >>> merged.save_pretrained(out_dir)  # a normal checkpoint that from_pretrained reloads as our class
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from .modeling import (
    MgteForEmbedding,
    MgteForMaskedLM,
    MgteForSequenceClassification,
    MgteForTokenClassification,
    MgtePreTrainedModel,
)


if TYPE_CHECKING:
    from peft import PeftModel


logger = logging.getLogger(__name__)

# Every linear layer of the encoder: the packed (qkv_proj) or separate (q/k/v_proj) projections, the attention output
# and the gated feed-forward. Names that a model does not have (q_proj with pack_qkv=True) are skipped by PEFT.
DEFAULT_LORA_TARGET_MODULES: tuple[str, ...] = (
    "qkv_proj", "q_proj", "k_proj", "v_proj", "o_proj", "up_gate_proj", "down_proj",
)

# Task heads trained in full next to the adapter, by model class (exact class match).
DEFAULT_MODULES_TO_SAVE: dict[type, tuple[str, ...]] = {
    MgteForEmbedding: ("classifier",),
    MgteForSequenceClassification: ("pooler", "classifier"),
    MgteForTokenClassification: ("classifier",),
    MgteForMaskedLM: (),
}

_PEFT_MISSING = "LoRA needs the `peft` package: pip install 'mgte-hf[train]'."


def apply_lora(
    model: MgtePreTrainedModel,
    r: int = 8,
    alpha: float = 16.0,
    dropout: float = 0.0,
    target_modules: Sequence[str] | None = None,
    modules_to_save: Sequence[str] | None = None,
    **lora_kwargs,
) -> PeftModel:
    """Wrap an mGTE model with LoRA adapters (the base weights are frozen).

    Args:
        model: an mGTE model (any head). It is wrapped in place, as PEFT does.
        r: LoRA rank (>= 1).
        alpha: LoRA scaling numerator (the update is `alpha / r · B·A`).
        dropout: dropout on the LoRA input.
        target_modules: linear-layer names to adapt; default `DEFAULT_LORA_TARGET_MODULES`.
        modules_to_save: modules trained in full and saved with the adapter; default by head class
            (`DEFAULT_MODULES_TO_SAVE`).
        **lora_kwargs: further `peft.LoraConfig` fields (e.g. `use_rslora=True`).

    Returns:
        A `peft.PeftModel` whose forward takes the same arguments as `model`.
    """
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as err:
        raise ImportError(_PEFT_MISSING) from err
    if not isinstance(model, MgtePreTrainedModel):
        raise TypeError(f"apply_lora expects an mGTE model (MgtePreTrainedModel), got {type(model).__name__}.")
    if isinstance(r, bool) or not isinstance(r, int) or r < 1:
        raise ValueError(f"LoRA rank r must be a positive integer, got {r!r}.")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"LoRA dropout must be in [0, 1), got {dropout!r}.")
    targets = list(DEFAULT_LORA_TARGET_MODULES if target_modules is None else target_modules)
    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    if not names & set(targets):
        raise ValueError(f"None of the target modules {targets} exists in {type(model).__name__}; "
                         f"use names from DEFAULT_LORA_TARGET_MODULES {list(DEFAULT_LORA_TARGET_MODULES)}.")
    if modules_to_save is None:
        modules_to_save = DEFAULT_MODULES_TO_SAVE.get(type(model), ())
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets,
                        modules_to_save=list(modules_to_save) or None, **lora_kwargs)
    peft_model = get_peft_model(model, config)
    trainable, total = peft_model.get_nb_trainable_parameters()
    logger.info("LoRA r=%d alpha=%s on %s: %d of %d parameters trainable (%.2f%%).", r, alpha,
                type(model).__name__, trainable, total, 100.0 * trainable / total)
    return peft_model


def load_lora(model: MgtePreTrainedModel, adapter_dir: str | os.PathLike, is_trainable: bool = False) -> PeftModel:
    """Attach a saved LoRA adapter (a folder with `adapter_config.json`) to its base model."""
    try:
        from peft import PeftModel
    except ImportError as err:
        raise ImportError(_PEFT_MISSING) from err
    if not os.path.isfile(os.path.join(adapter_dir, "adapter_config.json")):
        raise FileNotFoundError(f"{adapter_dir} holds no adapter_config.json; pass the folder an adapter was saved to.")
    return PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=is_trainable)


def merge_and_unload(peft_model: PeftModel) -> MgtePreTrainedModel:
    """Fold the LoRA updates into the base weights and return the plain mGTE model.

    The result is an instance of the original class (e.g. `MgteForEmbedding`) with no PEFT state: its
    `save_pretrained` writes a normal safetensors checkpoint that `from_pretrained` reloads as that class.
    """
    base = getattr(peft_model, "get_base_model", None)
    if base is None or not isinstance(base(), MgtePreTrainedModel):
        raise TypeError(f"merge_and_unload expects a PEFT-wrapped mGTE model, got {type(peft_model).__name__}.")
    return peft_model.merge_and_unload()


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """The mGTE model inside DDP / accelerate (`.module`) and PEFT wrappers (the model itself when unwrapped)."""
    from transformers.trainer_utils import unwrap_peft_model

    while hasattr(model, "module"):
        model = model.module
    return unwrap_peft_model(model)


__all__ = [
    "DEFAULT_LORA_TARGET_MODULES",
    "DEFAULT_MODULES_TO_SAVE",
    "apply_lora",
    "load_lora",
    "merge_and_unload",
    "unwrap_model",
]
