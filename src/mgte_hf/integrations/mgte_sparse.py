# Copyright 2026 The mgte-hf authors. Licensed under the Apache License, Version 2.0.
"""The mGTE sparse (lexical) head as sentence-transformers modules.

This file ships inside mgte-hf Hub folders (in `sparse/`) and is loaded by
`SparseEncoder("<folder>/sparse", trust_remote_code=True)`: it imports only torch, safetensors and
sentence_transformers, never mgte_hf.

The mGTE term weight of a token is ReLU(classifier(h_t)) on its last hidden state (a one-unit linear layer); a text's
sparse vector holds, for every vocabulary id, the maximum weight over the id's occurrences, with special tokens and
padding at 0. Unlike SPLADE there is no log1p and no MLM head: the vector is as wide as the vocabulary, but only the
ids present in the text can be non-zero.
"""

from __future__ import annotations

import os

import torch
from safetensors.torch import load_model, save_model
from sentence_transformers.base.modules import Module, Transformer
from torch import nn


WEIGHTS_NAME = "model.safetensors"


class MgteRootTransformer(Transformer):
    """sentence-transformers' `Transformer`, reading the encoder from the folder above when this one has none.

    An mgte-hf Hub folder keeps a single copy of the weights at its root (the dense SentenceTransformer) and the
    SparseEncoder files in `sparse/`; a SparseEncoder saved again by sentence-transformers has its own copy and
    loads it from its own folder.
    """

    @classmethod
    def load(cls, model_name_or_path: str, subfolder: str = "", **kwargs) -> MgteRootTransformer:
        if not os.path.isfile(os.path.join(model_name_or_path, subfolder, "config.json")):
            if not os.path.isdir(model_name_or_path):
                raise ValueError(
                    f"{model_name_or_path!r}: the mGTE SparseEncoder reads the encoder from the folder above its own; "
                    "download the repository first (huggingface_hub.snapshot_download) and load <snapshot>/sparse.")
            model_name_or_path = os.path.dirname(os.path.abspath(model_name_or_path))
        return super().load(model_name_or_path, subfolder=subfolder, **kwargs)


class MgteSparseHead(Module):
    """Token embeddings `(B, L, H)` → mGTE lexical vectors `(B, vocab_size)` under `sentence_embedding`.

    Args:
        hidden_size: width of the token embeddings.
        vocab_size: size of the output vector (the tokenizer's vocabulary).
        ignore_token_ids: ids that never get a weight (cls, eos, pad, unk).
    """

    config_keys: list[str] = ["hidden_size", "vocab_size", "ignore_token_ids"]

    def __init__(self, hidden_size: int, vocab_size: int, ignore_token_ids: list[int] | None = None) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.vocab_size = vocab_size
        self.ignore_token_ids = sorted(ignore_token_ids or [])
        self.classifier = nn.Linear(hidden_size, 1)
        self.register_buffer("ignored", torch.tensor(self.ignore_token_ids, dtype=torch.long), persistent=False)

    def forward(self, features: dict[str, torch.Tensor], **kwargs) -> dict[str, torch.Tensor]:
        hidden = features["token_embeddings"]  # (B, L, H)
        input_ids = features["input_ids"]  # (B, L)
        weights = torch.relu(self.classifier(hidden.to(self.classifier.weight.dtype))).squeeze(-1)  # (B, L)
        keep = features["attention_mask"].bool() & ~torch.isin(input_ids, self.ignored.to(input_ids.device))
        weights = weights * keep
        vectors = weights.new_zeros((input_ids.shape[0], self.vocab_size))  # (B, V)
        features["sentence_embedding"] = vectors.scatter_reduce(1, input_ids, weights, reduce="amax")
        return features

    def get_embedding_dimension(self) -> int:
        return self.vocab_size

    def save(self, output_path: str, *args, safe_serialization: bool = True, **kwargs) -> None:
        self.save_config(output_path)
        save_model(self, os.path.join(output_path, WEIGHTS_NAME))

    @classmethod
    def load(cls, model_name_or_path: str, subfolder: str = "", token: bool | str | None = None,
             cache_folder: str | None = None, revision: str | None = None, local_files_only: bool = False,
             **kwargs) -> MgteSparseHead:
        hub = dict(subfolder=subfolder, token=token, cache_folder=cache_folder, revision=revision,
                   local_files_only=local_files_only)
        module = cls(**cls.load_config(model_name_or_path, **hub))
        weights = cls.load_file_path(model_name_or_path, WEIGHTS_NAME, **hub)
        if weights is None:
            raise FileNotFoundError(f"No {WEIGHTS_NAME} for the mGTE sparse head in {model_name_or_path}/{subfolder}.")
        load_model(module, weights)
        return module
