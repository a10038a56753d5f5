"""Hub-ready folders of the demo's TRM and reranker, and their check in a fresh process that never imports mgte_hf.

The fresh process loads the folders with transformers (`trust_remote_code`) and sentence-transformers only; its
SentenceTransformer vectors, `AutoModel` CLS vectors and CrossEncoder / `AutoModelForSequenceClassification` logits
must equal `MgteEmbedder`'s and `MgteReranker`'s (the report's) within `VERIFY_TOLERANCE`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from mgte_hf.evaluation import BeirDataset, evaluate_run, hits_to_run
from mgte_hf.hub import save_hub_folder
from mgte_hf.index import HybridIndex
from mgte_hf.inference import EmbeddingResult, MgteEmbedder, MgteReranker
from mgte_hf.modeling import MgteForEmbedding, MgteForSequenceClassification
from mgte_hf.tokenizer import save_vocab_mapping

from .config import DemoConfig
from .report import METHOD_LABELS, METRICS, DemoResult
from .stages import XLMR_SOURCE


VERIFY_TOLERANCE = 1e-4  # largest |Δ| of a score or vector between the fresh process and the report's model
DESCRIPTION = ("A small mGTE {what} trained from scratch by `mgte-hf demo` on CPU (MLM → contrastive → {stage}) on UDHR "
               "and Debian package descriptions, with the XLM-R vocabulary trimmed to its text (`vocab_mapping.json` "
               "maps its ids to XLM-R's). A demonstration, not a production model.")


def eval_table(result: DemoResult, methods: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """`{set: {"<method> nDCG@10": value}}` for a model card."""
    rows = {name: {f"{METHOD_LABELS[m]} nDCG@10": scores[m]["ndcg@10"] for m in methods if m in scores}
            for name, scores in result.metrics.items()}
    for name, rr in result.rerank_metrics.items():
        rows[name].update({f"{METHOD_LABELS[m]} nDCG@10 ({result.rerank_counts[name]} q)": rr[m]["ndcg@10"]
                           for m in methods if m in rr})
    return rows


def package(result: DemoResult, trm: Path, reranker: Path, tokenizer: PreTrainedTokenizerBase, kept: list[int],
            config: DemoConfig) -> dict[str, Path]:
    """Hub-ready folders for the TRM and the reranker (remote code, weights, tokenizer, ST files, model card)."""
    langs = sorted(set(config.languages) | {"en"})
    folders = {"trm": result.output / "hub" / "mgte-demo-trm", "reranker": result.output / "hub" / "mgte-demo-reranker"}
    save_hub_folder(MgteForEmbedding.from_pretrained(str(trm)), tokenizer, folders["trm"], kind="embedding",
                    overwrite=True, language=langs,
                    description=DESCRIPTION.format(what="text representation model (dense + sparse)",
                                                   stage="TRM fine-tuning"),
                    eval_table=eval_table(result, ("bm25", "dense", "sparse", "hybrid")))
    save_hub_folder(MgteForSequenceClassification.from_pretrained(str(reranker)), tokenizer, folders["reranker"],
                    kind="reranker", overwrite=True, language=langs,
                    description=DESCRIPTION.format(what="reranker", stage="reranker training"),
                    eval_table=eval_table(result, ("hybrid", "rerank", "interpolated")))
    for folder in folders.values():
        save_vocab_mapping(folder, kept, XLMR_SOURCE)
    return {f"hub_{k}": v for k, v in folders.items()}


# A fresh interpreter that never imports mgte_hf: the folders must stand on their own.
_VERIFY_SCRIPT = r"""
import json, sys
import torch
from sentence_transformers import CrossEncoder, SentenceTransformer
from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer

task = json.load(open(sys.argv[1]))
out = {}
emb = task["embedding"]
st = SentenceTransformer(emb["folder"], trust_remote_code=True, device="cpu")
st.max_seq_length = emb["max_length"]
out["st_queries"] = st.encode(emb["queries"], convert_to_tensor=True, normalize_embeddings=True).tolist()
out["st_documents"] = st.encode(emb["documents"], convert_to_tensor=True, normalize_embeddings=True).tolist()
tok = AutoTokenizer.from_pretrained(emb["folder"])
model = AutoModel.from_pretrained(emb["folder"], trust_remote_code=True).eval()
with torch.inference_mode():
    batch = tok(emb["queries"][:8], padding=True, truncation=True, max_length=emb["max_length"], return_tensors="pt")
    hidden = model(**batch).last_hidden_state[:, 0]
out["auto_cls"] = torch.nn.functional.normalize(hidden, dim=-1).tolist()
rr = task["reranker"]
ce = CrossEncoder(rr["folder"], trust_remote_code=True, device="cpu", max_length=rr["max_length"])
out["ce_scores"] = ce.predict(rr["pairs"], convert_to_numpy=True).tolist()
rtok = AutoTokenizer.from_pretrained(rr["folder"])
rmodel = AutoModelForSequenceClassification.from_pretrained(rr["folder"], trust_remote_code=True).eval()
with torch.inference_mode():
    batch = rtok([p[0] for p in rr["pairs"][:8]], [p[1] for p in rr["pairs"][:8]], padding=True, truncation=True,
                 max_length=rr["max_length"], return_tensors="pt")
    out["auto_logits"] = rmodel(**batch).logits.reshape(-1).tolist()
