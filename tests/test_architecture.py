"""The floors of docs/architecture.md import only from the floors above them (the arrows point one way).

Every import in every module under meleewm/ is read with ``ast`` (those inside functions too), so a new import
that points down the pipeline (eval importing train, model importing play...) fails here with its file and line.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "meleewm"

# Shared foundations any floor may use: the error root, config checking, atomic writes, the version.
FOUNDATIONS = {"errors": set(), "config": {"errors"}, "atomic": set(), "__init__": set()}
PIPELINE = ["melee", "replay", "data", "model"]
# What each floor may import besides the foundations. eval and play stand side by side below the model: they
# read a saved model, never training code, and neither imports the other.
ALLOWED = {
    "melee": set(),
    "replay": {"melee"},
    "data": {"melee", "replay"},
    "model": {"melee", "replay", "data"},
    "train": {"melee", "replay", "data", "model"},
    "eval": {"melee", "replay", "data", "model"},
    "play": {"melee", "replay", "data", "model"},
    "cli": {"melee", "replay", "data", "model", "train", "eval", "play"},
}


def imports(path: Path):
    """(line, imported meleewm floor) of every import in the module at ``path``."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level:
            yield node.lineno, "<relative import>"
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
            [node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
        for name in names:
            top, _, rest = name.partition(".")
            if top == "meleewm":
                yield node.lineno, rest.split(".")[0] or "__init__"


def violations(package: Path = PACKAGE) -> list[str]:
    found = []
    for path in sorted(package.rglob("*.py")):
        floor = path.relative_to(package).with_suffix("").parts[0]   # melee, replay... or errors, config
        allowed = FOUNDATIONS.get(floor)
        if allowed is None:
            if floor not in ALLOWED:
                found.append(f"{path.relative_to(package.parent)}: {floor} is no floor of docs/architecture.md")
                continue
            allowed = ALLOWED[floor] | set(FOUNDATIONS)
        for line, target in imports(path):
            if target != floor and target not in allowed:
                found.append(f"{path.relative_to(package.parent)}:{line}: {floor} imports {target}")
    return found


def test_imports_point_one_way():
    assert violations() == []


def test_the_check_sees_an_import_down_the_pipeline(tmp_path):
    """The test above would fail: an import inside a function, from a lower floor, is found."""
    package = tmp_path / "meleewm"
    (package / "eval").mkdir(parents=True)
    (package / "eval" / "run.py").write_text("def f():\n    from meleewm.train.trainer import Trainer\n")
    (package / "model").mkdir()
    (package / "model" / "world.py").write_text("import meleewm.play.session\nfrom meleewm.data import windows\n")
    assert violations(package) == ["meleewm/eval/run.py:2: eval imports train",
                                   "meleewm/model/world.py:1: model imports play"]


def test_the_pipeline_order_matches_the_allowed_imports():
    """Each pipeline floor may import exactly the floors above it."""
    for index, floor in enumerate(PIPELINE):
        assert ALLOWED[floor] == set(PIPELINE[:index]), floor
