"""The training loop shared by distillation and fine-tuning, and its pieces: schedule, resumable sampler,
checkpoints, progress, curve.

distill.py and finetune.py keep only what differs: their data (`batches`), their batch -> loss (`loss_fn`)
and what they save; `train` does the rest.
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from prunekd.atomic import atomic_path
from prunekd.dag.reruns import computed
from prunekd.data.datasets import collate
from prunekd.student.frontend import to_device


def warmup_cosine(step: int, total: int, warmup: int, final_fraction: float) -> float:
    """LR multiplier: linear warm-up, then cosine decay from 1 to final_fraction."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return final_fraction + (1 - final_fraction) * 0.5 * (1 + math.cos(math.pi * progress))


class StepSampler(torch.utils.data.Sampler):
    """Batches for steps [start, total): epoch e is a permutation seeded by (seed, e).

    The batch of a step depends only on the seed and the step, so a resumed run sees exactly the
    batches an uninterrupted one would.
    """

    def __init__(
        self, n: int, batch_size: int, total_steps: int, seed: int, start_step: int = 0, drop_last: bool = True
    ):
        self.n, self.bs, self.total, self.seed, self.start = n, batch_size, total_steps, seed, start_step
        self.per_epoch = n // batch_size if drop_last else math.ceil(n / batch_size)
        self.per_epoch = max(1, self.per_epoch)
        self._perm = (None, None)  # (epoch, its permutation): drawn once per epoch, not per step

    def __len__(self):
        return self.total - self.start

    def batch(self, step: int) -> list[int]:
        epoch, k = divmod(step, self.per_epoch)
        if self._perm[0] != epoch:
            self._perm = (epoch, np.random.default_rng([self.seed, epoch]).permutation(self.n))
        return self._perm[1][k * self.bs : (k + 1) * self.bs].tolist()

    def __iter__(self):
        for step in range(self.start, self.total):
            yield self.batch(step)


def indexed_batches(clips: torch.Tensor, sampler, device) -> Iterable:
    """(waveforms on `device`, indices on `device`) per step, drawn from decoded clips: no loader, no decoding."""
    device = torch.device(device)
    # By type: torch.device("cuda") != torch.device("cuda:0"), the device a tensor reports.
    on_host = clips.device.type == "cpu" and device.type == "cuda"
    for idx in sampler:
        idx = to_device(torch.tensor(idx), clips.device)  # pinned first: no pageable copy per step
        wav = clips[idx]
        if on_host:  # clips in pinned host memory: a pinned batch, copied asynchronously
            wav = to_device(wav, device)
        yield wav, idx.to(device, non_blocking=True)


def as_float(wav: torch.Tensor) -> torch.Tensor:
    """Waveforms as float32: int16 batches (packed clips) become x / 32768, exactly the floats numpy would make."""
    return wav.float().div_(32768.0) if wav.dtype == torch.int16 else wav


def loader(dataset, sampler, num_workers: int):
    # A private generator keeps worker seeding from consuming the global RNG (resume determinism).
    # Pinned batches: the host-to-device copy is asynchronous (non_blocking) instead of from pageable memory.
    return torch.utils.data.DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate,
        generator=torch.Generator().manual_seed(0),
        pin_memory=torch.cuda.is_available(),
        prefetch_factor=4 if num_workers else None,
    )


def device_and_autocast(precision: str):
    """Training device (the GPU when there is one) and the autocast context for the model's forward.

    bf16 autocast on GPU only: on CPU it is slower and would change the numbers the resume test checks.
    """
    import contextlib

    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if dev.type == "cuda" and precision == "bf16":
        return dev, lambda: torch.autocast("cuda", dtype=torch.bfloat16)
    return dev, contextlib.nullcontext


def trained_settings(cfg: dict) -> dict:
    """A step's settings without how it reads its input (reruns.IO_KEYS): its checkpoints' fingerprint.

    A checkpoint therefore resumes across a change to the reading options.
    """
    return computed(cfg)


def fingerprint(*parts) -> str:
    """Hash of everything a run depends on: a checkpoint is resumed only by the same run."""
    import hashlib
    import json

    h = hashlib.sha256()
    for p in parts:
        h.update(p if isinstance(p, bytes) else json.dumps(p, sort_keys=True, default=str).encode())
    return h.hexdigest()


def save_checkpoint(path, step: int, model, opt, sched, fp: str) -> None:
    state = {
        "step": step,
        "model": model.state_dict(),
        "opt": opt.state_dict(),
        "sched": sched.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "numpy_rng": np.random.get_state(),
        "fingerprint": fp,
    }
    if torch.cuda.is_available():
        state["cuda_rng"] = torch.cuda.get_rng_state_all()
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


# The training curve lives beside the checkpoint (`train` copies it to the run's curve_path at the end):
# Snakemake deletes a failed job's outputs, but not this folder, so a resumed curve stays whole.
CURVE_NAME = "curve.tsv"


