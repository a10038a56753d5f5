"""Stage 1 of mGTE: masked-LM pre-training with the length curriculum (RoPE base and context grow together).

Tiny run on the committed UDHR text (about a minute on a laptop CPU):

    python examples/pretrain_mlm.py examples/configs/pretrain_mlm.yaml

Real run (paper: 2048 tokens at base 10 000 for 250k steps, then 8192 at 160 000 for 30k; batch 8192 / 2048):

    torchrun --nproc_per_node 8 examples/pretrain_mlm.py examples/configs/pretrain_mlm_paper.json \\
        --train_file my_corpus.txt --tokenizer_name_or_path path/to/xlm-roberta

Any argument of `MgteMLMTrainingArguments` (transformers `TrainingArguments` included) or of the dataclasses below
can be given on the command line, in the JSON/YAML file, or both (the command line wins).
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
    read_lines,
    resume_checkpoint,
    setup_logging,
)

from mgte_hf import MgteForMaskedLM
from mgte_hf.training.arguments import MgteMLMTrainingArguments
from mgte_hf.training.trainers import MgteMLMTrainer


logger = logging.getLogger("pretrain_mlm")


@dataclass
class DataArguments:
    train_file: str | None = field(default=None, metadata={"help": "One text per line; default: the UDHR sample."})
    eval_texts: int = field(default=20, metadata={"help": "Texts held out (from the end) for the eval loss."})


def main() -> dict[str, float]:
    model_args, data_args, training_args = parse_args(ModelArguments, DataArguments, MgteMLMTrainingArguments)
    setup_logging(training_args.get_process_log_level())
    texts = read_lines(data_path(data_args.train_file, "mlm.txt"))
    if not 0 <= data_args.eval_texts < len(texts):
        raise ValueError(f"eval_texts must be in [0, {len(texts) - 1}], got {data_args.eval_texts}.")
    split = len(texts) - data_args.eval_texts
    train = Dataset.from_dict({"text": texts[:split]})
    evaluation = Dataset.from_dict({"text": texts[split:]}) if data_args.eval_texts else None
    checkpoint = resume_checkpoint(training_args)
    tokenizer = load_tokenizer(model_args, checkpoint)
    model = load_model(MgteForMaskedLM, model_args, tokenizer, training_args.seed)
    trainer = MgteMLMTrainer(model=model, args=training_args, train_dataset=train, eval_dataset=evaluation,
                             processing_class=tokenizer)
    trainer.train(resume_from_checkpoint=checkpoint)
    return finish(trainer, tokenizer, model_args)


if __name__ == "__main__":
    main()
