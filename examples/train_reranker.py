"""Stage 4 of mGTE: the cross-encoder reranker, a listwise cross-entropy over groups of 1 positive + n negatives.

The paper initialises the reranker from the MLM encoder (contrastive pre-training brought no gain) and trains it on
the fine-tuning data. Tiny run on the committed UDHR groups (German → English reranking held out for the evaluator):

    python examples/train_reranker.py examples/configs/train_reranker.yaml
    python examples/train_reranker.py examples/configs/train_reranker.yaml --lora_r 8   # LoRA, merged copy

Real run (paper: groups of 1 positive + 6 hard + 4 random negatives, pairs up to 8192 tokens):

    torchrun --nproc_per_node 8 examples/train_reranker.py examples/configs/train_reranker_paper.json \\
        --model_name_or_path runs/pretrain_mlm --train_file my_groups.jsonl
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from datasets import Dataset
from example_utils import (
    ModelArguments,
    data_path,
    finish,
    load_model,
    load_tokenizer,
    parse_args,
    read_jsonl,
    reranker_evaluator,
    resume_checkpoint,
    retrieval_task,
    setup_logging,
)

from mgte_hf import MgteForSequenceClassification
from mgte_hf.training.arguments import MgteRerankerTrainingArguments
from mgte_hf.training.trainers import MgteRerankerTrainer


logger = logging.getLogger("train_reranker")


@dataclass
class DataArguments:
    train_file: str | None = field(
        default=None, metadata={"help": "JSONL of {query, positive, negatives}; default: the UDHR groups."})
    eval_file: str | None = field(
        default=None, metadata={"help": "JSONL of {query, positive, source} for the evaluator; default: the UDHR "
                                        "pairs."})
    eval_source: str | None = field(
        default="udhr-de-en", metadata={"help": "Source of the evaluator's queries; None: no evaluator."})
    eval_queries: int = field(default=20, metadata={"help": "Queries of the evaluator (each reranks the corpus)."})


def main() -> dict[str, float]:
    model_args, data_args, training_args = parse_args(ModelArguments, DataArguments, MgteRerankerTrainingArguments)
    setup_logging(training_args.get_process_log_level())
    rows = read_jsonl(data_path(data_args.train_file, "finetune.jsonl"))
    checkpoint = resume_checkpoint(training_args)
    tokenizer = load_tokenizer(model_args, checkpoint)
    evaluator = None
    if data_args.eval_source:
        pairs = read_jsonl(data_path(data_args.eval_file, "pairs.jsonl"))
        dataset = retrieval_task(pairs, data_args.eval_source, data_args.eval_queries)
        evaluator = reranker_evaluator(tokenizer, dataset, training_args.max_length)
    model = load_model(MgteForSequenceClassification, model_args, tokenizer, training_args.seed, num_labels=1)
    trainer = MgteRerankerTrainer(model=model, args=training_args, train_dataset=Dataset.from_list(rows),
                                  processing_class=tokenizer, evaluator=evaluator)
    trainer.train(resume_from_checkpoint=checkpoint)
    return finish(trainer, tokenizer, model_args)


if __name__ == "__main__":
    main()
