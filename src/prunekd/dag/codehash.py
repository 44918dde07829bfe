"""Code version of each pipeline step, so that Snakemake reruns a step when its code changes.

Snakemake sees a rule's shell command, not the Python modules the command imports. Each rule
therefore carries `params.code`: a hash of the code `prunekd <step>` may run, followed from the step's
`cmd_*` function (and the private cli.py helpers it uses) name by name: a name the code uses reaches the
top-level statement of its module that binds it (a function, class, constant or import), an import reaches
the name in the module it comes from, and so on to a fixed point. A top-level statement that binds nothing
(a bare call) counts for every step that enters its module. So a function, constant or class no step code
reaches (e.g. the demo teacher's training, for the teacher-logits step) counts for nothing, and a module
none of whose names are reached is not part of the step. A changed parameter value makes Snakemake rerun
the job (rerun trigger `params`) and everything downstream of it.

The hash is taken over the syntax tree, not the text: comments, blank lines and docstrings do not
count, so tidying code reruns nothing. Standard library only, so the DAG builds without torch.
"""

from __future__ import annotations

import ast
import hashlib
from functools import cache
from pathlib import Path

PACKAGE = "prunekd"
HERE = Path(__file__).resolve().parent.parent  # the package (src/prunekd)


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


def _parse(path: Path) -> ast.Module:
    return _parse_source(path.read_text(), str(path))


@cache  # by the text, not the path: an edited file is parsed again
def _parse_source(text: str, filename: str) -> ast.Module:
    return ast.parse(text, filename=filename)


def _is_function(node: ast.AST) -> bool:
    return isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))


def _command_entry(command: str, package_dir: Path) -> tuple[ast.FunctionDef, tuple[str, str] | None]:
    """The cli.py function that runs `command`, and the step function it calls by name (None for a cmd_*).

    A command is a `cmd_*` function of cli.py, or a `module:function` string in its COMMANDS table, run by `_step`.
    """
    body = _parse(package_dir / "cli.py").body
    defs = {n.name: n for n in body if isinstance(n, ast.FunctionDef)}
    name = "cmd_" + command.replace("-", "_")
    if name in defs:
        return defs[name], None
    for node in body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "COMMANDS" for t in node.targets):
            for key, value in zip(node.value.keys, node.value.values):
                if isinstance(key, ast.Constant) and key.value == command and isinstance(value, ast.Tuple):
                    target = value.elts[0]
                    if isinstance(target, ast.Constant) and isinstance(target.value, str) and ":" in target.value:
                        module, fn = target.value.split(":")
                        return defs["_step"], (module, fn)
    raise KeyError(f"{package_dir / 'cli.py'}: no function {name} or COMMANDS entry for the step '{command}'")


def _used(node: ast.AST) -> set[str]:
    """Every bare name `node` reads or calls (attributes of objects belong to the object's class)."""
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def _step_nodes(command: str, package_dir: Path) -> list[ast.FunctionDef]:
    """The CLI function of `command` and the private cli.py helpers it uses (e.g. _settings), transitively.

    `log` is left out: it only formats progress lines for people, and a new format should rerun nothing.
    """
    fn, _ = _command_entry(command, package_dir)
    defs = {n.name: n for n in _parse(package_dir / "cli.py").body if _is_function(n) and n.name.startswith("_")}
    seen, todo = {fn.name}, [fn]
    while todo:
        for name in sorted(_used(todo.pop()) & defs.keys() - seen):  # called, or passed on as a value
            seen.add(name)
            todo.append(defs[name])
    return [fn] + [defs[name] for name in sorted(seen - {fn.name})]


def _bound(stmt: ast.stmt) -> set[str]:
    """Names a top-level statement binds (or changes in place, `X[k] = v`); empty for a bare side effect."""
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {stmt.name}
    if isinstance(stmt, (ast.Import, ast.ImportFrom)):
        if isinstance(stmt, ast.ImportFrom) and stmt.module == "__future__":
            return set()  # changes how the whole module is compiled: always counts
        return {(a.asname or a.name).split(".")[0] for a in stmt.names}
    out = set()
    for n in ast.walk(stmt):
        targets = []
        if isinstance(n, ast.Assign):
            targets = n.targets
        elif isinstance(n, (ast.AnnAssign, ast.AugAssign, ast.For, ast.AsyncFor)):
            targets = [n.target]
        elif isinstance(n, (ast.With, ast.AsyncWith)):
            targets = [i.optional_vars for i in n.items if i.optional_vars is not None]
        elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.add(n.name)
        elif isinstance(n, (ast.Import, ast.ImportFrom)):
            out.update((a.asname or a.name).split(".")[0] for a in n.names)
        for t in targets:
            for m in ast.walk(t):
                if isinstance(m, ast.Name):
                    out.add(m.id)
    return out


