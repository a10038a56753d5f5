"""`mgte-hf search-shards`: the hits of `ShardedIndex.search`, as text or JSON."""

from __future__ import annotations

import argparse
import json

import pytest

from mgte_hf.cli import CliError, search_shards
from mgte_hf.shards import JsonlCorpus, ShardedIndex, encode_to_shards
from tiny import SENTENCES


@pytest.fixture(scope="module")
def shards(tmp_path_factory, embedder):
    folder = tmp_path_factory.mktemp("search-shards")
    corpus = folder / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"d{i}", "text": s}) + "\n" for i, s in enumerate(SENTENCES)),
                      encoding="utf-8")
    encode_to_shards(embedder, JsonlCorpus(corpus), folder / "shards", chunk_size=6)
    return folder / "shards"


def run_cli(argv: list[str]) -> int:
    sub = argparse.ArgumentParser().add_subparsers(dest="command")
    search_shards.add_parser(sub)
    args = sub.choices["search-shards"].parse_args(argv)
    return args.func(args)


def test_prints_the_hits_of_the_sharded_index(embedder_dir, embedder, shards, capsys):
    base = ["--model", str(embedder_dir), "--index-dir", str(shards), "--device", "cpu", "--top-k", "3"]
    queries = ["quick brown fox", "search engines"]
    assert run_cli([*base, "--query", queries[0], "--query", queries[1], "--mode", "sparse", "--json"]) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    expected = ShardedIndex(shards, embedder).search(queries, top_k=3, mode="sparse")
    assert [p["query"] for p in printed] == queries
    assert [[(h["id"], h["row"], h["score"]) for h in p["hits"]] for p in printed] == [
        [(h.id, h.index, h.score) for h in row] for row in expected]
    assert run_cli([*base, "--query", queries[0], "--verify"]) == 0
    lines = capsys.readouterr().out.splitlines()
    best = ShardedIndex(shards, embedder).search(queries[0], top_k=3)
    assert lines == [f"query: {queries[0]}"] + [f"{r}\t{h.score:.4f}\t{h.id}" for r, h in enumerate(best, 1)]


def test_unfinished_folder_is_a_user_error(embedder_dir, tmp_path):
    with pytest.raises(CliError, match="--index-dir: No finished shards"):
        run_cli(["--model", str(embedder_dir), "--index-dir", str(tmp_path), "--query", "q", "--device", "cpu"])
