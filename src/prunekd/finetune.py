"""Fine-tuning on a challenge split with the DCASE2024 baseline recipe (docs/method.md).

From a distilled student (its 527-class layer replaced by a new random layer for the target's classes,
10 scenes for TAU) or, for the baseline, from scratch. Waveform roll, Freq-MixStyle and SpecAugment; AdamW; cosine schedule with
warm-up stepped per batch; cross-entropy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .atomic import atomic_path
from .cpmobile import build_student
from .frontend import MelFrontEnd, freq_mixstyle, roll_waveform
from .training import (Progress, device_and_autocast, StepSampler, WaveDataset, append_curve, fingerprint, load_checkpoint, loader,
                       save_checkpoint, warmup_cosine)

def finetune(manifest_path, split: str, cfg: dict, student_cfg: dict, frontend_cfg: dict, seed: int, out_model,
             curve_path, ckpt_dir, init_model=None, log=print) -> dict:
    torch.manual_seed(seed)
    np.random.seed(seed)
    manifest = pd.read_csv(manifest_path, sep="\t", keep_default_na=False)
    train = manifest[(manifest[split].astype(str) == "True") & (manifest["status"] == "ok")]
    if train.empty:
        raise RuntimeError(f"{manifest_path}: no usable clips in {split}")
    n_classes = int(manifest["label"].max()) + 1
    model = build_student(student_cfg, n_classes=527 if init_model else n_classes)
    if init_model:
        state = torch.load(init_model, map_location="cpu", weights_only=True)
        model.load_state_dict(state["state_dict"])
        model.replace_head(n_classes)  # new randomly initialised layer for the target's classes
    device, autocast = device_and_autocast(cfg["precision"])
    model.to(device, memory_format=torch.channels_last)  # about 30 % faster convolutions on CPU
    mel = MelFrontEnd(frontend_cfg).to(device)
    bs = min(cfg["batch_size"], len(train))
    per_epoch = -(-len(train) // bs)  # ceil: the baseline's loader keeps the last partial batch
    total = cfg["epochs"] * per_epoch
    opt = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, total, cfg["warmup_steps"], 0.0))
    ckpt = Path(ckpt_dir) / "last.pt"
    init_bytes = Path(init_model).read_bytes() if init_model else b""
    fp = fingerprint(cfg, student_cfg, frontend_cfg, seed, split, train["id"].tolist(), init_bytes)
    start = load_checkpoint(ckpt, model, opt, sched, fp, log)
    if start:
        log(f"resuming from {ckpt} at step {start}")
    sr = frontend_cfg["sample_rate"]
    paths = train["path"].to_numpy()
    y_all = torch.tensor(train["label"].to_numpy(), dtype=torch.long)
    sampler = StepSampler(len(train), bs, total, seed, start, drop_last=False)
    data = loader(WaveDataset(paths, sr, int(cfg["clip_seconds"] * sr)), sampler, cfg["num_workers"])
    progress = Progress(total, start, log, cfg["log_every"], "finetune")
    model.train()
    mel.train()
    step = start
    log(f"fine-tuning on {len(train)} clips of {split}: {cfg['epochs']} epochs, {total} steps"
        + (f", from {init_model}" if init_model else ", from scratch"))
    for wav, idx, bad in data:
        for i, why in bad:
            log(f"warning: {paths[i]}: {why}; used as silence")
        wav = roll_waveform(wav.to(device, non_blocking=True), int(cfg["roll_seconds"] * sr))
        x = freq_mixstyle(mel(wav), cfg["mixstyle_p"], cfg["mixstyle_alpha"])
        with autocast():
            out = model(x.contiguous(memory_format=torch.channels_last))
        loss = F.cross_entropy(out.float(), y_all[idx].to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
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
        torch.save({"state_dict": model.state_dict(), "n_classes": n_classes, "student": student_cfg,
                    "steps": total, "split": split, "seed": seed}, tmp)
    return {"steps": total, "clips": int(len(train))}
