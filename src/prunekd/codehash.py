"""Code version of each pipeline step, so that Snakemake reruns a step when its code changes.

Snakemake sees a rule's shell command, not the Python modules the command imports. Each rule
therefore carries `params.code`: a hash of the `prunekd` CLI function that runs the step and of every
`prunekd` module that function imports, followed transitively. A changed parameter value makes
Snakemake rerun the job (rerun trigger `params`) and everything downstream of it.

The hash is taken over the syntax tree, not the text: comments, blank lines and docstrings do not
count, so tidying code reruns nothing. Standard library only, so the DAG builds without torch.
"""

from __future__ import annotations

import ast
import hashlib
from functools import lru_cache
from pathlib import Path

PACKAGE = "prunekd"
HERE = Path(__file__).resolve().parent


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


@lru_cache(maxsize=None)
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


def module_closure(start: set[str], package_dir: Path = HERE) -> list[str]:
    """`start` and every package module reachable from it through imports, sorted."""
    seen, todo = set(), list(start)
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        todo.extend(_imported_modules(_parse(package_dir / f"{m}.py"), package_dir) - seen)
    return sorted(seen)


def _command_function(command: str, package_dir: Path) -> ast.FunctionDef:
    name = "cmd_" + command.replace("-", "_")
    for node in _parse(package_dir / "cli.py").body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return node
    raise KeyError(f"{package_dir / 'cli.py'}: no function {name} for the step '{command}'")


def _step_nodes(command: str, package_dir: Path) -> list[ast.FunctionDef]:
    """The CLI function of `command` and the private cli.py helpers it calls (e.g. _split_rows), transitively."""
    fn = _command_function(command, package_dir)
    defs = {n.name: n for n in _parse(package_dir / "cli.py").body if isinstance(n, ast.FunctionDef)}
    seen, todo = set(), [fn]
    while todo:
        for n in ast.walk(todo.pop()):
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id.startswith("_") \
                    and n.func.id in defs and n.func.id not in seen:
                seen.add(n.func.id)
                todo.append(defs[n.func.id])
    return [fn] + [defs[name] for name in sorted(seen)]


def step_modules(command: str, package_dir: Path = HERE) -> list[str]:
    """Package modules that the CLI step `command` (e.g. "distill") runs."""
    nodes = _step_nodes(command, package_dir)
    return module_closure(set().union(*(_imported_modules(n, package_dir) for n in nodes)), package_dir)


def _normalised(tree: ast.AST) -> bytes:
    return ast.dump(_strip_docstrings(ast.parse(ast.unparse(tree)))).encode()


def code_version(command: str, package_dir: Path | str = HERE) -> str:
    """Short hash of what runs for `command`: its CLI function and helpers, and its module closure."""
    package_dir = Path(package_dir)
    h = hashlib.sha256()
    for n in _step_nodes(command, package_dir):
        h.update(_normalised(n))
    for m in step_modules(command, package_dir):
        h.update(m.encode())
        h.update(_normalised(_parse(package_dir / f"{m}.py")))
    return h.hexdigest()[:16]
