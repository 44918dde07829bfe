"""Offline knowledge distillation of CP-Mobile (527 outputs) on the pruned AudioSet subset.

Loss = lambda * BCEWithLogits(student, sigmoid(teacher)) + (1 - lambda) * BCEWithLogits(student, labels),
teacher = ensemble mean logits read from the Zarr store. Each clip rolled in time and, with p 0.5, mixed
with another (waveform MixUp, Beta(2, 2), folded; teacher logits mixed with the same lambda, labels the
first clip's, as the authors' code); SpecAugment on the student's input; AdamW,
warm-up then cosine to 1 % of the max lr, gradient-norm clip. docs/method.md, "Distillation".
The loop, schedule, checkpoints and curve: training.train.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F

from prunekd.data.datasets import WaveDataset
from prunekd.student.cpmobile import build_student
from prunekd.student.frontend import example_mixup, roll_waveform
from prunekd.student.training import (
    Reading,
    Run,
    StepSampler,
    as_float,
    clip_batches,
    compiled,
    fingerprint,
    on_device,
    save_model,
    seed_all,
    train,
    trained_settings,
)
from prunekd.teachers.logit_store import N_CLASSES


def kd_loss(student_logits, teacher_logits, labels, kd_lambda: float, temperature: float = 1.0):
    """The report's weighted sum of the distillation and the classification term."""
    t = temperature
    distill = F.binary_cross_entropy_with_logits(student_logits / t, torch.sigmoid(teacher_logits / t))
    classif = F.binary_cross_entropy_with_logits(student_logits, labels)
    return kd_lambda * distill + (1 - kd_lambda) * classif, distill, classif


SHUFFLES = ("none", "logits", "targets")


def shuffled_targets(teacher, labels, how: str, seed: int):
    """The negative control (controls.shuffled): the teacher logits dealt to other clips of the set by one seeded
    permutation; `targets` moves each clip's labels with its logits, so that no target of a clip stays with it.
    The student then sees the same audio and the same targets, only no longer together."""
    if how not in SHUFFLES:
        raise ValueError(f"controls.shuffled: {how!r} is not one of {', '.join(SHUFFLES)}")
    if how == "none":
        return teacher, labels
    import numpy as np

    perm = torch.from_numpy(np.random.default_rng([int(seed), 0x5EED]).permutation(len(teacher)))
    return teacher[perm], (labels[perm] if how == "targets" else labels)


def clip_source(packed, rows, paths, n_samples: int, sample_rate: int, log=print):
    """Where the pruned set's clips come from: (reader, dataset), one of them None. The packed shards
    (`prunekd pack-audio`, decoded once: packed.py says why) read in threads straight into pinned batches; a store
    in another layout through zarr in loader processes; without packed shards, the source files decoded."""
    if not packed:
        return None, WaveDataset(paths, sample_rate, n_samples)
    from prunekd.data.packed import PackedAudio, PackedReader, RawLayoutError

    try:
        return PackedReader(packed, rows, n_samples), None
    except RawLayoutError as e:
        log(f"{e}; reading the packed clips through zarr")
        return None, PackedAudio(packed, rows, n_samples)


