"""Small tokenizers with the XLM-R special-token layout, trained in seconds: for toy models, examples and tests."""

from __future__ import annotations

import os

from transformers import PreTrainedTokenizerFast

from .loading import XLMR_SPECIAL_TOKENS


def build_tiny_tokenizer(
    texts: list[str],
    vocab_size: int = 300,
    save_dir: str | os.PathLike | None = None,
) -> PreTrainedTokenizerFast:
    """Train a small Unigram tokenizer with the XLM-R special-token layout (for tests and toy models).

    Ids: `<s>`=0, `<pad>`=1, `</s>`=2, `<unk>`=3, `<mask>`=4; single `<s> A </s>`, pair `<s> A </s></s> B </s>`.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=specials, unk_token="<unk>",
                                      show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", 0), ("</s>", 2)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=8192, **XLMR_SPECIAL_TOKENS)
    if save_dir is not None:
        fast.save_pretrained(str(save_dir))
    return fast


__all__ = ["build_tiny_tokenizer"]
