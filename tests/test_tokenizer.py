from transformers import AutoTokenizer

from mgte_hf.hashing import sha256_file
from mgte_hf.tokenizer import build_tiny_tokenizer, load_xlmr_tokenizer, special_token_ids
from mgte_hf.tokenizer.loading import XLMR_TOKENIZER_SHA256, xlmr_tokenizer_dir
from tiny import SENTENCES


def test_real_xlmr_tokenizer_ids(xlmr_tokenizer):
    assert xlmr_tokenizer("Hello world").input_ids == [0, 35378, 8999, 2]
    assert xlmr_tokenizer("a", "b").input_ids[:3] == [0, 10, 2] and xlmr_tokenizer("a", "b").input_ids[3] == 2
    assert (xlmr_tokenizer.pad_token_id, xlmr_tokenizer.unk_token_id, xlmr_tokenizer.mask_token_id) == (1, 3, 250001)
    assert len(xlmr_tokenizer) == 250002
    assert special_token_ids(xlmr_tokenizer) == [0, 1, 2, 3]
    assert sha256_file(xlmr_tokenizer_dir() / "tokenizer.json") == XLMR_TOKENIZER_SHA256


def test_load_is_offline_and_idempotent(xlmr_tokenizer, monkeypatch):
    import subprocess

    def no_network(*args, **kwargs):
        raise AssertionError("the cached tokenizer must load without pip")

    monkeypatch.setattr(subprocess, "run", no_network)
    tok = load_xlmr_tokenizer()
    assert tok("Hello world").input_ids == [0, 35378, 8999, 2]


def test_tiny_tokenizer_layout_and_round_trip(tiny_tokenizer, tmp_path):
    tok = tiny_tokenizer
    assert [tok.convert_tokens_to_ids(t) for t in ("<s>", "<pad>", "</s>", "<unk>", "<mask>")] == [0, 1, 2, 3, 4]
    ids = tok("search engines", "Suchmaschinen").input_ids
    assert ids[0] == 0 and ids.count(2) == 3 and ids[-1] == 2
    tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path, local_files_only=True)
    assert again("search engines").input_ids == tok("search engines").input_ids


def test_the_shipped_tiny_tokenizer_is_build_tiny_tokenizers_output(tiny_tokenizer):
    """tests/data/tiny-tokenizer is `build_tiny_tokenizer(SENTENCES * 4, 300)`: the same pieces and specials (the
    trainer's scores vary in their last digits between runs, which is why the suite ships one result)."""
    built = build_tiny_tokenizer(SENTENCES * 4, vocab_size=300)
    assert sorted(built.get_vocab()) == sorted(tiny_tokenizer.get_vocab())
    assert special_token_ids(built) == special_token_ids(tiny_tokenizer)
    assert built(SENTENCES[0]).input_ids[0] == tiny_tokenizer(SENTENCES[0]).input_ids[0] == 0
