"""`torch.compile(model, fullgraph=True)`: one graph per shape bucket, the eager numbers, forward and backward.

A packed batch (`input_ids` (1, T) with a `seqlens` tensor) runs its attention inside one opaque operator, so a graph
holds no sequence lengths; a padded batch runs padded while compiled. With `dynamic=True` the buckets are: several
sequences, a single sequence, and (the 0/1 sizes torch specialises) a single token. Graphs are counted by dynamo
(`unique_graphs`) on the `aot_eager` backend (the whole of dynamo and AOTAutograd, without C++ code generation); the
inductor run is `slow`.
"""

import pytest
import torch
from torch._dynamo.utils import counters

from mgte_hf import MgteForEmbedding, MgteForMaskedLM, MgteModel
from tiny import make_model, random_batch


SEVERAL = ([5, 9, 3], [7, 7], [20, 1, 4, 11], [40, 2, 2], [6, 6, 6, 6, 6])


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch.compiler.reset()
    counters.clear()
    yield
    torch.compiler.reset()


def graphs() -> int:
    """Graphs dynamo has compiled since the test began."""
    return counters["stats"]["unique_graphs"]


def packed(lengths: list[int]) -> dict:
    ids, mask = random_batch(lengths)
    return {"input_ids": ids[mask.bool()][None].contiguous(), "seqlens": torch.tensor(lengths)}


def padded(lengths: list[int], left: bool = False) -> dict:
    ids, mask = random_batch(lengths, left=left)
    return {"input_ids": ids, "attention_mask": mask}


def compiled(model, backend: str = "aot_eager"):
    return torch.compile(model, fullgraph=True, dynamic=True, backend=backend)


def assert_same(out, ref, mask=None):
    for key in ("dense", "sparse"):
        got, exp = getattr(out, key), getattr(ref, key)
        if key == "sparse" and mask is not None:
            got, exp = got[mask.bool()], exp[mask.bool()]
        torch.testing.assert_close(got, exp, atol=1e-5, rtol=1e-5)


def test_packed_batches_compile_once_per_bucket():
    model = make_model(MgteForEmbedding, max_position_embeddings=512)
    fn = compiled(model)
    with torch.no_grad():
        for lengths in SEVERAL:
            inputs = packed(lengths)
            assert_same(fn(**inputs), model(**inputs))
        assert graphs() == 1  # every composition of several sequences: one graph
        for lengths in ([9], [30]):
            assert_same(fn(**packed(lengths)), model(**packed(lengths)))
        assert graphs() == 2  # a single sequence: the second bucket
        fn(**packed([1]))
        assert graphs() == 3  # a single token: the last


def test_padded_batches_compile_once_per_bucket_and_zero_the_padding():
    model = make_model(MgteForEmbedding, max_position_embeddings=512)
    fn = compiled(model)
    with torch.no_grad():
        for i, lengths in enumerate(SEVERAL):
            inputs = padded(lengths, left=bool(i % 2))
            out = fn(**inputs)
            assert_same(out, model(**inputs), inputs["attention_mask"])
            assert out.sparse[inputs["attention_mask"] == 0].abs().sum() == 0
    assert graphs() == 1


def test_compiled_packed_training_step_gives_the_eager_gradients():
    """The opaque attention operator has a backward (it recomputes the attention)."""
    model = make_model(MgteForMaskedLM, max_position_embeddings=512).train()
    fn = compiled(model)
    grads = []
    for forward in (model, fn):
        for lengths in ([5, 9, 3], [12, 4]):
            inputs = packed(lengths)
            labels = inputs["input_ids"].clone()
            labels[:, ::3] = -100
            model.zero_grad()
            forward(**inputs, labels=labels).loss.backward()
            grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    for eager, comp in zip(grads[:2], grads[2:]):
        torch.testing.assert_close(comp, eager, atol=1e-5, rtol=1e-4)
    assert graphs() == 1


def test_compiled_packed_attention_refuses_dropout():
    model = make_model(MgteModel, attention_probs_dropout_prob=0.1).train()
    fn = compiled(model)
    with pytest.raises(Exception, match="no dropout"):
        fn(**packed([4, 3]))


@pytest.mark.slow
def test_inductor_gives_the_eager_numbers():
    model = make_model(MgteForEmbedding, max_position_embeddings=512)
    fn = compiled(model, "inductor")
    with torch.no_grad():
        for lengths in SEVERAL[:3]:
            assert_same(fn(**packed(lengths)), model(**packed(lengths)))
            inputs = padded(lengths)
            assert_same(fn(**inputs), model(**inputs), inputs["attention_mask"])
    assert graphs() == 2  # one packed graph, one padded graph
