"""What a changed setting or a changed line of code reruns: asserted on the jobs a dry run plans.

All dry runs go against the finished tiny demo run (session fixture), never modifying it.
"""

import collections
import os
import re
import shutil
import signal
import subprocess
import time

import numpy as np
import zarr
from conftest import BIN, LOCAL_ENV, REPO, TINY_CONFIGS, snakemake

UPSTREAM = {"demo_data", "manifest_audioset", "manifest_target", "demo_teacher", "teacher_logits", "gather_logits"}
# The tiny demo: TAU with splits 5 and 100 (3 pruned sets), each pruned set with its random control, and one
# distillation on all of AudioSet, fine-tuned on each split.
KD = 3
DISTILL = 2 * KD + 1
FINETUNE = 2 * KD + 2


def planned(workdir, *extra_config, snakefile=None, targets=()):
    """Rule -> list of outputs that a dry run would (re)build (for `targets`, default: everything)."""
    args = ["-n", *targets]
    if snakefile:
        args += ["-s", str(snakefile)]
    p = snakemake(workdir, *args, extra_config=[str(c) for c in extra_config])
    jobs, rule = collections.defaultdict(list), None
    for line in p.stdout.splitlines():
        m = re.match(r"^(?:local)?rule (\w+):$", line.strip())
        if m:
            rule = m.group(1)
        elif rule and line.strip().startswith("output:"):
            jobs[rule].append(line.split("output:", 1)[1].strip())
    return dict(jobs)


def test_nothing_planned_before_any_change(demo_run):
    assert planned(demo_run) == {}


def test_new_threshold_plans_only_its_own_jobs(demo_run, tmp_path):
    cfg = tmp_path / "thr.yaml"
    cfg.write_text("grid:\n  thresholds: [0.2, 0.3, 0.4]\n")
    jobs = planned(demo_run, cfg)
    # Paper grid: the new threshold is swept on TAU's split 100 only: one pruned set, its random control,
    # a distillation and fine-tuning on each.
    for rule, n in (
        ("prune", 1),
        ("random_subset", 1),
        ("distill", 2),
        ("finetune", 2),
        ("evaluate", 2),
        ("summarise", 1),
        ("enrichment", 1),
        ("enrichment_summary", 1),
        ("submission", 1),  # split 100's best model has a new candidate; the package holds it
        ("submission_package", 1),
    ):
        assert len(jobs.pop(rule)) == n, rule
    # The histograms mark the thresholds, so they are redrawn; the scores themselves are not recomputed.
    assert len(jobs.pop("score_histogram", [])) <= 2
    assert jobs == {}, f"unexpected jobs: {jobs}"


def test_distillation_setting_reruns_distillation_and_what_follows(demo_run, tmp_path):
    cfg = tmp_path / "kd.yaml"
    cfg.write_text("distillation:\n  lr: 0.004\n")
    jobs = planned(demo_run, cfg)
    assert {r: len(v) for r, v in jobs.items()} == {
        "distill": DISTILL,
        "finetune": FINETUNE,
        "evaluate": FINETUNE,
        "summarise": 1,
        "submission": 2,  # the demo's evaluation set, per split, and its package
        "submission_package": 1,
    }


def test_loader_settings_and_threads_rerun_nothing_yet_reach_the_commands(demo_run, tmp_path):
    """Workers, staging and threads choose how a step reads its input, not what it computes (IO_KEYS)."""
    cfg = tmp_path / "io.yaml"
    cfg.write_text(
        "teachers:\n  num_workers: 3\ndistillation:\n  num_workers: 5\n  staging: never\ntraining:\n  num_workers: 7\n"
    )
    threads = ["--set-threads", "pack_audio=2", "distill=2", "finetune=2"]
    assert planned(demo_run, cfg) == {}
    assert snakemake(demo_run, "-n", *threads).stdout.count("Nothing to be done") == 1

    def commands(*configs):
        """Every job forced anyway: its command line (baselines as `prunekd finetune`)."""
        force = ["--forcerun", "teacher_logits", "pack_audio", "baseline"]
        p = snakemake(demo_run, "-n", "-p", *threads, *force, extra_config=[str(c) for c in configs])
        return [line for line in p.stdout.splitlines() if "prunekd " in line]

    def assert_flags(lines, expected):
        for step, flags in expected:
            ran = [c for c in lines if f"prunekd {step} " in c]
            assert ran and all(flags in c for c in ran), (step, ran[:1])

    assert_flags(commands(), [("distill", "--num-workers 0 --staging auto ")])  # the tiny config's own values
    assert_flags(
        commands(cfg),
        [
            ("teacher-logits", "--num-workers 3 "),
            ("pack-audio", "--threads 2 "),
            ("distill", "--num-workers 5 --staging never "),
            ("finetune", "--num-workers 7 "),
            ("evaluate", "--num-workers 7 "),
        ],
    )


