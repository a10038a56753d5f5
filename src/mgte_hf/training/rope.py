"""RoPE settings of the training stages: the MLM length curriculum and reversed NTK scaling (revNTK).

mGTE computes its RoPE frequencies from the config at every forward (`rope_inv_freq(config)`), so changing
`config.rope_theta` / `config.rope_scaling` on a live model changes the next forward: there are no cached tables to
refresh. These helpers change only those fields (and `max_position_embeddings`, the trained context).

revNTK (paper §2.2, §3.4; RECIPE.md §1): the MLM-8192 encoder (plain RoPE, base 160 000) is trained contrastively at
base 160 000 / 8 = 20 000 on 1024-token texts, and used with static NTK scaling of factor 8. The released
gte-multilingual-base config says exactly that: `rope_theta` 20000, `rope_scaling` {"type": "ntk", "factor": 8.0},
whose frequencies are those of base 160 000 times a uniform 8^(-2/d) (SPEC §3.2).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from transformers import TrainerCallback

from mgte_hf.modeling import MgteConfig


@dataclass(frozen=True)
class RopeSetting:
    """The config fields that decide RoPE: base, static NTK scaling (or None) and the trained context length."""

    rope_theta: float
    rope_scaling: dict | None
    max_position_embeddings: int

    @classmethod
    def of(cls, config: MgteConfig) -> RopeSetting:
        scaling = None if config.rope_scaling is None else dict(config.rope_scaling)
        return cls(float(config.rope_theta), scaling, int(config.max_position_embeddings))

    def apply(self, config: MgteConfig) -> None:
        """Write this setting into `config` (the model reads it at its next forward)."""
        config.rope_theta = float(self.rope_theta)
        config.rope_scaling = None if self.rope_scaling is None else dict(self.rope_scaling)
        config.max_position_embeddings = int(self.max_position_embeddings)


@contextmanager
def rope_setting(config: MgteConfig, setting: RopeSetting) -> Iterator[MgteConfig]:
    """Apply `setting` to `config` inside the block, restore the previous one after it (also on errors)."""
    previous = RopeSetting.of(config)
    setting.apply(config)
    try:
        yield config
    finally:
        previous.apply(config)


class RopeSwitch(TrainerCallback):
    """Train with one RoPE setting and leave with another: `during` is applied to `config` when training begins,
    `after` when it ends (revNTK: the training base, then the inference config)."""

    def __init__(self, config: MgteConfig, during: RopeSetting, after: RopeSetting):
        self.config, self.during, self.after = config, during, after

    def on_train_begin(self, args, state, control, **kwargs):
        self.during.apply(self.config)

    def on_train_end(self, args, state, control, **kwargs):
        self.after.apply(self.config)


def curriculum_setting(max_length: int, rope_theta: float) -> RopeSetting:
    """One MLM curriculum stage: plain RoPE of base `rope_theta`, trained at `max_length` tokens."""
    return RopeSetting(float(rope_theta), None, int(max_length))


def rev_ntk_settings(config: MgteConfig, factor: float) -> tuple[RopeSetting, RopeSetting]:
    """The (training, inference) RoPE settings of reversed NTK scaling by `factor` for a model with `config`.

    From plain RoPE of base b: train at base b/f without scaling; infer at base b/f with NTK factor f. A model whose
    config already is such an inference config (NTK factor f, base b/f, e.g. a released checkpoint) trains at its own
    base without scaling. Factor 1 leaves the config as it is. The trained context length (`max_position_embeddings`)
    stays as it is.

    Raises:
        ValueError: for a factor below 1, or a config with another scaling (a different factor or `mixed_b`).
    """
    if not factor >= 1:
        raise ValueError(f"the revNTK factor must be >= 1, got {factor!r}.")
    if factor == 1:  # no revNTK: train and infer as configured
        current = RopeSetting.of(config)
        return current, current
    scaling = config.rope_scaling
    if scaling is None:
        base = config.rope_theta / factor
    elif set(scaling) <= {"type", "rope_type", "factor"} and float(scaling["factor"]) == float(factor):
        base = config.rope_theta
    else:
        raise ValueError(f"revNTK by {factor} needs a model with plain RoPE (rope_scaling None) or with NTK factor "
                         f"{factor}; this one has rope_scaling={scaling}. Set rev_ntk_factor to its factor, or 1.")
    context = int(config.max_position_embeddings)
    return RopeSetting(base, None, context), RopeSetting(base, {"type": "ntk", "factor": float(factor)}, context)


__all__ = ["RopeSetting", "RopeSwitch", "curriculum_setting", "rev_ntk_settings", "rope_setting"]
