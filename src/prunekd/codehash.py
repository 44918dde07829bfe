"""Code version of each pipeline step, so that Snakemake reruns a step when its code changes.

Snakemake sees a rule's shell command, not the Python modules the command imports. Each rule
therefore carries `params.code`: a hash of the code `prunekd <step>` may run, followed from the step's
`cmd_*` function (and the private cli.py helpers it uses) through every `prunekd` module that code
imports, transitively: each module's top-level statements (imports, constants, classes) and those of its
functions that the code followed so far names. Names match across modules, erring towards rerunning;
a function no step code names (e.g. the demo teacher's training, for the teacher-logits step) counts
for nothing. A changed parameter value makes Snakemake rerun the job (rerun trigger `params`) and
everything downstream of it.

The hash is taken over the syntax tree, not the text: comments, blank lines and docstrings do not
count, so tidying code reruns nothing. Standard library only, so the DAG builds without torch.
"""

from __future__ import annotations

import ast
import hashlib
from functools import cache
from pathlib import Path

PACKAGE = "prunekd"
HERE = Path(__file__).resolve().parent


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            body = node.body
            if (
                body
                and isinstance(body[0], ast.Expr)
                and isinstance(getattr(body[0], "value", None), ast.Constant)
                and isinstance(body[0].value.value, str)
            ):
                node.body = body[1:] or [ast.Pass()]
    return tree


@cache
def _parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def _imported_modules(node: ast.AST, package_dir: Path) -> set[str]:
    """Names of package modules imported anywhere inside `node` (relative or absolute imports)."""
    found = set()
    for n in ast.walk(node):
        if isinstance(n, ast.ImportFrom):
            if n.level == 1 and n.module:
                found.add(n.module.split(".")[0])
            elif n.level == 1:  # from . import x, y
                found.update(a.name for a in n.names)
            elif n.module and n.module.split(".")[0] == PACKAGE:
                parts = n.module.split(".")
                if len(parts) > 1:
                    found.add(parts[1])
                else:
                    found.update(a.name for a in n.names)
        elif isinstance(n, ast.Import):
            for a in n.names:
                parts = a.name.split(".")
                if parts[0] == PACKAGE and len(parts) > 1:
                    found.add(parts[1])
    return {m for m in found if (package_dir / f"{m}.py").is_file()}


def _names(node: ast.AST) -> set[str]:
    """Every name `node` uses: variables, attributes (`store.embeddings`) and names it imports (re-exports)."""
    out = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Name):
            out.add(n.id)
        elif isinstance(n, ast.Attribute):
            out.add(n.attr)
        elif isinstance(n, (ast.Import, ast.ImportFrom)):
            out.update((a.asname or a.name).split(".")[0] for a in n.names)
            out.update(a.name.split(".")[-1] for a in n.names)
    return out


def _is_function(node: ast.AST) -> bool:
    return isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))


def _command_function(command: str, package_dir: Path) -> ast.FunctionDef:
    name = "cmd_" + command.replace("-", "_")
    for node in _parse(package_dir / "cli.py").body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return node
    raise KeyError(f"{package_dir / 'cli.py'}: no function {name} for the step '{command}'")


def _step_nodes(command: str, package_dir: Path) -> list[ast.FunctionDef]:
    """The CLI function of `command` and the private cli.py helpers it uses (e.g. _settings), transitively.

    `log` is left out: it only formats progress lines for people, and a new format should rerun nothing.
    """
    fn = _command_function(command, package_dir)
    defs = {n.name: n for n in _parse(package_dir / "cli.py").body if _is_function(n) and n.name.startswith("_")}
    seen, todo = {fn.name}, [fn]
    while todo:
        for name in sorted(_names(todo.pop()) & defs.keys() - seen):  # called, or passed on as a value
            seen.add(name)
            todo.append(defs[name])
    return [fn] + [defs[name] for name in sorted(seen - {fn.name})]


def _step_code(command: str, package_dir: Path) -> dict[str, ast.Module]:
    """Module name -> the part of it that `command` may run: module-level statements and the functions named."""
    nodes = _step_nodes(command, package_dir)
    names = set().union(*map(_names, nodes))
    modules = set().union(*(_imported_modules(n, package_dir) for n in nodes))
    kept: dict[str, set[int]] = {}  # module -> indices of its top-level statements in the hash
    changed = True
    while changed:  # to a fixed point: new names reach new functions, which import new modules
        changed = False
        for m in sorted(modules):
            body = _parse(package_dir / f"{m}.py").body
            have = kept.setdefault(m, set())
            for i, stmt in enumerate(body):
                if i in have or (_is_function(stmt) and stmt.name not in names):
                    continue
                have.add(i)
                names |= _names(stmt)
                modules |= _imported_modules(stmt, package_dir)
                changed = True
    return {
        m: ast.Module(
            body=[s for i, s in enumerate(_parse(package_dir / f"{m}.py").body) if i in kept[m]], type_ignores=[]
        )
        for m in sorted(modules)
    }


def step_modules(command: str, package_dir: Path = HERE) -> list[str]:
    """Package modules that the CLI step `command` (e.g. "distill") runs, sorted."""
    return sorted(_step_code(command, package_dir))


def _normalised(tree: ast.AST) -> bytes:
    return ast.dump(_strip_docstrings(ast.parse(ast.unparse(tree)))).encode()


def code_version(command: str, package_dir: Path | str = HERE) -> str:
    """Short hash of what runs for `command`: its CLI function and helpers, and the code they reach."""
    package_dir = Path(package_dir)
    h = hashlib.sha256()
    for n in _step_nodes(command, package_dir):
        h.update(_normalised(n))
    for m, code in _step_code(command, package_dir).items():
        h.update(m.encode())
        h.update(_normalised(code))
    return h.hexdigest()[:16]
