"""Reliability: no command or `save` replaces or deletes a user's file or folder without --overwrite, and an output
that is an input is always refused (issue: user files overwritten without --overwrite)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mgte_hf.cli import main
from mgte_hf.data import BeirDataset, write_beir
from mgte_hf.evaluation import RetrievalReport
from mgte_hf.export import export_onnx
from mgte_hf.modeling import MgteForEmbedding
from tiny import SENTENCES, make_model, write_jsonl


def run(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().err


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def corpus(tmp_path):
    return write_jsonl(tmp_path / "c.jsonl", [{"id": f"d{i}", "text": t} for i, t in enumerate(SENTENCES[:5])])


def test_encode_never_replaces_its_input_or_a_file_without_overwrite(embedder_dir, corpus, tmp_path, capsys):
    before = corpus.read_bytes()
    for extra in ([], ["--overwrite"]):  # the corpus itself as the output: refused even with --overwrite
        code, err = run(capsys, "encode", "--model", str(embedder_dir), "--input", str(corpus), "--output-sparse",
                        str(corpus), *extra)
        assert code == 2 and "is the input" in err and corpus.read_bytes() == before
    config = embedder_dir / "config.json"
    code, err = run(capsys, "encode", "--model", str(embedder_dir), "--text", "x", "--output-sparse", str(config),
                    "--overwrite")
    assert code == 2 and "is the input" in err  # a file of the model folder is an input too
    existing = tmp_path / "out.jsonl"
    existing.write_text("mine")
    code, err = run(capsys, "encode", "--model", str(embedder_dir), "--input", str(corpus), "--output-sparse",
                    str(existing))
    assert code == 2 and "exists" in err and "--overwrite" in err and existing.read_text() == "mine"
    assert run(capsys, "encode", "--model", str(embedder_dir), "--input", str(corpus), "--output-sparse",
               str(existing), "--overwrite")[0] == 0
    assert [json.loads(line)["id"] for line in existing.read_text().splitlines()] == [f"d{i}" for i in range(5)]
    same = tmp_path / "same.npy"
    code, err = run(capsys, "encode", "--model", str(embedder_dir), "--text", "x", "--output-dense", str(same),
                    "--output-sparse", str(same))
    assert code == 2 and "same file" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.jsonl", "out.jsonl"]  # no partial file left


def test_search_never_replaces_a_folder_without_overwrite(embedder_dir, corpus, tmp_path, capsys):
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "documents.jsonl").write_text("a user's file")
    before = snapshot(folder)
    code, err = run(capsys, "search", "--model", str(embedder_dir), "--corpus", str(corpus), "--index-dir",
                    str(folder))
    assert code == 2 and "is not empty" in err and snapshot(folder) == before
    assert run(capsys, "search", "--model", str(embedder_dir), "--corpus", str(corpus), "--index-dir", str(folder),
               "--overwrite")[0] == 0
    assert (folder / "index.json").is_file() and "a user's file" not in (folder / "documents.jsonl").read_text()
    inside = folder / "c.jsonl"
    inside.write_bytes(corpus.read_bytes())
    code, err = run(capsys, "search", "--model", str(embedder_dir), "--corpus", str(inside), "--index-dir",
                    str(folder), "--overwrite")
    assert code == 2 and "holds the input" in err and inside.is_file()


def test_index_save_refuses_a_non_empty_folder(embedder, tmp_path):
    from mgte_hf.index import HybridIndex

    folder = tmp_path / "idx"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep")
    index = HybridIndex(embedder)
    index.add(SENTENCES[:3])
    with pytest.raises(FileExistsError, match="overwrite"):
        index.save(folder)
    assert snapshot(folder) == {"notes.txt": b"keep"}
    index.save(folder, overwrite=True)
    assert sorted(p.name for p in folder.iterdir()) == ["documents.jsonl", "index.json", "index.safetensors"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".idx.")]  # nothing staged left behind


def test_report_and_evaluate_refuse_existing_reports(tmp_path, capsys):
    report = RetrievalReport("set", {"documents": 1}, ["ndcg@10"])
    (tmp_path / "report.md").write_text("my notes")
    with pytest.raises(FileExistsError, match="report.md exists"):
        report.save(tmp_path)
    assert (tmp_path / "report.md").read_text() == "my notes" and not (tmp_path / "report.json").exists()
    paths = report.save(tmp_path, overwrite=True)
    assert paths["markdown"].read_text().startswith("# Retrieval evaluation") and paths["chart"].is_file()
    beir = tmp_path / "beir"
    write_beir(BeirDataset({"d1": {"title": "", "text": "a b"}}, {"q1": "a"}, {"q1": {"d1": 1}}), beir)
    code, err = run(capsys, "evaluate", "--dataset", str(beir), "--output", str(tmp_path), "--systems", "bm25")
    assert code == 2 and "report.json exists" in err and "--overwrite" in err


def test_write_beir_refuses_an_existing_set(tmp_path):
    dataset = BeirDataset({"d1": {"title": "", "text": "a"}}, {"q1": "a"}, {"q1": {"d1": 1}})
    write_beir(dataset, tmp_path)
    with pytest.raises(FileExistsError, match="corpus.jsonl exists"):
        write_beir(dataset, tmp_path)
    write_beir(dataset, tmp_path, overwrite=True)


def test_encode_corpus_never_deletes_a_users_chunk_folder(embedder_dir, corpus, tmp_path, capsys):
    out = tmp_path / "shards"
    (out / "chunk-000000").mkdir(parents=True)
    (out / "chunk-000000" / "notes.txt").write_text("mine")
    args = ["encode-corpus", "--model", str(embedder_dir), "--input", str(corpus), "--output-dir", str(out),
            "--device", "cpu", "--chunk-size", "2"]
    code, err = run(capsys, *args)
    assert code == 2 and "chunk folder without an mgte-hf-shards manifest" in err and "--overwrite" in err
    assert snapshot(out) == {"chunk-000000/notes.txt": b"mine"}
    assert run(capsys, *args, "--overwrite")[0] == 0
    assert not (out / "chunk-000000" / "notes.txt").exists() and (out / "manifest.json").is_file()
    other = tmp_path / "other"
    (other / "chunk-000001.tmp").mkdir(parents=True)  # named like a half-written chunk, but holding a user's file
    (other / "chunk-000001.tmp" / "draft.txt").write_text("also mine")
    code, err = run(capsys, *[str(other) if a == str(out) else a for a in args])
    assert code == 2 and "temporary chunk folder with other files (draft.txt)" in err
    assert snapshot(other) == {"chunk-000001.tmp/draft.txt": b"also mine"}


def test_export_refuses_existing_files_and_its_inputs(tmp_path, capsys):
    model = make_model(MgteForEmbedding, num_hidden_layers=1)
    out = tmp_path / "m.onnx"
    out.write_text("not mine to delete")
    with pytest.raises(FileExistsError, match="overwrite"):
        export_onnx(model, out, check=False)
    assert out.read_text() == "not mine to delete"
    folder = tmp_path / "src"
    model.save_pretrained(folder)
    before = (folder / "config.json").read_bytes()
    code, err = run(capsys, "export", str(folder), str(folder / "config.json"), "--overwrite", "--no-check")
    assert code == 2 and "is the input" in err and (folder / "config.json").read_bytes() == before