def test_domain_setting_never_recomputes_teacher_logits(demo_run, tmp_path):
    cfg = tmp_path / "dc.yaml"
    cfg.write_text("domain_classifier:\n  lr: 0.0002\n")
    jobs = planned(demo_run, cfg)
    assert not UPSTREAM & set(jobs) and "baseline" not in jobs
    # Everything after the classifiers, except the distillation on all of AudioSet and what follows it.
    assert {r: len(v) for r, v in jobs.items()} == {
        "domain_classifier": 2,
        "score": 2,
        "score_histogram": 2,
        "prune": KD,
        "random_subset": KD,
        "distill": 2 * KD,
        "finetune": 2 * KD,
        "evaluate": 2 * KD,
        "summarise": 1,
        "enrichment": KD,
        "enrichment_summary": 1,
        "submission": 2,
        "submission_package": 1,
    }


def _copy_workflow(dst):
    for part in ("Snakefile", "workflow", "src", "envs"):
        src = REPO / part
        (shutil.copytree if src.is_dir() else shutil.copy)(src, dst / part)
    return dst / "Snakefile"


def test_code_edit_reruns_that_step_and_what_follows(demo_run, tmp_path):
    snakefile = _copy_workflow(tmp_path)
    code = tmp_path / "src/prunekd/student/distill.py"
    original = code.read_text()
    # A comment or docstring changes nothing that runs: nothing to do.
    code.write_text(original + "\n# a comment only\n")
    assert planned(demo_run, snakefile=snakefile) == {}
    # Nor does a name no step's code reaches (codehash follows names, not modules).
    code.write_text(original + "\nDEFAULT_LOG_EVERY = 10\n")
    assert planned(demo_run, snakefile=snakefile) == {}
    # A change to the code it runs: distillation and everything after it, nothing before it.
    assert "    t = temperature\n" in original
    code.write_text(original.replace("    t = temperature\n", "    t = temperature * 1.0\n"))
    jobs = planned(demo_run, snakefile=snakefile)
    assert {r: len(v) for r, v in jobs.items()} == {
        "distill": DISTILL,
        "finetune": FINETUNE,
        "evaluate": FINETUNE,
        "summarise": 1,
        "submission": 2,  # the demo's evaluation set, per split, and its package
        "submission_package": 1,
    }
    # A module shared by several steps reruns each of them (domain.py: classifier, scoring, pruning).
    code.write_text(original)
    dom = tmp_path / "src/prunekd/selection/domain.py"
    dom.write_text(dom.read_text() + "\nassert True  # runs when the module is imported\n")
    jobs = planned(demo_run, snakefile=snakefile)
    assert not UPSTREAM & set(jobs) and "baseline" not in jobs
    assert {"domain_classifier", "score", "prune", "distill"} <= set(jobs)


