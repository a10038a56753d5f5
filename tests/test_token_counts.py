"""Token counts (`mgte_hf.tokenizer.token_counts`): the one way the package counts tokens."""

import pytest

from mgte_hf.tokenizer import kept_tokenizer_state, token_counts
from tiny import SENTENCES


def test_counts_equal_the_tokenizer_and_truncation(tiny_tokenizer):
    texts, pairs = SENTENCES[:6], SENTENCES[6:12]
    full = [len(ids) for ids in tiny_tokenizer(texts)["input_ids"]]
    assert token_counts(tiny_tokenizer, texts) == full
    assert token_counts(tiny_tokenizer, texts, special_tokens=False) == [
        len(ids) for ids in tiny_tokenizer(texts, add_special_tokens=False)["input_ids"]]
    assert token_counts(tiny_tokenizer, texts, max_length=8) == [
        len(ids) for ids in tiny_tokenizer(texts, truncation=True, max_length=8)["input_ids"]]
    assert token_counts(tiny_tokenizer, texts, pairs, max_length=12) == [
        len(ids) for ids in tiny_tokenizer(texts, pairs, truncation=True, max_length=12)["input_ids"]]
    assert token_counts(tiny_tokenizer.backend_tokenizer, texts) == full  # a Rust tokenizer counts the same
    with pytest.raises(ValueError, match="2 pair texts for 6 texts"):
        token_counts(tiny_tokenizer, texts, pairs[:2])


def test_leftover_truncation_and_padding_settings_change_no_count_and_are_kept(tiny_tokenizer):
    backend = tiny_tokenizer.backend_tokenizer
    texts = [" ".join(SENTENCES), "x"]
    expected = [len(ids) for ids in tiny_tokenizer(texts)["input_ids"]]
    with kept_tokenizer_state(tiny_tokenizer):
        # what earlier `tokenizer(..., truncation=True)` and `tokenizer(..., padding=True)` calls leave behind
        backend.enable_truncation(max_length=5)
        backend.enable_padding(pad_id=1, pad_token="<pad>")
        assert token_counts(tiny_tokenizer, texts) == expected and expected[0] > 5
        assert backend.truncation["max_length"] == 5 and backend.padding is not None
