"""Convert mGTE checkpoints between their three layouts.

* ``"mgte"`` (ours): what ``save_pretrained`` of the mgte_hf classes writes — model_type ``"mgte"``, safetensors and
  the modeling files inside the folder (self-contained remote code).
* ``"new"``: the released layout of gte-multilingual-base / gte-*-en-v1.5 — model_type ``"new"``, ``auto_map`` into
  ``Alibaba-NLP/new-impl``. This is what text-embeddings-inference and vLLM serve.
* ``"gte"``: transformers-native — ``transformers.GteModel`` / ``GteForMaskedLM`` / ``GteForSequenceClassification``
  / ``GteForTokenClassification`` load it with no remote code.

Ours and "new" share their state-dict keys (``new.*`` for heads, no prefix for a bare backbone), so between them only
the config changes and tensors are copied untouched. "gte" renames modules, splits the packed q/k/v and up/gate
projections, and expresses the released static NTK RoPE (factor f, base b, head dim d) as transformers' ``linear``
scaling with factor f^(2/d) at ``rope_theta`` = b·f — the same inverse frequencies. Tensors keep their dtype.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .modeling import MgteConfig, convert_config_dict, copy_modeling_files
from .modeling.configuration_mgte import NEW_CONFIG_DEFAULTS
from .outputs import check_output, staged_folder


logger = logging.getLogger(__name__)

FORMATS = ("mgte", "new", "gte")
WEIGHTS_NAME = "model.safetensors"
WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
CONFIG_NAME = "config.json"
TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
    "sentencepiece.bpe.model", "spiece.model", "vocab.txt", "vocab.json", "merges.txt",
)

# Our class → (architectures of the released "new" layout, of the transformers-native "gte" layout). The TRM is
# listed as the released gte-multilingual-base lists it: the backbone plus its one-label token classifier.
ARCHITECTURES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "MgteModel": (("NewModel",), ("GteModel",)),
    "MgteForMaskedLM": (("NewForMaskedLM",), ("GteForMaskedLM",)),
    "MgteForSequenceClassification": (("NewForSequenceClassification",), ("GteForSequenceClassification",)),
    "MgteForTokenClassification": (("NewForTokenClassification",), ("GteForTokenClassification",)),
    "MgteForEmbedding": (("NewModel", "NewForTokenClassification"), ("GteModel", "GteForTokenClassification")),
}
_CLASSIFIER_HEADS = ("MgteForSequenceClassification", "MgteForTokenClassification", "MgteForEmbedding")

NEW_IMPL_AUTO_MAP = {
    "AutoConfig": "Alibaba-NLP/new-impl--configuration.NewConfig",
    "AutoModel": "Alibaba-NLP/new-impl--modeling.NewModel",
    "AutoModelForMaskedLM": "Alibaba-NLP/new-impl--modeling.NewForMaskedLM",
    "AutoModelForMultipleChoice": "Alibaba-NLP/new-impl--modeling.NewForMultipleChoice",
    "AutoModelForQuestionAnswering": "Alibaba-NLP/new-impl--modeling.NewForQuestionAnswering",
    "AutoModelForSequenceClassification": "Alibaba-NLP/new-impl--modeling.NewForSequenceClassification",
    "AutoModelForTokenClassification": "Alibaba-NLP/new-impl--modeling.NewForTokenClassification",
}
# Keys of a released config besides NEW_CONFIG_DEFAULTS that our config keeps (flags the released code ignores).
_NEW_EXTRA_KEYS = ("logn_attention_scale", "logn_attention_clip1")

# (ours, transformers-native) module paths below the backbone prefix; {i} is a layer index. The packed qkv_proj and
# up_gate_proj are split into the q/k/v_proj and up_proj/gate_proj named here before renaming (see _split_packed).
_GTE_RENAMES = (
    ("embeddings.", "embeddings."),
    ("encoder.layer.{i}.attention.q_proj.", "layers.{i}.self_attn.q_proj."),
    ("encoder.layer.{i}.attention.k_proj.", "layers.{i}.self_attn.k_proj."),
    ("encoder.layer.{i}.attention.v_proj.", "layers.{i}.self_attn.v_proj."),
    ("encoder.layer.{i}.attention.o_proj.", "layers.{i}.self_attn.o_proj."),
    ("encoder.layer.{i}.attn_ln.", "layers.{i}.post_attention_layernorm."),
    ("encoder.layer.{i}.mlp.up_proj.", "layers.{i}.mlp.up_proj."),
    ("encoder.layer.{i}.mlp.gate_proj.", "layers.{i}.mlp.gate_proj."),
    ("encoder.layer.{i}.mlp.down_proj.", "layers.{i}.mlp.down_proj."),
    ("encoder.layer.{i}.mlp_ln.", "layers.{i}.post_mlp_layernorm."),
    ("pooler.dense.", "pooler.dense."),
    ("lm_head.dense.", "lm_head.dense."),
    ("lm_head.norm.", "lm_head.layer_norm."),
    ("lm_head.decoder.", "lm_head.decoder."),
    ("classifier.", "classifier."),
)
_PREFIX = {"mgte": "new.", "gte": "gte."}  # backbone prefix of head checkpoints in each key layout


@dataclass
class MgteCheckpoint:
    """A checkpoint in memory, in our terms.

    Attributes:
        config: the model configuration.
        architecture: our class name (a key of `ARCHITECTURES`).
        state_dict: tensors under our (= the released) keys, in their stored dtype.
    """

    config: MgteConfig
    architecture: str
    state_dict: dict[str, torch.Tensor]

    @property
    def dtype(self) -> torch.dtype:
        """Storage dtype of the weights (that of the word embeddings)."""
        return next(t.dtype for k, t in self.state_dict.items() if k.endswith("word_embeddings.weight"))


# ============================================================================================== reading
def detect_format(folder: str | os.PathLike) -> str:
    """The layout of a checkpoint folder: `"mgte"`, `"new"` or `"gte"` (from config.json's model_type)."""
    model_type = _read_json(Path(folder) / CONFIG_NAME).get("model_type")
    if model_type not in FORMATS:
        raise ValueError(f"{folder}: config.json has model_type {model_type!r}; expected one of {FORMATS}.")
    return model_type


def read_checkpoint(folder: str | os.PathLike) -> MgteCheckpoint:
    """Read a checkpoint of any of the three layouts into our terms (config, class name, our state-dict keys)."""
    folder = Path(folder)
    fmt = detect_format(folder)
    raw = _read_json(folder / CONFIG_NAME)
    config = MgteConfig.from_dict(convert_config_dict(raw))
    state_dict = load_state_dict(folder)
    if fmt == "gte":
        state_dict = from_gte_state_dict(state_dict, config)
    architecture = _our_architecture(fmt, raw.get("architectures"), state_dict)
    config.architectures = [architecture]
    return MgteCheckpoint(config, architecture, state_dict)


def load_state_dict(folder: str | os.PathLike) -> dict[str, torch.Tensor]:
    """All tensors of `model.safetensors` (or of the shards its index lists), in their stored dtype."""
    folder = Path(folder)
    index = folder / WEIGHTS_INDEX_NAME
    if index.exists():
        files = sorted(set(_read_json(index)["weight_map"].values()))
    elif (folder / WEIGHTS_NAME).exists():
        files = [WEIGHTS_NAME]
    else:
        raise FileNotFoundError(
            f"No {WEIGHTS_NAME} in {folder}. Only safetensors checkpoints are read (pickle .bin files can run code "
            "when loaded): re-save the model with safe_serialization=True in an environment you trust.")
    state_dict: dict[str, torch.Tensor] = {}
    for name in files:
        path = folder / name
        try:
            with safe_open(str(path), framework="pt") as f:
                for key in f.keys():  # noqa: SIM118 - safe_open handles are not iterable
                    state_dict[key] = f.get_tensor(key)
        except (SafetensorError, OSError) as err:
            raise ValueError(f"{path} is not a readable safetensors file ({err}).") from err
    return state_dict


def _our_architecture(fmt: str, architectures: list[str] | None, state_dict: Mapping[str, torch.Tensor]) -> str:
    """Our class name for a checkpoint's `architectures` (inferred from the weights when the config has none)."""
    if not architectures:
        return _infer_architecture(state_dict)
    if fmt == "mgte":
        if architectures[0] not in ARCHITECTURES:
            raise ValueError(f"Unknown mgte architecture {architectures[0]!r}; expected one of {list(ARCHITECTURES)}.")
        return architectures[0]
    column = 0 if fmt == "new" else 1
    for ours, names in ARCHITECTURES.items():
        if tuple(architectures) == names[column]:
            return ours
    known = [list(names[column]) for names in ARCHITECTURES.values()]
    raise ValueError(f"No mGTE class for the {fmt!r} architectures {architectures}; supported: {known}.")


def _infer_architecture(state_dict: Mapping[str, torch.Tensor]) -> str:
    if any(k.startswith("lm_head.") for k in state_dict):
        return "MgteForMaskedLM"
    if "classifier.weight" not in state_dict:
        return "MgteModel"
    if any(".pooler." in k or k.startswith("pooler.") for k in state_dict):
        return "MgteForSequenceClassification"
    one_label = state_dict["classifier.weight"].shape[0] == 1
    return "MgteForEmbedding" if one_label else "MgteForTokenClassification"


# ============================================================================================== transformers "gte" keys
def to_gte_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our (= released) keys → the module keys of transformers' Gte classes (packed projections split)."""
    out = {}
    for key, tensor in _split_packed(state_dict).items():
        prefix, rest = _strip_prefix(key, _PREFIX["mgte"])
        out[(_PREFIX["gte"] if prefix else "") + _rename(rest, to_gte=True)] = tensor
    return out


def from_gte_state_dict(state_dict: Mapping[str, torch.Tensor], config: MgteConfig) -> dict[str, torch.Tensor]:
    """Keys of a transformers "gte" checkpoint → ours.

    Reads both the module keys of the Gte classes (what `to_gte_state_dict` writes) and the layout transformers'
    own `save_pretrained` writes for Gte models (released keys under the `gte.` prefix).
    """
    renamed = {}
    native = not any(".encoder.layer." in f".{k}" for k in state_dict)
    for key, tensor in state_dict.items():
        prefix, rest = _strip_prefix(key, _PREFIX["gte"])
        renamed[(_PREFIX["mgte"] if prefix else "") + (_rename(rest, to_gte=False) if native else rest)] = tensor
    return _merge_packed(renamed, config) if native else renamed


def _strip_prefix(key: str, prefix: str) -> tuple[bool, str]:
    return (True, key[len(prefix):]) if key.startswith(prefix) else (False, key)


def _rename(key: str, *, to_gte: bool) -> str:
    """One key below the backbone prefix, through `_GTE_RENAMES` in either direction."""
    for ours, gte in _GTE_RENAMES:
        source, target = (ours, gte) if to_gte else (gte, ours)
        match = re.match(re.escape(source).replace(r"\{i\}", r"(?P<i>\d+)"), key)
        if match:
            return target.format(i=match.groupdict().get("i")) + key[match.end():]
    direction = "transformers 'gte'" if to_gte else "mGTE"
    raise ValueError(f"Weight {key!r} has no {direction} equivalent; is this an mGTE checkpoint?")


_QKV = re.compile(r"^(?P<base>(?:new\.)?encoder\.layer\.\d+\.attention\.)qkv_proj\.(?P<param>weight|bias)$")
_UP_GATE = re.compile(r"^(?P<base>(?:new\.)?encoder\.layer\.\d+\.mlp\.)up_gate_proj\.weight$")


def _split_packed(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """qkv_proj `[3H(, H)]` → q/k/v_proj `[H(, H)]`; up_gate_proj `[2I, H]` → up_proj, gate_proj `[I, H]`."""
    out = {}
    for key, tensor in state_dict.items():
        if match := _QKV.match(key):
            for name, part in zip("qkv", tensor.chunk(3, dim=0)):
                out[f"{match['base']}{name}_proj.{match['param']}"] = part.clone()
        elif match := _UP_GATE.match(key):
            up, gate = tensor.chunk(2, dim=0)  # rows 0..I-1 are `up`, I..2I-1 are `gate` (SPEC §2)
            out[f"{match['base']}up_proj.weight"] = up.clone()
            out[f"{match['base']}gate_proj.weight"] = gate.clone()
        else:
            out[key] = tensor
    return out


def _merge_packed(state_dict: Mapping[str, torch.Tensor], config: MgteConfig) -> dict[str, torch.Tensor]:
    """Inverse of `_split_packed`; q/k/v stay separate when `config.pack_qkv` is false."""
    out = dict(state_dict)
    for key in list(out):
        if key.endswith("attention.q_proj.weight") or key.endswith("attention.q_proj.bias"):
            if config.pack_qkv:
                parts = [out.pop(key.replace(".q_proj.", f".{n}_proj.")) for n in "qkv"]
                out[key.replace(".q_proj.", ".qkv_proj.")] = torch.cat(parts, dim=0)
        elif key.endswith("mlp.up_proj.weight"):
            gate = out.pop(key.replace(".up_proj.", ".gate_proj."))
            out[key.replace(".up_proj.", ".up_gate_proj.")] = torch.cat([out.pop(key), gate], dim=0)
    return out


# ============================================================================================== configs
def new_config_dict(config: MgteConfig, architecture: str, dtype: torch.dtype) -> dict:
    """The released-layout config.json (model_type "new", auto_map into Alibaba-NLP/new-impl) for our config."""
    kind = config.rope_parameters.get("rope_type", "default")
    if kind not in ("default", "ntk"):
        raise ValueError(f"RoPE type {kind!r} has no released ('new') equivalent: the released code knows plain RoPE "
                         "and the static NTK only. Convert to 'mgte' or 'gte' instead.")
    out = {key: _plain(getattr(config, key)) for key in (*NEW_CONFIG_DEFAULTS, *_NEW_EXTRA_KEYS)}
    out.update(
        model_type="new",
        architectures=list(ARCHITECTURES[architecture][0]),
        auto_map=dict(NEW_IMPL_AUTO_MAP),
        use_memory_efficient_attention=config._attn_implementation == "mgte_xformers",
        unpad_inputs=False,  # as released: the released unpadded path crashes on one-token batches (SPEC §5.7)
        torch_dtype=_dtype_name(dtype),
    )
    if architecture in _CLASSIFIER_HEADS:
        out["id2label"] = {str(i): label for i, label in config.id2label.items()}
        out["label2id"] = dict(config.label2id)
    for key in ("problem_type", "matryoshka_dimensions", "sparse_ignore_token_ids"):
        if getattr(config, key, None) is not None:
            out[key] = _plain(getattr(config, key))
    if not config.tie_word_embeddings:
        out["tie_word_embeddings"] = False
    return dict(sorted(out.items()))


def gte_config(config: MgteConfig, architecture: str, dtype: torch.dtype):
    """A `transformers.GteConfig` equal in meaning to `config`; ValueError when transformers' Gte cannot express it."""
    from transformers import GteConfig

    check_gte_compatible(config, architecture)
    kind = config.rope_parameters.get("rope_type", "default")
    if kind == "ntk":  # static NTK (f, b) == linear scaling by f^(2/d) at theta b·f
        factor = float(config.rope_parameters["factor"])
        rope = {"rope_type": "linear", "factor": factor ** (2 / config.head_dim),
                "rope_theta": config.rope_theta * factor}
    else:  # plain RoPE and transformers' own scaled types mean the same in Gte
        rope = dict(config.rope_parameters)
    keys = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "hidden_act",
            "hidden_dropout_prob", "attention_probs_dropout_prob", "max_position_embeddings", "type_vocab_size",
            "initializer_range", "layer_norm_eps", "pad_token_id", "classifier_dropout", "tie_word_embeddings",
            "id2label", "label2id")
    # set only when given; transformers' Gte ignores all but problem_type, they make the way back to ours lossless
    extras = ("problem_type", "pack_qkv", "matryoshka_dimensions", "sparse_ignore_token_ids")
    kwargs = {key: getattr(config, key) for key in keys}
    kwargs.update({key: getattr(config, key) for key in extras if getattr(config, key, None) is not None})
    out = GteConfig(**kwargs, rope_parameters=rope, architectures=list(ARCHITECTURES[architecture][1]))
    out.dtype = dtype
    return out


def check_gte_compatible(config: MgteConfig, architecture: str) -> None:
    """Raise ValueError listing what transformers' Gte classes cannot represent."""
    problems = []
    if config.rope_scaling is not None and config.rope_scaling.get("mixed_b") is not None:
        problems.append("rope_scaling with mixed_b (transformers has no RoPE type with these frequencies)")
    if config.position_embedding_type != "rope":
        problems.append(f"position_embedding_type {config.position_embedding_type!r} (Gte is RoPE only)")
    if config.layer_norm_type != "layer_norm":
        problems.append(f"layer_norm_type {config.layer_norm_type!r} (Gte layers use LayerNorm)")
    if architecture == "MgteForMaskedLM" and config.hidden_act != "gelu":
        problems.append(f"hidden_act {config.hidden_act!r} in the MLM head (GteForMaskedLM always applies gelu)")
    if problems:
        raise ValueError("This checkpoint has no transformers 'gte' equivalent: " + "; ".join(problems)
                         + ". Convert to 'mgte' or 'new' instead.")


def _plain(value):
    return dict(value) if isinstance(value, Mapping) else list(value) if isinstance(value, (list, tuple)) else value


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


# ============================================================================================== writing
def write_checkpoint(checkpoint: MgteCheckpoint, folder: str | os.PathLike, to: str) -> None:
    """Write `checkpoint` in layout `to` into an existing empty `folder` (config.json + model.safetensors)."""
    folder = Path(folder)
    config, architecture, dtype = checkpoint.config, checkpoint.architecture, checkpoint.dtype
    state_dict = checkpoint.state_dict
    if to == "mgte":
        ours = MgteConfig.from_dict(config.to_dict())  # a copy: the caller's config is never touched
        ours.architectures = [architecture]
        ours.dtype = dtype
        ours.save_pretrained(str(folder))
        copy_modeling_files(folder)
    elif to == "new":
        (folder / CONFIG_NAME).write_text(json.dumps(new_config_dict(config, architecture, dtype), indent=2) + "\n")
    elif to == "gte":
        gte_config(config, architecture, dtype).to_json_file(str(folder / CONFIG_NAME), use_diff=False)
        state_dict = to_gte_state_dict(state_dict)
    else:
        raise ValueError(f"Unknown checkpoint layout {to!r}; choose one of {FORMATS}.")
    save_file(dict(state_dict), str(folder / WEIGHTS_NAME), metadata={"format": "pt"})


def convert_checkpoint(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    to: str,
    overwrite: bool = False,
    copy_tokenizer: bool = True,
) -> MgteCheckpoint:
    """Convert the checkpoint folder `src` (any layout, detected) into layout `to` in the folder `dst`.

    The output is built in a temporary folder beside `dst` and moved into place at the end, so a failed conversion
    leaves nothing behind. A non-empty `dst` is replaced only with `overwrite=True`.

    Args:
        src: a checkpoint folder in the "mgte", "new" or "gte" layout.
        dst: the output folder.
        to: "mgte" (ours), "new" (released; TEI / vLLM) or "gte" (transformers-native).
        overwrite: replace a non-empty `dst`.
        copy_tokenizer: copy the tokenizer files of `src` along.

    Returns:
        The checkpoint as read from `src`.
    """
    if to not in FORMATS:
        raise ValueError(f"Unknown target layout {to!r}; choose one of {FORMATS}.")
    src = Path(src).resolve()
    if not (src / CONFIG_NAME).is_file():
        raise FileNotFoundError(f"{src} is not a checkpoint folder (no {CONFIG_NAME}).")
    check_output(dst, overwrite=overwrite, inputs=[src], folder=True)  # before reading the weights
    checkpoint = read_checkpoint(src)
    with staged_folder(dst, overwrite=overwrite, inputs=[src]) as tmp:
        write_checkpoint(checkpoint, tmp, to)
        if copy_tokenizer:
            for name in TOKENIZER_FILES:
                if (src / name).is_file():
                    shutil.copyfile(src / name, tmp / name)
    logger.info("Converted %s (%s, %s) to %s (%s).", src, checkpoint.architecture, checkpoint.dtype, dst, to)
    return checkpoint


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} not found: is {path.parent} a checkpoint folder?") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}).") from err


__all__ = [
    "ARCHITECTURES",
    "FORMATS",
    "MgteCheckpoint",
    "check_gte_compatible",
    "convert_checkpoint",
    "detect_format",
    "from_gte_state_dict",
    "gte_config",
    "load_state_dict",
    "new_config_dict",
    "read_checkpoint",
    "to_gte_state_dict",
    "write_checkpoint",
]
