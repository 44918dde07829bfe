"""The SLURM profile against a real single-node SLURM (.ci/slurm-up starts one on this machine).

Where SLURM cannot be started (not root, no apt), every test here is skipped with the reason.
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import pandas as pd
import pytest
from conftest import BIN, REPO, TINY_CONFIGS, demo_threads
from test_reruns import planned

JOBCOMP = "/var/log/slurm/jobcomp.log"
GRES_LOG = "/var/log/slurm/job-gres.log"  # written by the node's Epilog (.ci/slurm-up) after every job
GPU_RULES = {"teacher_logits", "distill", "finetune", "baseline"}
# The SLURM profile as users install it (docs/cluster.md, "SLURM": make install-profile), into a
# configuration folder of this test run only: `--profile slurm` finds it there, the home folder is untouched.
XDG = tempfile.mkdtemp(prefix="prunekd-xdg-")
# tests/slurm_poll: the executor plugin's status checks every 2 s, not backed off to 20 s and more (see there).
POLL = str(REPO / "tests/slurm_poll")
# Every sbatch call of a run is counted: a stand-in first on PATH appends a line to $SBATCH_CALLS, then runs sbatch.
SHIM = tempfile.mkdtemp(prefix="prunekd-sbatch-")
with open(os.path.join(SHIM, "sbatch"), "w") as _fh:
    _fh.write('#!/bin/sh\n[ -n "$SBATCH_CALLS" ] && echo "$*" >> "$SBATCH_CALLS"\nexec /usr/bin/sbatch "$@"\n')
os.chmod(os.path.join(SHIM, "sbatch"), 0o755)
ENV = {
    **os.environ,
    "PATH": os.pathsep.join([SHIM, str(BIN), os.environ["PATH"]]),
    "XDG_CONFIG_HOME": XDG,
    "PYTHONPATH": os.pathsep.join(filter(None, [POLL, os.environ.get("PYTHONPATH")])),
}
# A user's own profile, as docs/cluster.md shows: the shipped SLURM profile's settings and per-rule requests for
# a GPU rule. Nothing in the workflow may replace them; the job still gets its GPU.
USER_PROFILE = os.path.join(XDG, "snakemake", "mycluster")
USER_RESOURCES = {"distill": {"runtime": 17, "slurm_extra": "'--wckey=prunekd-user'"}}
# ... and the job arrays of docs/cluster.md ("Fewer still: job arrays"), which a user turns on in their profile.
USER_ARRAYS = {
    "slurm-array-jobs": "demo_teacher,teacher_logits,pack_audio",
    "jobs": "unlimited",
    "max-jobs-per-timespan": "10000/1s",
}
# Split 100 at one threshold: every rule, fewer jobs; SLURM adds seconds per job here.
SLURM_GRID = REPO / "tests/slurm_grid.yaml"
FAST = [
    "--seconds-between-status-checks",
    "2",
    "--slurm-init-seconds-before-status-checks",
    "1",
    "--latency-wait",
    "10",
]


def _slurm_is_up() -> bool:
    try:
        ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=20)
        state = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "UP" in ping.stdout and bool(re.search(r"idle|mixed|alloc", state.stdout))


@pytest.fixture(scope="module")
def slurm():
    # As root, always (re)apply .ci/slurm-up: it is idempotent and installs the Epilog the GPU check reads,
    # also where an older configuration is running.
    if os.geteuid() == 0:
        p = subprocess.run([str(REPO / ".ci/slurm-up")], capture_output=True, text=True, timeout=900)
        if p.returncode != 0 or not _slurm_is_up():
            pytest.skip(f"SLURM could not be started by .ci/slurm-up: {(p.stderr or p.stdout)[-600:]}")
    elif not _slurm_is_up():
        pytest.skip("SLURM is not running here, and starting it (.ci/slurm-up) needs root")
    p = subprocess.run(["make", "-C", str(REPO), "install-profile"], capture_output=True, text=True, env=ENV)
    assert p.returncode == 0, p.stdout + p.stderr
    assert os.path.samefile(os.path.join(XDG, "snakemake/slurm"), REPO / "profiles/slurm")
    import yaml

    mine = yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text())
    os.makedirs(USER_PROFILE, exist_ok=True)
    with open(os.path.join(USER_PROFILE, "config.yaml"), "w") as fh:
        yaml.safe_dump({**mine, **USER_ARRAYS, "set-resources": USER_RESOURCES}, fh)
    return JOBCOMP


def slurm_snakemake(workdir, *args, check=True, popen=False, profile="slurm"):
    """The tiny SLURM grid under `profile`; the sbatch calls are listed in <workdir>.sbatch."""
    env = {**ENV, "SBATCH_CALLS": f"{workdir}.sbatch"}
    cmd = [
        str(BIN / "snakemake"),
        "-s",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfiles",
        *TINY_CONFIGS,
        str(SLURM_GRID),
        *demo_threads(),
        "--profile",
        profile,
        *FAST,
        *args,
    ]
    if popen:
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if check and p.returncode != 0:
        raise AssertionError(f"snakemake failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-6000:]}")
    return p


def jobcomp_lines(workdir):
    """SLURM's own record of the jobs that ran in `workdir`: one dict of fields per job (an array task is one)."""
    out = []
    if not os.path.exists(JOBCOMP):
        return out
    for line in open(JOBCOMP):
        f = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
        if f.get("WorkDir", "").rstrip("/") == str(workdir).rstrip("/"):
            out.append(f)
    return out


