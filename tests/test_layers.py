"""The package shows the data flow: one subpackage per stage, and imports between them run one way only."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "prunekd"

# The data flow, first to last. A module may import its own stage, an earlier one and the shared base; the
# DAG-time modules import no stage (the workflow reads them without torch); the cluster tools only the DAG's.
STAGES = ["data", "teachers", "selection", "student", "results", "demo"]
BASE = {"errors", "atomic", "__init__", "__version__"}
ALLOWED = {
    "dag": {"dag"},
    "cluster": {"dag", "cluster"},
    **{s: {"dag", *STAGES[: i + 1]} for i, s in enumerate(STAGES)},
}
TOP_LEVEL = {"__init__.py", "cli.py", "errors.py", "atomic.py"}


def _imports(path: Path, package: Path) -> list[tuple[int, str]]:
    """(line, package module) of every prunekd import in a file, relative imports resolved."""
    here = path.relative_to(package).with_suffix("").parts
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(here[:-1])[: len(here) - node.level]
                parts = base + (node.module.split(".") if node.module else [])
            elif node.module and node.module.split(".")[0] == "prunekd":
                parts = node.module.split(".")[1:]
            else:
                continue
            for a in node.names:
                out.append((node.lineno, ".".join(parts + [a.name]) if not parts else ".".join(parts)))
        elif isinstance(node, ast.Import):
            out += [(node.lineno, a.name.split(".", 1)[1]) for a in node.names if a.name.startswith("prunekd.")]
    return out


def _place(module: str) -> str:
    """The subpackage (or base module) a dotted package module belongs to."""
    return module.split(".")[0]


def violations(package: Path = PACKAGE) -> list[str]:
    bad = []
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package)
        if len(rel.parts) == 1:
            continue  # cli.py imports every step lazily; errors/atomic import nothing of the package
        own = rel.parts[0]
        for line, module in _imports(path, package):
            place = _place(module)
            if place in BASE or place in ALLOWED[own]:
                continue
            bad.append(f"{rel}:{line}: {own} imports {module} ({place} comes later in the data flow)")
    return bad


def test_imports_run_one_way_along_the_data_flow():
    assert violations() == []


def test_an_import_from_a_stage_to_a_later_one_is_caught(tmp_path):
    for sub in ("data", "student"):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "__init__.py").write_text("")
    (tmp_path / "student" / "loop.py").write_text("")
    (tmp_path / "data" / "audio.py").write_text("from prunekd.student.loop import x\nfrom ..student import loop\n")
    out = violations(tmp_path)
    assert len(out) == 2 and all(v.startswith("data/audio.py:") and "student" in v for v in out)


def test_the_package_top_holds_a_handful_of_modules_and_one_folder_per_stage():
    top = {p.name for p in PACKAGE.glob("*.py")}
    assert top == TOP_LEVEL
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    assert folders == {"dag", "cluster", *STAGES}


@pytest.mark.parametrize("sub", ["dag", "cluster", *STAGES])
def test_every_stage_says_what_it_holds(sub):
    assert ast.get_docstring(ast.parse((PACKAGE / sub / "__init__.py").read_text()))
