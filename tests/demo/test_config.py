"""DemoConfig and StageBudget: the checks that fail before anything runs."""

from __future__ import annotations

import dataclasses

import pytest

from demo.micro import micro_config
from mgte_hf.demo import DemoConfig, StageBudget


def test_eval_set_specs():
    assert micro_config().eval_set_limits() == [("gnome-de-en", None), ("bible-es-en", 5)]
    with pytest.raises(ValueError, match="NAME:MAX_QUERIES"):
        micro_config(eval_sets=("gnome-de-en:all",))


@pytest.mark.parametrize("budget", [(0, 8, 1e-3), (10, 0, 1e-3), (10, 8, 0.0)])
def test_stage_budget_refuses_empty_stages(budget):
    with pytest.raises(ValueError, match="steps >= 1"):
        StageBudget(*budget)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("reranker_init", "bm25", "reranker_init must be one of"),
    ("threads", 0, "threads must be >= 1"),
    ("time_limit", 0.0, "time_limit must be > 0"),
    ("ablation_lengths", (2048, 512), "increasing"),
    ("ablation_lengths", (512,), "at least two"),
    ("matryoshka_weights", (1.0,), "one weight per dimension"),
])
def test_bad_settings_are_refused(field, value, message):
    with pytest.raises(ValueError, match=message):
        micro_config(**{field: value})


def test_full_and_quick_runs_are_fixed_step_counts():
    full, quick = DemoConfig.full(), DemoConfig.quick()
    for config in (full, quick):
        stages = [config.mlm, config.contrastive, config.trm, config.reranker]
        assert all(isinstance(s, StageBudget) for s in stages)
        assert not any(f.name == "max_seconds" for f in dataclasses.fields(StageBudget))
    assert quick.mlm.steps < full.mlm.steps and quick.threads == full.threads
    assert len(quick.eval_sets) < len(full.eval_sets)
