"""Offline knowledge distillation of CP-Mobile (527 outputs) on the pruned AudioSet subset.

Loss = lambda * BCEWithLogits(student, sigmoid(teacher)) + (1 - lambda) * BCEWithLogits(student, labels),
teacher = ensemble mean logits read from the Zarr store. Waveform MixUp (p 0.5, Beta(2, 2), folded),
teacher logits and labels mixed with the same lambda; SpecAugment on the student's input; AdamW,
warm-up then cosine to 1 % of the max lr, gradient-norm clip. docs/method.md, "Distillation".
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .atomic import atomic_path
from .cpmobile import build_student
from .frontend import MelFrontEnd, mixup_params
from .training import (Progress, device_and_autocast, fingerprint, StepSampler, WaveDataset, append_curve, load_checkpoint, loader,
                       save_checkpoint, warmup_cosine)


def kd_loss(student_logits, teacher_logits, labels, kd_lambda: float, temperature: float = 1.0):
    """The report's weighted sum of the distillation and the classification term."""
    t = temperature
    distill = F.binary_cross_entropy_with_logits(student_logits / t, torch.sigmoid(teacher_logits / t))
    classif = F.binary_cross_entropy_with_logits(student_logits, labels)
    return kd_lambda * distill + (1 - kd_lambda) * classif, distill, classif


def distill(store_path, manifest_path, kept_path, cfg: dict, student_cfg: dict, frontend_cfg: dict,
            clip_seconds: float, out_model, curve_path, ckpt_dir, log=print, members=None, packed=None) -> dict:
    from .store import embeddings, open_store
    torch.manual_seed(cfg["seed"])
    np.random.seed(cfg["seed"])
    store = open_store(store_path)
    kept = pd.read_csv(kept_path, sep="\t")
    pos = kept["position"].to_numpy()
    if len(pos) == 0:
        raise RuntimeError(f"{kept_path}: the pruned set is empty; lower the threshold")
    manifest = pd.read_csv(manifest_path, sep="\t", dtype={"labels": str}, keep_default_na=False)
    rows = store["row"][:][pos]
    paths = manifest["path"].to_numpy()[rows]
    teacher = torch.from_numpy(embeddings(store, pos, members))
    labels = torch.from_numpy(store["labels"].get_orthogonal_selection((pos, slice(None))).astype(np.float32))
    log(f"distilling on {len(pos)} clips from {kept_path}")

    device, autocast = device_and_autocast(cfg["precision"])
    # channels_last: about 30 % faster convolutions on CPU, and what tensor cores want on GPU.
    model = build_student(student_cfg, n_classes=527).to(device, memory_format=torch.channels_last)
    mel = MelFrontEnd(frontend_cfg).to(device)
    total = cfg["iterations"]
    opt = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    warm = int(round(cfg["warmup_fraction"] * total))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, total, warm, cfg["final_lr_fraction"]))
    ckpt = Path(ckpt_dir) / "last.pt"
    fp = fingerprint(cfg, student_cfg, frontend_cfg, clip_seconds, members, Path(kept_path).read_bytes())
    start = load_checkpoint(ckpt, model, opt, sched, fp, log)
    if start:
        log(f"resuming from {ckpt} at step {start}")
    n_samples = int(clip_seconds * frontend_cfg["sample_rate"])
    sampler = StepSampler(len(pos), min(cfg["batch_size"], len(pos)), total, cfg["seed"], start)
    if packed:  # decoded once by `prunekd pack-audio` (see packed.py for why)
        from .packed import PackedAudio
        dataset = PackedAudio(packed, rows, n_samples)
    else:
        dataset = WaveDataset(paths, frontend_cfg["sample_rate"], n_samples)
    data = loader(dataset, sampler, cfg["num_workers"])
    progress = Progress(total, start, log, cfg["log_every"], "distill")
    model.train()
    mel.train()
    step = start
    for wav, idx, bad in data:
        for i, why in bad:
            log(f"warning: {paths[i]}: {why}; used as silence")
        wav = wav.to(device, non_blocking=True)
        t, y = teacher[idx].to(device, non_blocking=True), labels[idx].to(device, non_blocking=True)
        if torch.rand(()).item() < cfg["mixup_p"]:
            perm, lam = mixup_params(len(idx), cfg["mixup_alpha"])
            perm, lw = perm.to(device), lam.unsqueeze(1).to(device)
            wav = wav * lw + wav[perm] * (1 - lw)
            t = t * lw + t[perm] * (1 - lw)
            y = y * lw + y[perm] * (1 - lw)
        with autocast():
            out = model(mel(wav).contiguous(memory_format=torch.channels_last))
        loss, _, _ = kd_loss(out.float(), t, y, cfg["kd_lambda"], cfg["temperature"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg["grad_clip"])
        opt.step()
        sched.step()
        progress.update(step, loss.item(), sched.get_last_lr()[0])
        step += 1
        if step % cfg["checkpoint_every"] == 0 and step < total:
            append_curve(curve_path, progress.rows)
            progress.rows = []
            save_checkpoint(ckpt, step, model, opt, sched, fp)
    append_curve(curve_path, progress.rows)
    with atomic_path(out_model) as tmp:
        torch.save({"state_dict": model.state_dict(), "n_classes": 527, "student": student_cfg,
                    "steps": total, "clips": int(len(pos))}, tmp)
    return {"steps": total, "clips": int(len(pos))}
