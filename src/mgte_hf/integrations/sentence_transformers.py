"""sentence-transformers (>= 6.2) files for mGTE checkpoint folders.

`write_sentence_transformers_files` adds to a folder saved by our `save_pretrained` (config, weights, modeling files,
tokenizer) the files sentence-transformers reads, so that the folder loads offline as

* `SentenceTransformer(folder, trust_remote_code=True)` — CLS pooling then L2 normalisation, i.e. the dense vector of
  `MgteForEmbedding`; with `truncate_dim=d`, pass `normalize_embeddings=True` to `encode` (sentence-transformers
  truncates after the model's own normalisation) or score with `model.similarity` (cosine);
* `SparseEncoder(folder + "/sparse", trust_remote_code=True)` — the mGTE lexical vectors through the custom module
  in `mgte_sparse.py` (copied into `sparse/`), dot-product similarity = mGTE's lexical matching score;
* `CrossEncoder(folder, trust_remote_code=True)` for a reranker — `predict` returns the raw relevance logit
  (pass `activation_fn=torch.nn.Sigmoid()` for probabilities).

Only JSON, the module file and the sparse head's two tensors are written: sentence-transformers need not be installed
to write them, and the model weights are never duplicated.
"""

from __future__ import annotations

import importlib.metadata
import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import PreTrainedTokenizerBase

from mgte_hf.modeling import MgteForEmbedding, MgteForSequenceClassification, MgteModel
from mgte_hf.tokenizer import special_token_ids


SPARSE_FOLDER = "sparse"
SPARSE_MODULE_FILE = "mgte_sparse.py"
SPARSE_HEAD_FOLDER = "1_MgteSparseHead"
_TRANSFORMER = "sentence_transformers.base.modules.transformer.Transformer"


def write_sentence_transformers_files(
    folder: str | Path,
    model: MgteModel | MgteForEmbedding | MgteForSequenceClassification,
    tokenizer: PreTrainedTokenizerBase,
) -> list[Path]:
    """Write the sentence-transformers files for `model` into its saved checkpoint `folder`.

    An `MgteForEmbedding` gets the dense SentenceTransformer at the root and the SparseEncoder in `sparse/`; an
    `MgteModel` only the dense one; an `MgteForSequenceClassification` the CrossEncoder.

    Returns:
        The files written.
    """
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder} holds no saved checkpoint (config.json); call model.save_pretrained first.")
    if isinstance(model, MgteForSequenceClassification):
        return _write_cross_encoder(folder)
    if not isinstance(model, (MgteModel, MgteForEmbedding)):
        raise TypeError(f"sentence-transformers files exist for MgteModel, MgteForEmbedding and "
                        f"MgteForSequenceClassification, not {type(model).__name__}.")
    written = _write_dense(folder, model.config.hidden_size)
    if isinstance(model, MgteForEmbedding):
        ignore = model.config.sparse_ignore_token_ids
        written += _write_sparse(folder / SPARSE_FOLDER, model.classifier, model.config.vocab_size,
                                 special_token_ids(tokenizer) if ignore is None else ignore)
    return written


def _write_dense(folder: Path, hidden_size: int) -> list[Path]:
    """Transformer (token embeddings) → CLS pooling → Normalize, at the folder root."""
    modules = [_module(0, "", _TRANSFORMER),
               _module(1, "1_Pooling", "sentence_transformers.sentence_transformer.modules.pooling.Pooling"),
               _module(2, "2_Normalize", "sentence_transformers.base.modules.normalize.Normalize")]
    files = {
        "modules.json": modules,
        "config_sentence_transformers.json": _model_config("SentenceTransformer", "cosine",
                                                           prompts={"query": "", "document": ""}),
        "sentence_bert_config.json": _transformer_config("feature-extraction", "last_hidden_state",
                                                         "token_embeddings"),
        "1_Pooling/config.json": {"embedding_dimension": hidden_size, "pooling_mode": "cls", "include_prompt": True},
        "2_Normalize/config.json": {"module_input_name": "sentence_embedding",
                                    "module_output_name": "sentence_embedding"},
    }
    return _write_json_files(folder, files)


def _write_sparse(folder: Path, classifier: torch.nn.Linear, vocab_size: int, ignore_token_ids: list[int]) -> list[Path]:
    """`sparse/`: the encoder read from the folder above, then the mGTE sparse head with its own classifier copy."""
    module = Path(SPARSE_MODULE_FILE).stem  # class refs resolve against the folder's own copy of the file
    files = {
        "modules.json": [_module(0, "", f"{module}.MgteRootTransformer"),
                         _module(1, SPARSE_HEAD_FOLDER, f"{module}.MgteSparseHead")],
        "config_sentence_transformers.json": _model_config("SparseEncoder", "dot", prompts={}),
        f"{SPARSE_HEAD_FOLDER}/config.json": {"hidden_size": classifier.in_features, "vocab_size": vocab_size,
                                              "ignore_token_ids": sorted(int(i) for i in ignore_token_ids)},
    }
    written = _write_json_files(folder, files)
    weights = folder / SPARSE_HEAD_FOLDER / "model.safetensors"
    tensors = {f"classifier.{name}": p.detach().cpu().clone().contiguous() for name, p in classifier.named_parameters()}
    save_file(tensors, str(weights), metadata={"format": "pt"})
    shutil.copyfile(Path(__file__).with_name(SPARSE_MODULE_FILE), folder / SPARSE_MODULE_FILE)
    return [*written, weights, folder / SPARSE_MODULE_FILE]


def _write_cross_encoder(folder: Path) -> list[Path]:
    """The sequence-classification Transformer alone; `predict` returns raw logits (identity activation)."""
    files = {
        "modules.json": [_module(0, "", _TRANSFORMER)],
        "config_sentence_transformers.json": {**_model_config("CrossEncoder", None, prompts={}),
                                              "activation_fn": "torch.nn.modules.linear.Identity"},
        "sentence_bert_config.json": _transformer_config("sequence-classification", "logits", "scores"),
    }
    return _write_json_files(folder, files)


def _module(idx: int, path: str, class_ref: str) -> dict:
    return {"idx": idx, "name": str(idx), "path": path, "type": class_ref}


def _transformer_config(task: str, method_output_name: str, module_output_name: str) -> dict:
    return {"transformer_task": task,
            "modality_config": {"text": {"method": "forward", "method_output_name": method_output_name}},
            "module_output_name": module_output_name}


def _model_config(model_type: str, similarity: str | None, prompts: dict[str, str]) -> dict:
    config = {"model_type": model_type, "__version__": _versions(), "prompts": prompts, "default_prompt_name": None}
    if similarity is not None:
        config["similarity_fn_name"] = similarity
    return config


def _versions() -> dict[str, str]:
    import transformers

    try:
        st_version = importlib.metadata.version("sentence-transformers")
    except importlib.metadata.PackageNotFoundError:
        st_version = "6.2.0"  # the oldest release these files are written for
    return {"sentence_transformers": st_version, "transformers": transformers.__version__,
            "pytorch": torch.__version__}


def _write_json_files(folder: Path, files: dict[str, object]) -> list[Path]:
    written = []
    for name, content in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")
        written.append(path)
    return written


__all__ = ["SPARSE_FOLDER", "write_sentence_transformers_files"]
