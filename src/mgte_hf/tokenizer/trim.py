"""Trim a tokenizer's vocabulary to the pieces a corpus uses, and the model's embedding matrix with it.

A 250 002-piece XLM-R vocabulary makes the embedding matrix of a small model mostly dead weight (250k × H); a
demo or a domain model keeps only the pieces its texts produce. The kept pieces keep their Unigram scores and their
relative order, so the special tokens keep their ids (`<s>`=0, `<pad>`=1, `</s>`=2, `<unk>`=3) and every text of
the corpus is segmented exactly as before — only the ids change, through the recorded mapping `kept_old_ids`
(new id i is old id `kept_old_ids[i]`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

from .loading import XLMR_SPECIAL_TOKENS


MAPPING_FILE = "vocab_mapping.json"


def used_token_ids(tokenizer: PreTrainedTokenizerBase, texts: Iterable[str], batch_size: int = 1000) -> set[int]:
    """Ids the tokenizer produces on `texts` (without special tokens)."""
    used: set[int] = set()
    batch: list[str] = []
    for text in texts:
        batch.append(text)
        if len(batch) == batch_size:
            used.update(i for ids in tokenizer(batch, add_special_tokens=False).input_ids for i in ids)
            batch = []
    if batch:
        used.update(i for ids in tokenizer(batch, add_special_tokens=False).input_ids for i in ids)
    return used


def trim_tokenizer(
    tokenizer: PreTrainedTokenizerBase,
    texts: Iterable[str],
    *,
    extra_token_ids: Iterable[int] = (),
) -> tuple[PreTrainedTokenizerFast, list[int]]:
    """A Unigram tokenizer restricted to the pieces `texts` use (plus the special tokens and `extra_token_ids`).

    Returns:
        The new tokenizer and `kept_old_ids` (sorted; new id i ↔ old id `kept_old_ids[i]`).
    """
    state = json.loads(tokenizer.backend_tokenizer.to_str())
    if state["model"]["type"] != "Unigram":
        raise ValueError(f"trim_tokenizer supports Unigram (sentencepiece) tokenizers, got {state['model']['type']}.")
    keep = used_token_ids(tokenizer, texts) | set(tokenizer.all_special_ids) | set(extra_token_ids)
    kept_old_ids = sorted(keep)
    old_to_new = {old: new for new, old in enumerate(kept_old_ids)}
    vocab = state["model"]["vocab"]
    state["model"]["vocab"] = [vocab[i] for i in kept_old_ids]
    state["model"]["unk_id"] = old_to_new[state["model"]["unk_id"]]
    for token in state.get("added_tokens", []):
        token["id"] = old_to_new[token["id"]]
    _remap_post_processor(state.get("post_processor"), old_to_new)

    from tokenizers import Tokenizer

    backend = Tokenizer.from_str(json.dumps(state))
    specials = {k: getattr(tokenizer, k) for k in XLMR_SPECIAL_TOKENS if getattr(tokenizer, k, None) is not None}
    trimmed = PreTrainedTokenizerFast(tokenizer_object=backend, model_max_length=tokenizer.model_max_length,
                                      **specials)
    return trimmed, kept_old_ids


def _remap_post_processor(processor: dict | None, old_to_new: dict[int, int]) -> None:
    """Rewrite the special-token ids a TemplateProcessing (or a Sequence of processors) inserts."""
    if processor is None:
        return
    for child in processor.get("processors", []):
        _remap_post_processor(child, old_to_new)
    for spec in processor.get("special_tokens", {}).values():
        spec["ids"] = [old_to_new[i] for i in spec["ids"]]
    for key in ("sep", "cls"):  # RobertaProcessing / BertProcessing store [token, id]
        if key in processor:
            processor[key][1] = old_to_new[processor[key][1]]


def trim_embeddings(model: torch.nn.Module, kept_old_ids: Sequence[int]) -> torch.nn.Module:
    """Keep only rows `kept_old_ids` of the word embeddings (and of a tied MLM decoder's bias), in place.

    The config's vocab_size, pad_token_id and sparse_ignore_token_ids follow the mapping.
    """
    index = torch.as_tensor(list(kept_old_ids), dtype=torch.long)
    old_to_new = {old: new for new, old in enumerate(kept_old_ids)}
    embeddings = model.get_input_embeddings()
    config = model.config
    pad = old_to_new.get(config.pad_token_id) if config.pad_token_id is not None else None
    new = torch.nn.Embedding(len(index), embeddings.embedding_dim, padding_idx=pad,
                             dtype=embeddings.weight.dtype, device=embeddings.weight.device)
    with torch.no_grad():
        new.weight.copy_(embeddings.weight.index_select(0, index.to(embeddings.weight.device)))
    model.set_input_embeddings(new)
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if output is not None:
        bias = output.bias
        decoder = torch.nn.Linear(new.embedding_dim, len(index), bias=bias is not None, dtype=new.weight.dtype,
                                  device=new.weight.device)
        if bias is not None:
            with torch.no_grad():
                decoder.bias.copy_(bias.index_select(0, index.to(bias.device)))
        model.set_output_embeddings(decoder)
        model.tie_weights()
    config.vocab_size = len(index)
    config.pad_token_id = pad
    if config.sparse_ignore_token_ids is not None:
        config.sparse_ignore_token_ids = sorted(old_to_new[i] for i in config.sparse_ignore_token_ids if i in old_to_new)
    return model


def save_vocab_mapping(folder: str | os.PathLike, kept_old_ids: Sequence[int], source: str) -> Path:
    """Record the mapping next to a saved tokenizer: new id i is old id `kept_old_ids[i]` of `source`."""
    path = Path(folder) / MAPPING_FILE
    path.write_text(json.dumps({"source": source, "kept_old_ids": list(kept_old_ids)}))
    return path


def load_vocab_mapping(folder: str | os.PathLike) -> list[int]:
    return json.loads((Path(folder) / MAPPING_FILE).read_text())["kept_old_ids"]