def _restart_curve(ckpt: Path, step: int) -> None:
    """Keep the rows of the curve beside a checkpoint up to the step the run continues from."""
    curve = ckpt.with_name(CURVE_NAME)
    if not curve.exists():
        return
    if step == 0:
        curve.unlink()
        return
    import pandas as pd

    from prunekd.atomic import write_table

    old = pd.read_csv(curve, sep="\t") if curve.stat().st_size else pd.DataFrame(columns=["step"])
    write_table(curve, old[old["step"] <= step])


def read_checkpoint(path, fp: str, log=print) -> dict | None:
    """The last checkpoint of the run with fingerprint `fp`, or None (none, or one of another run: the run starts
    afresh and the curve beside it restarts). Read once per run (Run.checkpoint)."""
    path = Path(path)
    state = torch.load(path, map_location="cpu", weights_only=False) if path.exists() else None
    if state is not None and state.get("fingerprint") != fp:
        log(f"{path}: written by a run with other settings or inputs; starting afresh")
        state = None
    _restart_curve(path, 0 if state is None else int(state["step"]))
    return state


def restore(state: dict, model, opt, sched) -> int:
    """Put a checkpoint's weights, optimiser, schedule and RNG states back; returns the step to continue from."""
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["opt"])
    sched.load_state_dict(state["sched"])
    torch.set_rng_state(state["torch_rng"])
    np.random.set_state(state["numpy_rng"])
    if "cuda_rng" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    return int(state["step"])


class Progress:
    """Logs steps/s, loss and time left every `every` steps; keeps the curve for the report.

    The step losses stay on the device until a log step: one host sync per `every` steps, not one per step.
    Their mean is summed in Python floats in step order, the same numbers as `loss.item()` every step.
    """

    def __init__(self, total: int, start: int, log, every: int, name: str):
        self.total, self.start, self.log, self.every, self.name = total, start, log, max(1, every), name
        self.t0 = time.time()
        self.rows: list[dict] = []
        self.losses: list = []

    def update(self, step: int, loss: torch.Tensor, lr: float, extra: dict | None = None) -> None:
        """extra: more columns of this step's row (the test-split accuracy); a step with them is always logged."""
        self.losses.append(loss.detach())
        if (step + 1) % self.every == 0 or step + 1 == self.total or extra:
            values = torch.stack(self.losses).tolist()  # the one sync
            mean = sum(values) / len(values)
            rate = (step + 1 - self.start) / max(time.time() - self.t0, 1e-9)
            self.rows.append({"step": step + 1, "loss": mean, "lr": lr, "steps_per_s": rate, **(extra or {})})
            more = "".join(f" {k} {v:.4f}" for k, v in (extra or {}).items())
            self.log(
                f"{self.name} step {step + 1}/{self.total} loss {mean:.4f} lr {lr:.2e} "
                f"{rate:.2f} steps/s, {(self.total - step - 1) / max(rate, 1e-9):.0f} s left{more}"
            )
            self.losses = []

    def take_rows(self) -> list[dict]:
        rows, self.rows = self.rows, []
        return rows


def append_curve(path, rows: list[dict]) -> None:
    """Training curve TSV; a resumed run appends to the rows of the first attempt."""
    import pandas as pd

    path = Path(path)
    cols = ["step", "loss", "lr", "steps_per_s"]
    old = pd.read_csv(path, sep="\t") if path.exists() and path.stat().st_size else pd.DataFrame(columns=cols)
    cols += [c for c in [*old.columns, *(k for r in rows for k in r)] if c not in cols]  # test_* columns
    cols = list(dict.fromkeys(cols))
    new = pd.concat([old, pd.DataFrame(rows, columns=cols)], ignore_index=True)
    if not new.empty:
        new = new.drop_duplicates("step", keep="last")
    from prunekd.atomic import write_table

    write_table(path, new)


def publish_curve(kept, out) -> None:
    """Copy the curve kept beside the checkpoint to the job's output."""
    if out is None or Path(out).resolve() == Path(kept).resolve():
        return
    with atomic_path(out) as tmp:
        shutil.copyfile(kept, tmp)


def seed_all(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)


GPU_HOST_THREADS = 4


def on_device(model, frontend_cfg: dict, precision: str):
    """The student on the training device, its mel front end there too, and the autocast for the forward.

    channels_last: about 30 % faster convolutions on CPU, and what tensor cores want on GPU.
    """
    from prunekd.student.frontend import MelFrontEnd

    device, autocast = device_and_autocast(precision)
    if device.type == "cuda":
        # The GPU computes; the host only launches kernels and collates. A full set of intra-op threads
        # competes with the loader workers for the job's cores (docs/performance.md).
        torch.set_num_threads(min(torch.get_num_threads(), GPU_HOST_THREADS))
        # Fixed shapes: cuDNN times its convolution algorithms once per shape and keeps the fastest
        # (docs/performance.md, benchmarks/student_step.py).
        torch.backends.cudnn.benchmark = True
    model.to(device, memory_format=torch.channels_last)
    return device, autocast, MelFrontEnd(frontend_cfg).to(device)


