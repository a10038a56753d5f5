import copy

import pytest
import torch
from torch import nn

import tiny
from mgte_hf import MgteForEmbedding, MgteForSequenceClassification
from mgte_hf.quantization import (
    Int8Linear,
    check_int8_device,
    check_scheme,
    fast_quantize_activation,
    is_quantized,
    quantize_activation,
    quantize_model,
    quantize_weight,
    top_terms_overlap,
)


def float_linear(seed: int = 0, in_features: int = 64, out_features: int = 96, bias: bool = True) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(in_features, out_features, bias=bias)


def dequantized_reference(linear: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """What the int8 layer computes, in float64: dequantized activations times dequantized weights, plus the bias."""
    x_int8, x_scale = quantize_activation(x)
    w_int8, w_scale = quantize_weight(linear.weight)
    out = (x_int8.double() * x_scale.double()) @ (w_int8.double() * w_scale.double()[:, None]).T
    return out + linear.bias.double() if linear.bias is not None else out


def test_weights_and_activations_are_symmetric_int8_with_per_channel_and_per_tensor_scales():
    weight = torch.tensor([[0.5, -1.0, 0.25], [0.0, 0.0, 0.0], [2.0, 1.0, -2.0]])
    w_int8, w_scale = quantize_weight(weight)
    assert w_int8.dtype == torch.int8 and w_scale.dtype == torch.float32
    assert w_int8[0].tolist() == [64, -127, 32] and w_int8[2].tolist() == [127, 64, -127]
    assert w_int8[1].tolist() == [0, 0, 0] and w_scale[1] > 0, "a zero row gets a tiny positive scale"
    torch.testing.assert_close(w_scale, torch.tensor([1 / 127, w_scale[1].item(), 2 / 127]))
    x = torch.tensor([[0.1, -0.4], [0.2, 0.0]], dtype=torch.bfloat16)
    x_int8, x_scale = quantize_activation(x)
    assert x_int8.abs().max() == 127 and x_scale.shape == () and x_scale.dtype == torch.float32
    assert quantize_activation(torch.zeros(3, 4))[0].abs().sum() == 0


def test_compiled_quantizer_gives_the_eager_bytes():
    x = torch.randn(37, 48).bfloat16()
    eager, compiled = quantize_activation(x), fast_quantize_activation(x)
    assert torch.equal(eager[0], compiled[0]) and torch.equal(eager[1], compiled[1])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("bias", [True, False])
def test_int8_linear_computes_the_dequantized_product(dtype, bias):
    linear = float_linear(bias=bias)
    layer = Int8Linear(linear).eval()
    x = torch.randn(2, 5, 64).to(dtype)  # any leading dims
    with torch.inference_mode():
        out = layer(x)
    assert out.shape == (2, 5, 96) and out.dtype == dtype
    reference = dequantized_reference(linear, x)
    # int32 accumulation is exact: what is left is the output's own rounding (fp32, or bf16's 8 bits)
    tolerance = 1e-5 if dtype == torch.float32 else 2 ** -7
    torch.testing.assert_close(out.double(), reference, atol=tolerance * reference.abs().max().item(), rtol=0)
    exact = linear(x.float()).double()
    assert (out.double() - exact).norm() / exact.norm() < 0.02, "int8 stays close to the float layer"


def test_int8_layer_refuses_training_gradients_other_devices_and_float16():
    layer = Int8Linear(float_linear())
    assert not layer.training, "an int8 layer starts in eval mode"
    x = torch.randn(3, 64)
    with pytest.raises(RuntimeError, match="inference only"):
        layer.train()(x)
    layer.eval()
    with pytest.raises(RuntimeError, match="inference only"):
        layer(x.requires_grad_())
    with pytest.raises(RuntimeError, match="run on the CPU"):
        layer(torch.empty(3, 64, device="meta"))
    with pytest.raises(TypeError, match="float32 or bfloat16"):
        layer(torch.randn(3, 64).half())


def test_int8_state_stays_put_under_to_and_survives_a_copy():
    layer = Int8Linear(float_linear()).eval()
    x = torch.randn(4, 64)
    before = layer(x)
    layer.to(torch.float64)
    assert layer.weight_scale.dtype == torch.float32 and layer.bias.dtype == torch.float32
    clone = copy.deepcopy(layer)  # the packed oneDNN weight is opaque: the copy packs its own
    assert torch.equal(clone(x), before) and torch.equal(layer(x), before)
    assert set(layer.state_dict()) == {"weight_int8", "weight_scale", "bias"}


@pytest.mark.parametrize("cls", [MgteForEmbedding, MgteForSequenceClassification])
def test_quantize_model_swaps_the_encoder_projections_only(cls):
    model = tiny.make_model(cls, num_labels=1) if cls is MgteForSequenceClassification else tiny.make_model(cls)
    original = {name: p.clone() for name, p in model.state_dict().items()}
    quantized = quantize_model(model)
    assert not is_quantized(model) and all(torch.equal(p, original[n]) for n, p in model.state_dict().items()), \
        "the caller's model is left as it was"
    names = {name for name, m in quantized.named_modules() if isinstance(m, Int8Linear)}
    per_layer = {"attention.qkv_proj", "attention.o_proj", "mlp.up_gate_proj", "mlp.down_proj"}
    assert names == {f"new.encoder.layer.{i}.{n}" for i in range(2) for n in per_layer}
    floats = {name for name, m in quantized.named_modules() if type(m) is nn.Linear}
    assert floats == ({"classifier"} if cls is MgteForEmbedding else {"new.pooler.dense", "classifier"}), \
        "heads and pooler stay float"
    assert quantize_model(quantized) is quantized, "quantizing twice changes nothing"
    assert quantize_model(model, inplace=True) is model and is_quantized(model)


def test_quantize_model_unpacked_projections():
    model = quantize_model(tiny.make_model(MgteForEmbedding, pack_qkv=False))
    attention = model.new.encoder.layer[0].attention
    assert all(isinstance(getattr(attention, n), Int8Linear) for n in ("q_proj", "k_proj", "v_proj", "o_proj"))


def test_a_quantized_model_is_never_saved_as_a_checkpoint(tmp_path):
    model = quantize_model(tiny.make_model(MgteForEmbedding))
    for method in ("save_pretrained", "push_to_hub"):
        with pytest.raises(RuntimeError, match=f"{method} refuses a model with int8-quantized layers.*float model"):
            getattr(model, method)(tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="quantize must be None or one of 'int8'; got 'int4'"):
        check_scheme("int4")
    assert check_scheme(None) is None
    with pytest.raises(ValueError, match="runs on the CPU.*device='cpu'"):
        check_int8_device("cuda:0")
    with pytest.raises(ValueError, match="no mGTE encoder layers"):
        quantize_model(nn.Sequential(nn.Linear(4, 4)))


def test_top_terms_overlap():
    reference = [{1: 0.9, 2: 0.5, 3: 0.1}, {}, {7: 1.0}]
    other = [{1: 0.8, 3: 0.6, 4: 0.2}, {5: 0.1}, {7: 0.5, 8: 0.9}]
    assert top_terms_overlap(reference, other, k=2) == [0.5, 1.0], "text 2 has no terms; text 3's top 1 is kept"
    assert top_terms_overlap(reference, other, k=3) == [2 / 3, 1.0]


def test_int8_layer_compiles_into_a_full_graph():
    layer = Int8Linear(float_linear()).eval()
    x = torch.randn(6, 64)

    def forward(x):  # an op before the layer, as in a model: inductor fuses it with the activation quantizer
        return layer(torch.relu(x))

    compiled = torch.compile(forward, fullgraph=True)
    with torch.inference_mode():
        torch.testing.assert_close(compiled(x), forward(x), atol=1e-5, rtol=1e-5)