def _module_file(package_dir: Path, parts: list[str]) -> Path:
    return package_dir.joinpath(*parts[:-1], parts[-1] + ".py")


def _is_module(package_dir: Path, parts: list[str]) -> bool:
    return bool(parts) and _module_file(package_dir, parts).is_file()


def _source(
    imp: ast.ImportFrom | ast.Import, alias: ast.alias, package_dir: Path, importer: str
) -> tuple[str, str | None] | None:
    """(package module, name in it) that an import in module `importer` binds (modules dotted from the package:
    "data.audio"); name None for a whole module; None outside the package and for a package's own names."""
    if isinstance(imp, ast.ImportFrom):
        if imp.level == 0:
            if not imp.module or imp.module.split(".")[0] != PACKAGE:
                return None
            parts = imp.module.split(".")[1:]
        else:  # relative to the importing module's package
            base = importer.split(".")[:-1]
            base = base[: len(base) - (imp.level - 1)] if imp.level > 1 else base
            parts = base + (imp.module.split(".") if imp.module else [])
        if _is_module(package_dir, parts + [alias.name]):  # from prunekd.data import audio
            return ".".join(parts + [alias.name]), None
        return (".".join(parts), alias.name) if _is_module(package_dir, parts) else None
    parts = alias.name.split(".")
    if parts[0] == PACKAGE and _is_module(package_dir, parts[1:]):
        return ".".join(parts[1:]), None
    return None


class _Reach:
    """What a step's code reaches, name by name: a top-level statement of a package module counts only if it
    binds a name the code so far uses (or is a bare side effect of a module the code imports)."""

    def __init__(self, package_dir: Path):
        self.dir = package_dir
        self.kept: dict[str, set[int]] = {}  # module -> indices of its top-level statements in the hash
        self.names: dict[str, set[str]] = {}  # module -> its top-level names reached
        self.todo: list[tuple[str, str | None]] = []
        self._bodies: dict[str, list[tuple[ast.stmt, set[str]]]] = {}

    def body(self, module: str) -> list[tuple[ast.stmt, set[str]]]:
        """The module's top-level statements, each with the names it binds."""
        if module not in self._bodies:
            self._bodies[module] = [(s, _bound(s)) for s in _parse(_module_file(self.dir, module.split("."))).body]
        return self._bodies[module]

    def scan(self, module: str, node: ast.AST) -> None:
        """Queue what `node` (code of `module`) reaches: its imports of package code and the module's names it uses."""
        for n in ast.walk(node):
            if isinstance(n, (ast.Import, ast.ImportFrom)):
                for a in n.names:
                    src = _source(n, a, self.dir, module)
                    if src:
                        self.todo.append(src)
        self.todo.extend((module, name) for name in _used(node))

    def run(self) -> None:
        while self.todo:
            module, name = self.todo.pop()
            body = self.body(module)
            if module not in self.kept:  # entering a module runs its side effects
                self.kept[module], self.names[module] = set(), set()
                for i, (stmt, bound) in enumerate(body):
                    if not bound:
                        self.kept[module].add(i)
                        self.scan(module, stmt)
            if name is None or name in self.names[module]:
                continue
            self.names[module].add(name)
            for i, (stmt, bound) in enumerate(body):
                if name not in bound:
                    continue
                if isinstance(stmt, (ast.Import, ast.ImportFrom)):  # follow only the binding reached
                    for a in stmt.names:
                        src = _source(stmt, a, self.dir, module)
                        if src and (a.asname or a.name).split(".")[0] == name:
                            self.todo.append(src)
                    self.kept[module].add(i)
                elif i not in self.kept[module]:
                    self.kept[module].add(i)
                    self.scan(module, stmt)


def _step_code(command: str, package_dir: Path) -> dict[str, ast.Module]:
    """Module name -> the part of it that `command` may run: the top-level statements its code reaches."""
    reach = _Reach(package_dir)
    for node in _step_nodes(command, package_dir):
        reach.scan("cli", node)
    reach.todo = [(m, n) for m, n in reach.todo if m != "cli"]  # cli.py's own part is the step nodes above
    called = _command_entry(command, package_dir)[1]
    if called:  # `_step` calls module:function by name
        reach.todo.append(called)
    reach.run()
    return {
        m: ast.Module(body=[s for i, (s, _) in enumerate(reach.body(m)) if i in idx], type_ignores=[])
        for m, idx in sorted(reach.kept.items())
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
