"""What the four training examples share: argument parsing (command line or a JSON/YAML file plus overrides), the
committed data, the tokenizer, the model (a checkpoint or a new tiny one), LoRA, retrieval evaluators and the
end-of-run summary."""

from __future__ import annotations

import json
import logging
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from transformers import (
    AutoTokenizer,
    HfArgumentParser,
    PreTrainedTokenizerBase,
    Trainer,
    TrainingArguments,
    set_seed,
)
from transformers.trainer_utils import get_last_checkpoint

from mgte_hf import MgteConfig, MgtePreTrainedModel
from mgte_hf.adapters import apply_lora, merge_and_unload
from mgte_hf.data import BeirDataset
from mgte_hf.evaluation import RetrievalEvaluator, parse_metric
from mgte_hf.tokenizer import build_tiny_tokenizer


logger = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
CONFIGS = HERE / "configs"
EVAL_METRICS = ("ndcg@10", "mrr@10")


@dataclass
class ModelArguments:
    """Where the model and tokenizer come from, and LoRA."""

    model_name_or_path: str | None = field(
        default=None, metadata={"help": "Checkpoint to start from (e.g. the previous stage's output). None: a new "
                                        "model from model_config."})
    model_config: str = field(
        default=str(CONFIGS / "tiny_model.json"),
        metadata={"help": "JSON file of MgteConfig fields for a new model (vocab_size comes from the tokenizer)."})
    tokenizer_name_or_path: str | None = field(
        default=None, metadata={"help": "Tokenizer folder. None: the checkpoint's, else a tiny Unigram tokenizer "
                                        "trained on examples/data/mlm.txt."})
    tiny_vocab_size: int = field(default=1000, metadata={"help": "Vocabulary of the tiny tokenizer."})
    lora_r: int = field(default=0, metadata={"help": "LoRA rank; 0 trains all weights."})
    lora_alpha: float = field(default=16.0, metadata={"help": "LoRA alpha."})
    lora_dropout: float = field(default=0.0, metadata={"help": "LoRA dropout."})


def parse_args(*types: type) -> tuple[Any, ...]:
    """Parse dataclasses from the command line, or from a JSON/YAML file given first, then command-line overrides.

    `script.py config.yaml --max_steps 10` reads the file and lets `--max_steps 10` win.
    """
    parser = HfArgumentParser(types)
    argv = sys.argv[1:]
    if argv and argv[0].endswith((".json", ".yaml", ".yml")):
        argv = config_file_argv(Path(argv[0])) + argv[1:]
    return parser.parse_args_into_dataclasses(args=argv)


def config_file_argv(path: Path) -> list[str]:
    """A JSON/YAML mapping as command-line tokens (argparse keeps the last value of a repeated flag)."""
    text = path.read_text(encoding="utf-8")
    values = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    if not isinstance(values, Mapping):
        raise ValueError(f"{path} must hold a mapping of argument names to values.")
    argv: list[str] = []
    for key, value in values.items():
        if value is None:
            continue
        argv.append(f"--{key}")
        if isinstance(value, (list, tuple)):
            argv.extend(str(v) for v in value)
        elif isinstance(value, dict):
            argv.append(json.dumps(value))
        else:
            argv.append(str(value).lower() if isinstance(value, bool) else str(value))
    return argv


def data_path(name: str | None, default: str) -> Path:
    return Path(name) if name else DATA / default


def read_lines(path: Path) -> list[str]:
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in read_lines(path)]


def load_tokenizer(args: ModelArguments, checkpoint: str | None = None) -> PreTrainedTokenizerBase:
    """The given tokenizer, else the one of the checkpoint resumed from or started from, else a new tiny one.

    A resumed run must use the tokenizer it started with: training a Unigram tokenizer twice on the same text does
    not give the same vocabulary, and every checkpoint holds the run's tokenizer.
    """
    source = args.tokenizer_name_or_path or checkpoint or args.model_name_or_path
    if source:
        return AutoTokenizer.from_pretrained(source)
    return build_tiny_tokenizer(read_lines(DATA / "mlm.txt"), vocab_size=args.tiny_vocab_size)


def load_model(cls: type[MgtePreTrainedModel], args: ModelArguments, tokenizer: PreTrainedTokenizerBase,
               seed: int, **overrides: Any) -> torch.nn.Module:
    """The checkpoint, or a new model of `args.model_config` sized to the tokenizer; LoRA-wrapped when asked."""
    set_seed(seed)  # the same initial weights in every run of one seed (resume checks rely on it)
    if args.model_name_or_path:
        model = cls.from_pretrained(args.model_name_or_path, **overrides)
    else:
        fields = json.loads(Path(args.model_config).read_text(encoding="utf-8"))
        vocab = 64 * math.ceil(len(tokenizer) / 64)  # padded to a multiple of 64, as mGTE
        model = cls(MgteConfig(**{**fields, **overrides, "vocab_size": vocab, "pad_token_id": tokenizer.pad_token_id}))
    if args.lora_r > 0:
        model = apply_lora(model, r=args.lora_r, alpha=args.lora_alpha, dropout=args.lora_dropout)
    return model