def test_killed_shard_leaves_nothing_complete_and_reruns_alone(demo_run, tmp_path):
    wd = tmp_path / "run"
    shutil.copytree(demo_run, wd, symlinks=True)
    shard = wd / "results/logits/audioset/shards/00001.zarr"
    before = zarr.open_group(str(shard), mode="r")["member_logits"][:]
    shutil.rmtree(shard)
    # Rebuild that shard through Snakemake, in small batches, and kill the whole run after its first batch.
    small = tmp_path / "small.yaml"
    small.write_text("teachers:\n  batch_size: 8\n")
    cmd = [
        str(BIN / "snakemake"),
        "-s",
        str(REPO / "Snakefile"),
        "--directory",
        str(wd),
        "--configfiles",
        *TINY_CONFIGS,
        str(small),
        "--cores",
        "1",
        str(shard.relative_to(wd)),
    ]
    proc = subprocess.Popen(
        cmd, cwd=wd, env=LOCAL_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    log = wd / "results/logs/teacher_logits/audioset/00001.log"
    deadline = time.time() + 180
    while time.time() < deadline and proc.poll() is None:
        if log.exists() and "clips/s" in log.read_text():
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait()
    assert proc.returncode != 0, "the shard finished before it could be killed"
    assert not shard.exists(), "a killed shard job left its output in place"
    # The next run of the gather (as after a first run killed midway) rebuilds that shard alone.
    snakemake(wd, "--unlock")
    shutil.rmtree(wd / "results/logits/audioset.zarr")
    jobs = planned(wd, targets=["results/logits/audioset.zarr"])
    assert jobs.get("teacher_logits") == [str(shard.relative_to(wd))]
    assert jobs.get("gather_logits") == ["results/logits/audioset.zarr, results/logits/audioset.rejected.tsv"]
    assert set(jobs) == {"teacher_logits", "gather_logits"}
    snakemake(wd, "results/logits/audioset.zarr")
    np.testing.assert_array_equal(zarr.open_group(str(shard), mode="r")["member_logits"][:], before)
    g = zarr.open_group(str(wd / "results/logits/audioset.zarr"), mode="r")
    assert g["member_logits"].shape[0] == g.attrs["n_clips"] and np.isfinite(g["ensemble"][:]).all()


def test_replaced_clip_reruns_only_its_shards_with_the_documented_forcerun(demo_run):
    """Audio files are not tracked (a stat of 2 M files per DAG build; docs/cluster.md, "Reruns"): the documented
    command names the shards that read a replaced clip, and forcing them reruns those and what follows, nothing else."""
    import pandas as pd

    man = pd.read_csv(demo_run / "results/manifests/audioset.tsv", sep="\t", keep_default_na=False)
    clip = man[(man["status"] == "ok") & (man["subset"] == "unbalanced_train")].iloc[0]
    p = subprocess.run(
        [
            str(BIN / "prunekd"),
            "clip-jobs",
            "--manifest",
            "results/manifests/audioset.tsv",
            "--shard-size",
            "80",
            os.path.basename(clip["path"]),
        ],
        cwd=demo_run,
        capture_output=True,
        text=True,
    )
    assert p.returncode == 0, p.stderr
    shard = f"{int(clip['row']) // 80:05d}"
    forced = p.stdout.split()
    assert forced == [f"results/logits/audioset/shards/{shard}.zarr", f"results/packed/audioset/{shard}.zarr"]
    jobs = planned(demo_run, targets=["--forcerun", *forced])
    assert jobs["teacher_logits"] == [forced[0]] and jobs["pack_audio"] == [forced[1]]
    assert "manifest_audioset" not in jobs and "distill" in jobs
    assert "--forcerun $(prunekd clip-jobs" in (REPO / "docs/cluster.md").read_text()

    # A target's clip: its teacher shard and the target's decoded store, which the baseline reads too.
    tau = pd.read_csv(demo_run / "results/manifests/tau.tsv", sep="\t", keep_default_na=False)
    clip = tau[tau["status"] == "ok"].iloc[0]
    p = subprocess.run(
        [
            str(BIN / "prunekd"),
            "clip-jobs",
            "--manifest",
            "results/manifests/tau.tsv",
            "--shard-size",
            "80",
            clip["id"],
        ],
        cwd=demo_run,
        capture_output=True,
        text=True,
    )
    forced = p.stdout.split()
    assert forced == [f"results/logits/tau/shards/{int(clip['row']) // 80:05d}.zarr", "results/decoded/tau"]
    jobs = planned(demo_run, targets=["--forcerun", *forced])
    assert jobs["decode_target"] == ["results/decoded/tau"] and "manifest_target" not in jobs
    baselines = [o for o in jobs["baseline"] if "/tau/" in o]
    assert baselines and len(baselines) == len(jobs["baseline"]) and all("/tau/" in o for o in jobs["finetune"])
