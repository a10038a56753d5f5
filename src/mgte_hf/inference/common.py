"""What `MgteEmbedder` and `MgteReranker` share: loading, input checks, the max-length policy and packed batches.

Max-length policy (`truncation`): `"warn"` (default) cuts every text (or pair) longer than `max_length` tokens with
the tokenizer's own truncation (the final `</s>` is kept; pairs cut the longer side first) and logs ONE warning
that counts them; `"error"` refuses the whole call with a `ValueError` that names the first offender.
"""

from __future__ import annotations

import json
import logging
import numbers
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
from tqdm.auto import tqdm
from transformers import AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from ..batching import token_budget_batches
from ..quantization import check_int8_device, check_int8_dtype, check_scheme, is_quantized, quantize_model
from ..tokenizer import kept_tokenizer_state


logger = logging.getLogger(__name__)

DEFAULT_MAX_LENGTH = 8192
DEFAULT_BATCH_TOKENS = 16384
PROGRESS_BAR_MIN_TEXTS = 256  # `show_progress_bar=None` shows a bar from this many inputs on
TRUNCATION_POLICIES = ("warn", "error")
CONVERT_TO = ("numpy", "torch")


WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "sentencepiece.bpe.model", "spiece.model", "vocab.txt")
_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")  # a Hub repository id: owner/name


def resolve_device(device: str | torch.device | None, model: PreTrainedModel | None = None) -> torch.device:
    """`None`: where a given model already is, else CUDA when available, else CPU. A device that does not exist
    here (CUDA without a GPU, a GPU index beyond the count, a misspelt name) is a `ValueError`."""
    if device is None:
        return model.device if model is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device={device!r} is not a torch device (e.g. 'cpu', 'cuda', 'cuda:1'): {err}") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            why = "this torch is built without CUDA" if torch.version.cuda is None else "no GPU is visible"
            raise ValueError(f"device={device!r}, but CUDA is not available here ({why}); use device='cpu'.")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(f"device={device!r}, but only {torch.cuda.device_count()} GPU(s) are visible.")
    elif resolved.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device={device!r}, but MPS is not available here; use device='cpu'.")
    return resolved


def local_folder(path: str | os.PathLike, what: str) -> Path | None:
    """The folder `path`; None for a Hub repository id (`owner/name`) that is not a local path. A missing folder,
    or a file, is a `FileNotFoundError` that says so."""
    folder = Path(os.fspath(path)).expanduser()
    if folder.is_dir():
        return folder
    if folder.exists():
        raise FileNotFoundError(f"{what} {folder} is a file, not a folder.")
    if _REPO_ID.fullmatch(os.fspath(path)):
        return None
    raise FileNotFoundError(f"{what} {folder} does not exist.")


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
        device = resolve_device(device)  # before loading: a device that does not exist fails at once
        folder = local_folder(path_or_model, "model folder")
        tokenizer = path_or_model if tokenizer is None else tokenizer
        _check_tokenizer_source(tokenizer)
        model = _load_model(model_cls, path_or_model, folder, dtype)
    else:
        raise TypeError(f"path_or_model must be a folder path or a {model_cls.__name__}, got "
                        f"{type(path_or_model).__name__}.")
    if not isinstance(tokenizer, PreTrainedTokenizerBase):
        _check_tokenizer_source(tokenizer)
        tokenizer = AutoTokenizer.from_pretrained(os.fspath(tokenizer))
    return model.to(resolve_device(device, model)).eval(), tokenizer


def _load_model(model_cls: type[PreTrainedModel], path: str | os.PathLike, folder: Path | None,
                dtype: str | torch.dtype | None) -> PreTrainedModel:
    """`model_cls.from_pretrained`, refusing a checkpoint of another head (by its config's architectures, and by
    weights missing or left over)."""
    saved = _saved_architectures(folder) if folder is not None else None
    wanted = _head_kind(model_cls.__name__)
    if saved and all(_head_kind(name) != wanted for name in saved):
        raise ValueError(f"{path} holds a {' + '.join(saved)} checkpoint, not an {model_cls.__name__}: load an "
                         "embedding model with MgteEmbedder and a reranker with MgteReranker.")
    if folder is not None and not any((folder / name).is_file() for name in WEIGHT_FILES):
        raise FileNotFoundError(f"{folder} holds no model weights ({' or '.join(WEIGHT_FILES)}); only safetensors are "
                                "read (pickle files can run code when loaded): save the model with save_pretrained.")
    try:
        model, info = model_cls.from_pretrained(os.fspath(path), dtype=_as_dtype(dtype) if dtype else torch.float32,
                                                output_loading_info=True, use_safetensors=True)
    except RuntimeError as err:
        if "mismatch" not in str(err):
            raise
        raise ValueError(f"{path}: config.json and the weights disagree on tensor sizes (see the report above); "
                         "the checkpoint is damaged or its config was edited.") from None
    missing, unexpected = sorted(info.get("missing_keys") or ()), sorted(info.get("unexpected_keys") or ())
    if missing or unexpected:
        raise ValueError(f"{path} is not an {model_cls.__name__} checkpoint"
                         + (f" (its config.json says {saved})" if saved else "") + ": "
                         + "; ".join(f"{len(keys)} weights {kind} (e.g. {keys[0]!r})" for kind, keys in
                                     (("missing", missing), ("left unused", unexpected)) if keys)
                         + ". Load an embedding model with MgteEmbedder and a reranker with MgteReranker.")
    return model


