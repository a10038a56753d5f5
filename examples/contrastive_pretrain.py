"""Stage 2 of mGTE: contrastive pre-training on weakly supervised pairs, with reversed NTK scaling (revNTK).

The model trains at RoPE base b/f with plain RoPE on short texts and is saved with static NTK factor f (base b/f):
the released gte-multilingual-base config (rope_theta 20000, ntk 8 from the MLM base 160 000). Each batch comes from
one data source, sources sampled ∝ size^0.5.

Tiny run on the committed UDHR translation pairs (fr/es/it → en; de → en held out for the retrieval evaluator):

    python examples/contrastive_pretrain.py examples/configs/contrastive_pretrain.yaml

Real run (paper: batch 16 384 over 16 GPUs, τ 0.01, query 512 / passage 1024 tokens, 240k steps):

    torchrun --nproc_per_node 16 examples/contrastive_pretrain.py examples/configs/contrastive_pretrain_paper.json \\
        --model_name_or_path runs/pretrain_mlm --train_file my_pairs.jsonl
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
from mgte_hf.training.arguments import MgteContrastiveTrainingArguments
from mgte_hf.training.trainers import MgteContrastiveTrainer


logger = logging.getLogger("contrastive_pretrain")


@dataclass
class DataArguments:
    train_file: str | None = field(
        default=None, metadata={"help": "JSONL of {query, positive, source?, negatives?}; default: the UDHR pairs."})
    eval_source: str | None = field(
        default="udhr-de-en", metadata={"help": "Source held out of training for the retrieval evaluator; None: "
                                                "no evaluator."})
    eval_queries: int = field(default=50, metadata={"help": "Queries of the evaluator."})


def main() -> dict[str, float]:
    model_args, data_args, training_args = parse_args(ModelArguments, DataArguments,
                                                      MgteContrastiveTrainingArguments)
    setup_logging(training_args.get_process_log_level())
    rows = read_jsonl(data_path(data_args.train_file, "pairs.jsonl"))
    checkpoint = resume_checkpoint(training_args)
    tokenizer = load_tokenizer(model_args, checkpoint)
    evaluator = None
    if data_args.eval_source:
        dataset = retrieval_task(rows, data_args.eval_source, data_args.eval_queries)
        evaluator = embedding_evaluator(tokenizer, dataset, training_args.passage_max_length)
        rows = [row for row in rows if row.get("source") != data_args.eval_source]
    model = load_model(MgteForEmbedding, model_args, tokenizer, training_args.seed)
    trainer = MgteContrastiveTrainer(model=model, args=training_args, train_dataset=Dataset.from_list(rows),
                                     processing_class=tokenizer, evaluator=evaluator)
    trainer.train(resume_from_checkpoint=checkpoint)
    return finish(trainer, tokenizer, model_args)


if __name__ == "__main__":
    main()