def finish(trainer: Trainer, tokenizer: PreTrainedTokenizerBase, args: ModelArguments) -> dict[str, float]:
    """Save the final model (and a merged copy for LoRA) and log the loss curve; returns the summary."""
    out = Path(trainer.args.output_dir)
    trainer.save_model()
    if args.lora_r > 0 and trainer.args.should_save:
        merged = merge_and_unload(trainer.model)
        with trainer.inference_setting():  # the inference RoPE of revNTK, as every save
            merged.save_pretrained(out / "merged")
        tokenizer.save_pretrained(out / "merged")
    history = trainer.state.log_history
    train = [h for h in history if "loss" in h]
    evals = [h for h in history if any(k.startswith("eval_") for k in h)]
    curve = {"steps": [h["step"] for h in train], "loss": [h["loss"] for h in train],
             "parts": {k: [h[k] for h in train] for k in train[0] if k.startswith("loss_")} if train else {},
             "eval": evals}
    if trainer.args.should_save:
        (out / "loss_curve.json").write_text(json.dumps(curve, indent=1))
    summary = {"first_loss": curve["loss"][0], "last_loss": curve["loss"][-1]} if train else {}
    summary.update({k: v for k, v in evals[-1].items() if k.startswith("eval_")} if evals else {})
    logger.info("loss %s → %s over %d steps; %s", summary.get("first_loss"), summary.get("last_loss"),
                trainer.state.global_step, {k: v for k, v in summary.items() if k.startswith("eval_")})
    return summary


def resume_checkpoint(args: TrainingArguments) -> str | None:
    """The checkpoint to resume from: `--resume_from_checkpoint last` (or `true`) means the newest one of
    output_dir; a path means that folder; unset means a fresh run."""
    value = args.resume_from_checkpoint
    if value is None or value.lower() not in ("true", "last"):
        return value
    last = get_last_checkpoint(args.output_dir) if Path(args.output_dir).is_dir() else None
    if last is None:
        raise ValueError(f"--resume_from_checkpoint {value}: {args.output_dir} holds no checkpoint-* folder.")
    return last


def retrieval_task(pairs: Sequence[Mapping[str, str]], source: str, limit: int) -> BeirDataset:
    """A BEIR set: the queries of one source over a corpus of every positive; query i ↔ its positive."""
    corpus = {f"d{i}": text for i, text in enumerate(dict.fromkeys(row["positive"] for row in pairs))}
    ids = {text: doc for doc, text in corpus.items()}
    chosen = [row for row in pairs if row.get("source") == source][:limit]
    if not chosen:
        raise ValueError(f"no example of source {source!r} to evaluate on.")
    return BeirDataset(corpus={doc: {"title": "", "text": text} for doc, text in corpus.items()},
                       queries={f"q{i}": row["query"] for i, row in enumerate(chosen)},
                       qrels={f"q{i}": {ids[row["positive"]]: 1} for i, row in enumerate(chosen)}, name=source)


def embedding_evaluator(tokenizer: PreTrainedTokenizerBase, dataset: BeirDataset, max_length: int,
                        hybrid: bool = False) -> RetrievalEvaluator:
    """nDCG@10 and MRR@10 of dense (and hybrid dense + sparse) retrieval over the whole corpus."""
    return RetrievalEvaluator(dataset, systems=("dense", "hybrid") if hybrid else ("dense",), max_lengths=(max_length,),
                              metrics=EVAL_METRICS, top_k=_whole(dataset), tokenizer=tokenizer,
                              show_progress_bar=False)


def reranker_evaluator(tokenizer: PreTrainedTokenizerBase, dataset: BeirDataset,
                       max_length: int) -> RetrievalEvaluator:
    """nDCG@10 and MRR@10 of reranking the whole corpus for each query (the BM25 order below the reranked head)."""
    depth = _whole(dataset)
    return RetrievalEvaluator(dataset, systems=("rerank",), rerank_first_stage="bm25", max_lengths=(max_length,),
                              metrics=EVAL_METRICS, top_k=depth, rerank_top_k=depth, tokenizer=tokenizer,
                              show_progress_bar=False)


def _whole(dataset: BeirDataset) -> int:
    """A depth that ranks every document (and reaches the deepest metric cut-off)."""
    return max(len(dataset.corpus), *(parse_metric(m)[1] for m in EVAL_METRICS))


def setup_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