def jobcomp_records(workdir):
    """JobId -> fields (an array's tasks may share the array's id here; a single job's id is its own)."""
    return {f["JobId"]: f for f in jobcomp_lines(workdir)}


def gres_records(workdir):
    """The Epilog's record of the jobs that ran in `workdir`: JobId -> (what ran, GPUs SLURM gave it or "none").

    What ran is the rule, or for a group job its group and rules (the executor's comment: rule_<group>_<rules>)."""
    out = {}
    if not os.path.exists(GRES_LOG):
        return out
    for line in open(GRES_LOG):
        m = re.match(r"JobId=(\d+) GPUs=(\S+) WorkDir=(.*) Comment=(.*)$", line.rstrip("\n"))
        if m and m[3].rstrip("/") == str(workdir).rstrip("/"):
            out[m[1]] = (m[4].removeprefix("rule_").split("_wildcards_")[0], m[2])
    return out


def wants_gpu(what: str) -> bool:
    return any(re.search(rf"(^|_){r}(_|$)", what) for r in GPU_RULES)


@pytest.fixture(scope="module")
def slurm_run(slurm, tmp_path_factory):
    wd = tmp_path_factory.mktemp("slurm")
    p = slurm_snakemake(wd, profile="mycluster")
    return wd, p.stdout + p.stderr