def distill(
    store_path,
    manifest_path,
    kept_path,
    cfg: dict,
    student_cfg: dict,
    frontend_cfg: dict,
    clip_seconds: float,
    out_model,
    curve_path,
    ckpt_dir,
    log=print,
    members=None,
    packed=None,
    reading: Reading | None = None,
) -> dict:
    """Distil a student on the pruned set `kept_path`: `cfg` is the distillation's settings (what decides the
    result), `reading` how its clips are read (what decides only the speed)."""
    from prunekd.teachers.logit_store import embeddings, open_store

    reading = reading or Reading()
    seed_all(cfg["seed"])
    store = open_store(store_path)
    kept = pd.read_csv(kept_path, sep="\t")
    pos = kept["position"].to_numpy()
    if len(pos) == 0:
        raise RuntimeError(f"{kept_path}: the pruned set is empty; lower the threshold")
    manifest = pd.read_csv(manifest_path, sep="\t", dtype={"labels": str}, keep_default_na=False)
    rows = store["row"][:][pos]
    paths = manifest["path"].to_numpy()[rows]
    teacher = torch.from_numpy(embeddings(store, pos, members))
    labels = torch.from_numpy(store["labels"].get_orthogonal_selection((pos, slice(None))).astype(bool))
    log(f"distilling on {len(pos)} clips (batch {cfg['batch_size']}) from {kept_path}")
    if cfg.get("shuffle", "none") != "none":
        teacher, labels = shuffled_targets(teacher, labels, cfg["shuffle"], cfg["seed"])
        log(f"control: {cfg['shuffle']} shuffled across the clips (the teachers' knowledge of each clip removed)")

    model = build_student(student_cfg, n_classes=N_CLASSES)
    device, autocast, mel = on_device(model, frontend_cfg, cfg["precision"])
    # Teacher logits and labels of the whole pruned set on the device (all of AudioSet fits): a batch is
    # gathered there by its pinned indices, no host copy per step (a copy from pageable memory waits for the GPU).
    teacher, labels = teacher.to(device), labels.to(device)
    net = compiled(model, cfg.get("compile", False), device)  # the forward; `model` keeps the weights
    total, batch = cfg["iterations"], min(cfg["batch_size"], len(pos))
    reader, dataset = clip_source(
        packed, rows, paths, int(clip_seconds * frontend_cfg["sample_rate"]), frontend_cfg["sample_rate"], log
    )

    def batches_from(source):
        """batches(start) for train: from `source` (the reader or its staged copy), else from `dataset`."""

        def batches(start):
            sampler = StepSampler(len(pos), batch, total, cfg["seed"], start)
            if source is not None:
                from prunekd.data.packed import reader_batches

                return reader_batches(source, sampler, reading.num_workers, pin=device.type == "cuda")
            return clip_batches(dataset, sampler, reading.num_workers, paths, log)

        return batches

    def loss_fn(batch):
        wav, idx = batch
        wav = as_float(wav.to(device, non_blocking=True))
        idx = idx.to(device, non_blocking=True)
        t, y = teacher[idx], labels[idx].float()
        wav = roll_waveform(wav, cfg["roll_samples"])  # every clip, before MixUp, as the authors' loader
        wav, t, y = example_mixup(wav, t, y, cfg["mixup_p"], cfg["mixup_alpha"], cfg["mixup_labels"] == "mix")
        with autocast():
            out = net(mel(wav).contiguous(memory_format=torch.channels_last))
        return kd_loss(out.float(), t, y, cfg["kd_lambda"], cfg["temperature"])[0]

    fp = fingerprint(
        trained_settings(cfg),
        student_cfg,
        frontend_cfg,
        clip_seconds,
        members,
        Path(kept_path).read_bytes(),
    )
    run = Run(
        "distill",
        total,
        int(round(cfg["warmup_fraction"] * total)),
        cfg["final_lr_fraction"],
        fp,
        Path(ckpt_dir),
        curve_path,
        log,
    )
    stage = contextlib.nullcontext(reader)
    if reader is not None and reading.stage_dir and reading.staging == "auto":
        from prunekd.data.staging import staged  # a node-local copy of the pruned clips (docs/cluster.md)

        left = total - run.start()  # a resumed job draws only the steps left
        stage = staged(reader, reading.stage_dir, left * batch, reading.num_workers, log)
    opened = reader if reader is not None else contextlib.nullcontext()  # closes the reader's shard files at the end
    with opened, stage as source:  # the staged copy is finished with first
        train(model, batches_from(source), loss_fn, cfg, run)
    save_model(out_model, model, n_classes=N_CLASSES, student=student_cfg, steps=total, clips=int(len(pos)))
    return {"steps": total, "clips": int(len(pos))}


def distill_step(
    store,
    manifest,
    kept,
    out,
    curve,
    checkpoint_dir,
    packed,
    settings: dict,
    num_workers: int = 0,
    staging: str = "never",
    stage_dir=None,
    log=print,
) -> dict:
    """`prunekd distill`: the step's config slice unpacked, with how to read the clips (flags, not settings)."""
    s = settings
    return distill(
        store,
        manifest,
        kept,
        s["distillation"],
        s["student"],
        s["frontend"],
        s["clip_seconds"],
        out,
        curve,
        checkpoint_dir,
        log,
        s.get("members"),
        packed=packed,
        reading=Reading(num_workers, staging, stage_dir),
    )
