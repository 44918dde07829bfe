"""Code versions (params.code of every rule): an edit reruns the steps whose code reaches it, and only those."""

import ast
import shutil
from pathlib import Path

import pytest

from prunekd.dag.codehash import code_version, step_modules

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "prunekd"
GPU_STEPS = ["teacher-logits", "distill", "finetune", "evaluate"]


@pytest.fixture
def package(tmp_path):
    """A copy of the package to edit; code versions read the copy."""
    dst = tmp_path / "prunekd"
    shutil.copytree(PACKAGE, dst, ignore=shutil.ignore_patterns("__pycache__"))
    return dst


def _versions(package_dir):
    return {s: code_version(s, package_dir) for s in GPU_STEPS + ["manifest", "pack-audio", "domain-classifier"]}


def _append(path: Path, code: str) -> None:
    path.write_text(path.read_text() + "\n\n" + code + "\n")


def test_unrelated_constant_and_function_rerun_nothing_downstream(package):
    before = _versions(package)
    # a constant and a function in the manifest module that no training or teacher step reaches
    _append(
        package / "data/manifest.py", "UNUSED_CONSTANT = 3\n\n\ndef unused_helper(x):\n    return x + UNUSED_CONSTANT"
    )
    after = _versions(package)
    for step in ["distill", "finetune", "teacher-logits", "evaluate", "pack-audio", "domain-classifier"]:
        assert after[step] == before[step], step
    assert after["manifest"] == before["manifest"]  # not reached by the manifest step either


def test_edit_a_reached_constant_reruns_the_step(package):
    before = _versions(package)
    src = (package / "teachers/logit_store.py").read_text()
    assert "ROW_CHUNK = 1024" in src
    (package / "teachers/logit_store.py").write_text(src.replace("ROW_CHUNK = 1024", "ROW_CHUNK = 2048"))
    after = _versions(package)
    assert after["teacher-logits"] != before["teacher-logits"]  # the teacher step writes chunks of ROW_CHUNK rows
    assert after["distill"] == before["distill"]  # distillation never reads that constant


def test_edit_a_reached_function_body_reruns_the_step(package):
    before = _versions(package)
    tree = ast.parse((package / "student/distill.py").read_text())
    fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "kd_loss")
    fn.body.insert(0, ast.parse("student_logits = student_logits * 1.0").body[0])
    (package / "student/distill.py").write_text(ast.unparse(tree))
    after = _versions(package)
    assert after["distill"] != before["distill"]
    assert after["finetune"] == before["finetune"]


def test_comments_and_docstrings_rerun_nothing(package):
    before = _versions(package)
    for m in ["student/training.py", "data/audio.py", "teachers/logit_store.py"]:
        p = package / m
        p.write_text(p.read_text().replace("\n\n\ndef ", "\n\n\n# a new comment\ndef ", 1))
    assert _versions(package) == before


def test_a_bare_side_effect_counts_for_every_step_entering_the_module(package):
    before = _versions(package)
    _append(package / "student/frontend.py", "print('import-time side effect')")
    after = _versions(package)
    assert after["distill"] != before["distill"] and after["finetune"] != before["finetune"]
    assert after["teacher-logits"] == before["teacher-logits"]  # does not import the student's front end


# Each GPU step's modules: a change here means a layering change, which reruns the step; pin it on purpose.
PINNED = {
    "distill": ["atomic", "dag.reruns", "data.audio", "data.clipref", "data.datasets", "data.files", "data.packed",
                "data.staging", "data.tables", "student.cpmobile", "student.distill", "student.frontend",
                "student.training", "teachers.logit_store"],
    "finetune": ["atomic", "dag.reruns", "data.audio", "data.clipref", "data.datasets", "data.decoded", "data.files",
                 "data.tables", "errors", "student.cpmobile", "student.finetune", "student.frontend",
                 "student.training", "teachers.logit_store"],
    "teacher-logits": ["atomic", "dag.members", "data.audio", "data.clipref", "data.datasets", "data.tables",
                       "errors", "teachers.logit_store", "teachers.logits", "teachers.passt"],
    "evaluate": ["atomic", "data.audio", "data.clipref", "data.datasets", "data.decoded", "data.files", "data.tables",
                 "errors", "student.cpmobile", "student.evaluate", "student.frontend"],
}  # fmt: skip


@pytest.mark.parametrize("step", sorted(PINNED))
def test_gpu_step_modules_are_pinned(step):
    assert step_modules(step) == sorted(PINNED[step])


def test_distill_reads_no_metadata_modules():
    assert not {"data.manifest", "data.audioset_hdf5", "dag.layouts"} & set(step_modules("distill"))


def _import_graph():
    """Module (dotted from the package) -> package modules it imports anywhere (top level or inside functions)."""

    def module(parts):
        return ".".join(parts) if PACKAGE.joinpath(*parts[:-1], f"{parts[-1]}.py").is_file() else None

    graph = {}
    for p in sorted(PACKAGE.rglob("*.py")):
        name = ".".join(p.relative_to(PACKAGE).with_suffix("").parts)
        deps = set()
        for n in ast.walk(ast.parse(p.read_text())):
            if isinstance(n, ast.ImportFrom) and n.module and n.module.split(".")[0] == "prunekd":
                parts = n.module.split(".")[1:]
                deps.update(
                    filter(None, [module(parts + [a.name]) or (module(parts) if parts else None) for a in n.names])
                )
        graph[name] = deps - {name}
    return graph


def test_no_import_cycle_in_the_package():
    graph, state = _import_graph(), {}

    def visit(m, path):
        if state.get(m) == "done":
            return
        assert state.get(m) != "open", f"import cycle: {' -> '.join(path + [m])}"
        state[m] = "open"
        for d in sorted(graph[m]):
            visit(d, path + [m])
        state[m] = "done"

    for m in graph:
        visit(m, [])
