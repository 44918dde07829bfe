"""Running as a cluster user does: paths with spaces, the user's own profile, retried jobs' requests."""

import os
import re
import subprocess

import yaml
from conftest import BIN, LOCAL_ENV, REPO, TINY_CONFIGS, demo_threads, snakemake

SLURM_GRID = REPO / "tests/slurm_grid.yaml"  # split 100 at one threshold: every rule of the method, few jobs


def test_paths_with_spaces_run_the_dag_and_write_nothing_outside(tmp_path):
    """Results folder and data roots whose names hold spaces: every job runs, nothing lands beside them."""
    top = tmp_path / "top"
    work, results, data = top / "work dir", top / "my results" / "results", top / "my data"
    work.mkdir(parents=True)
    cfg = tmp_path / "spaces.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "paths": {
                    "results": str(results),
                    "audioset": str(data / "audio set"),
                    "teacher_weights": str(data / "passt weights"),
                },
                "targets": {
                    "tau": {"root": str(data / "tau 2022")},
                    "sounds": {"csv": str(data / "sound set/labels.csv"), "audio_root": str(data / "sound set")},
                },
            }
        )
    )
    snakemake(work, extra_config=[str(SLURM_GRID), str(cfg)])
    assert (results / "summary/tau/table1.csv").exists()
    assert (data / "audio set/eval_segments.csv").exists() and (data / "tau 2022/meta.csv").exists()
    # Nothing beside the three folders, nothing in the working directory but Snakemake's own.
    assert sorted(p.name for p in top.iterdir()) == ["my data", "my results", "work dir"]
    assert sorted(p.name for p in work.iterdir()) == [".snakemake"]
    assert sorted(p.name for p in (top / "my results").iterdir()) == ["results"]
    assert sorted(p.name for p in data.iterdir()) == ["audio set", "passt weights", "sound set", "tau 2022"]
