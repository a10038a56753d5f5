"""What `MgteEmbedder` and `MgteReranker` share: loading, input checks, the max-length policy and packed batches.

Max-length policy (`truncation`): `"warn"` (default) cuts every text (or pair) longer than `max_length` tokens with
the tokenizer's own truncation (the final `</s>` is kept; pairs cut the longer side first) and logs ONE warning
that counts them; `"error"` refuses the whole call with a `ValueError` that names the first offender.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch
from tqdm.auto import tqdm
from transformers import AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from ..batching import token_budget_batches
from ..quantization import ACTIVATION_DTYPES, check_int8_device, check_scheme, is_quantized, quantize_model
from ..tokenizer import kept_tokenizer_state


logger = logging.getLogger(__name__)

DEFAULT_MAX_LENGTH = 8192
DEFAULT_BATCH_TOKENS = 16384
PROGRESS_BAR_MIN_TEXTS = 256  # `show_progress_bar=None` shows a bar from this many inputs on
TRUNCATION_POLICIES = ("warn", "error")
CONVERT_TO = ("numpy", "torch")


def resolve_device(device: str | torch.device | None, model: PreTrainedModel | None = None) -> torch.device:
    """`None`: where a given model already is, else CUDA when available, else CPU."""
    if device is not None:
        return torch.device(device)
    if model is not None:
        return model.device
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_model_and_tokenizer(
    model_cls: type[PreTrainedModel],
    path_or_model: str | os.PathLike | PreTrainedModel,
    tokenizer: str | os.PathLike | PreTrainedTokenizerBase | None,
    device: str | torch.device | None,
    dtype: str | torch.dtype | None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load (or adopt) a model of `model_cls` and its tokenizer, on `device` in `dtype`, in eval mode.

    A path loads the model and, unless `tokenizer` is given, the tokenizer from the same folder (our layout or the
    released "new" one). `dtype=None` means float32 for a path (exact; the released weights may be fp16) and the
    model's own dtype for a model object.
    """
    if isinstance(path_or_model, PreTrainedModel):
        if not isinstance(path_or_model, model_cls):
            raise TypeError(f"Expected a {model_cls.__name__}, got a {type(path_or_model).__name__}.")
        if tokenizer is None:
            raise ValueError("Pass tokenizer= (an object or a folder) together with a model object.")
        model = path_or_model
        if dtype is not None:
            model = model.to(_as_dtype(dtype))
    elif isinstance(path_or_model, (str, os.PathLike)):
        model = model_cls.from_pretrained(os.fspath(path_or_model), dtype=dtype or torch.float32)
        tokenizer = path_or_model if tokenizer is None else tokenizer
    else:
        raise TypeError(f"path_or_model must be a folder path or a {model_cls.__name__}, got "
                        f"{type(path_or_model).__name__}.")
    if not isinstance(tokenizer, PreTrainedTokenizerBase):
        tokenizer = AutoTokenizer.from_pretrained(os.fspath(tokenizer))
    return model.to(resolve_device(device, model)).eval(), tokenizer


def check_int8_dtype(dtype: torch.dtype) -> None:
    """The float dtype around int8 layers: float32 or bfloat16 (oneDNN's int8 matmul has no float16 output here)."""
    if dtype not in ACTIVATION_DTYPES:
        raise ValueError(f"quantize='int8' runs the rest of the model in bfloat16 or float32, not {dtype}; pass "
                         "dtype='bfloat16' (the default with int8) or dtype='float32'.")


def _as_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    value = getattr(torch, str(dtype), None)
    if not isinstance(value, torch.dtype):
        raise ValueError(f"dtype={dtype!r} is not a torch dtype (e.g. 'float32', 'bfloat16', 'float16').")
    return value


# ============================================================================================== input checks
def check_texts(texts: str | Iterable[str], name: str = "texts") -> list[str]:
    """A list of strings from one string or an iterable of strings; `TypeError` for anything else.

    Never changes the caller's object (a new list is returned).
    """
    if isinstance(texts, str):
        return [texts]
    if texts is None or isinstance(texts, (bytes, Mapping)) or not isinstance(texts, Iterable):
        raise TypeError(f"{name} must be a string or a list of strings, got {type(texts).__name__}.")
    out = list(texts)
    for i, text in enumerate(out):
        if not isinstance(text, str):
            raise TypeError(f"{name}[{i}] is a {type(text).__name__}, not a str; pass text only (convert or drop "
                            "it first).")
    return out