def _head_kind(architecture: str) -> str:
    """"reranker", "mlm" or "embedding" (a backbone or a token classifier: what the TRM's layouts list)."""
    if architecture.endswith("ForSequenceClassification"):
        return "reranker"
    return "mlm" if architecture.endswith("ForMaskedLM") else "embedding"


def _saved_architectures(folder: Path) -> list[str] | None:
    try:
        return json.loads((folder / "config.json").read_text(encoding="utf-8")).get("architectures")
    except (OSError, ValueError, AttributeError):
        return None


def _check_tokenizer_source(tokenizer: Any) -> None:
    """A tokenizer folder must hold tokenizer files (else transformers looks elsewhere, even for remote code)."""
    if isinstance(tokenizer, PreTrainedTokenizerBase):
        return
    if not isinstance(tokenizer, (str, os.PathLike)):
        raise TypeError(f"tokenizer must be a tokenizer or its folder, got {type(tokenizer).__name__}.")
    folder = local_folder(tokenizer, "tokenizer folder")
    if folder is not None and not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise FileNotFoundError(f"{folder} holds no tokenizer ({' or '.join(TOKENIZER_FILES[:2])}); save the "
                                "model's tokenizer there (tokenizer.save_pretrained), or pass tokenizer= (a tokenizer "
                                "or its folder).")


def _as_dtype(dtype: str | torch.dtype) -> torch.dtype:
    value = dtype if isinstance(dtype, torch.dtype) else getattr(torch, str(dtype), None)
    if not isinstance(value, torch.dtype) or not value.is_floating_point:
        raise ValueError(f"dtype={dtype!r} is not a floating-point torch dtype (e.g. 'float32', 'bfloat16', "
                         "'float16').")
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
        _check_encodable(text, f"{name}[{i}]")
    return out


def _check_encodable(text: str, where: str) -> None:
    """Refuse a lone surrogate (a str that is not text and that no tokenizer can encode)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise ValueError(f"{where} holds a lone surrogate (U+{ord(text[err.start]):04X} at character {err.start}), "
                         "which is not text; repair or drop it (it is often a broken emoji escape).") from None


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
            _check_encodable(text, f"pairs[{i}][{j}]")
        queries.append(pair[0])
        documents.append(pair[1])
    return queries, documents


def check_positive_int(value: int, name: str) -> int:
    """`value` as an `int` (numpy integers too); a bool, a float or a value below 1 is a `ValueError`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    return int(value)


def check_dimension(model: PreTrainedModel, dimension: int | None) -> int:
    """A dense size the model allows (numpy integers accepted); `None` is the model's full size."""
    return model.check_dimension(None if dimension is None else check_positive_int(dimension, "dimension"))


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
        compile: run the model through `torch.compile(fullgraph=True, dynamic=True)` (same numbers; faster
            inference where compiled kernels fuse the element-wise work, e.g. bf16 on CPU). The first batch compiles
            (tens of seconds); one graph then serves every batch of several inputs, another single inputs.
    """

    model_class: type[PreTrainedModel] = PreTrainedModel

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, *,
                 max_length: int = DEFAULT_MAX_LENGTH, batch_tokens: int = DEFAULT_BATCH_TOKENS,
                 truncation: str = "warn", quantize: str | None = None, compile: bool = False):
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
        self.compiled = bool(compile)
        self._forward = torch.compile(self.model, fullgraph=True, dynamic=True) if self.compiled else self.model

    def forward(self, batch: PackedBatch, **kwargs):
        """The model on one packed batch (compiled when asked: then the lengths go in as a tensor, not in the graph)."""
        return self._forward(**batch.model_inputs(lengths_as_tensor=self.compiled), **kwargs)

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

    def warn_beyond_context(self, tokenized: Tokenized) -> None:
        """Warn once when inputs are longer than the trained context of a model with plain RoPE (no scaling): the
        positions beyond it were never trained, so the vectors there are unreliable."""
        config = self.model.config
        limit = config.max_position_embeddings
        longest = max((len(ids) for ids in tokenized.input_ids), default=0)
        if (longest > limit and getattr(config, "rope_scaling", None) is None
                and not getattr(self, "_warned_context", False)):
            logger.warning("Inputs of up to %d tokens exceed the model's trained context (max_position_embeddings=%d) "
                           "and it has no RoPE scaling: positions beyond %d were never trained. Lower max_length "
                           "(now %d) to %d.", longest, limit, limit, self.max_length, limit)
            self._warned_context = True


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

    def model_inputs(self, lengths_as_tensor: bool = False) -> dict:
        seqlens = torch.tensor(self.seqlens, device=self.input_ids.device) if lengths_as_tensor else self.seqlens
        inputs = {"input_ids": self.input_ids, "seqlens": seqlens}
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
    "check_dimension",
    "check_pairs",
    "check_positive_int",
    "check_texts",
    "load_model_and_tokenizer",
    "local_folder",
    "packed_batches",
    "resolve_device",
    "show_progress",
    "tokenize",
]
