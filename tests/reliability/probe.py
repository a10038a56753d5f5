"""A skeptical user's probe of the package outside `modeling/`: hundreds of bad or edge inputs, each classified.

    .venv/bin/python tests/reliability/probe.py [--json results.json] [--verbose]

Every case says what a serious library must do with its input: fail with a clear error (an exception of the type a
user can act on, or the command line's one-line message with exit status 2, whose text names what is wrong), or
succeed with the right result (checked). Each outcome is one of:

- clear error: the expected failure, with a message that names the argument, file or line;
- correct: the call succeeded and its result (and the files around it) are right;
- silent wrong: the call succeeded where it should have failed, gave a wrong result, or changed a user's file or
  the caller's data;
- unhelpful: it failed, but with an unexpected exception type (IndexError, KeyError, JSONDecodeError, ...), a
  traceback on the command line, or a message that does not name what is wrong.

Surfaces: the embedder, reranker and scoring API; the index (`HybridIndex`) and its files; the id'd corpus reader;
shards; loading from folders; BEIR sets and the evaluator; ONNX export, conversion, Hub folders and the output
policy; and every `mgte-hf` command. The models are tiny and random (the probe checks behaviour, not quality).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import logging
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent)]  # tests/: the `tiny` helpers
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402

import tiny  # noqa: E402
from inference.folders import SPREAD, save_embedder, save_reranker  # noqa: E402
from mgte_hf import MgteForEmbedding, MgteForMaskedLM, MgteForSequenceClassification, scoring  # noqa: E402
from mgte_hf.cli import main as cli_main  # noqa: E402
from mgte_hf.convert import convert_checkpoint  # noqa: E402
from mgte_hf.corpus import DatasetCorpus, open_corpus, read_corpus  # noqa: E402
from mgte_hf.data import BeirDataset, load_beir, write_beir  # noqa: E402
from mgte_hf.evaluation import RetrievalEvaluator  # noqa: E402
from mgte_hf.export import check_onnx, export_onnx  # noqa: E402
from mgte_hf.hub import save_hub_folder  # noqa: E402
from mgte_hf.index import HybridIndex, rerank_hits  # noqa: E402
from mgte_hf.inference import EmbeddingResult, MgteEmbedder, MgteReranker  # noqa: E402
from mgte_hf.outputs import check_output, staged_folder  # noqa: E402
from mgte_hf.shards import ShardedIndex, ShardReader, encode_to_shards  # noqa: E402
from mgte_hf.tokenizer import build_tiny_tokenizer  # noqa: E402


CLEAR_TYPES = (ValueError, TypeError, FileNotFoundError, FileExistsError)
OUTCOMES = ("clear error", "correct", "silent wrong", "unhelpful")


@dataclass
class Case:
    """One input and what must happen to it.

    Attributes:
        surface: the part of the package probed.
        name: what the input is.
        call: runs it; returns the result (for the command line: `(exit code, stdout, stderr)`).
        error: the input must be refused; `mentions` are words the message must hold.
        check: for an input that must succeed, a test of the result (True: right).
        guard: paths whose bytes must not change (a refused call, or one that writes elsewhere).
    """

    surface: str
    name: str
    call: Callable[[], Any]
    error: bool
    mentions: tuple[str, ...] = ()
    check: Callable[[Any], bool] | None = None
    guard: tuple[Path, ...] = ()
    outcome: str = ""
    detail: str = ""
    seconds: float = field(default=0.0, repr=False)


class Probe:
    def __init__(self, root: Path):
        self.root = root
        self.cases: list[Case] = []
        self._n = 0

    def tmp(self, name: str = "t") -> Path:
        self._n += 1
        path = self.root / f"{self._n:04d}-{name}"
        path.mkdir(parents=True)
        return path

    def error(self, surface: str, name: str, call: Callable[[], Any], *mentions: str, guard=()) -> None:
        self.cases.append(Case(surface, name, call, True, tuple(mentions), guard=tuple(guard)))

    def ok(self, surface: str, name: str, call: Callable[[], Any], check: Callable[[Any], bool] = lambda r: True,
           guard=()) -> None:
        self.cases.append(Case(surface, name, call, False, check=check, guard=tuple(guard)))

    def cli_error(self, name: str, argv: list[str], *mentions: str, guard=()) -> None:
        self.error("cli", name, lambda: run_cli(argv), *mentions, guard=guard)

    def cli_ok(self, name: str, argv: list[str], check: Callable[[Any], bool] = lambda r: True, guard=()) -> None:
        self.ok("cli", name, lambda: run_cli(argv), check, guard=guard)

    def run(self, verbose: bool = False) -> None:
        for case in self.cases:
            start = time.perf_counter()
            classify(case)
            case.seconds = time.perf_counter() - start
            if verbose or case.outcome in ("silent wrong", "unhelpful"):
                print(f"[{case.outcome}] {case.surface}: {case.name}: {case.detail}", file=sys.stderr)


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli_main(argv)
        except SystemExit as exc:  # argparse's own usage errors
            code = exc.code if isinstance(exc.code, int) else 1
    return code, out.getvalue(), err.getvalue()


def snapshot(paths: tuple[Path, ...]) -> dict[str, bytes | None]:
    found: dict[str, bytes | None] = {}
    for root in paths:
        if root.is_dir():
            found.update({str(p): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()})
        else:
            found[str(root)] = root.read_bytes() if root.exists() else None
    return found


def classify(case: Case) -> None:
    before = snapshot(case.guard)
    logging.disable(logging.CRITICAL)  # warnings are not errors; the probe judges results
    try:
        result, raised = case.call(), None
    except Exception as exc:  # noqa: BLE001 - classifying every failure is the point
        result, raised = None, exc
    finally:
        logging.disable(logging.NOTSET)
    changed = snapshot(case.guard) != before
    if changed:
        case.outcome, case.detail = "silent wrong", "a guarded file changed"
        return
    if raised is not None:
        message = f"{type(raised).__name__}: {raised}"
        if not case.error:
            case.outcome, case.detail = "unhelpful", f"unexpected failure {message}; {_where(raised)}"
        elif not isinstance(raised, CLEAR_TYPES):
            case.outcome, case.detail = "unhelpful", f"{message}; {_where(raised)}"
        elif not all(m.lower() in str(raised).lower() for m in case.mentions):
            case.outcome, case.detail = "unhelpful", f"message lacks {case.mentions}: {message}"
        else:
            case.outcome, case.detail = "clear error", message[:200]
        return
    if case.surface == "cli":
        code, out, err = result
        lines = [line for line in err.strip().splitlines() if line.strip()]
        if case.error:
            last = lines[-1] if lines else ""
            one_line = code == 2 and "Traceback" not in err and "error:" in last
            named = all(m.lower() in last.lower() for m in case.mentions)
            if code == 0:
                case.outcome, case.detail = "silent wrong", f"exit 0; stdout {out[:120]!r}"
            elif one_line and named:
                case.outcome, case.detail = "clear error", last[:200]
            else:
                case.outcome, case.detail = "unhelpful", f"exit {code}: {err.strip()[-300:]!r}"
            return
        if code != 0:
            case.outcome, case.detail = "unhelpful", f"exit {code}: {err.strip()[-300:]!r}"
            return
    if case.error:
        case.outcome, case.detail = "silent wrong", f"accepted: {repr(result)[:160]}"
        return
    try:
        right = case.check(result)
    except Exception as exc:  # noqa: BLE001
        right, case.detail = False, f"check failed: {type(exc).__name__}: {exc}"
    case.outcome = "correct" if right else "silent wrong"
    case.detail = case.detail or ("" if right else f"wrong result: {repr(result)[:200]}")


def _where(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    return f"raised at {Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""


# ============================================================================================== fixtures
@dataclass
class World:
    root: Path
    tokenizer: Any
    embedder_dir: Path
    reranker_dir: Path
    other_dir: Path
    embedder: MgteEmbedder
    reranker: MgteReranker
    other: MgteEmbedder
    corpus: Path  # a good .jsonl corpus (ids d0..d5)
    texts: list[str]


def build_world(root: Path) -> World:
    tokenizer = build_tiny_tokenizer(tiny.SENTENCES * 4, vocab_size=300, save_dir=root / "tokenizer")
    embedder_dir = save_embedder(root / "embedder", tokenizer, **SPREAD)
    reranker_dir = save_reranker(root / "reranker", tokenizer, **SPREAD)
    other_dir = save_embedder(root / "other", tokenizer, seed=5, **SPREAD)
    texts = tiny.SENTENCES[:6]
    corpus = root / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(texts)))
    return World(root, tokenizer, embedder_dir, reranker_dir, other_dir,
                 MgteEmbedder.from_pretrained(embedder_dir, device="cpu"),
                 MgteReranker.from_pretrained(reranker_dir, device="cpu"),
                 MgteEmbedder.from_pretrained(other_dir, device="cpu"), corpus, texts)


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)
    return path


def lines_file(probe: Probe, name: str, lines: list[str]) -> Path:
    return write(probe.tmp("src") / name, "".join(line + "\n" for line in lines))


def close(a, b, atol=1e-5) -> bool:
    return bool(np.allclose(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64), atol=atol))


# ============================================================================================== embedder
def embedder_cases(p: Probe, w: World) -> None:
    e, s = w.embedder, "embedder"
    bad_texts = [(None, "texts must be a string"), (3, "texts must be a string"), (b"x", "bytes"),
                 ({"a": 1}, "dict"), ([1], "texts[0] is a int"), (["ok", None], "texts[1] is a NoneType"),
                 (["ok", b"x"], "texts[1] is a bytes"), ([["nested"]], "texts[0] is a list"),
                 (["\ud800"], "lone surrogate"), (["ok", "x \udfff y"], "texts[1] holds a lone surrogate"),
                 (("a", 2.0), "texts[1] is a float")]
    for value, mention in bad_texts:
        p.error(s, f"encode({value!r:.30})", lambda v=value: e.encode(v), mention)
    for dim, mention in ((12, "not allowed"), (0, "dimension must be a positive integer"), (-8, "positive integer"),
                         (8.0, "positive integer"), ("8", "positive integer"), (True, "positive integer"),
                         (np.float64(8), "positive integer"), (64, "not allowed")):
        p.error(s, f"encode(dimension={dim!r})", lambda d=dim: e.encode("x", dimension=d), mention)
    for dim in (np.int64(8), np.int32(16), np.uint8(8), 32, None):
        p.ok(s, f"encode(dimension={dim!r} of {type(dim).__name__})", lambda d=dim: e.encode(["a b", "c"], dimension=d),
             lambda r, d=dim: r.dense.shape == (2, int(d) if d is not None else 32)
             and close(r.dense, e.encode(["a b", "c"], dimension=int(d) if d is not None else None).dense))
    for length, mention in ((0, "max_length"), (1, "max_length"), (2, "max_length"), ("8", "max_length"),
                            (8.5, "max_length")):
        p.error(s, f"encode(max_length={length!r})", lambda v=length: e.encode("x", max_length=v), mention)
    for tokens, mention in ((0, "batch_tokens"), (-1, "batch_tokens"), ("x", "batch_tokens"), (1.5, "batch_tokens")):
        p.error(s, f"encode(batch_tokens={tokens!r})", lambda v=tokens: e.encode("x", batch_tokens=v), mention)
    p.ok(s, "encode(batch_tokens=np.int64(40))", lambda: e.encode(w.texts, batch_tokens=np.int64(40)),
         lambda r: close(r.dense, e.encode(w.texts).dense))
    p.ok(s, "encode(batch_tokens=1): one text per forward", lambda: e.encode(w.texts, batch_tokens=1),
         lambda r: close(r.dense, e.encode(w.texts).dense))
    p.error(s, "encode(convert_to='list')", lambda: e.encode("x", convert_to="list"), "convert_to")
    p.error(s, "encode(truncation='cut')", lambda: e.encode("x", truncation="cut"), "truncation")
    p.error(s, "encode(dense=False, sparse=False)", lambda: e.encode("x", dense=False, sparse=False), "nothing")
    long = " ".join(tiny.SENTENCES) * 3
    p.error(s, "encode(long text, truncation='error')", lambda: e.encode(["x", long], max_length=16,
                                                                         truncation="error"), "max_length=16")
    p.ok(s, "encode(long text): truncated with a warning", lambda: e.encode([long], max_length=16),
         lambda r: r.dense.shape == (1, 32) and np.isfinite(r.dense).all())
    p.ok(s, "encode([]) is empty", lambda: e.encode([]), lambda r: r.dense.shape == (0, 32) and r.sparse == [])
    p.ok(s, "encode('') encodes an empty text", lambda: e.encode(""), lambda r: r.dense.shape == (1, 32)
         and r.sparse == [{}])
    p.ok(s, "encode(generator)", lambda: e.encode(t for t in w.texts[:2]), lambda r: len(r) == 2)
    p.ok(s, "encode(tuple)", lambda: e.encode(tuple(w.texts[:2])), lambda r: close(r.dense,
                                                                                    e.encode(w.texts[:2]).dense))
    p.ok(s, "encode(emoji and CJK)", lambda: e.encode(["😀 café", "北京 東京"]), lambda r: np.isfinite(r.dense).all())
    p.ok(s, "encode(torch)", lambda: e.encode(w.texts[:2], convert_to="torch"), lambda r: isinstance(r.dense,
                                                                                                  torch.Tensor))
    caller = list(w.texts[:3])
    p.ok(s, "encode leaves the caller's list alone", lambda: e.encode(caller), lambda r: caller == w.texts[:3])
    p.ok(s, "encode order is the input order", lambda: e.encode(list(reversed(w.texts))),
         lambda r: close(r.dense[::-1], e.encode(w.texts).dense))
    p.error(s, "encode_corpus([{'title': 'x'}])", lambda: e.encode_corpus([{"title": "x"}]), "text")
    p.error(s, "encode_corpus([{'text': 'a', 'title': 3}])", lambda: e.encode_corpus([{"text": "a", "title": 3}]),
            "title")
    p.ok(s, "encode_corpus(records)", lambda: e.encode_corpus([{"title": "A", "text": "b"}]),
         lambda r: close(r.dense, e.encode("A b").dense))
    q = e.encode(w.texts[:2])
    d = e.encode(w.texts)
    p.ok(s, "hybrid_scores(results)", lambda: e.hybrid_scores(q, d), lambda r: r.shape == (2, 6))
    p.error(s, "dense_scores(result without dense)", lambda: e.dense_scores(EmbeddingResult(None, q.sparse), d),
            "dense")
    p.error(s, "lexical scores(result without sparse)",
            lambda: e.lexical_matching_scores(EmbeddingResult(q.dense, None), d), "sparse")
    p.error(s, "hybrid_scores(convert_to='jax')", lambda: e.hybrid_scores(q, d, convert_to="jax"), "convert_to")
    p.error(s, "dense_scores(dims 8 vs 32)", lambda: e.dense_scores(e.encode("x", dimension=8), d), "same D")
    as_json = EmbeddingResult(q.dense, [{str(k): v for k, v in row.items()} for row in q.sparse])
    p.ok(s, "lexical scores with string token ids", lambda: e.lexical_matching_scores(as_json, d),
         lambda r: close(r, e.lexical_matching_scores(q, d)))
    p.error(s, "lexical scores with token strings", lambda: e.lexical_matching_scores(
        EmbeddingResult(None, [{"▁Berlin": 1.0}]), d), "token ids are integers")
    p.error(s, "lexical scores with NaN weight", lambda: e.lexical_matching_scores(
        EmbeddingResult(None, [{5: float("nan")}]), d), "finite")
    p.error(s, "MgteEmbedder(dimension=12)", lambda: MgteEmbedder(e.model, e.tokenizer, dimension=12), "not allowed")
    p.error(s, "MgteEmbedder(batch_tokens=0)", lambda: MgteEmbedder(e.model, e.tokenizer, batch_tokens=0),
            "batch_tokens")
    p.error(s, "MgteEmbedder(truncation='x')", lambda: MgteEmbedder(e.model, e.tokenizer, truncation="x"),
            "truncation")
    p.error(s, "MgteEmbedder(reranker model)", lambda: MgteEmbedder(w.reranker.model, e.tokenizer), "MgteForEmbedding")
    p.ok(s, "MgteEmbedder(dimension=np.int64(16))", lambda: MgteEmbedder(e.model, e.tokenizer,
                                                                         dimension=np.int64(16)),
         lambda r: r.dimension == 16 and type(r.dimension) is int)


# ============================================================================================== reranker
def reranker_cases(p: Probe, w: World) -> None:
    r, s = w.reranker, "reranker"
    for value, mention in ((None, "pairs"), ("q", "pairs"), ([("q",)], "2"), ([("q", "d", "e")], "2"),
                           ([(1, "d")], "pairs[0][0]"), ([("q", None)], "pairs[0][1]"), (["qd"], "pairs[0]"),
                           ([("q", "\ud800")], "lone surrogate"), ({"q": "d"}, "pairs"), ([("q", b"d")], "bytes")):
        p.error(s, f"compute_score({value!r:.30})", lambda v=value: r.compute_score(v), mention)
    p.ok(s, "compute_score([])", lambda: r.compute_score([]), lambda x: x.shape == (0,))
    p.ok(s, "compute_score(list pairs)", lambda: r.compute_score([["q", "d"]]),
         lambda x: close(x, r.compute_score([("q", "d")])))
    p.ok(s, "compute_score(normalize) in (0, 1)", lambda: r.compute_score([("q", "d")], normalize=True),
         lambda x: 0 < float(x[0]) < 1)
    p.error(s, "compute_score(max_length=2)", lambda: r.compute_score([("q", "d")], max_length=2), "max_length")
    p.error(s, "compute_score(convert_to='list')", lambda: r.compute_score([("q", "d")], convert_to="list"),
            "convert_to")
    for top_k, mention in ((0, "top_k"), (-1, "top_k"), (2.5, "top_k"), ("2", "top_k")):
        p.error(s, f"rank(top_k={top_k!r})", lambda k=top_k: r.rank("q", w.texts, top_k=k), mention)
    p.ok(s, "rank(top_k=np.int64(2))", lambda: r.rank("q", w.texts, top_k=np.int64(2)), lambda x: len(x) == 2)
    p.ok(s, "rank(top_k beyond the documents)", lambda: r.rank("q", w.texts[:3], top_k=10), lambda x: len(x) == 3)
    p.error(s, "rank(query=None)", lambda: r.rank(None, w.texts), "query")
    p.error(s, "rank(documents=[1])", lambda: r.rank("q", [1]), "documents[0]")
    p.error(s, "rank(documents='one string')", lambda: r.rank("q", 3), "documents")
    p.ok(s, "rank best first", lambda: r.rank("q", w.texts),
         lambda x: [a.score for a in x] == sorted((a.score for a in x), reverse=True))
    p.error(s, "MgteReranker(embedding model)", lambda: MgteReranker(w.embedder.model, r.tokenizer),
            "MgteForSequenceClassification")
    p.error(s, "MgteReranker(3 labels)", lambda: MgteReranker(
        tiny.make_model(MgteForSequenceClassification, num_labels=3), r.tokenizer), "num_labels=3")


# ============================================================================================== scoring
def scoring_cases(p: Probe, w: World) -> None:
    s = "scoring"
    p.ok(s, "lexical_matching_score(str keys)", lambda: scoring.lexical_matching_score({"5": 2.0}, {5: 3.0}),
         lambda x: x == 6.0)
    p.ok(s, "lexical_matching_score(numpy keys)", lambda: scoring.lexical_matching_score({np.int64(5): 2.0},
                                                                                       {5: np.float32(3.0)}),
         lambda x: x == 6.0)
    for row, mention in (({"a": 1.0}, "token ids are integers"), ({1.5: 1.0}, "token ids"), ({True: 1.0}, "True"),
                         ({-2: 1.0}, "negative"), ({5: float("nan")}, "finite"), ({5: float("inf")}, "finite"),
                         ({5: "1.0"}, "not a number"), ({5: None}, "not a number"), ({"05x": 1.0}, "05x")):
        p.error(s, f"sparse row {row!r:.30}", lambda x=row: scoring.lexical_matching_scores([x], [{5: 1.0}]), mention)
    p.error(s, "lexical_matching_scores(a dict, not a list)", lambda: scoring.lexical_matching_scores({5: 1.0},
                                                                                                     [{5: 1.0}]),
            "list")
    p.error(s, "lexical_matching_scores([[5, 1.0]])", lambda: scoring.lexical_matching_scores([[5, 1.0]],
                                                                                              [{5: 1.0}]), "dict")
    caller = [{"5": 1.0}]
    p.ok(s, "sparse_rows leaves the caller's dicts", lambda: scoring.sparse_rows(caller),
         lambda x: caller == [{"5": 1.0}] and x == [{5: 1.0}])
    p.error(s, "dense_scores((2,8) x (3,16))", lambda: scoring.dense_scores(torch.ones(2, 8), torch.ones(3, 16)),
            "same D")
    p.error(s, "dense_scores(1-D)", lambda: scoring.dense_scores(torch.ones(8), torch.ones(3, 8)), "(Nq, D)")
    p.error(s, "hybrid_scores(shapes differ)", lambda: scoring.hybrid_scores(torch.ones(2, 3), torch.ones(3, 2)),
            "one shape")
    p.error(s, "check_unit_rows(NaN)", lambda: scoring.check_unit_rows(torch.tensor([[float("nan"), 0.0]])), "NaN")
    p.error(s, "check_unit_rows(norm 3)", lambda: scoring.check_unit_rows(torch.tensor([[3.0, 0.0]])), "norm 3")
    p.ok(s, "check_unit_rows(unit)", lambda: scoring.check_unit_rows(torch.tensor([[0.6, 0.8]])), lambda x: True)


# ============================================================================================== index
def index_cases(p: Probe, w: World) -> None:
    s, e = "index", w.embedder
    emb = e.encode(w.texts, convert_to="torch")

    def fresh() -> HybridIndex:
        index = HybridIndex(e)
        index.add(w.texts, ids=[f"d{i}" for i in range(6)], embeddings=emb)
        return index

    base = fresh()
    for docs, mention in ((None, "corpus"), ([1], "corpus[0]"), ([{"title": "t"}], "text"), ("one doc", None)):
        if mention is None:
            p.ok(s, "add('one string') adds one document", lambda d=docs: (lambda i: (i.add(d), len(i))[1])(
                HybridIndex(e)), lambda n: n == 1)
        else:
            p.error(s, f"add({docs!r:.30})", lambda d=docs: HybridIndex(e).add(d), mention)
    p.error(s, "add(ids count differs)", lambda: HybridIndex(e).add(w.texts[:2], ids=["a"]), "1 ids for 2")
    p.error(s, "add(duplicate ids)", lambda: HybridIndex(e).add(w.texts[:2], ids=["a", "a"]), "unique")
    p.error(s, "add(id already in the index)", lambda: fresh().add(["x"], ids=["d0"]), "unique")
    p.error(s, "add(int ids)", lambda: HybridIndex(e).add(w.texts[:2], ids=[1, 2]), "ids[0] is a int")
    p.error(s, "add(embeddings=ndarray)", lambda: HybridIndex(e).add(w.texts, embeddings=emb.dense.numpy()),
            "EmbeddingResult")
    p.error(s, "add(embeddings without sparse)", lambda: HybridIndex(e).add(w.texts, embeddings=EmbeddingResult(
        emb.dense, None)), "dense and sparse")
    p.error(s, "add(embeddings of 5 for 6 documents)", lambda: HybridIndex(e).add(w.texts, embeddings=EmbeddingResult(
        emb.dense[:5], emb.sparse[:5])), "for 6 documents")
    p.error(s, "add(embeddings of dimension 8 into 32)", lambda: fresh().add(["x"], embeddings=e.encode(
        ["x"], dimension=8)), "dimension 8")
    nan = emb.dense.clone()
    nan[3, 1] = float("nan")
    p.error(s, "add(NaN dense row)", lambda: HybridIndex(e).add(w.texts, embeddings=EmbeddingResult(nan, emb.sparse)),
            "row 3", "NaN")
    p.error(s, "add(unnormalised dense)", lambda: HybridIndex(e).add(w.texts, embeddings=EmbeddingResult(
        emb.dense * 3, emb.sparse)), "norm")
    p.error(s, "add(zero dense row)", lambda: HybridIndex(e).add(w.texts[:1], embeddings=EmbeddingResult(
        torch.zeros(1, 32), [{}])), "norm 0")
    p.error(s, "add(NaN sparse weight)", lambda: HybridIndex(e).add(w.texts[:1], embeddings=EmbeddingResult(
        emb.dense[:1], [{4: float("nan")}])), "finite")
    p.error(s, "add(token-string keys)", lambda: HybridIndex(e).add(w.texts[:1], embeddings=EmbeddingResult(
        emb.dense[:1], [{"▁a": 1.0}])), "token ids are integers")
    as_json = EmbeddingResult(emb.dense, [{str(k): v for k, v in row.items()} for row in emb.sparse])
    ids = [f"d{i}" for i in range(6)]
    p.ok(s, "add(string token ids, as JSON holds them)", lambda: (lambda i: (i.add(w.texts, ids, embeddings=as_json),
                                                                            i)[1])(HybridIndex(e)),
         lambda i: i.search(w.texts[0], top_k=6) == base.search(w.texts[0], top_k=6))
    bad_add = HybridIndex(e)
    p.ok(s, "a refused add leaves the index empty", lambda: (_swallow(lambda: bad_add.add(
        w.texts, embeddings=EmbeddingResult(nan, emb.sparse))), len(bad_add))[1], lambda n: n == 0)
    p.ok(s, "add(np.float64 dense)", lambda: (lambda i: (i.add(w.texts, ids, embeddings=EmbeddingResult(
        emb.dense.double().numpy(), emb.sparse)), i)[1])(HybridIndex(e)),
         lambda i: [h.id for h in i.search(w.texts[1], top_k=2)] == [h.id for h in base.search(w.texts[1], top_k=2)])
    for kwargs, mention in (({"mode": "bm25"}, "mode"), ({"top_k": 0}, "top_k"), ({"top_k": 2.0}, "top_k"),
                            ({"rerank_top_k": 5}, "without a reranker"), ({"top_k": "3"}, "top_k")):
        p.error(s, f"search({kwargs})", lambda k=kwargs: base.search("q", **k), mention)
    p.ok(s, "search(top_k=np.int64(3))", lambda: base.search("q", top_k=np.int64(3)), lambda h: len(h) == 3)
    p.ok(s, "search(top_k beyond the index)", lambda: base.search("q", top_k=50), lambda h: len(h) == 6)
    p.ok(s, "search([]) gives no hit lists", lambda: base.search([]), lambda h: h == [])
    p.error(s, "search(None)", lambda: base.search(None), "queries")
    p.error(s, "search(rerank_top_k < top_k)", lambda: base.search("q", top_k=3, reranker=w.reranker,
                                                                   rerank_top_k=2), "at least top_k")
    q1 = e.encode(["q"], convert_to="torch")
    p.error(s, "search(2 queries, 1 embedding)", lambda: base.search(["a", "b"], query_embeddings=q1), "1 query")
    p.error(s, "search(query embedding of dimension 8)", lambda: base.search("q", query_embeddings=e.encode(
        "q", dimension=8)), "dimension")
    p.error(s, "search(NaN query)", lambda: base.search("q", query_embeddings=EmbeddingResult(
        torch.full((1, 32), float("nan")), [{}])), "NaN")
    p.error(s, "search(zero query)", lambda: base.search("q", mode="dense", query_embeddings=EmbeddingResult(
        torch.zeros(1, 32), None)), "norm 0")
    p.error(s, "search(sparse mode without sparse)", lambda: base.search("q", mode="sparse",
                                                                         query_embeddings=EmbeddingResult(
                                                                             q1.dense, None)), "sparse")
    p.ok(s, "search(str-keyed query sparse)", lambda: base.search("q", mode="sparse", query_embeddings=EmbeddingResult(
        None, [{str(k): v for k, v in q1.sparse[0].items()}])),
         lambda h: h == base.search("q", mode="sparse", query_embeddings=EmbeddingResult(None, q1.sparse)))
    p.error(s, "search on an index without embedder", lambda: HybridIndex(dimension=8).search("q"), "no embedder")
    p.ok(s, "search reranked", lambda: base.search("q", top_k=2, reranker=w.reranker, rerank_top_k=4),
         lambda h: len(h) == 2)
    p.error(s, "rerank_hits(2 hit lists, 1 query)", lambda: rerank_hits(w.reranker, ["q"], [[], []]), "2 hit lists")
    p.error(s, "HybridIndex(dimension=0)", lambda: HybridIndex(dimension=0), "dimension")
    p.error(s, "HybridIndex(embedder, dimension=12)", lambda: HybridIndex(e, dimension=12), "not allowed")
    p.ok(s, "HybridIndex(dimension=np.int64(16))", lambda: HybridIndex(e, dimension=np.int64(16)),
         lambda i: i.dimension == 16)
    p.error(s, "save an empty index without dimension", lambda: HybridIndex().save(p.tmp() / "x"), "Nothing to save")
    full = p.tmp("full")
    write(full / "mine.txt", "keep")
    p.error(s, "save into a non-empty folder", lambda: base.save(full), "overwrite", guard=[full])
    a_file = write(p.tmp() / "file", "keep")
    p.error(s, "save onto a file", lambda: base.save(a_file, overwrite=True), "is a file", guard=[a_file])
    saved = base.save(p.tmp() / "idx")
    p.ok(s, "save(overwrite=True) replaces", lambda: base.save(full, overwrite=True),
         lambda f: not (f / "mine.txt").exists() and HybridIndex.load(f).ids == base.ids)
    p.ok(s, "load round trip", lambda: HybridIndex.load(saved, e),
         lambda i: i.search(w.texts[2], top_k=6) == base.search(w.texts[2], top_k=6))
    p.error(s, "load(other model, same shape)", lambda: HybridIndex.load(saved, w.other), "another model",
            "weights_sha256")
    p.ok(s, "load(other model, allow_other_model=True)", lambda: HybridIndex.load(saved, w.other,
                                                                                  allow_other_model=True),
         lambda i: len(i) == 6)
    p.error(s, "load(missing folder)", lambda: HybridIndex.load(p.root / "nowhere"), "No index folder")
    p.error(s, "load(folder without index.json)", lambda: HybridIndex.load(p.tmp()), "index.json is missing")
    damages = {
        "truncated index.safetensors": lambda f: write(f / "index.safetensors", (f / "index.safetensors").read_bytes()[
                                                                                :-30]),
        "flipped byte in index.safetensors": lambda f: write(f / "index.safetensors", _flip(
            (f / "index.safetensors").read_bytes())),
        "edited documents.jsonl": lambda f: write(f / "documents.jsonl", (f / "documents.jsonl").read_text().replace(
            '"d1"', '"d0"')),
        "deleted documents.jsonl": lambda f: (f / "documents.jsonl").unlink(),
        "garbled index.json": lambda f: write(f / "index.json", "{garbled"),
        "empty index.json": lambda f: write(f / "index.json", ""),
        "index.json of a list": lambda f: write(f / "index.json", "[1, 2]"),
        "index.json version 1": lambda f: write(f / "index.json", json.dumps(
            {**json.loads((f / "index.json").read_text()), "version": 1})),
        "index.json without files": lambda f: write(f / "index.json", json.dumps(
            {k: v for k, v in json.loads((f / "index.json").read_text()).items() if k != "files"})),
        "index.json size edited": lambda f: write(f / "index.json", json.dumps(
            {**json.loads((f / "index.json").read_text()), "size": 99})),
        "index.json of another format": lambda f: write(f / "index.json", json.dumps(
            {**json.loads((f / "index.json").read_text()), "format": "faiss"})),
        "index.json in latin-1": lambda f: write(f / "index.json", b"\xff\xfe{}"),
    }
    for name, damage in damages.items():
        def call(damage=damage):
            folder = shutil.copytree(saved, p.tmp() / "idx")
            damage(folder)
            return HybridIndex.load(folder, e)
        p.error(s, f"load({name})", call, "index")


def _swallow(call: Callable[[], Any]) -> None:
    with contextlib.suppress(Exception):
        call()


def _flip(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1:]


# ============================================================================================== corpus reader
def corpus_cases(p: Probe, w: World) -> None:
    s = "corpus"
    bad_jsonl = [("not json", ":2:", "not valid JSON"), ('["a"]', ":2:", "JSON object"),
                 ('{"text": "t"}', ":2:", "no 'id' field"), ('{"id": "x"}', ":2:", "no 'text' field"),
                 ('{"id": "x", "text": 3}', ":2:", "text is a int"), ('{"id": true, "text": "t"}', ":2:", "bool"),
                 ('{"id": 1.5, "text": "t"}', ":2:", "float"), ('{"id": ["x"], "text": "t"}', ":2:", "list"),
                 ('{"id": null, "text": "t"}', ":2:", "no 'id' field"), ('{"id": "x", "text": null}', ":2:", "text"),
                 ('{"id": "x", "text": "\\ud800"}', ":2:", "lone surrogate"),
                 ('{"id": "\\udfff", "text": "t"}', ":2:", "the id holds a lone surrogate"),
                 ('{"id": "a", "text": "dup"}', ":2:", "repeats"), ('{"id": "x", "text": {"t": 1}}', ":2:", "dict"),
                 ("{", ":2:", "not valid JSON"), ('"just a string"', ":2:", "JSON object")]
    for line, where, mention in bad_jsonl:
        path = lines_file(p, "c.jsonl", ['{"id": "a", "text": "fine"}', line])
        p.error(s, f"read_corpus(jsonl line {line!r:.32})", lambda f=path: read_corpus(f), f"c.jsonl{where}", mention,
                guard=[path])
    good = lines_file(p, "g.jsonl", ['{"id": 7, "text": "a"}', "", '{"id": "b", "text": "c", "extra": 1}'])
    p.ok(s, "read_corpus(int ids, blank line, extra field)", lambda: read_corpus(good),
         lambda r: r == (["7", "b"], ["a", "c"]))
    bom = write(p.tmp() / "bom.jsonl", "\ufeff" + '{"id": "a", "text": "x"}\n')
    p.ok(s, "read_corpus(UTF-8 BOM)", lambda: read_corpus(bom), lambda r: r == (["a"], ["x"]))
    crlf = write(p.tmp() / "crlf.txt", b"one\r\ntwo\r\n")
    p.ok(s, "read_corpus(.txt with CRLF)", lambda: read_corpus(crlf), lambda r: r == (["1", "2"], ["one", "two"]))
    latin = write(p.tmp() / "latin.jsonl", b'{"id": "a", "text": "caf\xe9"}\n')
    p.error(s, "read_corpus(latin-1 bytes)", lambda: read_corpus(latin), "latin.jsonl:1", "UTF-8")
    latin_txt = write(p.tmp() / "latin.txt", b"ok\ncaf\xe9\n")
    p.error(s, "read_corpus(.txt latin-1 line 2)", lambda: read_corpus(latin_txt), "latin.txt:2", "UTF-8")
    noid = lines_file(p, "noid.jsonl", ['{"text": "a"}', '{"text": "b"}'])
    p.error(s, "read_corpus(no ids at all)", lambda: read_corpus(noid, "_id"), "noid.jsonl:1", "'_id'")
    p.ok(s, "read_corpus(id_field=None numbers lines)", lambda: read_corpus(noid, None),
         lambda r: r == (["1", "2"], ["a", "b"]))
    p.error(s, "read_corpus(empty file)", lambda: read_corpus(write(p.tmp() / "e.jsonl", "")), "no documents")
    p.error(s, "read_corpus(only blank lines)", lambda: read_corpus(write(p.tmp() / "b.txt", "\n \n")), "no documents")
    p.error(s, "read_corpus(missing file)", lambda: read_corpus(p.root / "missing.jsonl"), "does not exist")
    p.error(s, "read_corpus(.csv)", lambda: read_corpus(write(p.tmp() / "c.csv", "a,b\n")), ".jsonl")
    p.error(s, "read_corpus(a folder that is no dataset)", lambda: read_corpus(p.tmp()), "save_to_disk")
    tsv_cases = [(["id\ttext", "a\tx", "b\ty"], None, (["a", "b"], ["x", "y"])),
                 (["text\tdoc", "x\ta"], "doc", (["a"], ["x"])), (["a\tx", "b\ty"], None, (["a", "b"], ["x", "y"]))]
    for rows, id_field, expected in tsv_cases:
        path = lines_file(p, "c.tsv", rows)
        p.ok(s, f"read_corpus(tsv {rows[0]!r})", lambda f=path, i=id_field: read_corpus(f, i or "id"),
             lambda r, x=expected: r == x)
    for rows, mention in ((["a\tx\tz"], "3 tab-separated fields"), (["id\ttext", "a"], "1 tab-separated"),
                          (["text\tbody", "x\ty"], "no column 'id'"), (["a\tx", "a\ty"], "repeats")):
        path = lines_file(p, "c.tsv", rows)
        p.error(s, f"read_corpus(tsv {rows!r:.30})", lambda f=path: read_corpus(f), "c.tsv:", mention)
    p.error(s, "open_corpus(jsonl, split='train')", lambda: open_corpus(w.corpus, split="train"), "no splits")
    import datasets

    dd = datasets.DatasetDict({"train": datasets.Dataset.from_dict({"id": ["a"], "text": ["x"]})})
    p.error(s, "DatasetCorpus(DatasetDict)", lambda: DatasetCorpus(dd), "choose one")
    p.error(s, "open_corpus(DatasetDict, split='test')", lambda: open_corpus(dd, split="test"), "no split 'test'")
    p.ok(s, "open_corpus(DatasetDict, split='train')", lambda: list(open_corpus(dd, split="train")),
         lambda r: r == [("a", "x")])
    p.error(s, "DatasetCorpus(a list)", lambda: DatasetCorpus([{"id": "a", "text": "x"}]), "datasets.Dataset")
    p.error(s, "DatasetCorpus(no text column)", lambda: DatasetCorpus(datasets.Dataset.from_dict({"id": ["a"]})),
            "no column 'text'")
    nulls = datasets.Dataset.from_dict({"id": ["a", None], "text": ["x", "y"]})
    p.error(s, "read_corpus(dataset with a null id)", lambda: read_corpus(nulls), "dataset row 1")
    folder = p.tmp("ds") / "saved"
    datasets.Dataset.from_dict({"id": [1, 2], "text": ["x", "y"]}).save_to_disk(str(folder))
    p.ok(s, "read_corpus(saved dataset folder)", lambda: read_corpus(folder), lambda r: r == (["1", "2"], ["x", "y"]))


# ============================================================================================== loading
def loading_cases(p: Probe, w: World) -> None:
    s = "loading"
    p.error(s, "MgteEmbedder.from_pretrained('/missing')", lambda: MgteEmbedder.from_pretrained("/missing"),
            "/missing does not exist")
    p.error(s, "MgteReranker.from_pretrained('missing')", lambda: MgteReranker.from_pretrained("missing"),
            "does not exist")
    p.error(s, "from_pretrained('./rel/missing')", lambda: MgteEmbedder.from_pretrained("./rel/missing"),
            "does not exist")
    p.error(s, "from_pretrained(a file)", lambda: MgteEmbedder.from_pretrained(w.corpus), "is a file")
    p.error(s, "from_pretrained(42)", lambda: MgteEmbedder.from_pretrained(42), "path_or_model")
    bare = shutil.copytree(w.embedder_dir, p.tmp() / "bare", ignore=shutil.ignore_patterns("tokenizer*", "special*"))
    p.error(s, "from_pretrained(folder without tokenizer)", lambda: MgteEmbedder.from_pretrained(bare),
            "holds no tokenizer")
    p.ok(s, "from_pretrained(folder, tokenizer=folder)", lambda: MgteEmbedder.from_pretrained(
        bare, tokenizer=w.embedder_dir, device="cpu"), lambda x: close(x.encode("a").dense, w.embedder.encode("a").dense))
    p.error(s, "from_pretrained(tokenizer='/missing')", lambda: MgteEmbedder.from_pretrained(
        w.embedder_dir, tokenizer="/missing"), "tokenizer folder /missing does not exist")
    p.error(s, "MgteEmbedder.from_pretrained(reranker folder)", lambda: MgteEmbedder.from_pretrained(w.reranker_dir),
            "MgteForSequenceClassification", "MgteReranker")
    p.error(s, "MgteReranker.from_pretrained(embedder folder)", lambda: MgteReranker.from_pretrained(w.embedder_dir),
            "MgteForEmbedding")
    mlm = p.tmp() / "mlm"
    tiny.make_model(MgteForMaskedLM, vocab_size=len(w.tokenizer)).save_pretrained(mlm)
    w.tokenizer.save_pretrained(mlm)
    p.error(s, "MgteEmbedder.from_pretrained(MLM folder)", lambda: MgteEmbedder.from_pretrained(mlm), "MgteForMaskedLM")
    liar = shutil.copytree(mlm, p.tmp() / "liar")
    write(liar / "config.json", (liar / "config.json").read_text().replace('"MgteForMaskedLM"', '"MgteModel"'))
    p.error(s, "from_pretrained(MLM weights, config says backbone)", lambda: MgteEmbedder.from_pretrained(liar),
            "weights missing")
    no_weights = shutil.copytree(w.embedder_dir, p.tmp() / "noweights",
                                 ignore=shutil.ignore_patterns("model.safetensors"))
    p.error(s, "from_pretrained(no model.safetensors)", lambda: MgteEmbedder.from_pretrained(no_weights),
            "model.safetensors")
    pickled = shutil.copytree(no_weights, p.tmp() / "pickled")
    torch.save(w.embedder.model.state_dict(), pickled / "pytorch_model.bin")
    p.error(s, "from_pretrained(only pytorch_model.bin): never unpickled", lambda: MgteEmbedder.from_pretrained(pickled),
            "pickle")
    for device, mention in (("gpu", "not a torch device"), ("cuda:99", "cuda"), ("tpu", "not a torch device"),
                            (3.5, "not a torch device")):
        if device == "cuda:99" or not torch.cuda.is_available():
            p.error(s, f"from_pretrained(device={device!r})", lambda d=device: MgteEmbedder.from_pretrained(
                w.embedder_dir, device=d), mention)
    if not torch.cuda.is_available():
        p.error(s, "from_pretrained(device='cuda') without CUDA", lambda: MgteEmbedder.from_pretrained(
            w.embedder_dir, device="cuda"), "CUDA is not available")
    for dtype, mention in (("half-ish", "not a floating-point torch dtype"), ("int8", "floating-point"),
                           (torch.int64, "floating-point")):
        p.error(s, f"from_pretrained(dtype={dtype!r})", lambda d=dtype: MgteEmbedder.from_pretrained(
            w.embedder_dir, dtype=d), mention)
    p.ok(s, "from_pretrained(dtype='bfloat16')", lambda: MgteEmbedder.from_pretrained(w.embedder_dir, dtype="bfloat16",
                                                                                       device="cpu"),
         lambda x: x.model.dtype == torch.bfloat16)
    p.error(s, "from_pretrained(model object, no tokenizer)", lambda: MgteEmbedder.from_pretrained(w.embedder.model),
            "tokenizer")
    p.error(s, "from_pretrained(reranker object)", lambda: MgteEmbedder.from_pretrained(w.reranker.model,
                                                                                        tokenizer=w.tokenizer),
            "MgteForEmbedding")
    p.error(s, "from_pretrained(tokenizer=3)", lambda: MgteEmbedder.from_pretrained(w.embedder_dir, tokenizer=3),
            "tokenizer")


# ============================================================================================== shards
def shards_cases(p: Probe, w: World) -> None:
    s, e = "shards", w.embedder
    from mgte_hf.corpus import JsonlCorpus

    good = p.tmp("shards") / "good"
    encode_to_shards(e, JsonlCorpus(w.corpus), good, chunk_size=2)
    for size, mention in ((0, "chunk_size"), (-3, "chunk_size"), (2.5, "chunk_size"), ("2", "chunk_size")):
        p.error(s, f"encode_to_shards(chunk_size={size!r})", lambda n=size: encode_to_shards(
            e, JsonlCorpus(w.corpus), p.tmp() / "o", chunk_size=n), mention)
    p.ok(s, "encode_to_shards(chunk_size=np.int64(2)) equals int", lambda: encode_to_shards(
        e, JsonlCorpus(w.corpus), p.tmp() / "o", chunk_size=np.int64(2)), lambda r: _same_files(r.folder, good))
    p.error(s, "encode_to_shards(dimension=12)", lambda: encode_to_shards(e, JsonlCorpus(w.corpus), p.tmp() / "o",
                                                                         dimension=12), "not allowed")
    p.error(s, "encode_to_shards(another model, same folder)", lambda: encode_to_shards(
        w.other, JsonlCorpus(w.corpus), good, chunk_size=2), "another run", guard=[good])
    p.error(s, "encode_to_shards(other chunk size, same folder)", lambda: encode_to_shards(
        e, JsonlCorpus(w.corpus), good, chunk_size=3), "chunk_size", guard=[good])
    dup = lines_file(p, "dup.jsonl", ['{"id": "a", "text": "x"}', '{"id": "a", "text": "y"}'])
    p.error(s, "encode_to_shards(duplicate ids)", lambda: encode_to_shards(e, JsonlCorpus(dup), p.tmp() / "o"),
            "unique")
    empty = write(p.tmp() / "e.jsonl", "\n")
    p.error(s, "encode_to_shards(empty corpus)", lambda: encode_to_shards(e, JsonlCorpus(empty), p.tmp() / "o"),
            "no documents")
    users = p.tmp("users")
    write(users / "chunk-000000" / "notes.txt", "mine")
    p.error(s, "encode_to_shards(user's chunk-000000/)", lambda: encode_to_shards(e, JsonlCorpus(w.corpus), users,
                                                                                 chunk_size=2),
            "without an mgte-hf-shards manifest", guard=[users])
    tmp_users = p.tmp("tmpusers")
    write(tmp_users / "chunk-000000.tmp" / "draft.txt", "mine")
    p.error(s, "encode_to_shards(user's chunk-000000.tmp/)", lambda: encode_to_shards(
        e, JsonlCorpus(w.corpus), tmp_users, chunk_size=2), "draft.txt", guard=[tmp_users])
    lone = p.tmp("lone")
    write(lone / "manifest.json", '{"mine": true}')
    p.error(s, "encode_to_shards(user's manifest.json)", lambda: encode_to_shards(e, JsonlCorpus(w.corpus), lone),
            "not an mgte-hf-shards manifest", guard=[lone])
    a_file = write(p.tmp() / "file", "keep")
    p.error(s, "encode_to_shards(output is a file)", lambda: encode_to_shards(e, JsonlCorpus(w.corpus), a_file),
            "not a folder", guard=[a_file])
    replace = shutil.copytree(users, p.tmp() / "replace")
    p.ok(s, "encode_to_shards(overwrite=True) replaces the foreign chunk", lambda: encode_to_shards(
        e, JsonlCorpus(w.corpus), replace, chunk_size=2, overwrite=True), lambda r: _same_files(replace, good))
    p.ok(s, "encode_to_shards rerun skips every chunk", lambda: encode_to_shards(e, JsonlCorpus(w.corpus), good,
                                                                                chunk_size=2),
         lambda r: r.encoded == [] and len(r.skipped) == 3)
    p.error(s, "ShardReader(missing)", lambda: ShardReader(p.root / "none"), "No finished shards")
    damaged = {"garbled top manifest": lambda f: write(f / "manifest.json", "{"),
               "chunk manifest edited": lambda f: write(f / "chunk-000001" / "manifest.json", "{}"),
               "flipped dense byte (verify)": lambda f: write(f / "chunk-000002" / "dense.npy", _flip(
                   (f / "chunk-000002" / "dense.npy").read_bytes())),
               "deleted ids.jsonl (verify)": lambda f: (f / "chunk-000000" / "ids.jsonl").unlink()}
    for name, damage in damaged.items():
        def call(damage=damage):
            folder = shutil.copytree(good, p.tmp() / "s")
            damage(folder)
            return ShardReader(folder, verify=True)
        p.error(s, f"ShardReader({name})", call, "manifest" if "manifest" in name else "shards are damaged")

    def lazy():
        folder = shutil.copytree(good, p.tmp() / "s")
        write(folder / "chunk-000001" / "dense.npy", _flip((folder / "chunk-000001" / "dense.npy").read_bytes()))
        return ShardedIndex(folder, e).search("q", mode="dense")
    p.error(s, "ShardedIndex.search(flipped dense byte)", lazy, "chunk-000001/dense.npy", "sha256")
    p.error(s, "ShardedIndex(other model)", lambda: ShardedIndex(good, w.other), "another model")
    p.ok(s, "ShardedIndex(other model, allow_other_model=True)", lambda: ShardedIndex(good, w.other,
                                                                                      allow_other_model=True),
         lambda i: len(i) == 6)
    p.error(s, "ShardedIndex.search(reranker=...)", lambda: ShardedIndex(good, e).search("q", reranker=w.reranker),
            "no document texts")
    p.error(s, "ShardedIndex.search(mode='bm25')", lambda: ShardedIndex(good, e).search("q", mode="bm25"), "mode")
    p.ok(s, "ShardedIndex equals HybridIndex", lambda: ShardedIndex(good, e).search(w.texts[0], top_k=6),
         lambda hits: [h.id for h in hits] == [h.id for h in _memory(w).search(w.texts[0], top_k=6)])


def _memory(w: World) -> HybridIndex:
    index = HybridIndex(w.embedder)
    index.add(w.texts, ids=[f"d{i}" for i in range(6)])
    return index


def _same_files(a: Path, b: Path) -> bool:
    files = {p.relative_to(a): p.read_bytes() for p in a.rglob("*") if p.is_file()}
    return files == {p.relative_to(b): p.read_bytes() for p in b.rglob("*") if p.is_file()}


# ============================================================================================== BEIR and evaluation
def beir_cases(p: Probe, w: World) -> None:
    s = "evaluation"
    dataset = BeirDataset({f"d{i}": {"title": "", "text": t} for i, t in enumerate(w.texts)},
                          {"q1": w.texts[0][:20], "q2": w.texts[1][:20]}, {"q1": {"d0": 1}, "q2": {"d1": 1}})
    folder = write_beir(dataset, p.tmp("beir") / "set")
    p.error(s, "write_beir onto an existing set", lambda: write_beir(dataset, folder), "exists", guard=[folder])

    def broken(edit: Callable[[Path], Any]) -> Callable[[], Any]:
        def call():
            copy_ = shutil.copytree(folder, p.tmp() / "set")
            edit(copy_)
            return load_beir(copy_)
        return call
    for name, edit, mention in (
            ("missing corpus.jsonl", lambda f: (f / "corpus.jsonl").unlink(), "corpus.jsonl is missing"),
            ("missing qrels", lambda f: (f / "qrels" / "test.tsv").unlink(), "splits found here: none"),
            ("bad corpus JSON", lambda f: write(f / "corpus.jsonl", "{\n"), "corpus.jsonl:1"),
            ("corpus row without _id", lambda f: write(f / "corpus.jsonl", '{"text": "x"}\n'), "'_id'"),
            ("corpus text not a string", lambda f: write(f / "corpus.jsonl", '{"_id": "a", "text": 3}\n'),
             "'text' is not a string"),
            ("corpus in latin-1", lambda f: write(f / "corpus.jsonl", b'{"_id": "a", "text": "caf\xe9"}\n'),
             "UTF-8"),
            ("duplicate corpus ids", lambda f: write(f / "corpus.jsonl", '{"_id": "a"}\n{"_id": "a"}\n'),
             "appears twice"),
            ("qrels with 2 fields", lambda f: write(f / "qrels" / "test.tsv", "query-id\tcorpus-id\tscore\nq1\td0\n"),
             "3 tab-separated"),
            ("qrels score 'high'", lambda f: write(f / "qrels" / "test.tsv", "q1\td0\thigh\n"), "not a number"),
            ("qrels score 'inf'", lambda f: write(f / "qrels" / "test.tsv", "q1\td0\tinf\n"), "not a number"),
            ("qrels in latin-1", lambda f: write(f / "qrels" / "test.tsv", b"q1\td\xe9\t1\n"), "UTF-8")):
        p.error(s, f"load_beir({name})", broken(edit), mention)
    ghost = shutil.copytree(folder, p.tmp() / "ghost")
    write(ghost / "qrels" / "test.tsv", "q1\td0\t1\nq1\tghost\t1\nq2\td1\t1\n")
    p.ok(s, "load_beir(unknown doc) keeps it and counts it", lambda: load_beir(ghost),
         lambda d: d.stats()["qrels_absent_from_corpus"] == 1 and "ghost" in d.qrels["q1"])
    p.ok(s, "load_beir(unknown doc, drop)", lambda: load_beir(ghost, unknown_docs="drop"),
         lambda d: d.qrels["q1"] == {"d0": 1})
    p.error(s, "load_beir(unknown doc, error)", lambda: load_beir(ghost, unknown_docs="error"), "ghost",
            "test.tsv:2")
    p.error(s, "load_beir(unknown_docs='ignore')", lambda: load_beir(ghost, unknown_docs="ignore"), "unknown_docs")
    for kwargs, mention in (({"systems": ["colbert"]}, "colbert"), ({"systems": []}, "no retrieval systems"),
                            ({"top_k": 5}, "deepest metric"), ({"max_lengths": [0]}, "max_lengths"),
                            ({"dims": [0]}, "dims"), ({"rerank_top_k": 0}, "rerank_top_k"),
                            ({"rerank_first_stage": "dense"}, "rerank_first_stage"), ({"max_lengths": []}, "at least"),
                            ({"systems": ["hybrid"], "hybrid_weights": []}, "hybrid"),
                            ({"metrics": ["ndcg@x"]}, "ndcg@x"), ({"max_queries": 0}, "max_queries")):
        p.error(s, f"RetrievalEvaluator({kwargs})", lambda k=kwargs: RetrievalEvaluator(dataset, **k), mention)
    p.ok(s, "RetrievalEvaluator(dims=[np.int64(8)])", lambda: RetrievalEvaluator(
        dataset, systems=["dense"], dims=[np.int64(8)], show_progress_bar=False).run(w.embedder),
         lambda r: r.systems[0].name == "dense_d8")
    p.error(s, "evaluator.run() without a model", lambda: RetrievalEvaluator(dataset, systems=["dense"]).run(),
            "need a model")
    p.error(s, "evaluator.run(rerank without reranker)", lambda: RetrievalEvaluator(dataset, systems=["rerank"]).run(
        w.embedder), "needs a reranker")
    p.error(s, "evaluator(a Linear layer)", lambda: RetrievalEvaluator(dataset, systems=["dense"])(
        torch.nn.Linear(2, 2)), "MgteEmbedder")
    p.error(s, "evaluator(bare model, no tokenizer)", lambda: RetrievalEvaluator(dataset, systems=["dense"])(
        w.embedder.model), "tokenizer=")
    report = RetrievalEvaluator(dataset, systems=["dense"], show_progress_bar=False).run(w.embedder)
    out = p.tmp("report")
    write(out / "report.md", "my notes")
    p.error(s, "report.save over report.md", lambda: report.save(out), "report", "exists", guard=[out])
    p.ok(s, "report.save(overwrite=True)", lambda: report.save(out, overwrite=True),
         lambda paths: paths["markdown"].read_text().startswith("# Retrieval"))


# ============================================================================================== export, convert, hub
def artifact_cases(p: Probe, w: World) -> None:
    s = "artifacts"
    model = tiny.make_model(MgteForEmbedding, num_hidden_layers=1)
    onnx_dir = p.tmp("onnx")
    exported = export_onnx(model, onnx_dir / "m.onnx", dimension=16)
    p.error(s, "export_onnx onto an existing file", lambda: export_onnx(model, exported, check=False), "overwrite",
            guard=[exported])
    for opset, mention in ((5, "opset"), (17, "opset"), (0, "opset"), ("18", "opset")):
        p.error(s, f"export_onnx(opset={opset!r})", lambda o=opset: export_onnx(model, p.tmp() / "x.onnx", opset=o,
                                                                              check=False), mention)
    p.error(s, "export_onnx(dimension=12)", lambda: export_onnx(model, p.tmp() / "x.onnx", dimension=12), "not allowed")
    p.error(s, "export_onnx(bfloat16 model)", lambda: export_onnx(copy.deepcopy(model).to(torch.bfloat16),
                                                                  p.tmp() / "x.onnx"), "float32")
    p.error(s, "export_onnx(reranker, dimension=8)", lambda: export_onnx(
        tiny.make_model(MgteForSequenceClassification, num_labels=1, num_hidden_layers=1), p.tmp() / "x.onnx",
        dimension=8), "dimension")
    p.error(s, "export_onnx(an MLM model)", lambda: export_onnx(tiny.make_model(MgteForMaskedLM, num_hidden_layers=1),
                                                                p.tmp() / "x.onnx"), "MgteForEmbedding")
    other = tiny.make_model(MgteForEmbedding, seed=3, num_hidden_layers=1)
    p.error(s, "check_onnx(another model)", lambda: check_onnx(exported, other, dimension=16), "another model")
    p.ok(s, "check_onnx(the model)", lambda: check_onnx(exported, model, dimension=16),
         lambda errors: max(errors.values()) < 1e-4)
    p.error(s, "check_onnx(a damaged file)", lambda: check_onnx(write(p.tmp() / "bad.onnx", b"not onnx"), model),
            "bad.onnx")
    checkpoint = p.tmp("ckpt") / "m"
    model.save_pretrained(checkpoint)
    p.error(s, "convert(dst == src)", lambda: convert_checkpoint(checkpoint, checkpoint, to="new", overwrite=True),
            "is the input", guard=[checkpoint])
    p.error(s, "convert(dst holds src)", lambda: convert_checkpoint(checkpoint, checkpoint.parent, to="new",
                                                                    overwrite=True), "holds the input",
            guard=[checkpoint])
    full = p.tmp("full")
    write(full / "keep.txt", "mine")
    p.error(s, "convert(non-empty dst)", lambda: convert_checkpoint(checkpoint, full, to="gte"), "overwrite",
            guard=[full])
    p.error(s, "convert(to='onnx')", lambda: convert_checkpoint(checkpoint, p.tmp() / "x", to="onnx"), "onnx")
    p.error(s, "convert(missing src)", lambda: convert_checkpoint(p.root / "none", p.tmp() / "x", to="new"),
            "checkpoint folder")
    p.error(s, "save_hub_folder(non-empty)", lambda: save_hub_folder(model, w.tokenizer, full), "overwrite",
            guard=[full])
    p.error(s, "save_hub_folder(kind mismatch)", lambda: save_hub_folder(model, w.tokenizer, p.tmp() / "h",
                                                                         kind="reranker"), "reranker")
    p.error(s, "save_hub_folder(unknown card field)", lambda: save_hub_folder(model, w.tokenizer, p.tmp() / "h",
                                                                              licence="mit"), "licence")
    existing = write(p.tmp() / "f.txt", "keep")
    p.error(s, "check_output(existing file)", lambda: check_output(existing), "exists", guard=[existing])
    p.error(s, "check_output(output is an input)", lambda: check_output(existing, overwrite=True, inputs=[existing]),
            "is the input", guard=[existing])
    p.error(s, "check_output(folder expected, file found)", lambda: check_output(existing, folder=True,
                                                                                 overwrite=True), "is a file")
    p.error(s, "check_output(file expected, folder found)", lambda: check_output(existing.parent, overwrite=True),
            "is a folder")
    p.ok(s, "check_output(empty folder)", lambda: check_output(p.tmp(), folder=True), lambda x: True)

    def failing_stage():
        target = p.tmp("stage") / "out"
        write(target / "old.txt", "old")
        with contextlib.suppress(RuntimeError), staged_folder(target, overwrite=True) as tmp:
            write(tmp / "new.txt", "new")
            raise RuntimeError("the writer failed half way")
        return target
    p.ok(s, "staged_folder keeps the old folder when writing fails", failing_stage,
         lambda t: sorted(x.name for x in t.iterdir()) == ["old.txt"] and len(list(t.parent.iterdir())) == 1)


# ============================================================================================== command line
def cli_cases(p: Probe, w: World) -> None:
    m, r, o = str(w.embedder_dir), str(w.reranker_dir), str(w.other_dir)
    corpus = str(w.corpus)
    txt = str(lines_file(p, "docs.txt", w.texts))
    # encode
    p.cli_error("encode: nothing to write", ["encode", "--model", m, "--text", "x"], "nothing to write")
    p.cli_error("encode: --output-dense x.bin", ["encode", "--model", m, "--text", "x", "--output-dense",
                                                 str(p.root / "x.bin")], ".npy")
    guarded = write(p.tmp() / "c.jsonl", w.corpus.read_bytes())
    p.cli_error("encode: --output-sparse is the --input", ["encode", "--model", m, "--input", str(guarded),
                                                           "--output-sparse", str(guarded)], "is the input",
                guard=[guarded])
    p.cli_error("encode: --output-sparse is the --input (--overwrite)",
                ["encode", "--model", m, "--input", str(guarded), "--output-sparse", str(guarded), "--overwrite"],
                "is the input", guard=[guarded])
    kept = write(p.tmp() / "out.jsonl", "mine")
    p.cli_error("encode: existing --output-sparse", ["encode", "--model", m, "--input", corpus, "--output-sparse",
                                                     str(kept)], "exists", "--overwrite", guard=[kept])
    kept_npy = write(p.tmp() / "out.npy", b"mine")
    p.cli_error("encode: existing --output-dense", ["encode", "--model", m, "--input", corpus, "--output-dense",
                                                    str(kept_npy)], "exists", guard=[kept_npy])
    p.cli_error("encode: output into the model folder", ["encode", "--model", m, "--text", "x", "--output-sparse",
                                                         str(w.embedder_dir / "config.json"), "--overwrite"],
                "is the input", guard=[w.embedder_dir])
    same = str(p.tmp() / "s.npy")
    p.cli_error("encode: dense and sparse to one file", ["encode", "--model", m, "--text", "x", "--output-dense", same,
                                                         "--output-sparse", same], "same file")
    p.cli_error("encode: --id-field _id on lines without _id", ["encode", "--model", m, "--input", corpus,
                                                                 "--id-field", "_id", "--output-sparse", "-"],
                "corpus.jsonl:1", "'_id'")
    holes = str(lines_file(p, "holes.jsonl", ['{"_id": "doc0", "text": "a"}', '{"_id": "doc1", "text": "b"}',
                                             '{"text": "c"}', '{"_id": "doc3", "text": "d"}']))
    p.cli_error("encode: one line lacks its id", ["encode", "--model", m, "--input", holes, "--id-field", "_id",
                                                  "--output-sparse", "-"], "holes.jsonl:3", "'_id'")
    dups = str(lines_file(p, "dups.jsonl", ['{"id": "a", "text": "x"}', '{"id": "a", "text": "y"}']))
    p.cli_error("encode: duplicate ids", ["encode", "--model", m, "--input", dups, "--output-sparse", "-"],
                "dups.jsonl:2", "repeats")
    p.cli_ok("encode: --line-ids", ["encode", "--model", m, "--input", holes, "--line-ids", "--output-sparse", "-"],
             lambda res: [json.loads(x)["id"] for x in res[1].splitlines()] == ["1", "2", "3", "4"])
    out_ok = p.tmp() / "ok"
    p.cli_ok("encode: dense and sparse", ["encode", "--model", m, "--input", corpus, "--output-dense",
                                          str(out_ok / "d.npy"), "--output-sparse", str(out_ok / "s.jsonl")],
             lambda res: np.load(out_ok / "d.npy").shape == (6, 32)
             and [json.loads(x)["id"] for x in (out_ok / "s.jsonl").read_text().splitlines()] == [f"d{i}"
                                                                                                for i in range(6)])
    for flag, value, mention in (("--dimension", "12", "not allowed"), ("--max-length", "1", "max_length"),
                                 ("--batch-tokens", "0", "batch_tokens"), ("--dimension", "x", "--dimension"),
                                 ("--dtype", "int8", "--dtype"), ("--truncation", "cut", "--truncation"),
                                 ("--device", "gpu", "not a torch device")):
        p.cli_error(f"encode: {flag} {value}", ["encode", "--model", m, "--text", "x", "--output-sparse", "-", flag,
                                                value], mention)
    if not torch.cuda.is_available():
        for command, extra in (("encode", ["--text", "x", "--output-sparse", "-"]),
                               ("search", ["--corpus", txt, "--query", "q"]),
                               ("rerank", ["--documents", txt, "--query", "q"]),
                               ("encode-corpus", ["--input", corpus, "--output-dir", str(p.tmp() / "o")]),
                               ("search-shards", ["--index-dir", str(p.tmp()), "--query", "q"])):
            p.cli_error(f"{command}: --device cuda without CUDA", [command, "--model", r if command == "rerank" else m,
                                                                   "--device", "cuda", *extra], "CUDA is not available")
    p.cli_error("encode: missing --model folder", ["encode", "--model", str(p.root / "none"), "--text", "x",
                                                   "--output-sparse", "-"], "does not exist")
    p.cli_error("encode: --model is a reranker", ["encode", "--model", r, "--text", "x", "--output-sparse", "-"],
                "MgteReranker")
    p.cli_error("encode: missing --input", ["encode", "--model", m, "--input", str(p.root / "no.jsonl"),
                                            "--output-sparse", "-"], "does not exist")
    p.cli_error("encode: --input and --text", ["encode", "--model", m, "--input", corpus, "--text", "x",
                                               "--output-sparse", "-"], "not allowed with")
    latin = str(write(p.tmp() / "l.txt", b"caf\xe9\n"))
    p.cli_error("encode: latin-1 input", ["encode", "--model", m, "--input", latin, "--output-sparse", "-"], "UTF-8")
    # search
    idx = p.tmp("idx")
    run_cli(["search", "--model", m, "--corpus", corpus, "--index-dir", str(idx / "i")])
    user_dir = p.tmp("userdir")
    write(user_dir / "documents.jsonl", "a user's file")
    p.cli_error("search: --index-dir holds a user's files", ["search", "--model", m, "--corpus", txt, "--index-dir",
                                                             str(user_dir)], "not empty", guard=[user_dir])
    p.cli_error("search: --index-dir already holds an index", ["search", "--model", m, "--corpus", txt, "--index-dir",
                                                               str(idx / "i")], "already holds an index",
                guard=[idx])
    inside = write(p.tmp("in") / "c.txt", "a\nb\n")
    p.cli_error("search: corpus inside --index-dir", ["search", "--model", m, "--corpus", str(inside), "--index-dir",
                                                      str(inside.parent), "--overwrite"], "holds the input",
                guard=[inside.parent])
    p.cli_error("search: --index-dir missing", ["search", "--model", m, "--index-dir", str(p.root / "missing"),
                                                "--query", "q"], "does not exist", "--corpus")
    p.cli_error("search: --index-dir without index", ["search", "--model", m, "--index-dir", str(p.tmp()), "--query",
                                                      "q"], "no index.json")
    p.cli_error("search: nothing given", ["search", "--model", m, "--query", "q"], "--corpus")
    p.cli_error("search: nothing to do", ["search", "--model", m, "--corpus", txt], "nothing to do")
    p.cli_error("search: other model", ["search", "--model", o, "--index-dir", str(idx / "i"), "--query", "q"],
                "another model", "--allow-other-model")
    p.cli_ok("search: other model allowed", ["search", "--model", o, "--index-dir", str(idx / "i"), "--query", "q",
                                             "--allow-other-model", "--json"],
             lambda res: len(json.loads(res[1])["hits"]) == 6)
    p.cli_error("search: --dimension differs from the index", ["search", "--model", m, "--index-dir", str(idx / "i"),
                                                               "--query", "q", "--dimension", "16"], "--dimension 16")
    p.cli_error("search: --top-k 0", ["search", "--model", m, "--corpus", txt, "--query", "q", "--top-k", "0"],
                "top_k")
    p.cli_error("search: --rerank-top-k without --reranker", ["search", "--model", m, "--corpus", txt, "--query", "q",
                                                              "--rerank-top-k", "5"], "reranker")
    p.cli_error("search: --mode bm25", ["search", "--model", m, "--corpus", txt, "--query", "q", "--mode", "bm25"],
                "--mode")
    p.cli_error("search: duplicate ids in --corpus", ["search", "--model", m, "--corpus", dups, "--query", "q"],
                "repeats")
    p.cli_ok("search: a .txt corpus", ["search", "--model", m, "--corpus", txt, "--query", w.texts[2], "--json"],
             lambda res: json.loads(res[1])["hits"][0]["id"] == "3")
    p.cli_ok("search: --overwrite rebuilds", ["search", "--model", m, "--corpus", txt, "--index-dir", str(user_dir),
                                              "--overwrite"], lambda res: (user_dir / "index.json").is_file())
    # rerank
    p.cli_error("rerank: missing --documents", ["rerank", "--model", r, "--query", "q", "--documents",
                                                str(p.root / "none.txt")], "does not exist")
    p.cli_error("rerank: --top-k -1", ["rerank", "--model", r, "--query", "q", "--documents", txt, "--top-k", "-1"],
                "top_k")
    p.cli_error("rerank: --model is an embedder", ["rerank", "--model", m, "--query", "q", "--documents", txt],
                "MgteEmbedder")
    p.cli_error("rerank: ids missing", ["rerank", "--model", r, "--query", "q", "--documents", holes,
                                        "--id-field", "_id"], "holes.jsonl:3")
    p.cli_ok("rerank: --json", ["rerank", "--model", r, "--query", "q", "--documents", txt, "--json"],
             lambda res: len(res[1].splitlines()) == 6)
    # encode-corpus and search-shards
    shards = p.tmp("shards")
    ok_dir = shards / "ok"
    p.cli_ok("encode-corpus", ["encode-corpus", "--model", m, "--input", corpus, "--output-dir", str(ok_dir),
                               "--chunk-size", "2", "--device", "cpu"], lambda res: (ok_dir / "manifest.json").is_file())
    p.cli_error("encode-corpus: --split on .jsonl", ["encode-corpus", "--model", m, "--input", corpus, "--output-dir",
                                                     str(shards / "s"), "--split", "train", "--device", "cpu"],
                "no splits")
    p.cli_error("encode-corpus: --chunk-size 0", ["encode-corpus", "--model", m, "--input", corpus, "--output-dir",
                                                  str(shards / "s"), "--chunk-size", "0", "--device", "cpu"],
                "--chunk-size")
    p.cli_error("encode-corpus: missing --input", ["encode-corpus", "--model", m, "--input", str(p.root / "n.jsonl"),
                                                   "--output-dir", str(shards / "s"), "--device", "cpu"],
                "does not exist")
    users = p.tmp("users")
    write(users / "chunk-000000" / "x.txt", "mine")
    p.cli_error("encode-corpus: a user's chunk-000000/", ["encode-corpus", "--model", m, "--input", corpus,
                                                          "--output-dir", str(users), "--device", "cpu"],
                "--overwrite", guard=[users])
    p.cli_error("encode-corpus: other model into existing shards", ["encode-corpus", "--model", o, "--input", corpus,
                                                                    "--output-dir", str(ok_dir), "--chunk-size", "2",
                                                                    "--device", "cpu"], "another run",
                guard=[ok_dir])
    p.cli_error("encode-corpus: --output-dir is --input", ["encode-corpus", "--model", m, "--input", corpus,
                                                           "--output-dir", corpus, "--device", "cpu"], "is the --input",
                guard=[w.corpus])
    p.cli_error("encode-corpus: id-less lines", ["encode-corpus", "--model", m, "--input", holes, "--id-field", "_id",
                                                 "--output-dir", str(shards / "h"), "--device", "cpu"],
                "holes.jsonl:3")
    p.cli_error("search-shards: missing folder", ["search-shards", "--model", m, "--index-dir", str(p.root / "none"),
                                                  "--query", "q"], "No finished shards")
    p.cli_error("search-shards: other model", ["search-shards", "--model", o, "--index-dir", str(ok_dir), "--query",
                                               "q"], "another model")
    p.cli_ok("search-shards", ["search-shards", "--model", m, "--index-dir", str(ok_dir), "--query", w.texts[1],
                               "--json"], lambda res: json.loads(res[1])["hits"][0]["id"] == "d1")
    # evaluate
    beir = write_beir(BeirDataset({f"d{i}": {"title": "", "text": t} for i, t in enumerate(w.texts)},
                                  {"q1": w.texts[0][:15]}, {"q1": {"d0": 1, "ghost": 1}}), p.tmp("beir") / "set")
    ev = str(p.tmp("ev"))
    p.cli_error("evaluate: --systems bm25,colbert", ["evaluate", "--dataset", str(beir), "--output", ev, "--systems",
                                                     "bm25,colbert"], "unknown system 'colbert'")
    p.cli_error("evaluate: --systems dense without --model", ["evaluate", "--dataset", str(beir), "--output", ev,
                                                              "--systems", "dense"], "--model")
    p.cli_error("evaluate: missing --dataset", ["evaluate", "--dataset", str(p.root / "none"), "--output", ev],
                "no BEIR folder")
    p.cli_error("evaluate: --dims x", ["evaluate", "--dataset", str(beir), "--output", ev, "--model", m, "--dims",
                                       "x"], "--dims")
    p.cli_error("evaluate: --hybrid-weights 1", ["evaluate", "--dataset", str(beir), "--output", ev, "--model", m,
                                                 "--hybrid-weights", "1"], "DENSE:SPARSE")
    p.cli_error("evaluate: --top-k 5", ["evaluate", "--dataset", str(beir), "--output", ev, "--systems", "bm25",
                                        "--top-k", "5"], "deepest metric")
    p.cli_error("evaluate: --unknown-docs error", ["evaluate", "--dataset", str(beir), "--output", ev, "--systems",
                                                   "bm25", "--unknown-docs", "error"], "ghost")
    p.cli_error("evaluate: --rerank without --reranker", ["evaluate", "--dataset", str(beir), "--output", ev,
                                                          "--model", m, "--systems", "rerank"], "--reranker")
    p.cli_ok("evaluate: bm25 with an unknown document kept and counted",
             ["evaluate", "--dataset", str(beir), "--output", ev, "--systems", "bm25"],
             lambda res: "1 qrels absent from corpus" in (Path(ev) / "report.md").read_text())
    p.cli_error("evaluate: --output holds a report", ["evaluate", "--dataset", str(beir), "--output", ev, "--systems",
                                                      "bm25"], "exists", "--overwrite", guard=[Path(ev)])
    # export and convert
    ckpt = p.tmp("ckpt") / "m"
    tiny.make_model(MgteForEmbedding, num_hidden_layers=1).save_pretrained(ckpt)
    p.cli_error("export: --opset 5", ["export", str(ckpt), str(p.tmp() / "m.onnx"), "--opset", "5"], "--opset 5")
    onnx_file = write(p.tmp() / "m.onnx", "mine")
    p.cli_error("export: existing OUT", ["export", str(ckpt), str(onnx_file)], "exists", guard=[onnx_file])
    p.cli_error("export: OUT is a file of SRC", ["export", str(ckpt), str(ckpt / "model.safetensors"), "--overwrite"],
                "is the input", guard=[ckpt])
    p.cli_error("export: missing SRC", ["export", str(p.root / "none"), str(p.tmp() / "x.onnx")], "none")
    p.cli_error("export: --dimension 12", ["export", str(ckpt), str(p.tmp() / "x.onnx"), "--dimension", "12"],
                "not allowed")
    p.cli_error("convert: DST is SRC", ["convert", str(ckpt), str(ckpt), "--to", "new", "--overwrite"], "is the input",
                guard=[ckpt])
    p.cli_error("convert: --to onnx", ["convert", str(ckpt), str(p.tmp() / "x"), "--to", "onnx"], "--to")
    p.cli_error("convert: missing SRC", ["convert", str(p.root / "none"), str(p.tmp() / "x"), "--to", "new"],
                "checkpoint folder")
    p.cli_error("info: --model missing", ["info", "--model", str(p.root / "none")], "none")
    p.cli_error("data: --only nonsense", ["data", "build", "--only", "nonsense", "--cache", str(p.tmp())], "nonsense")


# ============================================================================================== main
def build(root: Path) -> tuple[Probe, World]:
    world = build_world(root / "world")
    probe = Probe(root / "cases")
    for add in (embedder_cases, reranker_cases, scoring_cases, index_cases, corpus_cases, loading_cases,
                shards_cases, beir_cases, artifact_cases, cli_cases):
        add(probe, world)
    return probe, world


def summary(cases: list[Case]) -> str:
    surfaces = sorted({c.surface for c in cases})
    rows = [f"{'surface':<12} {'tried':>5} " + " ".join(f"{o:>12}" for o in OUTCOMES)]
    for surface in [*surfaces, "total"]:
        chosen = [c for c in cases if surface in ("total", c.surface)]
        counts = Counter(c.outcome for c in chosen)
        rows.append(f"{surface:<12} {len(chosen):>5} " + " ".join(f"{counts[o]:>12}" for o in OUTCOMES))
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", help="write every case and its outcome here")
    parser.add_argument("--verbose", action="store_true", help="print every case")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="mgte-probe-") as tmp:
        start = time.perf_counter()
        probe, _ = build(Path(tmp))
        probe.run(args.verbose)
        print(summary(probe.cases))
        print(f"{len(probe.cases)} cases in {time.perf_counter() - start:.0f} s")
        if args.json:
            Path(args.json).write_text(json.dumps([{"surface": c.surface, "name": c.name, "outcome": c.outcome,
                                                    "detail": c.detail} for c in probe.cases], indent=1,
                                                  ensure_ascii=False))
    bad = [c for c in probe.cases if c.outcome in ("silent wrong", "unhelpful")]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
