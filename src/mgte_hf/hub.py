"""Self-contained Hub folders for mGTE models, and pushing them with huggingface_hub.

`save_hub_folder` writes everything a Hub repository needs in one folder: the remote code (our modeling files, so no
second repository is involved), safetensors weights, the tokenizer, the sentence-transformers files and a generated
model card. `push_to_hub` uploads such a folder (to a branch, or as a pull request).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from transformers import PreTrainedTokenizerBase

from .integrations.sentence_transformers import SPARSE_FOLDER, write_sentence_transformers_files
from .modeling import MgteForEmbedding, MgteForSequenceClassification
from .outputs import staged_folder


logger = logging.getLogger(__name__)

KINDS = {"embedding": MgteForEmbedding, "reranker": MgteForSequenceClassification}
REQUIRED_FILES = ("config.json", "model.safetensors", "modeling_mgte.py", "README.md")

EvalTable = Mapping[str, Mapping[str, float | str]]  # row (task / dataset) → column (metric) → value


def save_hub_folder(
    model: MgteForEmbedding | MgteForSequenceClassification,
    tokenizer: PreTrainedTokenizerBase,
    folder: str | os.PathLike,
    *,
    kind: str | None = None,
    overwrite: bool = False,
    **card: Any,
) -> Path:
    """Write a self-contained, Hub-ready folder for an embedding model (TRM) or a reranker.

    Args:
        model: an `MgteForEmbedding` (kind "embedding") or `MgteForSequenceClassification` (kind "reranker").
        tokenizer: its tokenizer.
        folder: output folder; must be empty or absent unless `overwrite`.
        kind: "embedding" or "reranker"; checked against the model class (inferred when None).
        overwrite: replace a non-empty `folder`.
        **card: the model card's `repo_id`, `description`, `license`, `language`, `base_model` and `eval_table`
            (see `model_card`).

    Returns:
        The folder.
    """
    kind = _check_kind(model, kind)
    readme = model_card(model, kind=kind, **card)  # before any file is written: a bad card argument fails here
    with staged_folder(folder, overwrite=overwrite) as tmp:
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        write_sentence_transformers_files(tmp, model, tokenizer)
        (tmp / "README.md").write_text(readme, encoding="utf-8")
    logger.info("Wrote the %s Hub folder %s.", kind, folder)
    return Path(folder)


def push_to_hub(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    revision: str | None = None,
    create_pr: bool = False,
    private: bool | None = None,
    token: str | None = None,
    commit_message: str | None = None,
    api=None,
) -> str:
    """Upload a folder written by `save_hub_folder` to the Hub repository `repo_id` (created when missing).

    Args:
        folder: the Hub folder.
        repo_id: "user/name" or "org/name".
        revision: branch to push to (created from the default branch when missing).
        create_pr: open a pull request instead of committing directly.
        private: visibility of a newly created repository.
        token: Hub token (default: the logged-in user's).
        commit_message: commit title.
        api: a `huggingface_hub.HfApi`-like object (default: `HfApi(token=token)`).

    Returns:
        The URL of the commit, or of the pull request with `create_pr`.
    """
    folder = Path(folder)
    missing = [name for name in REQUIRED_FILES if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{folder} is not a Hub folder written by save_hub_folder (missing {missing}).")
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi(token=token)
    repo_id = api.create_repo(repo_id, token=token, private=private, exist_ok=True).repo_id
    if revision is not None:
        api.create_branch(repo_id, branch=revision, token=token, exist_ok=True)
    info = api.upload_folder(repo_id=repo_id, folder_path=str(folder), token=token, revision=revision,
                             create_pr=create_pr, commit_message=commit_message or "Upload mGTE model (mgte-hf)")
    return info.pr_url if create_pr else info.commit_url


def _check_kind(model, kind: str | None) -> str:
    inferred = next((name for name, cls in KINDS.items() if isinstance(model, cls)), None)
    if inferred is None:
        raise TypeError(f"A Hub folder holds an MgteForEmbedding or an MgteForSequenceClassification, "
                        f"not {type(model).__name__}.")
    if kind is not None and kind != inferred:
        raise ValueError(f"kind={kind!r} does not match the model ({type(model).__name__} is a {inferred!r}).")
    return inferred


# ============================================================================================== model card
def model_card(
    model: MgteForEmbedding | MgteForSequenceClassification,
    *,
    kind: str,
    repo_id: str | None = None,
    description: str | None = None,
    license: str = "apache-2.0",
    language: Sequence[str] | None = None,
    base_model: str | None = None,
    eval_table: EvalTable | None = None,
) -> str:
    """The README.md of a Hub folder: metadata, model facts, usage for each library, the evaluation table.

    Args:
        model: the model the card describes.
        kind: "embedding" or "reranker".
        repo_id: the repository id the card's examples load (default: a placeholder).
        description: a paragraph for the top of the model card.
        license: SPDX license id for the card metadata.
        language: language codes for the card metadata.
        base_model: the model this one was fine-tuned from, for the card metadata.
        eval_table: evaluation results for the card, `{row: {metric: value}}`.
    """
    repo = repo_id or "<user>/<model>"
    embedding = kind == "embedding"
    tags = ["mgte", "sentence-transformers", "text-embeddings-inference"]
    tags += ["feature-extraction", "sparse-encoder"] if embedding else ["cross-encoder", "reranker"]
    meta = [f"license: {license}", "library_name: transformers",
            f"pipeline_tag: {'sentence-similarity' if embedding else 'text-ranking'}", _yaml_list("tags", tags)]
    if language:
        meta.append(_yaml_list("language", language))
    if base_model:
        meta.append(f"base_model: {base_model}")
    title = repo_id or ("mGTE text embedding model" if embedding else "mGTE reranker")
    intro = description or (
        "An mGTE text representation model: one forward pass gives an elastic (Matryoshka) dense vector and sparse "
        "lexical token weights." if embedding else
        "An mGTE cross-encoder reranker: a (query, document) pair in, one relevance logit out.")
    sections = [f"---\n{chr(10).join(meta)}\n---", f"# {title}", intro, _facts_table(model, kind),
                *(_embedding_usage(model, repo) if embedding else _reranker_usage(repo)), _serving(kind)]
    if eval_table:
        sections.append("## Evaluation\n\n" + _markdown_table(eval_table))
    return "\n\n".join(sections) + "\n"


def _yaml_list(key: str, values: Sequence[str]) -> str:
    return f"{key}:\n" + "\n".join(f"- {v}" for v in values)


def _facts_table(model, kind: str) -> str:
    c = model.config
    scaling = c.rope_scaling
    rope = f"θ = {c.rope_theta:g}" + (f", static NTK ×{scaling['factor']:g}" if scaling else "")
    rows = [("architecture", f"{type(model).__name__} (mGTE encoder, {c.num_hidden_layers} layers, hidden "
                             f"{c.hidden_size}, {c.num_attention_heads} heads)"),
            ("parameters", _count(sum(p.numel() for p in model.parameters()))),
            ("weights", str(model.dtype).removeprefix("torch.")),
            ("vocabulary", str(c.vocab_size)),
            ("context", f"{c.max_position_embeddings} tokens (RoPE, {rope})")]
    if kind == "embedding":
        rows.append(("dense dimensions", c.describe_dimensions()))
        rows.append(("sparse", "one weight per token: ReLU of a one-unit classifier on its last hidden state"))
    return "## Model\n\n| | |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)


def _count(n: int) -> str:
    return f"{n / 1e6:.1f} M" if n >= 100_000 else f"{n:,}"


def _embedding_usage(model, repo: str) -> list[str]:
    dims = model.config.matryoshka_dimensions
    dim = dims[0] if dims else model.config.hidden_size
    transformers_usage = f"""## Usage

The repository carries its own code (`trust_remote_code=True`; nothing else to install).

### transformers

```python
import torch
from transformers import AutoModelForTextEncoding, AutoTokenizer

tokenizer = AutoTokenizer.from_pretrained("{repo}")
model = AutoModelForTextEncoding.from_pretrained("{repo}", trust_remote_code=True).eval()
batch = tokenizer(["what is the capital of China?", "Beijing is the capital of China."],
                  padding=True, truncation=True, max_length=8192, return_tensors="pt")
with torch.no_grad():
    out = model(**batch, dimension={dim})
out.dense   # (2, {dim}) L2-normalised vectors: truncated to `dimension`, then normalised
out.sparse  # (2, seq_len) lexical weight of every token
```

Allowed `dimension` values: {model.config.describe_dimensions()}.

### Sparse (lexical) vectors

A text's sparse vector maps each token id to the largest weight it gets in the text; special tokens are dropped.
The lexical score of two texts is the sum, over the ids they share, of the products of their weights.

```python
special = set(tokenizer.all_special_ids)
def lexical_weights(input_ids, weights):
    out = {{}}
    for i, w in zip(input_ids.tolist(), weights.tolist()):
        if i not in special and w > 0:
            out[i] = max(out.get(i, 0.0), w)
    return out

q, d = (lexical_weights(i, w) for i, w in zip(batch["input_ids"], out.sparse))
score = sum(w * d[t] for t, w in q.items() if t in d)
```

With the mgte-hf package, `mgte_hf.token_weights_to_dicts` and `mgte_hf.scoring` do the same on whole batches."""
    st_usage = f"""### sentence-transformers

```python
from huggingface_hub import snapshot_download
from sentence_transformers import SentenceTransformer, SparseEncoder

dense = SentenceTransformer("{repo}", trust_remote_code=True)          # CLS pooling + normalisation
emb = dense.encode(["what is the capital of China?"])

small = SentenceTransformer("{repo}", trust_remote_code=True, truncate_dim={dim})
emb = small.encode(["what is the capital of China?"], normalize_embeddings=True)  # renormalise after truncation

sparse = SparseEncoder(snapshot_download("{repo}") + "/{SPARSE_FOLDER}", trust_remote_code=True)
vectors = sparse.encode(["what is the capital of China?"])              # vocabulary-sized sparse tensors
sparse.decode(vectors[0])                                              # [(token, weight), ...]
```

The sparse encoder lives in the `{SPARSE_FOLDER}/` subfolder and reads the weights at the repository root; its
`similarity` (dot product) is the lexical score above."""
    return [transformers_usage, st_usage]


def _reranker_usage(repo: str) -> list[str]:
    transformers_usage = f"""## Usage

The repository carries its own code (`trust_remote_code=True`; nothing else to install).

### transformers

```python
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

tokenizer = AutoTokenizer.from_pretrained("{repo}")
model = AutoModelForSequenceClassification.from_pretrained("{repo}", trust_remote_code=True).eval()
pairs = [["what is the capital of China?", "Beijing is the capital of China."],
         ["what is the capital of China?", "The giant panda lives in China."]]
batch = tokenizer(pairs, padding=True, truncation=True, max_length=8192, return_tensors="pt")
with torch.no_grad():
    scores = model(**batch).logits.view(-1)   # raw relevance logits; torch.sigmoid(scores) for probabilities
```"""
    st_usage = f"""### sentence-transformers

```python
from sentence_transformers import CrossEncoder

model = CrossEncoder("{repo}", trust_remote_code=True)
scores = model.predict(pairs)        # raw logits; CrossEncoder(..., activation_fn=torch.nn.Sigmoid()) for probabilities
ranking = model.rank("what is the capital of China?", [p[1] for p in pairs])
```"""
    return [transformers_usage, st_usage]


def _serving(kind: str) -> str:
    served = ("the dense vector (the sparse head is not served)" if kind == "embedding"
              else "the relevance score (TEI's `/rerank` route)")
    return f"""### text-embeddings-inference, vLLM and transformers' native Gte classes

The serving engines read the released mGTE layout (model_type `"new"`); they give {served}. Convert the folder with
the mgte-hf command line, then serve the copy:

```bash
mgte-hf convert ./model ./model-new --to new      # released layout: text-embeddings-inference, vLLM
text-embeddings-router --model-id ./model-new
vllm serve ./model-new --trust-remote-code        # config code from Alibaba-NLP/new-impl, as for the released models
mgte-hf convert ./model ./model-gte --to gte      # transformers.GteModel & co. load it with no remote code
```"""


def _markdown_table(table: EvalTable) -> str:
    columns = list(dict.fromkeys(col for row in table.values() for col in row))
    lines = ["| | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for name, row in table.items():
        cells = [_cell(row[c]) if c in row else "" for c in columns]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(value: float | str) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


__all__ = ["KINDS", "model_card", "push_to_hub", "save_hub_folder"]
