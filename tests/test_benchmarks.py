"""The benchmark helpers (benchmarks/) on tiny models: workloads, the GteModel conversion, FLOP counts, competitors
that compute the same thing, timing and memory plumbing, report assembly. Speed itself is shown by `make bench`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from benchmarks import competitors, gpu_check, profile_forward, run
from benchmarks.competitors import (
    FORWARD_COMPETITORS,
    fixed_batches,
    gte_train_step,
    make_forward,
    mlm_labels,
    ours_train_step,
    sorted_batches,
)
from benchmarks.gte import gte_from_mgte, gte_mlm_from_mgte
from benchmarks.measure import (
    encoder_flops,
    extra_peak_rss_mib,
    interleaved_times,
    linear_flops_per_token,
    proc_status_mib,
    wall_times,
)
from benchmarks.workloads import (
    CLS_ID,
    EOS_ID,
    Workload,
    lognormal_lengths,
    make_workload,
    packed_batch,
    padded_batch,
    token_ids,
)

from mgte_hf import MgteConfig, MgteForMaskedLM, MgteModel
from mgte_hf.modeling.modeling_mgte import MgteLayer
from tiny import make_config, make_model, random_batch, valid_rows


LENGTHS = [9, 3, 16, 1, 12, 7, 16, 5, 2, 11]


@pytest.fixture(scope="module")
def encoder() -> MgteModel:
    return make_model(MgteModel)


# ---------------------------------------------------------------------------------------------- workloads
def test_skewed_workload_is_reproducible_and_mostly_padding():
    w = make_workload("skewed")
    assert w == make_workload("skewed", seed=0) and w != make_workload("skewed", seed=1)
    assert len(w.lengths) == 32 and min(w.lengths) >= 16 and max(w.lengths) == 2048
    assert 0.12 < w.real_tokens / w.padded_tokens < 0.18  # the "about 15 %"


def test_fixed_workloads_and_documents():
    assert make_workload("uniform").lengths == (512,) * 32
    assert make_workload("long").lengths == (8192,)
    docs = make_workload("documents")
    assert len(docs.lengths) == 3806 and max(docs.lengths) == 8192
    assert 4300 < docs.real_tokens / 3806 < 4600  # the paper's 4 456 on average
    with pytest.raises(ValueError, match="unknown workload"):
        make_workload("huge")
    with pytest.raises(ValueError, match="low <= high"):
        lognormal_lengths(3, 1.0, 1.0, 10, 5, seed=0)


def test_token_ids_layout_and_batches():
    seqs = token_ids(LENGTHS, vocab_size=320, seed=3)
    assert [len(s) for s in seqs] == LENGTHS
    for s in seqs:
        assert s[0] == CLS_ID and (len(s) == 1 or s[-1] == EOS_ID)
        assert bool(((s[1:-1] >= 5) & (s[1:-1] < 320)).all())
    assert all(torch.equal(a, b) for a, b in zip(seqs, token_ids(LENGTHS, 320, seed=3)))
    ids, mask = padded_batch(seqs)
    assert ids.shape == (len(LENGTHS), 16) and mask.sum(1).tolist() == LENGTHS
    assert all(torch.equal(row, s) for row, s in zip(valid_rows(ids, mask), seqs))
    packed, lengths = packed_batch(seqs)
    assert lengths == LENGTHS and torch.equal(packed, ids[mask.bool()])
    with pytest.raises(ValueError, match="vocab_size"):
        token_ids([3], vocab_size=4)
    with pytest.raises(ValueError, match=">= 1"):
        token_ids([3, 0], vocab_size=320)


# ---------------------------------------------------------------------------------------------- GteModel
@pytest.mark.parametrize("rope_scaling", [{"type": "ntk", "factor": 2.0}, None])
def test_gte_from_mgte_computes_the_same_encoder(rope_scaling):
    ours = make_model(MgteModel, rope_scaling=rope_scaling)
    before = {k: v.clone() for k, v in ours.state_dict().items()}
    theirs = gte_from_mgte(ours).eval()
    ids, mask = random_batch([9, 5, 16, 3])
    with torch.no_grad():
        expected = ours(ids, mask).last_hidden_state
        got = theirs(input_ids=ids, attention_mask=mask).last_hidden_state
    torch.testing.assert_close(got[mask.bool()], expected[mask.bool()], atol=1e-5, rtol=1e-5)
    assert all(torch.equal(v, before[k]) for k, v in ours.state_dict().items())  # the source is untouched


def test_gte_mlm_conversion_ties_and_matches():
    ours = make_model(MgteForMaskedLM)
    theirs = gte_mlm_from_mgte(ours).eval()
    assert theirs.lm_head.decoder.weight.data_ptr() == theirs.gte.embeddings.word_embeddings.weight.data_ptr()
    ids, mask = random_batch([6, 11])
    with torch.no_grad():
        expected, got = ours(ids, mask).logits, theirs(input_ids=ids, attention_mask=mask).logits
    torch.testing.assert_close(got[mask.bool()], expected[mask.bool()], atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------------------------------- FLOPs and timing
def test_linear_flops_count_every_projection_of_a_layer():
    config = make_config()
    layer = MgteLayer(config)
    per_token = sum(2 * m.in_features * m.out_features for m in layer.modules() if isinstance(m, torch.nn.Linear))
    assert linear_flops_per_token(config) == per_token
    base = MgteConfig()
    # 12 × (2·768·(4·768 + 3·3072) + 4·512·768): the 693 tokens/s bound at 170 GFLOP/s
    assert encoder_flops([512], base) == 512 * 245_366_784
    assert encoder_flops([3, 5], config, num_layers=1) == 8 * per_token + 4 * (9 + 25) * config.hidden_size


def test_interleaved_times_take_turns():
    calls = []
    times = interleaved_times({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=3)
    assert calls == ["a", "b"] * 3 and [len(t) for t in times.values()] == [3, 3]
    calls.clear()
    assert len(wall_times(lambda: calls.append(1), repeats=2, warmup=3)) == 2 and len(calls) == 5


def test_extra_peak_rss_sees_torch_allocations():
    status = proc_status_mib("VmRSS", "VmHWM")
    assert status["VmHWM"] >= status["VmRSS"] > 0
    grown = extra_peak_rss_mib(lambda: torch.ones(64 * 2**20 // 4).sum())  # 64 MiB, freed before returning
    assert 60 < grown["extra_peak_mib"] < 200
    assert extra_peak_rss_mib(lambda: None)["extra_peak_mib"] < 16


FAULTS_OF_A_SECOND_BUFFER = """
import resource, torch
from benchmarks.measure import keep_freed_memory

