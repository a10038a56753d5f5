import pytest
import torch

import tiny
from mgte_hf import MgteForEmbedding
from mgte_hf.batching import restore_order
from mgte_hf.inference.common import (
    PROGRESS_BAR_MIN_TEXTS,
    Tokenized,
    check_pairs,
    check_texts,
    load_model_and_tokenizer,
    packed_batches,
    show_progress,
    tokenize,
)
from mgte_hf.tokenizer import kept_tokenizer_state


def test_check_texts_accepts_iterables_and_refuses_the_rest():
    assert check_texts("one") == ["one"]
    assert check_texts(t for t in ("a", "b")) == ["a", "b"]
    texts = ("a", "b")
    assert check_texts(texts) == ["a", "b"] and isinstance(check_texts(texts), list)
    for bad, name in ((b"bytes", "bytes"), ({"text": "a"}, "dict"), (3, "int"), (None, "NoneType")):
        with pytest.raises(TypeError, match=f"texts must be a string or a list of strings, got {name}"):
            check_texts(bad)


def test_check_pairs_splits_queries_and_documents():
    assert check_pairs([("q1", "d1"), ["q2", "d2"]]) == (["q1", "q2"], ["d1", "d2"])
    assert check_pairs([]) == ([], [])
    with pytest.raises(TypeError, match=r"pairs\[0\] is a int"):
        check_pairs([3])


def test_packed_batches_respect_the_budget_and_cover_every_input():
    tokenized = Tokenized([[0, 5, 2], [0, 6, 7, 8, 9, 2], [0, 2], [0, 7, 7, 2]])
    batches = list(packed_batches(tokenized, batch_tokens=8, device=torch.device("cpu")))
    assert sorted(i for b in batches for i in b.indices) == [0, 1, 2, 3]
    for b in batches:
        assert len(b.indices) * max(b.seqlens) <= 8 or len(b.indices) == 1
        assert b.input_ids.tolist() == [t for i in b.indices for t in tokenized.input_ids[i]]
        assert b.seqlens == [len(tokenized.input_ids[i]) for i in b.indices]
        assert b.model_inputs().keys() == {"input_ids", "seqlens"}
    assert batches[0].indices == [1], "longest first"
    restored = restore_order([b.indices for b in batches], [b.input_ids.split(b.seqlens) for b in batches])
    assert [r.tolist() for r in restored] == tokenized.input_ids
    with pytest.raises(ValueError, match="batch_tokens must be a positive integer"):
        list(packed_batches(tokenized, batch_tokens=0, device=torch.device("cpu")))


def test_token_types_are_packed_along(tiny_tokenizer):
    tokenized = tokenize(tiny_tokenizer, ["a", "bb"], ["c", "d"], max_length=64, truncation="warn",
                         with_token_types=True)
    (batch,) = packed_batches(tokenized, batch_tokens=64, device=torch.device("cpu"))
    assert batch.token_type_ids.shape == batch.input_ids.shape
    assert batch.model_inputs().keys() == {"input_ids", "seqlens", "token_type_ids"}


def test_progress_bar_policy():
    assert not show_progress(None, PROGRESS_BAR_MIN_TEXTS - 1)
    assert show_progress(None, PROGRESS_BAR_MIN_TEXTS)
    assert show_progress(True, 1) and not show_progress(False, 10**6)


def test_loading_refuses_wrong_inputs(tiny_tokenizer):
    with pytest.raises(TypeError, match="path_or_model must be a folder path"):
        load_model_and_tokenizer(MgteForEmbedding, 3, tiny_tokenizer, None, None)
    model = tiny.make_model(MgteForEmbedding, vocab_size=len(tiny_tokenizer))
    with pytest.raises(ValueError, match="dtype='half-ish' is not a floating-point torch dtype"):
        load_model_and_tokenizer(MgteForEmbedding, model, tiny_tokenizer, None, "half-ish")
    loaded, tokenizer = load_model_and_tokenizer(MgteForEmbedding, model, tiny_tokenizer, "cpu", "bfloat16")
    assert loaded.dtype == torch.bfloat16 and not loaded.training and tokenizer is tiny_tokenizer


def test_tokenize_leaves_the_tokenizer_settings_alone(tiny_tokenizer):
    backend = tiny_tokenizer.backend_tokenizer
    with kept_tokenizer_state(tiny_tokenizer):
        backend.enable_padding(pad_id=1, pad_token="<pad>", length=64)  # a caller's own setting
        before = backend.to_str()
        tokenized = tokenize(tiny_tokenizer, ["a long text " * 20, "b"], max_length=8, truncation="warn")
        assert [len(ids) for ids in tokenized.input_ids] == [8, 3]
        assert backend.to_str() == before
    assert backend.padding is None and backend.truncation is None