def check_pairs(pairs: Iterable[Sequence[str]]) -> tuple[list[str], list[str]]:
    """`[(query, document), ...]` → (queries, documents); `TypeError` for anything that is not a list of pairs."""
    if pairs is None or isinstance(pairs, (str, bytes, Mapping)) or not isinstance(pairs, Iterable):
        raise TypeError(f"pairs must be a list of (query, document) pairs, got {type(pairs).__name__}.")
    queries, documents = [], []
    for i, pair in enumerate(pairs):
        if isinstance(pair, (str, bytes)) or not isinstance(pair, Sequence):
            raise TypeError(f"pairs[{i}] is a {type(pair).__name__}, not a (query, document) pair; pass a list of "
                            "pairs, e.g. [(query, document)].")
        if len(pair) != 2:
            raise TypeError(f"pairs[{i}] has {len(pair)} items, not 2: each pair is (query, document).")
        for j, text in enumerate(pair):
            if not isinstance(text, str):
                raise TypeError(f"pairs[{i}][{j}] is a {type(text).__name__}, not a str.")
        queries.append(pair[0])
        documents.append(pair[1])
    return queries, documents


def check_positive_int(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    return value


def check_choice(value: str, choices: Sequence[str], name: str) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}.")
    return value


def show_progress(show_progress_bar: bool | None, count: int) -> bool:
    """`None` → a bar only for long inputs (at least `PROGRESS_BAR_MIN_TEXTS`)."""
    return count >= PROGRESS_BAR_MIN_TEXTS if show_progress_bar is None else bool(show_progress_bar)


M = TypeVar("M", bound="InferenceModel")


class InferenceModel:
    """What `MgteEmbedder` and `MgteReranker` share: the model in eval mode, its tokenizer and the default settings.

    Args:
        model: the model (put in eval mode; it stays on its device); an instance of the subclass's `model_class`.
        tokenizer: its tokenizer.
        max_length: default token limit per input (special tokens included).
        batch_tokens: default padded-token budget per forward (`batching.token_budget_batches`).
        truncation: `"warn"` (truncate over-long inputs, one warning with the count) or `"error"` (refuse them).
        quantize: `"int8"`: run a quantized copy of `model` (`mgte_hf.quantization.quantize_model`; `model` is left
            as it is), CPU only, in the model's dtype (float32 or bfloat16) outside the int8 layers. A model that
            already holds int8 layers is used as it is.
    """

    model_class: type[PreTrainedModel] = PreTrainedModel

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, *,
                 max_length: int = DEFAULT_MAX_LENGTH, batch_tokens: int = DEFAULT_BATCH_TOKENS,
                 truncation: str = "warn", quantize: str | None = None):
        if not isinstance(model, self.model_class):
            raise TypeError(f"model must be an {self.model_class.__name__}, got {type(model).__name__}.")
        if check_scheme(quantize) is not None:
            check_int8_dtype(model.dtype)
            model = quantize_model(model.eval(), quantize)
        self.model = model.eval()
        self.quantize = "int8" if is_quantized(self.model) else None
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.batch_tokens = check_positive_int(batch_tokens, "batch_tokens")
        self.truncation = check_choice(truncation, TRUNCATION_POLICIES, "truncation")

    @classmethod
    def from_pretrained(
        cls: type[M],
        path_or_model: str | os.PathLike | PreTrainedModel,
        tokenizer: str | os.PathLike | PreTrainedTokenizerBase | None = None,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        quantize: str | None = None,
        **kwargs,
    ) -> M:
        """Load from a folder holding model and tokenizer (ours or the released "new" layout), or wrap a model.

        Args:
            path_or_model: a checkpoint folder or a model of `model_class` (then `tokenizer` is required).
            tokenizer: a tokenizer or its folder; default: the model folder's.
            device: default: a model object's own device; for a folder CUDA when available, else CPU.
            dtype: default: float32 for a folder, the model's own for a model object. A model object is moved and
                cast in place (`nn.Module.to`) and put in eval mode.
            quantize: `"int8"`: the encoder's linear layers run as dynamic-quantized int8 GEMMs on the CPU
                (`mgte_hf.quantization`), quantized from the weights as loaded (float32 for a folder); the rest runs in
                `dtype`, default bfloat16 (float32 also works). The device must be the CPU (the default then). A model
                object is left unquantized and uncast: the instance holds a quantized copy.
            **kwargs: the class's settings (`max_length`, `batch_tokens`, `truncation`, ...).
        """
        if check_scheme(quantize) is None:
            model, tokenizer = load_model_and_tokenizer(cls.model_class, path_or_model, tokenizer, device, dtype)
            return cls(model, tokenizer, **kwargs)
        compute_dtype = torch.bfloat16 if dtype is None else _as_dtype(dtype)
        check_int8_dtype(compute_dtype)
        if device is None:
            device = path_or_model.device if isinstance(path_or_model, PreTrainedModel) else "cpu"
        check_int8_device(device)
        model, tokenizer = load_model_and_tokenizer(cls.model_class, path_or_model, tokenizer, device, None)
        model = quantize_model(model, quantize, inplace=not isinstance(path_or_model, PreTrainedModel))
        return cls(model.to(compute_dtype), tokenizer, **kwargs)

    @property
    def device(self) -> torch.device:
        return self.model.device