json.dump(out, open(sys.argv[2], "w"))
"""


def fresh_process(task: Mapping[str, Any]) -> dict[str, Any]:
    """Run `_VERIFY_SCRIPT` on `task` in a new interpreter (offline) and return what it computed."""
    with tempfile.TemporaryDirectory() as tmp:
        task_file, out_file = Path(tmp, "task.json"), Path(tmp, "out.json")
        task_file.write_text(json.dumps(task), encoding="utf-8")
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        proc = subprocess.run([sys.executable, "-c", _VERIFY_SCRIPT, str(task_file), str(out_file)], env=env,
                              capture_output=True, text=True, cwd=tmp)
        if proc.returncode != 0:
            raise RuntimeError(f"the Hub folders did not load in a fresh process:\n{proc.stderr[-2000:]}")
        return json.loads(out_file.read_text(encoding="utf-8"))


def verify_folders(result: DemoResult, sets: Mapping[str, BeirDataset], config: DemoConfig) -> dict[str, Any]:
    """Reload both Hub folders in a fresh process and compare with the in-process numbers of the report.

    The evaluation set with the smallest corpus is re-searched with the SentenceTransformer's vectors (in a
    `HybridIndex`, dense): their scores must equal `MgteEmbedder`'s and the nDCG@10 is recorded next to the report's.
    The reranker's CrossEncoder and `AutoModelForSequenceClassification` logits, and `AutoModel`'s CLS vectors, are
    compared with `MgteReranker` / `MgteEmbedder` on the same inputs. Raises `RuntimeError` when any |Δ| exceeds
    `VERIFY_TOLERANCE`.
    """
    name = min(sets, key=lambda n: sum(len(t) for t in sets[n].doc_texts()))
    dataset, folders = sets[name], result.files
    embedder = MgteEmbedder.from_pretrained(str(folders["hub_trm"]), device="cpu", max_length=config.eval_max_length)
    reranker = MgteReranker.from_pretrained(str(folders["hub_reranker"]), device="cpu",
                                            max_length=config.reranker_length)
    queries, docs = list(dataset.queries.values()), dataset.doc_texts()
    pairs = [(queries[i], docs[j]) for i in range(min(4, len(queries))) for j in range(min(4, len(docs)))]
    fresh = fresh_process({
        "embedding": {"folder": str(folders["hub_trm"]), "queries": queries, "documents": docs,
                      "max_length": config.eval_max_length},
        "reranker": {"folder": str(folders["hub_reranker"]), "pairs": pairs, "max_length": config.reranker_length}})
    st_q, st_d = torch.tensor(fresh["st_queries"]), torch.tensor(fresh["st_documents"])  # (Nq, H), (Nd, H)
    ours = embedder.dense_scores(queries, docs, convert_to="torch")  # (Nq, Nd)
    logits = reranker.compute_score(pairs, convert_to="torch")  # (P,)
    check = {
        "set": name,
        "st_dense_ndcg@10": dense_ndcg(dataset, st_q, st_d),
        "report_dense_ndcg@10": result.metrics[name]["dense"]["ndcg@10"],
        "max_abs_diff_st_dense": float((st_q @ st_d.T - ours).abs().max()),
        "max_abs_diff_auto_cls": float((torch.tensor(fresh["auto_cls"]) - embedder.encode_queries(
            queries[:8], sparse=False, convert_to="torch").dense).abs().max()),
        "max_abs_diff_cross_encoder": float((torch.tensor(fresh["ce_scores"]) - logits).abs().max()),
        "max_abs_diff_auto_logits": float((torch.tensor(fresh["auto_logits"]) - logits[:8]).abs().max()),
    }
    worst = max(v for k, v in check.items() if k.startswith("max_abs"))
    if not worst < VERIFY_TOLERANCE:
        raise RuntimeError(f"the Hub folders do not reproduce the report in a fresh process (largest |Δ| {worst:.2e} "
                           f"> {VERIFY_TOLERANCE:g}): {check}")
    return check


def dense_ndcg(dataset: BeirDataset, queries: torch.Tensor, documents: torch.Tensor) -> float:
    """nDCG@10 of a dense search of `dataset` with precomputed `(Nq, H)` query and `(Nd, H)` document vectors."""
    index = HybridIndex(dimension=documents.shape[1])
    index.add(dataset.doc_texts(), dataset.doc_ids(), embeddings=EmbeddingResult(documents, [{}] * len(documents)))
    hits = index.search(list(dataset.queries.values()), top_k=min(100, len(index)), mode="dense",
                        query_embeddings=EmbeddingResult(queries, [{}] * len(queries)))
    return evaluate_run(hits_to_run(list(dataset.queries), hits), dataset.qrels, METRICS)["ndcg@10"]


__all__ = ["VERIFY_TOLERANCE", "dense_ndcg", "eval_table", "fresh_process", "package", "verify_folders"]
