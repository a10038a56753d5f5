"""Stage 3 of mGTE: TRM fine-tuning, Matryoshka dense + sparse lexical InfoNCE with hard negatives.

Tiny run on the committed UDHR groups (a French or Spanish query, its English positive, 3 mined hard negatives;
German → English pairs held out for the dense and hybrid retrieval evaluator):

    python examples/finetune_embedding.py examples/configs/finetune_embedding.yaml
    python examples/finetune_embedding.py examples/configs/finetune_embedding.yaml --lora_r 8   # LoRA, merged copy

Real run (paper: 1 positive + 8 hard negatives, dense τ 0.05 on every prefix of 32k dims, sparse τ 0.01, length-
bucketed batches split into sub-batches with gradient caching, 10 epochs on 8 GPUs):

    torchrun --nproc_per_node 8 examples/finetune_embedding.py examples/configs/finetune_embedding_paper.json \\
        --model_name_or_path runs/contrastive_pretrain --train_file my_groups.jsonl
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from datasets import Dataset
from example_utils import (
    ModelArguments,
    data_path,
    embedding_evaluator,
    finish,
    load_model,
    load_tokenizer,
    parse_args,
    read_jsonl,
    resume_checkpoint,
    retrieval_task,
    setup_logging,
)

from mgte_hf import MgteForEmbedding
from mgte_hf.training.arguments import MgteEmbeddingTrainingArguments
from mgte_hf.training.trainers import MgteEmbeddingTrainer


logger = logging.getLogger("finetune_embedding")


@dataclass
class DataArguments:
    train_file: str | None = field(
        default=None, metadata={"help": "JSONL of {query, positive, negatives, source?}; default: the UDHR groups."})
    eval_file: str | None = field(
        default=None, metadata={"help": "JSONL of {query, positive, source} for the evaluator; default: the UDHR "
                                        "pairs."})
    eval_source: str | None = field(
        default="udhr-de-en", metadata={"help": "Source of the evaluator's queries; None: no evaluator."})
    eval_queries: int = field(default=50, metadata={"help": "Queries of the evaluator."})


def main() -> dict[str, float]:
    model_args, data_args, training_args = parse_args(ModelArguments, DataArguments, MgteEmbeddingTrainingArguments)
    setup_logging(training_args.get_process_log_level())
    rows = read_jsonl(data_path(data_args.train_file, "finetune.jsonl"))
    checkpoint = resume_checkpoint(training_args)
    tokenizer = load_tokenizer(model_args, checkpoint)
    evaluator = None
    if data_args.eval_source:
        pairs = read_jsonl(data_path(data_args.eval_file, "pairs.jsonl"))
        dataset = retrieval_task(pairs, data_args.eval_source, data_args.eval_queries)
        evaluator = embedding_evaluator(tokenizer, dataset, training_args.passage_max_length,
                                        hybrid=training_args.sparse_weight > 0)
    model = load_model(MgteForEmbedding, model_args, tokenizer, training_args.seed)
    trainer = MgteEmbeddingTrainer(model=model, args=training_args, train_dataset=Dataset.from_list(rows),
                                   processing_class=tokenizer, evaluator=evaluator)
    trainer.train(resume_from_checkpoint=checkpoint)
    return finish(trainer, tokenizer, model_args)


if __name__ == "__main__":
    main()
