"""The import rules of docs/ARCHITECTURE.md: every import inside `src/mgte_hf` goes down the floors it allows."""

from __future__ import annotations

import ast
from pathlib import Path

from tiny import REPO


PACKAGE = REPO / "src" / "mgte_hf"
EVERYTHING = None  # a room that may import any other
# room → the rooms it may import (a room is a top-level module or package of mgte_hf), as docs/ARCHITECTURE.md says
ALLOWED: dict[str, set[str] | None] = {
    "modeling": set(),
    "hashing": set(),
    "ranking": set(),
    "ranks": set(),
    "corpus": set(),
    "scoring": set(),
    "batching": set(),
    "outputs": {"hashing"},
    "tokenizer": {"hashing", "outputs"},
    "inference": {"modeling", "tokenizer", "batching", "scoring"},
    "adapters": {"modeling"},
    "integrations": {"modeling", "tokenizer"},
    "convert": {"modeling", "outputs"},
    "index": {"inference", "scoring", "ranking", "hashing", "outputs"},
    "export": {"convert", "modeling", "inference", "hashing", "outputs"},
    "hub": {"integrations", "modeling", "outputs"},
    "shards": {"index", "inference", "corpus", "hashing", "outputs", "ranking", "ranks", "scoring"},
    "data": {"tokenizer", "hashing", "outputs"},
    "training": {"modeling", "tokenizer", "adapters", "batching", "scoring", "ranks"},
    "evaluation": {"data", "index", "inference", "adapters", "modeling", "scoring", "tokenizer", "ranking",
                   "outputs"},
    "serving": {"inference", "modeling"},
    "demo": EVERYTHING,
    "cli": EVERYTHING,
    "__init__": {"index", "inference", "modeling"},
    "__main__": {"cli"},
}


def room_of(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return parts[0]


def imported_rooms(path: Path) -> set[str]:
    """The rooms of mgte_hf that `path` imports (relative imports resolved)."""
    parts = ["mgte_hf", *path.relative_to(PACKAGE).with_suffix("").parts]
    package = parts if parts[-1] == "__init__" else parts[:-1]
    package = [p for p in package if p != "__init__"]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *(node.module.split(".") if node.module else [])])
            if module == "mgte_hf":  # `from mgte_hf import scoring`, `from .. import scoring`
                names.update(f"mgte_hf.{alias.name}" for alias in node.names)
            else:
                names.add(module)
    rooms = {name.split(".")[1] for name in names if name.startswith("mgte_hf.")}
    return rooms - {room_of(path)}


def test_every_room_is_described():
    rooms = {room_of(p) for p in PACKAGE.rglob("*.py")}
    missing = sorted(rooms - set(ALLOWED))
    assert not missing, f"{missing}: give each new room its floor in docs/ARCHITECTURE.md and in ALLOWED here"


def test_imports_go_only_where_the_architecture_allows():
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        allowed = ALLOWED.get(room_of(path))
        if allowed is EVERYTHING:
            continue
        wrong += [f"{path.relative_to(PACKAGE)} imports {room}" for room in sorted(imported_rooms(path) - allowed)]
    assert not wrong, "imports against docs/ARCHITECTURE.md:\n" + "\n".join(wrong)


def test_the_demo_does_not_import_the_command_line():
    assert not any("cli" in imported_rooms(p) for p in PACKAGE.rglob("*.py") if room_of(p) == "demo")


def test_the_checker_resolves_relative_imports(tmp_path):
    assert imported_rooms(PACKAGE / "index.py") >= {"scoring", "inference", "ranking"}
    assert imported_rooms(PACKAGE / "shards" / "encode.py") >= {"corpus", "hashing", "ranks"}
    assert "shards" not in imported_rooms(PACKAGE / "shards" / "encode.py")  # its own room
