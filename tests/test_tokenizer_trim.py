import pytest
import torch

from mgte_hf import MgteForEmbedding, MgteForMaskedLM
from mgte_hf.tokenizer.trim import (
    load_vocab_mapping,
    save_vocab_mapping,
    trim_embeddings,
    trim_tokenizer,
    used_token_ids,
)
from tiny import SENTENCES, make_model, random_batch


@pytest.fixture(scope="module")
def trimmed(xlmr_tokenizer):
    return trim_tokenizer(xlmr_tokenizer, SENTENCES)


def test_trimmed_tokenizer_segments_the_corpus_identically(xlmr_tokenizer, trimmed):
    tok, kept = trimmed
    assert kept[:4] == [0, 1, 2, 3] and len(tok) == len(kept) < 1000
    assert tok.mask_token_id == len(kept) - 1 and kept[-1] == xlmr_tokenizer.mask_token_id
    for text in SENTENCES:
        old = xlmr_tokenizer(text).input_ids
        assert [kept[i] for i in tok(text).input_ids] == old
    pair = tok(SENTENCES[0], SENTENCES[3]).input_ids
    assert [kept[i] for i in pair] == xlmr_tokenizer(SENTENCES[0], SENTENCES[3]).input_ids


def test_unseen_pieces_become_unk(trimmed):
    tok, _ = trimmed
    ids = tok("ꦗꦮ", add_special_tokens=False).input_ids  # Javanese script: not in the corpus
    assert tok.unk_token_id in ids and max(ids) < len(tok)


def test_trim_embeddings_keeps_rows_and_outputs(xlmr_tokenizer, trimmed, tmp_path):
    tok, kept = trimmed
    model = make_model(MgteForMaskedLM, vocab_size=len(xlmr_tokenizer), sparse_ignore_token_ids=[0, 1, 2, 3])
    text = SENTENCES[5]
    old_ids = torch.tensor([xlmr_tokenizer(text).input_ids])
    with torch.no_grad():
        before = model(input_ids=old_ids).logits[..., kept]
    trim_embeddings(model, kept)
    assert model.config.vocab_size == len(kept) and model.config.pad_token_id == 1
    assert model.lm_head.decoder.weight.data_ptr() == model.new.embeddings.word_embeddings.weight.data_ptr()
    with torch.no_grad():
        after = model(input_ids=torch.tensor([tok(text).input_ids])).logits
    assert (after - before).abs().max().item() <= 1e-5
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    save_vocab_mapping(tmp_path, kept, "xlm-roberta")
    assert load_vocab_mapping(tmp_path) == kept
    reloaded = MgteForMaskedLM.from_pretrained(tmp_path)
    assert reloaded.config.vocab_size == len(kept)


def test_embedding_model_trims_too():
    model = make_model(MgteForEmbedding)
    ids, mask = random_batch([4])
    kept = sorted(set(range(5)) | set(ids.flatten().tolist()))
    with torch.no_grad():
        before = model(input_ids=ids).dense
        trim_embeddings(model, kept)
        after = model(input_ids=torch.tensor([[kept.index(i) for i in ids[0].tolist()]])).dense
    assert torch.allclose(before, after, atol=1e-6)


def test_used_ids_and_non_unigram_refused(tiny_tokenizer):
    assert used_token_ids(tiny_tokenizer, ["search"]) <= set(range(len(tiny_tokenizer)))
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    wordlevel = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"a": 0, "<unk>": 1}, "<unk>")))
    with pytest.raises(ValueError, match="Unigram"):
        trim_tokenizer(wordlevel, ["a"])
