"""sentence-transformers 6.2 loads our folders and gives the numbers of our own forward."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import sentence_transformers as st
import torch

from mgte_hf import MgteForEmbedding, MgteForMaskedLM, MgteForSequenceClassification, token_weights_to_dicts
from mgte_hf.integrations import sentence_transformers as st_files
from mgte_hf.scoring import dense_scores, lexical_scores
from mgte_hf.tokenizer import special_token_ids
from tiny import SENTENCES, make_model


QUERIES = SENTENCES[:3]
DOCUMENTS = SENTENCES[3:8]


@pytest.fixture(scope="module")
def embedding(tmp_path_factory, tiny_tokenizer):
    """A TRM with sparse weights of order 1, saved with its sentence-transformers files."""
    model = make_model(MgteForEmbedding, max_position_embeddings=512)  # sentence-transformers caps inputs there
    with torch.no_grad():
        model.classifier.weight.mul_(30.0)
    folder = tmp_path_factory.mktemp("st-embedding")
    model.save_pretrained(folder)
    tiny_tokenizer.save_pretrained(folder)
    st_files.write_sentence_transformers_files(folder, model, tiny_tokenizer)
    return model, folder


def _ours(model, tokenizer, texts, dimension=None):
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], dimension=dimension)
    return out, batch


def test_sentence_transformer_gives_the_dense_vector(embedding, tiny_tokenizer):
    model, folder = embedding
    encoder = st.SentenceTransformer(str(folder), trust_remote_code=True)
    got = encoder.encode(SENTENCES[:8], convert_to_tensor=True)
    ours, _ = _ours(model, tiny_tokenizer, SENTENCES[:8])
    torch.testing.assert_close(got, ours.dense, atol=1e-6, rtol=0)


@pytest.mark.parametrize("dimension", [8, 16])
def test_truncate_dim_gives_the_matryoshka_vector(dimension, embedding, tiny_tokenizer):
    model, folder = embedding
    encoder = st.SentenceTransformer(str(folder), trust_remote_code=True, truncate_dim=dimension)
    queries = encoder.encode(QUERIES, convert_to_tensor=True, normalize_embeddings=True)
    documents = encoder.encode(DOCUMENTS, convert_to_tensor=True)
    ours_q, _ = _ours(model, tiny_tokenizer, QUERIES, dimension)
    ours_d, _ = _ours(model, tiny_tokenizer, DOCUMENTS, dimension)
    assert queries.shape == (len(QUERIES), dimension)
    torch.testing.assert_close(queries, ours_q.dense, atol=1e-6, rtol=0)
    # similarity is cosine, so the un-renormalised truncation scores the same
    torch.testing.assert_close(encoder.similarity(queries, documents), dense_scores(ours_q.dense, ours_d.dense),
                               atol=1e-6, rtol=0)


@pytest.fixture(scope="module")
def sparse_encoder(embedding):
    return st.SparseEncoder(str(embedding[1] / st_files.SPARSE_FOLDER), trust_remote_code=True)


def test_sparse_encoder_scores_are_mgte_lexical_scores(embedding, sparse_encoder, tiny_tokenizer):
    model, _ = embedding
    queries = sparse_encoder.encode(QUERIES, convert_to_tensor=True)
    documents = sparse_encoder.encode(DOCUMENTS, convert_to_tensor=True)
    assert queries.is_sparse and queries.shape == (len(QUERIES), model.config.vocab_size)
    ours_q, batch_q = _ours(model, tiny_tokenizer, QUERIES)
    ours_d, batch_d = _ours(model, tiny_tokenizer, DOCUMENTS)
    expected = lexical_scores(batch_q["input_ids"], ours_q.sparse, batch_d["input_ids"], ours_d.sparse,
                              ignore_token_ids=special_token_ids(tiny_tokenizer))
    assert expected.abs().max() > 0.1  # the test would pass trivially on all-zero weights
    torch.testing.assert_close(sparse_encoder.similarity(queries, documents), expected, atol=1e-5, rtol=1e-5)


def test_sparse_vectors_are_the_token_weight_dictionaries(embedding, sparse_encoder, tiny_tokenizer):
    """ReLU weights, max over repeated ids, special ids dropped — not SPLADE's log1p."""
    model, _ = embedding
    texts = SENTENCES[:8]
    ours, batch = _ours(model, tiny_tokenizer, texts)
    ids = batch["input_ids"]
    assert any(len(set(row[m.bool()].tolist())) < int(m.sum()) for row, m in zip(ids, batch["attention_mask"]))
    expected = token_weights_to_dicts(ours.sparse, ids, batch["attention_mask"], special_token_ids(tiny_tokenizer))
    vectors = sparse_encoder.encode(texts, convert_to_tensor=True).coalesce()
    for row, want in enumerate(expected):
        got = {int(i): float(v) for (r, i), v in zip(vectors.indices().T.tolist(), vectors.values()) if r == row}
        assert got.keys() == want.keys()
        assert all(got[i] == pytest.approx(w, abs=1e-6) for i, w in want.items())


def test_sparse_encoder_saved_again_loads_on_its_own(embedding, sparse_encoder, tmp_path):
    sparse_encoder.save(str(tmp_path))
    assert (tmp_path / "model.safetensors").is_file()  # now with its own copy of the encoder
    again = st.SparseEncoder(str(tmp_path), trust_remote_code=True)
    a = sparse_encoder.encode(QUERIES, convert_to_tensor=True).to_dense()
    b = again.encode(QUERIES, convert_to_tensor=True).to_dense()
    torch.testing.assert_close(b, a, atol=0, rtol=0)


def test_cross_encoder_predicts_the_relevance_logit(tmp_path, tiny_tokenizer):
    model = make_model(MgteForSequenceClassification, num_labels=1, max_position_embeddings=512)
    model.save_pretrained(tmp_path)
    tiny_tokenizer.save_pretrained(tmp_path)
    st_files.write_sentence_transformers_files(tmp_path, model, tiny_tokenizer)
    pairs = [(QUERIES[0], d) for d in DOCUMENTS]
    reranker = st.CrossEncoder(str(tmp_path), trust_remote_code=True)
    batch = tiny_tokenizer([q for q, _ in pairs], [d for _, d in pairs], padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.view(-1)
    torch.testing.assert_close(torch.as_tensor(reranker.predict(pairs)), logits, atol=1e-6, rtol=0)
    ranked = [r["corpus_id"] for r in reranker.rank(QUERIES[0], DOCUMENTS)]
    assert ranked == torch.argsort(logits, descending=True).tolist()


def test_the_shipped_module_does_not_need_mgte_hf():
    source = Path(st_files.__file__).with_name(st_files.SPARSE_MODULE_FILE)
    imported = {(n.module if isinstance(n, ast.ImportFrom) else a.name).split(".")[0]
                for n in ast.walk(ast.parse(source.read_text())) if isinstance(n, ast.Import | ast.ImportFrom)
                for a in (n.names if isinstance(n, ast.Import) else [n])}
    assert imported <= {"__future__", "os", "torch", "safetensors", "sentence_transformers"}


def test_bad_input(tmp_path, tiny_tokenizer):
    model = make_model(MgteForEmbedding)
    with pytest.raises(FileNotFoundError, match="save_pretrained"):
        st_files.write_sentence_transformers_files(tmp_path, model, tiny_tokenizer)
    mlm = make_model(MgteForMaskedLM)
    mlm.save_pretrained(tmp_path)
    with pytest.raises(TypeError, match="MgteForMaskedLM"):
        st_files.write_sentence_transformers_files(tmp_path, mlm, tiny_tokenizer)
