"""The competitor: transformers' native `GteModel`, given exactly the weights of an `MgteModel`.

The conversion is the project's own (`mgte_hf.convert`): the same config mapping and state-dict renaming that
`mgte-hf convert --to gte` writes to disk, here applied in memory.
"""

from __future__ import annotations

from transformers import GteForMaskedLM, GteModel, PreTrainedModel

from mgte_hf import MgteForMaskedLM, MgteModel, MgtePreTrainedModel
from mgte_hf.convert import gte_config, to_gte_state_dict


def _load_converted(gte: PreTrainedModel, model: MgtePreTrainedModel) -> PreTrainedModel:
    """Copy `model`'s weights into `gte` (same dtype and train/eval mode); every GteModel weight must be set."""
    gte = gte.to(next(model.parameters()).dtype)
    missing, unexpected = gte.load_state_dict(to_gte_state_dict(model.state_dict()), strict=False)
    missing = [k for k in missing if not k.endswith("inv_freq")]
    if missing or unexpected:
        raise RuntimeError(f"state dict conversion does not match {type(gte).__name__}: missing {missing}, "
                           f"unexpected {unexpected}.")
    return gte.train(model.training)


def _config(model: MgtePreTrainedModel, architecture: str, attn_implementation: str):
    config = gte_config(model.config, architecture, next(model.parameters()).dtype)
    config._attn_implementation = attn_implementation
    return config


def gte_from_mgte(model: MgteModel, attn_implementation: str = "sdpa") -> GteModel:
    """A `GteModel` holding copies of the encoder `model`'s weights, in its dtype and mode (eval or train)."""
    if model.pooler is not None:
        raise ValueError("gte_from_mgte converts the bare encoder (MgteModel without pooler).")
    return _load_converted(GteModel(_config(model, "MgteModel", attn_implementation)), model)


def gte_mlm_from_mgte(model: MgteForMaskedLM, attn_implementation: str = "sdpa") -> GteForMaskedLM:
    """A `GteForMaskedLM` holding copies of `model`'s weights (decoder tied to the word embeddings in both)."""
    return _load_converted(GteForMaskedLM(_config(model, "MgteForMaskedLM", attn_implementation)), model)
