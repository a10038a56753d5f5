"""int8 inference on CPU: the encoder's linear layers as dynamic-quantized int8 GEMMs on oneDNN.

    model = quantize_model(MgteForEmbedding.from_pretrained(path)).to(torch.bfloat16)  # a quantized copy, bf16 around

What is quantized: the projections of every encoder layer (q/k/v or the packed qkv, o, up|gate, down): 92 % of the
encoder's FLOPs at 512 tokens per text, more for shorter texts. Weights become int8 once, symmetric per output
channel (scale = max |row| / 127); activations are quantized at each call, symmetric with one scale per tensor
(max |x| / 127); the int8 × int8 product accumulates in int32 and is rescaled to the input's dtype with the bias
added, in one oneDNN matmul (`torch.ops.onednn.qlinear_pointwise`: AMX-int8 or AVX512-VNNI where the CPU has them).
Everything else keeps the model's float dtype: embeddings, norms, attention, the pooler, and the heads (the one-unit
sparse classifier and the classification head run on a few rows and carry the scores).

The activation quantizer (one reduction and one rounding pass) is compiled with `torch.compile` on first use, where
inductor can build it: in eager mode the same arithmetic costs more than the int8 GEMM saves.

A quantized model is for inference only: its int8 layers refuse training and autograd and stay on the CPU, and the
model refuses `save_pretrained` / `push_to_hub` (save the float model; quantize after loading).
"""

from __future__ import annotations

import copy
import functools
import logging
from collections.abc import Callable

import torch
from torch import nn

from .modeling.modeling_mgte import MgteLayer


logger = logging.getLogger(__name__)

QUANTIZE_SCHEMES = ("int8",)
INT8_MAX = 127
ACTIVATION_DTYPES = (torch.float32, torch.bfloat16)
REFUSED_METHODS = ("save_pretrained", "push_to_hub")


def check_scheme(quantize: str | None) -> str | None:
    """`None` (no quantization) or a known scheme; `ValueError` naming the choices otherwise."""
    if quantize is not None and quantize not in QUANTIZE_SCHEMES:
        raise ValueError(f"quantize must be None or one of {', '.join(map(repr, QUANTIZE_SCHEMES))}; got "
                         f"{quantize!r}.")
    return quantize


def check_int8_dtype(dtype: torch.dtype) -> None:
    """The float dtype around int8 layers: float32 or bfloat16 (oneDNN's int8 matmul has no float16 output here)."""
    if dtype not in ACTIVATION_DTYPES:
        raise ValueError(f"quantize='int8' runs the rest of the model in bfloat16 or float32, not {dtype}; pass "
                         "dtype='bfloat16' (the default with int8) or dtype='float32'.")


def check_int8_device(device: str | torch.device) -> None:
    """int8 layers run on the CPU only; `ValueError` for any other device."""
    if torch.device(device).type != "cpu":
        raise ValueError(f"quantize='int8' runs on the CPU (oneDNN int8 kernels), not on {device}; pass device='cpu', "
                         "or drop quantize and use dtype='bfloat16' / 'float16' on an accelerator.")


