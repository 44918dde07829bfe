"""Run the Snakemake controller itself as a SLURM job (many clusters forbid long processes on login nodes).

The controller job runs `snakemake --profile <profile> ...` in the workflow directory. When SLURM
signals the end of its time limit, or preempts it, submitit calls `checkpoint()` and requeues the job;
the new run of the controller starts Snakemake again, which reruns what was incomplete (training jobs
resume from their checkpoints) and goes on where the workflow stopped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import submitit


class Controller(submitit.helpers.Checkpointable):
    """A picklable call that runs Snakemake; requeued with the same arguments on time-out."""

    def __init__(self, workdir: str, snakemake_args: list[str], snakemake_exe: str):
        self.workdir = str(workdir)
        self.args = list(snakemake_args)
        self.exe = snakemake_exe

    def command(self) -> list[str]:
        # --rerun-incomplete: jobs cut off by the requeue are rerun (and resume from checkpoints).
        extra = [] if "--rerun-incomplete" in self.args else ["--rerun-incomplete"]
        return [self.exe, *self.args, *extra]

    def __call__(self) -> int:
        env = {**os.environ, "PATH": f"{Path(self.exe).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        # Jobs submitted from inside this allocation must not inherit its resources.
        for k in [k for k in env if k.startswith(("SLURM_", "SBATCH_MEM", "SBATCH_CPUS"))]:
            env.pop(k)
        print("controller:", " ".join(self.command()), flush=True)
        rc = subprocess.run(self.command(), cwd=self.workdir, env=env).returncode
        if rc != 0:
            raise RuntimeError(f"snakemake exited with {rc} (see the controller log and results/logs)")
        return rc

    def checkpoint(self, *args, **kwargs) -> submitit.helpers.DelayedSubmission:
        # Nothing to save: Snakemake's own metadata and the outputs on disk are the state.
        return submitit.helpers.DelayedSubmission(Controller(self.workdir, self.args, self.exe))


def snakemake_exe() -> str:
    here = Path(sys.executable).parent / "snakemake"
    return str(here) if here.exists() else (shutil.which("snakemake") or "snakemake")


def submit(
    workdir,
    snakemake_args: list[str],
    log_dir,
    time_min: int,
    mem_gb: float,
    partition: str | None,
    account: str | None,
    name: str = "prunekd-controller",
):
    """Submit the controller; returns the submitit job."""
    ex = submitit.AutoExecutor(folder=str(log_dir), cluster="slurm")
    extra = {"signal_delay_s": 180}
    if partition:
        extra["partition"] = partition
    if account:
        extra["account"] = account
    ex.update_parameters(
        name=name,
        timeout_min=time_min,
        mem_gb=mem_gb,
        cpus_per_task=1,
        nodes=1,
        tasks_per_node=1,
        slurm_additional_parameters={"requeue": True, "chdir": str(Path(workdir).resolve())},
        **{f"slurm_{k}": v for k, v in extra.items()},
    )
    return ex.submit(Controller(str(Path(workdir).resolve()), snakemake_args, snakemake_exe()))


def wait_for(job, poll_s: float = 5.0, log=print):
    """Wait until SLURM no longer lists the job (works without accounting), then return its result."""
    while True:
        out = subprocess.run(["squeue", "-h", "-j", str(job.job_id), "-o", "%T"], capture_output=True, text=True)
        state = out.stdout.strip()
        if not state:
            break
        log(f"controller job {job.job_id}: {state}")
        time.sleep(poll_s)
    for _ in range(30):  # the result file can trail the job's end on a shared file system
        if job.paths.result_pickle.exists():
            break
        time.sleep(1)
    return job.result()


def submit_step(workdir, profile, snakemake_args, log_dir, time_min, mem_gb, partition, account, wait, log=print):
    """`prunekd submit`: the controller with the workflow's profile; with `wait`, until it ends."""
    args = [x for x in snakemake_args if x != "--"]
    logs = Path(workdir) / log_dir
    job = submit(workdir, ["--profile", profile, *args], logs, time_min, mem_gb, partition, account)
    print(f"submitted controller job {job.job_id}; logs in {logs}", flush=True)
    if wait:
        wait_for(job, log=log)
        log(f"controller job {job.job_id} finished")
    return job
