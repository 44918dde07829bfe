"""Benchmark: CP-Mobile distillation steps/s at batch 32, input pipeline attached.

Runs `prunekd.student.distill.distill` itself (MixUp, SpecAugment, AdamW, schedule, checkpoints) on synthetic
clips packed into the store layout the pipeline uses (`prunekd.data.packed`), with teacher logits in a
Zarr store laid out as `prunekd gather` writes it. On a GPU it runs there (precision and compilation as
configured) and reports the time 100 k iterations would take, beside its parts alone: the packed input
alone (the same threads and batches, copied to the device, no model), with the main thread's CPU time
per batch, for PackedReader (what distillation uses) and for zarr in DataLoader processes (the path
before), and the model step alone (benchmarks/student_step.py on one batch already on the device). On a GPU
it also counts the loop's host syncs per step (torch.cuda sync debug mode), as benchmarks/finetune.py does.

The packed clips are staged as the pipeline does (`distillation.staging: auto`: a copy in a temporary folder,
made beside the first steps); --no-stage reads the store at every step. --loop-only skips the parts alone, and
--barrier DIR:K makes K such processes start their loops together (benchmarks/concurrent_distill.py).

    python benchmarks/distill.py [--quick] [--workers N] [--clip-seconds S] [--compile] [--no-stage]   # last line: JSON
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
import student_step  # the model step alone, measured the same way in both benchmarks
import torch
import yaml
import zarr

from prunekd.data.packed import PackedAudio, PackedReader, pack_shard, reader_batches
from prunekd.student.distill import distill
from prunekd.student.training import Reading, StepSampler, as_float, clip_batches
from prunekd.teachers.logit_store import N_CLASSES, create_ensemble_array

REPO = Path(__file__).resolve().parents[1]


def loader_rate(packed, n_clips: int, n_samples: int, dcfg: dict, steps: int, how: str) -> tuple[float, float]:
    """(batches/s, main-thread CPU ms per batch) of the distillation input alone: the same sampler, each batch
    copied to the device and turned into floats there, no model. how: "reader" (PackedReader's threads, what
    distillation uses) or "loader" (PackedAudio through zarr in DataLoader processes, the path before)."""
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    sampler = StepSampler(n_clips, dcfg["batch_size"], min(max(steps, 40), 300), 0)  # a steady rate, not more
    if how == "reader":
        it = reader_batches(
            PackedReader([packed], np.arange(n_clips), n_samples), sampler, dcfg["num_workers"], dev.type == "cuda"
        )
    else:
        it = clip_batches(PackedAudio([packed], np.arange(n_clips), n_samples), sampler, dcfg["num_workers"], [], print)
    t0 = c0 = None
    for k, (wav, _) in enumerate(it):
        as_float(wav.to(dev, non_blocking=True))
        if k == 10:  # worker start-up excluded
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t0, c0, k0 = time.perf_counter(), time.thread_time(), k
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return (k - k0) / (time.perf_counter() - t0), (time.thread_time() - c0) * 1000 / (k - k0)


def wait_for_peers(folder: str, k: str, timeout: float = 120.0) -> None:
    """A barrier across processes: announce this one in `folder`, then wait until `k` have."""
    Path(folder, str(os.getpid())).touch()
    t0 = time.time()
    while len(os.listdir(folder)) < int(k):
        if time.time() - t0 > timeout:
            raise SystemExit(
                f"--barrier {folder}:{k}: only {len(os.listdir(folder))} processes came in {timeout:.0f} s"
            )
        time.sleep(0.01)


def _num(x: float, digits: int):
    """JSON has no NaN: a part not measured (--loop-only) is null."""
    return None if x != x else round(x, digits)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1 s clips, few steps: ends within a minute")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--clip-seconds", type=float)
    ap.add_argument("--steps", type=int)
    ap.add_argument("--compile", action="store_true", help="distillation.compile: true (the config's default is false)")
    ap.add_argument(
        "--no-stage",
        action="store_true",
        help="distillation.staging: never (default: auto, as the pipeline: a copy in a temporary folder)",
    )
    ap.add_argument("--loop-only", action="store_true", help="only the loop's rate, not its parts alone")
    ap.add_argument("--barrier", help="DIR:K: wait before the loop until K processes have reached it")
    a = ap.parse_args()
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    seconds = a.clip_seconds or (1.0 if a.quick else 10.0)
    gpu = torch.cuda.is_available()
    steps = a.steps or (8 if a.quick else (300 if gpu else 12))
    n_clips = 256
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        paths = []
        for i in range(n_clips):
            paths.append(str(tmp / f"c{i}.flac"))
            sf.write(paths[-1], rng.normal(0, 0.1, int(32000 * seconds)).astype(np.float32), 32000)
        pd.DataFrame(
            {
                "row": range(n_clips),
                "id": [f"c{i}" for i in range(n_clips)],
                "subset": "unbalanced_train",
                "path": paths,
                "labels": "0",
                "duration": seconds,
                "status": "ok",
            }
        ).to_csv(tmp / "m.tsv", sep="\t", index=False)
        pack_shard(
            tmp / "m.tsv",
            0,
            n_clips,
            ["unbalanced_train"],
            32000,
            seconds,
            tmp / "packed.zarr",
            num_workers=a.workers,
            log=lambda *_: None,
        )
        g = zarr.open_group(str(tmp / "s.zarr"), mode="w")
        g.attrs["members"] = ["m"]
        g.create_array("row", data=np.arange(n_clips))
        create_ensemble_array(g, n_clips)[:] = rng.normal(-5, 2, (n_clips, N_CLASSES)).astype(np.float32)
        g.create_array("labels", data=rng.random((n_clips, N_CLASSES)) > 0.99)
        pd.DataFrame({"position": range(n_clips)}).to_csv(tmp / "k.tsv", sep="\t", index=False)
        dcfg = {
            **cfg["distillation"],
            "iterations": steps,
            # No checkpoint inside the measured steps: its copies to the host would count as the loop's syncs
            # (the pipeline saves one every 2,000 steps).
            "checkpoint_every": steps,
            "log_every": max(1, steps // 20),  # progress points for concurrent_distill.py's common interval
            "compile": a.compile or cfg["distillation"].get("compile", False),
        }
        reading = Reading(a.workers, "never" if a.no_stage else "auto", tmp / "node")
        (tmp / "node").mkdir()  # the node's temp folder (resources.tmpdir)

        def run(dcfg, name, log):
            distill(
                tmp / "s.zarr",
                tmp / "m.tsv",
                tmp / "k.tsv",
                dcfg,
                cfg["student"],
                cfg["frontend"],
                seconds,
                tmp / f"{name}.pt",
                tmp / f"{name}.tsv",
                tmp / f"ck_{name}",
                log=log,
                packed=[tmp / "packed.zarr"],
                reading=reading,
            )

        with student_step.LoopMeter() as meter:
            if a.barrier:
                wait_for_peers(*a.barrier.rsplit(":", 1))
            t0 = time.perf_counter()
            run(dcfg, "student", meter.log)
            wall = time.perf_counter() - t0
        rate, syncs = meter.steady()
        # Copies to the GPU from pageable memory per step (GPU only; sync debug mode misses them): two short runs.
        pageable = (
            None
            if a.loop_only
            else student_step.pageable_per_step(
                lambda k: run({**dcfg, "iterations": k, "checkpoint_every": k}, f"p{k}", lambda *_: None), 20, 60
            )
        )
        # The loop's figures at once: a run cut later by a time limit keeps them (the last JSON line wins).
        loop = {"steps_per_s": round(rate, 3), "host_syncs_per_step": None if syncs is None else round(syncs, 3)}
        print(json.dumps({"benchmark": "distill", "part": "loop", "steps": steps, "compile": dcfg["compile"], **loop}))
        ns = int(32000 * seconds)
        nan = (float("nan"),) * 2
        loader, loader_cpu = (
            nan if a.loop_only else loader_rate(tmp / "packed.zarr", n_clips, ns, dcfg, steps, "reader")
        )
        procs, procs_cpu = nan if a.loop_only else loader_rate(tmp / "packed.zarr", n_clips, ns, dcfg, steps, "loader")
    shape = (cfg["distillation"]["batch_size"], seconds, N_CLASSES)
    variant = "compile" if dcfg["compile"] and gpu else "bench"
    steps_alone = min(steps, 200) if gpu else 2
    model = float("nan") if a.loop_only else student_step.rate(variant, shape, cfg, steps_alone, 10 if gpu else 1)
    res = {
        "benchmark": "distill",
        "quick": a.quick,
        "device": torch.cuda.get_device_name() if gpu else "cpu",
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "batch": cfg["distillation"]["batch_size"],
        "clip_seconds": seconds,
        "steps": steps,
        "workers": a.workers,
        "input": "packed",
        "compile": dcfg["compile"] and gpu,
        "staged": any(x.startswith("staging ") for x in meter.lines),
        "steps_per_s": round(rate, 3),
        "reader_alone_batches_per_s": _num(loader, 2),
        "reader_main_thread_ms_per_batch": _num(loader_cpu, 2),
        "zarr_loader_alone_batches_per_s": _num(procs, 2),
        "zarr_loader_main_thread_ms_per_batch": _num(procs_cpu, 2),
        "model_step_alone_steps_per_s": _num(model, 2),
        "host_syncs_per_step": None if syncs is None else round(syncs, 3),
        "pageable_copies_per_step": None if pageable is None else round(pageable, 3),
        "wall_s": round(wall, 1),
        "minutes_for_100k": round(100_000 / rate / 60, 1),
        "progress": [[round(t, 3), k] for t, k in meter.progress()],  # (wall clock, step): concurrent_distill.py
    }
    print(
        f"distillation {rate:.2f} steps/s | packed reader alone {loader:.1f} batches/s "
        f"({loader_cpu:.1f} ms main-thread CPU per batch; zarr in loader processes {procs:.1f}, {procs_cpu:.1f} ms) | "
        f"model step alone {model:.2f} steps/s"
        + (f" | {syncs:.2f} host syncs per step" if syncs is not None else "")
        + (f" | {pageable:.2f} pageable copies per step" if pageable is not None else "")
    )
    print(json.dumps(res))


if __name__ == "__main__":
    main()