def faults_of_second_buffer():
    torch.ones(64 * 2**20 // 4).sum()  # allocated and freed
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.ones(64 * 2**20 // 4).sum()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

default = faults_of_second_buffer()
keep_freed_memory()
print(default, faults_of_second_buffer())
"""


def test_keep_freed_memory_stops_page_faults_on_reuse():
    """In a fresh process (the setting is process-wide): a second 64 MiB buffer faults in all its pages by default
    and almost none once glibc keeps freed memory."""
    done = subprocess.run([sys.executable, "-c", FAULTS_OF_A_SECOND_BUFFER], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1], check=True)
    default, kept = map(int, done.stdout.split())
    assert default > 10_000 and kept < 1_000  # 64 MiB = 16 384 pages of 4 KiB


# ---------------------------------------------------------------------------------------------- competitors
def test_forward_competitors_agree(encoder):
    seqs = token_ids(LENGTHS, encoder.config.vocab_size)
    gte = gte_from_mgte(encoder).eval()
    outs = {n: make_forward(n, encoder if n == "ours" else gte, seqs, sorted_batch=3)() for n in FORWARD_COMPETITORS}
    for name in ("gte-sorted", "ours"):
        torch.testing.assert_close(outs[name], outs["gte-padded"], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="unknown competitor"):
        make_forward("onnx", encoder, seqs)


def test_batch_orders():
    assert fixed_batches(5, 2) == [[0, 1], [2, 3], [4]] and fixed_batches(3, None) == [[0, 1, 2]]
    batches = sorted_batches(LENGTHS, 4)
    assert [len(b) for b in batches] == [4, 4, 2]
    flat = [LENGTHS[i] for b in batches for i in b]
    assert flat == sorted(LENGTHS, reverse=True)


def test_mlm_labels():
    seqs = token_ids([40, 30, 2, 1], 320)
    labels = mlm_labels(seqs, probability=0.3, seed=1)
    for ids, lab in zip(seqs, labels):
        chosen = lab != -100
        assert torch.equal(lab[chosen], ids[chosen])
        assert not bool(chosen[0]) and (len(ids) < 3 or not bool(chosen[-1]))
    assert [int((lab != -100).sum() > 0) for lab in labels] == [1, 1, 0, 0]  # 2 and 1 tokens are all special
    assert 0.15 < sum(int((lab != -100).sum()) for lab in labels[:2]) / 66 < 0.45


def test_training_steps_compute_the_same_loss_and_gradients():
    ours = make_model(MgteForMaskedLM).train()  # tiny configs have no dropout: both steps are deterministic
    theirs = gte_mlm_from_mgte(ours)
    seqs = token_ids(LENGTHS, ours.config.vocab_size)
    labels = mlm_labels(seqs, seed=0)
    loss_ours, loss_theirs = ours_train_step(ours, seqs, labels)(), gte_train_step(theirs, seqs, labels)()
    torch.testing.assert_close(loss_ours, loss_theirs, atol=1e-5, rtol=1e-5)
    grad_ours = ours.new.embeddings.word_embeddings.weight.grad
    grad_theirs = theirs.gte.embeddings.word_embeddings.weight.grad
    assert grad_ours.abs().sum() > 0
    torch.testing.assert_close(grad_ours, grad_theirs, atol=1e-5, rtol=1e-4)
    qkv = ours.new.encoder.layer[0].attention.qkv_proj.weight.grad
    torch.testing.assert_close(qkv[: qkv.shape[0] // 3], theirs.gte.layers[0].self_attn.q_proj.weight.grad,
                               atol=1e-5, rtol=1e-4)
    whole = {name: p.grad.clone() for name, p in theirs.named_parameters() if p.grad is not None}
    loss_micro = gte_train_step(theirs, seqs, labels, micro_batch=2)()  # rows in pairs, gradients accumulated
    torch.testing.assert_close(loss_micro, loss_theirs, atol=1e-6, rtol=1e-6)
    for name, p in theirs.named_parameters():
        if name in whole:
            torch.testing.assert_close(p.grad, whole[name], atol=1e-6, rtol=1e-5)


# ---------------------------------------------------------------------------------------------- reports
def test_forward_section_on_a_tiny_model(encoder):
    args = run.parse_args(["--repeats", "2", "--sorted-batch", "2", "--no-memory", "--gemm-repeats", "1"])
    workload = Workload("skewed", (9, 3, 16, 5), "tiny")
    section = run.forward_section(workload, encoder, gte_from_mgte(encoder).eval(), args)
    assert set(section["competitors"]) == set(FORWARD_COMPETITORS)
    assert section["min_cosine_vs_gte_padded"] > 0.99999
    padded, ours = section["competitors"]["gte-padded"], section["competitors"]["ours"]
    assert padded["vs_gte-padded"] == 1.0 and len(ours["times_s"]) == 2
    assert ours["vs_gte-padded"] == pytest.approx(padded["median_s"] / ours["median_s"])
    assert ours["tokens_per_s"] == pytest.approx(33 / ours["median_s"])
    assert 0 < ours["bound_share"] == pytest.approx(section["flops"] / ours["median_s"] / section["gemm_flops_per_s"])


def test_dtype_section_on_a_tiny_model(encoder, monkeypatch):
    """Each dtype against its own GEMM probe, the compiled variant through the compiled packed forward, fp32
    agreement, the CPU's units and the bf16 profile (small workloads; the compiled one on dynamo's eager backend)."""
    monkeypatch.setattr(run, "make_workload", lambda name, seed=0: Workload(name, (9, 3, 16, 5), "tiny"))
    monkeypatch.setattr(run, "ours_compiled_forward", lambda model, seqs: competitors.ours_compiled_forward(
        model, seqs, backend="eager"))
    args = run.parse_args(["--repeats", "1", "--gemm-repeats", "1"])
    section = run.dtype_section(encoder, args)
    assert set(section["workloads"]) == {"uniform", "skewed"}
    assert set(section["cpu_flags"]) >= {"avx2", "amx_bf16"} and all(isinstance(v, bool)
                                                                      for v in section["cpu_flags"].values())
    entries = section["workloads"]["skewed"]["competitors"]
    assert set(entries) == set(run.DTYPE_VARIANTS)
    assert entries["ours-fp32"]["min_cosine_vs_fp32"] == pytest.approx(1.0)
    assert entries["ours-bf16-compiled"]["min_cosine_vs_fp32"] > 0.99 and entries["ours-bf16"]["bound_share"] > 0
    assert entries["ours-bf16"]["gemm_flops_per_s"] == entries["ours-bf16-compiled"]["gemm_flops_per_s"]
    assert sum(section["bf16_profile"].values()) == pytest.approx(1.0)
    lines = run._dtype_lines(section)
    assert "ours-bf16-compiled" in "\n".join(lines) and "bf16 forward (uniform, eager) time by kind" in lines[-1]


def test_targets_and_table_from_a_report():
    entry = {"median_s": 1.0, "tokens_per_s": 100.0, "bound_share": 0.9}
    report = {
        "layers": 2, "dtype": "float32", "threads": 2, "allocator": "as installed", "load_before": (0.1, 0.1, 0.1),
        "load_after": (0.2, 0.1, 0.1),
        "workloads": {"uniform": {
            "real_tokens": 100, "real_share_of_padded": 1.0, "gemm_flops_per_s": 1e11, "bound_tokens_per_s": 111.0,
            "min_cosine_vs_gte_padded": 1.0, "max_abs_diff_vs_gte_padded": 0.0,
            "competitors": {"gte-padded": {**entry, "vs_gte-padded": 1.0},
                            "ours": {**entry, "vs_gte-padded": 1.2, "extra_peak_mib": 10.0}}}},
    }
    values = run.target_values(report)
    assert values[2] == 1.2 and values[3] == 0.9 and values[0] is None and values[-1] is None
    report["targets"] = [{"section": s, "quantity": q, "comparison": c, "threshold": t, "value": v,
                          "met": None if v is None else v >= t} for (s, q, c, t), v in zip(run.TARGETS, values)]
    table = run.format_report(report)
    assert "× 2/12" in table and "uniform   ours" in table
    assert "1.200 >= 1.05   met" in table and "0.900 >= 0.88   met" in table and "skipped" in table


def test_parse_args_rejects_bad_input():
    with pytest.raises(SystemExit):
        run.parse_args(["--workloads", "skewed,huge"])
    with pytest.raises(SystemExit):
        run.parse_args(["--layers", "0"])
    assert run.parse_args(["--workloads", "long, uniform"]).workloads == ["long", "uniform"]


def test_gpu_check_logic_runs_on_cpu(encoder):
    args = gpu_check.parse_args(["--device", "cpu", "--parity-docs", "3", "--batch-size", "2", "--max-tokens", "32",
                                 "--repeats", "1", "--gemm-repeats", "1"])
    seqs = token_ids(LENGTHS, encoder.config.vocab_size)
    report = gpu_check.check(encoder, gte_from_mgte(encoder).eval(), seqs, args)
    assert report["kernels_available"] == [] and set(report["parity_min_cosine"]) == {"sdpa"}
    assert report["targets_met"]["parity"] and encoder.config._attn_implementation == "sdpa"
    docs = report["documents"]
    assert docs["real_tokens"] == sum(LENGTHS) and docs["ours"]["vs_gte-padded"] > 0
    assert "ours vs padded (corpus order)" in gpu_check.format_report(report)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the behaviour without a GPU")
def test_gpu_check_without_a_gpu_measures_nothing():
    assert gpu_check.main(["--device", "cuda"]) == 2
    with pytest.raises(SystemExit):
        gpu_check.parse_args(["--repeats", "0"])


def test_profile_shares_of_a_packed_forward(encoder):
    seqs = token_ids(LENGTHS, encoder.config.vocab_size)
    shares = profile_forward.category_shares(profile_forward.profile_call(make_forward("ours", encoder, seqs)))
    assert sum(shares.values()) == pytest.approx(1.0)
    assert shares["GEMM"] > 0 and shares["attention"] > 0 and shares["norm"] > 0


def test_training_step_projection_to_twelve_layers():
    medians = {1: {"gte-padded": 10.0, "ours": 4.0}, 2: {"gte-padded": 16.0, "ours": 5.0}}
    p = run.project_depth(medians, 12)
    assert p["gte-padded"] == {"per_layer_s": 6.0, "fixed_s": 4.0, "step_s": 76.0}
    assert p["ours"]["step_s"] == 15.0 and p["speedup"] == pytest.approx(76 / 15)
    assert run.parse_args(["--train-layers", "2,1,2"]).train_layers == [1, 2]
    with pytest.raises(SystemExit):
        run.parse_args(["--train-layers", "one"])


def test_each_section_is_written_as_soon_as_it_is_measured(tmp_path):
    """A run stopped by a later section (e.g. killed for memory) keeps the sections already measured."""
    path = tmp_path / "report.json"
    run.checkpoint({"workloads": {"skewed": {"sequences": 32}}}, path)
    assert json.loads(path.read_text()) == {"workloads": {"skewed": {"sequences": 32}}}
    run.checkpoint({"workloads": {}}, None)  # no --json: nothing written, no error
