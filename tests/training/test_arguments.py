"""The *TrainingArguments of the mGTE stages through HfArgumentParser: command line, JSON, YAML, and bad values."""

from __future__ import annotations

import json

import pytest
import yaml
from transformers import HfArgumentParser, TrainingArguments

from mgte_hf.training.arguments import (
    MgteContrastiveTrainingArguments,
    MgteEmbeddingTrainingArguments,
    MgteMLMTrainingArguments,
    MgteRerankerTrainingArguments,
    MgteTrainingArguments,
)


ALL = [MgteMLMTrainingArguments, MgteContrastiveTrainingArguments, MgteEmbeddingTrainingArguments,
       MgteRerankerTrainingArguments]
BASE = ["--output_dir", "unused", "--report_to", "none"]


def parse(cls, argv):
    (args,) = HfArgumentParser(cls).parse_args_into_dataclasses(args=BASE + argv)
    return args


@pytest.mark.parametrize("cls", ALL)
def test_defaults_are_the_papers_and_keep_the_text_columns(cls):
    args = parse(cls, [])
    assert isinstance(args, MgteTrainingArguments) and isinstance(args, TrainingArguments)
    assert args.remove_unused_columns is False
    assert args.source_sampling_alpha == 0.5


def test_paper_defaults_per_stage():
    mlm = parse(MgteMLMTrainingArguments, [])
    assert (mlm.mlm_probability, mlm.curriculum_max_lengths, mlm.curriculum_rope_thetas) == (
        0.3, [2048, 8192], [10000.0, 160000.0])
    cpt = parse(MgteContrastiveTrainingArguments, [])
    assert (cpt.temperature, cpt.query_max_length, cpt.passage_max_length, cpt.num_negatives, cpt.rev_ntk_factor) == (
        0.01, 512, 1024, 0, 8.0)
    trm = parse(MgteEmbeddingTrainingArguments, [])
    assert (trm.dense_temperature, trm.sparse_temperature, trm.num_negatives, trm.matryoshka_dimensions) == (
        0.05, 0.01, 8, None)
    rerank = parse(MgteRerankerTrainingArguments, [])
    assert (rerank.group_size, rerank.max_length) == (11, 8192)


def test_command_line_lists_and_optionals():
    args = parse(MgteMLMTrainingArguments, [
        "--curriculum_max_lengths", "64", "128", "--curriculum_rope_thetas", "1e4", "1.6e5",
        "--curriculum_stage_steps", "9", "3", "--max_steps", "12", "--curriculum_learning_rates", "1e-3", "1e-4",
        "--warmup_steps", "0.1"])
    assert args.curriculum_max_lengths == [64, 128] and args.curriculum_rope_thetas == [10000.0, 160000.0]
    assert args.stage_steps(12) == [9, 3] and args.curriculum_learning_rates == [1e-3, 1e-4]
    trm = parse(MgteEmbeddingTrainingArguments, ["--matryoshka_dimensions", "32", "64", "--grad_cache_chunk_size", "8",
                                                 "--max_tokens_per_batch", "4096"])
    assert (trm.matryoshka_dimensions, trm.grad_cache_chunk_size, trm.max_tokens_per_batch) == ([32, 64], 8, 4096)


def test_json_and_yaml_files_give_the_same_arguments(tmp_path):
    values = {"output_dir": "unused", "report_to": "none", "num_negatives": 3, "matryoshka_dimensions": [16, 32],
              "single_source_batches": True, "learning_rate": 2e-4, "sparse_weight": 0.0}
    (tmp_path / "a.json").write_text(json.dumps(values))
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(values))
    parser = HfArgumentParser(MgteEmbeddingTrainingArguments)
    (from_json,) = parser.parse_json_file(str(tmp_path / "a.json"))
    (from_yaml,) = parser.parse_yaml_file(str(tmp_path / "a.yaml"))
    for args in (from_json, from_yaml):
        assert (args.num_negatives, args.matryoshka_dimensions, args.single_source_batches, args.learning_rate,
                args.sparse_weight) == (3, [16, 32], True, 2e-4, 0.0)


@pytest.mark.parametrize(("cls", "argv", "message"), [
    (MgteMLMTrainingArguments, ["--mlm_probability", "1.5"], "mlm_probability must be in"),
    (MgteMLMTrainingArguments, ["--curriculum_rope_thetas", "10000"], "one RoPE base per curriculum stage"),
    (MgteMLMTrainingArguments, ["--curriculum_stage_steps", "5", "5", "--max_steps", "12"], "sum to 10, not max_steps"),
    (MgteMLMTrainingArguments, ["--curriculum_learning_rates", "1e-3"], "needs 2 positive values"),
    (MgteMLMTrainingArguments, ["--curriculum_learning_rates", "1e-3", "1e-4", "--warmup_steps", "100"],
     "warmup_steps as a ratio"),
    (MgteContrastiveTrainingArguments, ["--rev_ntk_factor", "0.5"], "rev_ntk_factor must be >= 1"),
    (MgteContrastiveTrainingArguments, ["--temperature", "0"], "temperature must be > 0"),
    (MgteContrastiveTrainingArguments, ["--passage_max_length", "1"], "passage_max_length must be >= 2"),
    (MgteEmbeddingTrainingArguments, ["--num_negatives", "-1"], "num_negatives must be >= 0"),
    (MgteEmbeddingTrainingArguments, ["--dense_weight", "0", "--sparse_weight", "0"], "not both 0"),
    (MgteEmbeddingTrainingArguments, ["--grad_cache_chunk_size", "0"], "grad_cache_chunk_size must be >= 1"),
    (MgteRerankerTrainingArguments, ["--group_size", "1"], "group_size must be >= 2"),
    (MgteRerankerTrainingArguments, ["--max_tokens_per_batch", "0"], "max_tokens_per_batch must be >= 1"),
    (MgteRerankerTrainingArguments, ["--source_sampling_alpha", "2"], "source_sampling_alpha must be in"),
])
def test_bad_values_are_refused_with_the_class_and_field_named(cls, argv, message):
    with pytest.raises(ValueError, match=f"{cls.__name__}: .*{message}"):
        parse(cls, argv)


def test_stage_steps_must_match_the_run_length():
    args = parse(MgteMLMTrainingArguments, ["--curriculum_stage_steps", "8", "2"])
    assert args.stage_steps(10) == [8, 2]
    with pytest.raises(ValueError, match="set max_steps=10"):
        args.stage_steps(12)
    three = parse(MgteMLMTrainingArguments, ["--curriculum_max_lengths", "8", "16", "32", "--curriculum_rope_thetas",
                                             "1", "2", "3"])
    assert three.stage_steps(10) == [3, 3, 4]