def test_every_job_goes_through_sbatch_and_matches_a_local_run(slurm_run, demo_run):
    wd, out = slurm_run
    # The user's own profile, and no workflow profile (the GPU requests are in the rules).
    assert re.search(r"Using profiles? mycluster", out) and "workflow specific profile" not in out, out[:2000]
    n_jobs = len(re.findall(r"^\s*rule \w+:", out, flags=re.M))  # non-local jobs of this run, group members too
    calls = open(f"{wd}.sbatch").read().splitlines()
    # Few submissions: arrays for the same-shaped jobs, groups for the short steps, summaries on the controller.
    assert n_jobs > 20 and len(calls) < n_jobs / 2, (len(calls), n_jobs)
    assert sum("--array=" in c for c in calls) >= 2, calls
    records = jobcomp_lines(wd)
    assert records and all(r["JobState"] == "COMPLETED" for r in records)
    # Each SLURM job (an array task, a group job) that runs a GPU rule got a GPU; no other job got one.
    deadline = time.time() + 30  # the Epilog may still be writing the last job's line
    while len(gres := gres_records(wd)) != len(records) and time.time() < deadline:
        time.sleep(1)
    assert len(gres) == len(records), (sorted(gres), len(records))
    wrong = {job: (what, gpus) for job, (what, gpus) in gres.items() if (gpus != "none") != wants_gpu(what)}
    assert not wrong, wrong
    ran = [what for what, _ in gres.values()]
    assert ran.count("teacher_logits") == 5 and ran.count("pack_audio") == 3, ran  # one SLURM task per job
    assert {"distill", "finetune_baseline_evaluate", "finetune_evaluate_finetune"} <= set(ran), ran
    # The user's per-rule runtime and slurm_extra reached the distillation's job, which still got its GPU.
    [job] = [j for j, (what, _) in gres.items() if what == "distill"]
    distill = jobcomp_records(wd)[job]
    assert (distill["TimeLimit"], distill["WcKey"]) == ("17", "prunekd-user") and gres[job][1] != "none"
    # Same results as the local run of the same config.
    rel = "results/prune/tau/all/split100/thr0.2/kept.tsv"
    kept = [pd.read_csv(d / rel, sep="\t") for d in (wd, demo_run)]
    pd.testing.assert_frame_equal(kept[0], kept[1], check_exact=False, atol=1e-6)
    t1 = [pd.read_csv(d / "results/summary/tau/table1.csv") for d in (wd, demo_run)]  # the local run sweeps two
    assert t1[0]["threshold"].tolist() == [0.2]
    pd.testing.assert_frame_equal(t1[0], t1[1][t1[1]["threshold"] == 0.2].reset_index(drop=True), atol=1e-6)
    rc = [pd.read_csv(d / "results/summary/rejected_counts.csv") for d in (wd, demo_run)]
    pd.testing.assert_frame_equal(rc[0], rc[1][rc[1]["dataset"] != "sounds"].reset_index(drop=True))
    t2 = [pd.read_csv(d / "results/summary/tau/table2.csv") for d in (wd, demo_run)]
    base = ["split", "baseline_macro_acc", "baseline_std", "baseline_runs"]
    pd.testing.assert_frame_equal(t2[0][base], t2[1].loc[t2[1]["split"] == 100, base].reset_index(drop=True))
    assert t2[0]["method_macro_acc"].tolist() == t1[0]["macro_acc"].tolist()  # split 100 at its one threshold


def test_cancelled_array_task_is_retried_alone_with_more_memory(slurm_run, tmp_path):
    src, _ = slurm_run
    wd = tmp_path / "run"
    shutil.copytree(src, wd, symlinks=True)
    shards = sorted((wd / "results/logits/audioset/shards").iterdir())
    for d in shards:
        shutil.rmtree(d)
    targets = [str(d.relative_to(wd)) for d in shards]
    proc = slurm_snakemake(wd, "--retries", "1", *targets, popen=True, profile="mycluster")
    cancelled, deadline = None, time.time() + 300
    while cancelled is None and time.time() < deadline and proc.poll() is None:
        q = subprocess.run(["squeue", "-h", "-o", "%i %T %k"], capture_output=True, text=True).stdout
        for line in q.splitlines():
            job, state, comment = (line.split(None, 2) + [""])[:3]
            # The array's last task: a failed first task fails the others too (docs/cluster.md, plugin issue 447).
            if state == "RUNNING" and "teacher_logits" in comment and job.endswith("_3"):
                subprocess.run(["scancel", job], check=True)
                cancelled = job
                break
        time.sleep(0.5)
    out = proc.communicate(timeout=600)[0]
    assert cancelled, f"never saw a teacher array task running:\n{out[-2000:]}"
    assert proc.returncode == 0, out[-3000:]
    assert all(d.exists() for d in shards)
    calls = open(f"{wd}.sbatch").read().splitlines()
    assert len(calls) == 2 and "--array=1-3" in calls[0] and "--array" not in calls[1], calls
    # The retry (attempt 2) asks for 1.5 times the memory (config retry.memory_factor); the array asked for the
    # rule's 4000 MB (and the plugin's 1 MB for the tasks' command lines).
    assert re.search(r"--mem 4001\b", calls[0]) and re.search(r"--mem 6000\b", calls[1]), calls