# ============================================================================================== the kernels
def quantize_activation(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`(..., K)` float → the same shape in int8 and its fp32 scale `()`: symmetric, one scale for the tensor.

    scale = max |x| / 127, so the largest value maps to ±127; an all-zero tensor gets the smallest positive scale.
    """
    scale = (x.detach().abs().amax().float() / INT8_MAX).clamp(min=torch.finfo(torch.float32).tiny)
    return torch.round(x.float() / scale).to(torch.int8), scale


@functools.cache
def _compiled_quantizer() -> Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    return torch.compile(quantize_activation, dynamic=True)


_QUANTIZER = {"compiled": True}  # set to False after the first failed compilation of this process


def fast_quantize_activation(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`quantize_activation` fused into one compiled kernel (same bytes); eager where inductor cannot build it.

    Inside a caller's own `torch.compile` region the eager function is traced and fused with its neighbours.
    """
    if not _QUANTIZER["compiled"] or torch.compiler.is_compiling():
        return quantize_activation(x)
    try:
        return _compiled_quantizer()(x)
    except Exception as err:  # noqa: BLE001 - any compiler failure (no C++ toolchain, ...) falls back to eager
        _QUANTIZER["compiled"] = False
        logger.warning("torch.compile could not build the int8 activation quantizer (%s: %s); it runs in eager mode, "
                       "which makes int8 inference slower.", type(err).__name__, str(err).splitlines()[0][:200])
        return quantize_activation(x)


# An opaque op for torch.compile: inductor's own lowering of `onednn::qlinear_pointwise` expects weights frozen into
# the graph as constants and fails on a module's packed weight; behind this op it stays one extern call, and inductor
# fuses the activation quantizer into the ops before it.
@torch.library.custom_op("mgte_hf::int8_matmul", mutates_args=())
def int8_matmul(x_int8: torch.Tensor, x_scale: torch.Tensor, x_zero_point: torch.Tensor, packed_weight: torch.Tensor,
                weight_scale: torch.Tensor, weight_zero_points: torch.Tensor, bias: torch.Tensor | None,
                out_features: int, out_dtype: torch.dtype) -> torch.Tensor:
    """`(..., K)` int8 × packed `(N, K)` int8 → `(..., N)` in `out_dtype`: int32 sums rescaled by
    `x_scale · weight_scale`, plus `bias` (oneDNN's int8 matmul: AMX-int8 or VNNI where the CPU has them)."""
    return torch.ops.onednn.qlinear_pointwise.tensor(x_int8, x_scale, x_zero_point, packed_weight, weight_scale,
                                                     weight_zero_points, bias, 1.0, 0, out_dtype, "none", [], "")


@int8_matmul.register_fake
def _int8_matmul_shape(x_int8, x_scale, x_zero_point, packed_weight, weight_scale, weight_zero_points, bias,
                       out_features, out_dtype):
    return x_int8.new_empty((*x_int8.shape[:-1], out_features), dtype=out_dtype)


def quantize_weight(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`(N, K)` float weight → `(N, K)` int8 and its `(N,)` fp32 scales: symmetric, one scale per output row."""
    w = weight.detach().float()
    scale = (w.abs().amax(dim=1) / INT8_MAX).clamp(min=torch.finfo(torch.float32).tiny)  # (N,)
    return torch.round(w / scale[:, None]).clamp(-INT8_MAX, INT8_MAX).to(torch.int8), scale


class Int8Linear(nn.Module):
    """`y = x·Wᵀ + b` with W stored in int8 and x quantized to int8 at each call (inference on CPU only).

    The state (`weight_int8` `(N, K)`, `weight_scale` `(N,)` fp32, `bias` `(N,)` fp32) is kept as it is under
    `.to()` / `.half()` / `.cuda()`: the output takes the input's dtype (float32 or bfloat16), and an input on another
    device is refused.
    """

    def __init__(self, linear: nn.Linear):
        super().__init__()
        if not torch.backends.mkldnn.is_available():
            raise RuntimeError("int8 layers need PyTorch's oneDNN (mkldnn) CPU backend, which this build lacks.")
        if linear.weight.device.type != "cpu":
            raise ValueError(f"quantize a model on the CPU; this layer is on {linear.weight.device}.")
        self.in_features, self.out_features = linear.in_features, linear.out_features
        weight, scale = quantize_weight(linear.weight)
        self.register_buffer("weight_int8", weight)
        self.register_buffer("weight_scale", scale)
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().float().clone())
        self.register_buffer("_weight_zero_points", torch.zeros(self.out_features, dtype=torch.long), persistent=False)
        self.register_buffer("_input_zero_point", torch.zeros((), dtype=torch.long), persistent=False)
        self.packed_weight = self._pack()
        self.eval()  # inference only (see forward)

    def _pack(self) -> torch.Tensor:
        """The int8 weight in oneDNN's blocked layout for this CPU (an opaque tensor, outside the state dict)."""
        return torch.ops.onednn.qlinear_prepack(self.weight_int8, None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training or (torch.is_grad_enabled() and x.requires_grad):
            raise RuntimeError("int8 layers are for inference only (no training, no gradients): train the float "
                               "model, then quantize it for inference.")
        if x.device.type != "cpu":
            raise RuntimeError(f"int8 layers run on the CPU; the input is on {x.device}. Keep the quantized model on "
                               "the CPU.")
        if x.dtype not in ACTIVATION_DTYPES:
            raise TypeError(f"int8 layers take float32 or bfloat16 inputs, got {x.dtype}.")
        x_int8, x_scale = fast_quantize_activation(x)  # (..., K) int8, () fp32
        return self.int8_matmul(x_int8, x_scale, x.dtype)

    def int8_matmul(self, x_int8: torch.Tensor, x_scale: torch.Tensor, out_dtype: torch.dtype) -> torch.Tensor:
        """`(..., K)` int8 activations and their scale → `(..., N)` in `out_dtype` (`int8_matmul` with this layer's
        weight and bias)."""
        return int8_matmul(x_int8, x_scale, self._input_zero_point, self.packed_weight, self.weight_scale,
                           self._weight_zero_points, self.bias, self.out_features, out_dtype)

    def _apply(self, fn, recurse: bool = True):
        return self  # int8 weights stay on the CPU in their own dtypes (see the class docstring)

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "packed_weight"}  # opaque: copies pack their own

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        self.packed_weight = self._pack()

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
                "weights int8 per channel, activations int8 per tensor")


# ============================================================================================== whole models
def is_quantized(model: nn.Module) -> bool:
    """Whether `model` holds int8 layers."""
    return any(isinstance(m, Int8Linear) for m in model.modules())


def quantize_model(model: nn.Module, scheme: str = "int8", *, inplace: bool = False) -> nn.Module:
    """The model with the `nn.Linear` layers of its encoder layers (`MgteLayer`) replaced by `Int8Linear`.

    Args:
        model: an mGTE model on the CPU (any head; the heads, pooler and embeddings stay float).
        scheme: `"int8"`.
        inplace: change `model` itself; default: a quantized copy, `model` is left as it was.

    Returns:
        The quantized model (in eval mode) whose `save_pretrained` / `push_to_hub` raise. A model that already
        holds int8 layers is returned as it is.
    """
    check_scheme(scheme)
    if is_quantized(model):
        return model
    layers = [m for m in model.modules() if isinstance(m, MgteLayer)]
    if not layers:
        raise ValueError(f"{type(model).__name__} has no mGTE encoder layers to quantize.")
    first = next(model.parameters(), None)
    if first is not None:
        check_int8_device(first.device)
    if not inplace:
        model = copy.deepcopy(model)
        layers = [m for m in model.modules() if isinstance(m, MgteLayer)]
    for layer in layers:
        for parent in list(layer.modules()):
            for name, child in list(parent.named_children()):
                if type(child) is nn.Linear:
                    setattr(parent, name, Int8Linear(child))
    for method in REFUSED_METHODS:
        setattr(model, method, functools.partial(_refuse_saving, method))
    return model.eval()


def top_terms_overlap(reference: list[dict[int, float]], other: list[dict[int, float]], k: int = 10) -> list[float]:
    """Per text with sparse terms in `reference`: the share of its top-k terms (k = min(k, its terms), by weight)
    that are also among the top k of `other` (1.0: the same top terms). Texts without terms are skipped."""
    def top(weights: dict[int, float]) -> set[int]:
        return set(sorted(weights, key=weights.get, reverse=True)[:k])

    return [len(top(a) & top(b)) / min(k, len(a)) for a, b in zip(reference, other, strict=True) if a]


def _refuse_saving(method: str, *args, **kwargs):
    raise RuntimeError(f"{method} refuses a model with int8-quantized layers: quantization is a load-time step for "
                       "inference, not a checkpoint format. Save or push the float model, and load it with "
                       "quantize='int8' (MgteEmbedder/MgteReranker.from_pretrained, mgte-hf ... --quantize int8).")


__all__ = [
    "QUANTIZE_SCHEMES",
    "Int8Linear",
    "check_int8_device",
    "check_int8_dtype",
    "check_scheme",
    "fast_quantize_activation",
    "int8_matmul",
    "is_quantized",
    "quantize_activation",
    "quantize_model",
    "quantize_weight",
    "top_terms_overlap",
]
