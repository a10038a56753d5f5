"""The demo's stages: the wall-clock guard stops with an error and never trains less; hard negatives are mined through
`HybridIndex` and never hold the positive; the model is sized to the tokenizer."""

from __future__ import annotations

import pytest
from transformers import TrainerControl, TrainerState, TrainingArguments

from demo.micro import micro_config
from mgte_hf.demo import DemoTimeout
from mgte_hf.demo.stages import Guard, build_model, mine_negatives
from mgte_hf.inference import MgteEmbedder
from mgte_hf.modeling import MgteForEmbedding
from tiny import SENTENCES, make_model


def test_guard_raises_with_the_stage_and_the_way_out(tmp_path):
    Guard(None).check("anything")  # no limit: never raises
    Guard(3600.0).check("mlm")
    guard = Guard(1e-9)
    with pytest.raises(DemoTimeout, match=r"time limit of 0 s .* in contrastive.*--time-limit"):
        guard.check("contrastive")
    state = TrainerState(global_step=7, max_steps=600)
    with pytest.raises(DemoTimeout, match=r"contrastive \(step 7 of 600\)"):
        guard.on_step_end(TrainingArguments(str(tmp_path), report_to="none"), state, TrainerControl())


def test_every_stage_runs_all_its_steps_or_the_run_stops(tiny_cache, tmp_path):
    from demo.micro import run_micro

    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(DemoTimeout, match="stops rather than train less"):
        run_micro(tiny_cache, out, config=micro_config(time_limit=1e-6), verify=False)
    assert not (out / "report.md").exists()  # nothing is reported


@pytest.fixture(scope="module")
def embedder(tiny_tokenizer):
    model = make_model(MgteForEmbedding, vocab_size=len(tiny_tokenizer), max_position_embeddings=64)
    return MgteEmbedder(model, tiny_tokenizer, max_length=32)


ROWS = [{"query": SENTENCES[i], "positive": SENTENCES[i + 10]} for i in range(8)]


def test_mined_negatives_are_the_best_others_after_the_skip(embedder):
    groups = mine_negatives(embedder, ROWS, count=2)
    scores = embedder.dense_scores([r["query"] for r in ROWS], [r["positive"] for r in ROWS], convert_to="torch")
    for i, (row, group) in enumerate(zip(ROWS, groups, strict=True)):
        assert group["query"] == row["query"] and group["positive"] == row["positive"]
        others = sorted((j for j in range(len(ROWS)) if j != i), key=lambda j: -float(scores[i, j]))
        assert group["negatives"] == [ROWS[j]["positive"] for j in others[:2]]
    skipped = mine_negatives(embedder, ROWS, count=2, skip=3)
    for i, group in enumerate(skipped):
        others = sorted((j for j in range(len(ROWS)) if j != i), key=lambda j: -float(scores[i, j]))
        assert group["negatives"] == [ROWS[j]["positive"] for j in others[3:5]]


def test_a_skip_too_far_falls_back_to_the_last_others(embedder):
    # 8 positives: each query has 7 others, so a skip of 50 skips 5 (the two lowest-scored others remain)
    assert mine_negatives(embedder, ROWS, count=2, skip=50) == mine_negatives(embedder, ROWS, count=2, skip=5)


def test_hybrid_mining_and_random_negatives(embedder):
    groups = mine_negatives(embedder, ROWS, count=1, mode="hybrid", sparse_weight=1.0, random_count=2, seed=3)
    for row, group in zip(ROWS, groups, strict=True):
        assert len(group["negatives"]) == 3 and len(set(group["negatives"])) == 3
        assert row["positive"] not in group["negatives"]
        assert set(group["negatives"]) <= {r["positive"] for r in ROWS}
    assert groups == mine_negatives(embedder, ROWS, count=1, mode="hybrid", sparse_weight=1.0, random_count=2, seed=3)
    other = mine_negatives(embedder, ROWS, count=1, mode="hybrid", sparse_weight=1.0, random_count=2, seed=4)
    assert [g["negatives"][1:] for g in other] != [g["negatives"][1:] for g in groups]
    with pytest.raises(ValueError, match="cannot give 5 \\+ 3 negatives"):
        mine_negatives(embedder, ROWS, count=5, random_count=3)


def test_the_model_is_sized_to_the_tokenizer(tiny_tokenizer):
    model = build_model(tiny_tokenizer, micro_config())
    assert model.config.vocab_size % 64 == 0 and 0 <= model.config.vocab_size - len(tiny_tokenizer) < 64
    assert (model.config.hidden_size, model.config.num_hidden_layers) == (32, 1)
    again = build_model(tiny_tokenizer, micro_config())
    assert all((a == b).all() for a, b in zip(model.parameters(), again.parameters(), strict=True))  # seeded
