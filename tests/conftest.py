import inspect
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# Local runs never talk to SLURM, but every Snakemake start imports the SLURM executor plugin, which asks
# `scontrol show config` for MinJobAge: 9 s per start where scontrol is installed and no controller answers.
# A stand-in that fails at once makes the plugin fall back to its default (the SLURM tests use the real one).
_NO_SLURM = Path(tempfile.mkdtemp(prefix="prunekd-noslurm-"))
(_NO_SLURM / "scontrol").write_text("#!/bin/sh\nexit 1\n")
(_NO_SLURM / "scontrol").chmod(0o755)
LOCAL_ENV = {**os.environ, "PATH": os.pathsep.join([str(BIN), str(_NO_SLURM), os.environ["PATH"]])}


def demo_threads():
    """The tour profile's threads (profiles/tour/config.yaml, set-threads), as command-line arguments."""
    import yaml

    prof = yaml.safe_load((REPO / "profiles/tour/config.yaml").read_text())
    return ["--set-threads", *(f"{rule}={n}" for rule, n in prof["set-threads"].items())]


# The tests' config: the defaults, the tour's world and sizes (every rule runs), then the smallest grid
# (tests/tiny.yaml).
TINY_CONFIGS = [str(REPO / f) for f in ("config.yaml", "profiles/tour/tour.yaml", "tests/tiny.yaml")]


def snakemake(workdir, *args, extra_config=(), check=True):
    """Run the repo's Snakefile in `workdir` with the demo profile's config and the tiny overrides."""
    cmd = [
        str(BIN / "snakemake"),
        "-s",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfiles",
        *TINY_CONFIGS,
        *extra_config,
        *demo_threads(),
        "--cores",
        "2",
        *args,
    ]
    p = subprocess.run(cmd, capture_output=True, text=True, env=LOCAL_ENV)
    if check and p.returncode != 0:
        raise AssertionError(f"snakemake failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-6000:]}")
    return p


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """The demo DAG at its smallest size, run once for the whole session: under pytest-xdist (`make test` runs two
    workers) once for all workers, in their shared temporary folder, the first to need it running it while the
    others wait. Tests copy it before changing it (a dry run's log and the report are all that is written in it)."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        wd = tmp_path_factory.mktemp("demo")
        snakemake(wd)
        return wd
    import fcntl
    import shutil

    root = tmp_path_factory.getbasetemp().parent  # shared by the workers of this run
    wd, done = root / "demo", root / "demo.done"
    with open(root / "demo.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            shutil.rmtree(wd, ignore_errors=True)  # a worker's failed try: start again
            wd.mkdir()
            snakemake(wd)
            done.touch()
    return wd


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """Demo AudioSet-format pool and TAU-format scene set, small."""
    from prunekd.demo.worlds import make_demo_data

    root = tmp_path_factory.mktemp("data")
    cfg = {
        "seed": 1,
        "audioset_clips": {"eval": 20, "balanced_train": 10, "unbalanced_train": 30},
        "audioset_sample_rate": 32000,
        "audioset_clip_seconds": 1.0,
        "scene_share": 0.3,
        "tau_train_clips": 40,
        "tau_test_clips": 30,
    }
    make_demo_data(root / "audioset", root / "tau", cfg)
    return root


# `make test-fast` leaves out the tests that start Snakemake (marked slow) and those on the real SLURM.
_STARTS_SNAKEMAKE = ("snakemake(", "dry_run(", "planned(")


def pytest_collection_modifyitems(items):
    for item in items:
        fn = getattr(item, "function", None)
        src = inspect.getsource(fn) if fn is not None else ""
        if item.module.__name__ == "test_slurm" or "slurm(" in src or "slurm" in item.fixturenames:
            item.add_marker(pytest.mark.slurm)
        if "demo_run" in item.fixturenames or any(c in src for c in _STARTS_SNAKEMAKE):
            item.add_marker(pytest.mark.slow)