def test_scancelled_job_is_completed_by_the_next_run_and_nothing_else(slurm_run, tmp_path):
    src, _ = slurm_run
    wd = tmp_path / "run"
    shutil.copytree(src, wd, symlinks=True)
    target = wd / "results/distill/tau/all/split100/pruned/thr0.2/student.pt"
    # As if this distillation had never finished: it and what follows it are absent.
    for d in ("distill", "finetune", "eval/finetune"):
        shutil.rmtree(wd / f"results/{d}/tau/all/split100/pruned/thr0.2")
    shutil.rmtree(wd / "results/summary")
    proc = slurm_snakemake(wd, "--retries", "0", popen=True)
    cancelled, deadline = None, time.time() + 300
    while cancelled is None and time.time() < deadline and proc.poll() is None:
        q = subprocess.run(["squeue", "-h", "-o", "%i %T %k"], capture_output=True, text=True).stdout
        for line in q.splitlines():
            job, state, comment = (line.split(None, 2) + [""])[:3]
            if state == "RUNNING" and "distill" in comment:
                subprocess.run(["scancel", job], check=True)
                cancelled = job
        time.sleep(0.5)
    out = proc.communicate(timeout=600)[0]
    assert cancelled, f"never saw the distill job running:\n{out[-2000:]}"
    assert proc.returncode != 0 and not target.exists()
    jobs = planned(wd, SLURM_GRID)
    assert {r: len(v) for r, v in jobs.items()} == {"distill": 1, "finetune": 1, "evaluate": 1, "summarise": 1}
    # The next SLURM run completes the cancelled job (what follows it is the plan above; the whole run is
    # the test before), resuming from its checkpoint where it had one.
    slurm_snakemake(wd, str(target.relative_to(wd)))
    assert target.exists()
    assert {r: len(v) for r, v in planned(wd, SLURM_GRID).items()} == {"finetune": 1, "evaluate": 1, "summarise": 1}


def test_submit_runs_the_controller_as_a_slurm_job(slurm_run, tmp_path):
    src, _ = slurm_run
    wd = tmp_path / "run"
    shutil.copytree(src, wd, symlinks=True)
    shutil.rmtree(wd / "results/summary")
    shutil.rmtree(wd / "results/eval/baseline/tau/split100/seed0")  # an evaluation: a job the controller submits
    args = [
        "-s",
        str(REPO / "Snakefile"),
        "--configfiles",
        *TINY_CONFIGS,
        str(SLURM_GRID),
        *demo_threads(),
        *FAST,
    ]
    p = subprocess.run(
        [
            str(BIN / "prunekd"),
            "submit",
            "--workdir",
            str(wd),
            "--profile",
            str(REPO / "profiles/slurm"),
            "--time-min",
            "30",
            "--mem-gb",
            "2",
            "--wait",
            "--",
            *args,
        ],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=900,
    )
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-4000:]
    controller = re.search(r"submitted controller job (\d+)", p.stdout).group(1)
    records = jobcomp_records(wd)
    assert records[controller]["Name"] == "prunekd-controller" and records[controller]["JobState"] == "COMPLETED"
    assert len(records) >= 2  # the controller and the evaluation it submitted (it runs the summaries itself)
    assert (wd / "results/summary/tau/table2.csv").exists()


def test_controller_requeues_itself_with_the_same_arguments():
    from prunekd.cluster.controller import Controller

    c = Controller("/w", ["--profile", "p", "-n"], sys.executable)
    again = c.checkpoint()
    assert again.function.args == c.args and again.function.workdir == "/w"
    assert again.function.command()[-1] == "--rerun-incomplete"