def compiled(model, enabled: bool, device) -> torch.nn.Module:
    """The model's forward under torch.compile on a GPU when `enabled` (distillation.compile), else the model.

    The compiled module shares the model's parameters, so the optimizer, checkpoints and saved weights keep using
    `model` (its state dict has no `_orig_mod.` prefixes). dynamic=False: one static graph per batch shape. On
    CPU it stays eager: compiling costs more than it saves there, and the bit-exact resume test runs there.
    """
    if not enabled or torch.device(device).type != "cuda":
        return model
    from torch import _dynamo

    _dynamo.config.suppress_errors = True  # a node without a working compiler runs eager, not fails
    return torch.compile(model, dynamic=False)


def save_model(path, model, **info) -> None:
    with atomic_path(path) as tmp:
        torch.save({"state_dict": model.state_dict(), **info}, tmp)


def clip_batches(dataset, sampler, num_workers: int, names, log) -> Iterable:
    """(waveforms, indices) per step from a clip dataset; a clip that failed to decode is reported (silence)."""
    for wav, idx, bad in loader(dataset, sampler, num_workers):
        for i, why in bad:
            log(f"warning: {names[i]}: {why}; used as silence")
        yield wav, idx


@dataclass(frozen=True)
class Reading:
    """How a step reads its clips: loader processes or reading threads, a node-local copy (`staging`: auto or
    never) and where. It decides speed, never the result: the commands take it as flags outside --settings
    (reruns.IO_KEYS), so that changing it reruns nothing, and no checkpoint's fingerprint holds it."""

    num_workers: int = 0
    staging: str = "never"
    stage_dir: str | Path | None = None


_UNREAD = object()


@dataclass
class Run:
    """One training run: its length and schedule, its identity, where it keeps its state, what it logs to."""

    name: str  # "distill" or "finetune": the progress lines' prefix
    total: int  # steps
    warmup: int  # linear warm-up steps, then cosine
    final_lr_fraction: float  # the cosine ends at this fraction of cfg["lr"]
    fingerprint: str  # a checkpoint is resumed only by a run with the same one
    ckpt_dir: Path  # last.pt and the curve so far: both survive a killed job
    curve_path: Path | None  # the curve is copied here at the end
    log: Callable = print
    evaluate: Callable[[], dict] | None = None  # extra curve columns (the test-split accuracy), every eval_every steps
    eval_every: int = 0
    _checkpoint: object = field(default=_UNREAD, init=False, repr=False, compare=False)

    def checkpoint(self) -> dict | None:
        """The checkpoint this run resumes from (read_checkpoint), read from disk once."""
        if self._checkpoint is _UNREAD:
            self._checkpoint = read_checkpoint(Path(self.ckpt_dir) / "last.pt", self.fingerprint, self.log)
        return self._checkpoint

    def start(self) -> int:
        """The step this run continues from (0: from the start)."""
        state = self.checkpoint()
        return 0 if state is None else int(state["step"])


def train(model, batches: Callable[[int], Iterable], loss_fn: Callable, cfg: dict, run: Run) -> None:
    """Train `model` for run.total steps: AdamW, warm-up + cosine stepped per batch, optional grad-norm clip.

    batches(start) yields the batches of steps [start, run.total); loss_fn(batch) is a step's loss (augmentation,
    forward, criterion). A checkpoint and the curve so far every cfg["checkpoint_every"] steps; a killed run
    continues from the last one to the same weights (same RNG states, same batches).
    """
    opt = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: warmup_cosine(s, run.total, run.warmup, run.final_lr_fraction)
    )
    ckpt = Path(run.ckpt_dir) / "last.pt"
    curve = ckpt.with_name(CURVE_NAME)
    state = run.checkpoint()
    start = 0 if state is None else restore(state, model, opt, sched)
    run._checkpoint = None  # the weights live in `model` now; the state's memory goes
    if start:
        run.log(f"resuming from {ckpt} at step {start}")
    progress = Progress(run.total, start, run.log, cfg["log_every"], run.name)
    model.train()
    it = iter(batches(start))
    try:
        for step, batch in enumerate(it, start):
            loss = loss_fn(batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.get("grad_clip") is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg["grad_clip"])
            opt.step()
            sched.step()
            due = run.evaluate is not None and run.eval_every and (step + 1) % run.eval_every == 0
            progress.update(step, loss, sched.get_last_lr()[0], run.evaluate() if due else None)
            rows = progress.take_rows()
            if rows:  # to the curve as logged, so that a running job can be followed (a resume drops the
                append_curve(curve, rows)  # rows past its checkpoint: _restart_curve)
            if (step + 1) % cfg["checkpoint_every"] == 0 and step + 1 < run.total:
                save_checkpoint(ckpt, step + 1, model, opt, sched, run.fingerprint)
    finally:  # also when a step fails: a batch generator's reading threads end before what they read is closed
        if hasattr(it, "close"):
            it.close()
    append_curve(curve, progress.take_rows())
    publish_curve(curve, run.curve_path)