# ============================================================================================== tokenization
@dataclass
class Tokenized:
    """Token ids of each input, unpadded; `token_type_ids` only for models with segment embeddings."""

    input_ids: list[list[int]]
    token_type_ids: list[list[int]] | None = None


def tokenize(
    tokenizer: PreTrainedTokenizerBase,
    texts: list[str],
    pair_texts: list[str] | None = None,
    *,
    max_length: int,
    truncation: str,
    with_token_types: bool = False,
) -> Tokenized:
    """Tokenize single texts (or pairs, XLM-R `<s> a </s></s> b </s>`) and apply the max-length policy."""
    check_choice(truncation, TRUNCATION_POLICIES, "truncation")
    is_pair = pair_texts is not None
    min_length = tokenizer.num_special_tokens_to_add(pair=is_pair) + (2 if is_pair else 1)
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < min_length:
        raise ValueError(f"max_length must be an integer >= {min_length} (special tokens plus text), got "
                         f"{max_length!r}.")
    if not texts:
        return Tokenized([], [] if with_token_types else None)
    kwargs = {"add_special_tokens": True, "padding": False, "return_attention_mask": False,
              "return_token_type_ids": with_token_types, "verbose": False}
    with kept_tokenizer_state(tokenizer):
        enc = tokenizer(texts, pair_texts, truncation=False, **kwargs)
    too_long = [i for i, ids in enumerate(enc["input_ids"]) if len(ids) > max_length]
    what = "pairs" if is_pair else "texts"
    if too_long and truncation == "error":
        first = too_long[0]
        raise ValueError(f"{len(too_long)} of {len(texts)} {what} exceed max_length={max_length} tokens (the first, "
                         f"index {first}, has {len(enc['input_ids'][first])}); shorten them, raise max_length, or "
                         "pass truncation='warn' to truncate.")
    if too_long:
        with kept_tokenizer_state(tokenizer):
            cut = tokenizer([texts[i] for i in too_long], None if not is_pair else [pair_texts[i] for i in too_long],
                            truncation=True, max_length=max_length, **kwargs)
        for row, i in enumerate(too_long):
            enc["input_ids"][i] = cut["input_ids"][row]
            if with_token_types:
                enc["token_type_ids"][i] = cut["token_type_ids"][row]
        logger.warning("Truncated %d of %d %s to max_length=%d tokens.", len(too_long), len(texts), what, max_length)
    return Tokenized(enc["input_ids"], enc["token_type_ids"] if with_token_types else None)


# ============================================================================================== packed batches
@dataclass
class PackedBatch:
    """One token-budget batch, packed: `input_ids` `(T,)` holds the sequences one after another."""

    indices: list[int]
    input_ids: torch.Tensor
    seqlens: list[int]
    token_type_ids: torch.Tensor | None = None

    def model_inputs(self) -> dict:
        inputs = {"input_ids": self.input_ids, "seqlens": self.seqlens}
        if self.token_type_ids is not None:
            inputs["token_type_ids"] = self.token_type_ids
        return inputs


def packed_batches(
    tokenized: Tokenized,
    batch_tokens: int,
    device: torch.device,
    *,
    show_progress_bar: bool | None = None,
    desc: str = "Encoding",
) -> Iterator[PackedBatch]:
    """Length-sorted token-budget batches (`batching.token_budget_batches`), longest first, packed on `device`.

    The batches depend only on the lengths and the budget, so the same inputs give the same batches (and, on the same
    device, the same bytes). Put results back with `batching.restore_order([b.indices ...], ...)`.
    """
    check_positive_int(batch_tokens, "batch_tokens")
    lengths = [len(ids) for ids in tokenized.input_ids]
    batches = token_budget_batches(lengths, batch_tokens)
    bar = tqdm(total=len(lengths), desc=desc, unit="text", disable=not show_progress(show_progress_bar, len(lengths)))
    with bar:
        for batch in batches:
            ids = torch.tensor([t for i in batch for t in tokenized.input_ids[i]], dtype=torch.long, device=device)
            types = None
            if tokenized.token_type_ids is not None:
                types = torch.tensor([t for i in batch for t in tokenized.token_type_ids[i]], dtype=torch.long,
                                     device=device)
            yield PackedBatch(batch, ids, [lengths[i] for i in batch], types)
            bar.update(len(batch))


__all__ = [
    "CONVERT_TO",
    "DEFAULT_BATCH_TOKENS",
    "DEFAULT_MAX_LENGTH",
    "PROGRESS_BAR_MIN_TEXTS",
    "TRUNCATION_POLICIES",
    "InferenceModel",
    "PackedBatch",
    "Tokenized",
    "check_choice",
    "check_int8_dtype",
    "check_pairs",
    "check_positive_int",
    "check_texts",
    "load_model_and_tokenizer",
    "packed_batches",
    "resolve_device",
    "show_progress",
    "tokenize",
]
