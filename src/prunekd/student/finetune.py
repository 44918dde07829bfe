"""Fine-tuning on a challenge split with the DCASE2024 baseline recipe (docs/method.md).

From a distilled student (its 527-class layer replaced by a new random layer for the target's classes,
10 scenes for TAU) or, for the baseline, from scratch. Waveform roll, Freq-MixStyle and SpecAugment; AdamW;
cosine schedule with warm-up stepped per batch; cross-entropy. The loop, schedule, checkpoints and curve:
training.train.
"""

from __future__ import annotations

import io
from pathlib import Path

import torch
import torch.nn.functional as F

from prunekd.data.decoded import Decoded, clip_samples, decode_all, in_split, read_manifest
from prunekd.student.cpmobile import build_student
from prunekd.student.frontend import freq_mixstyle, roll_waveform
from prunekd.student.training import (
    Reading,
    Run,
    StepSampler,
    fingerprint,
    indexed_batches,
    on_device,
    save_model,
    seed_all,
    train,
    trained_settings,
)
from prunekd.teachers.logit_store import N_CLASSES


def finetune(
    manifest_path,
    split: str,
    cfg: dict,
    student_cfg: dict,
    frontend_cfg: dict,
    seed: int,
    out_model,
    curve_path,
    ckpt_dir,
    init_model=None,
    log=print,
    decoded=None,
    reading: Reading | None = None,
) -> dict:
    """Fine-tune the distilled student `init_model` (None: the baseline, from scratch) on `split`. `cfg` is the
    training settings (what decides the result); `decoded` the target's decoded store (decoded.py, what the
    workflow passes), None decodes the split here in `reading.num_workers` processes."""
    reading = reading or Reading()
    init_bytes = Path(init_model).read_bytes() if init_model else b""  # read once: loaded and fingerprinted
    seed_all(seed)
    manifest = read_manifest(manifest_path)
    train_set = manifest[in_split(manifest, split)]
    if train_set.empty:
        raise RuntimeError(f"{manifest_path}: no usable clips in {split}")
    n_classes = int(manifest["label"].max()) + 1
    model = build_student(student_cfg, n_classes=N_CLASSES if init_model else n_classes)
    if init_model:
        state = torch.load(io.BytesIO(init_bytes), map_location="cpu", weights_only=True)
        model.load_state_dict(state["state_dict"])
        model.replace_head(n_classes)  # new randomly initialised layer for the target's classes
    device, autocast, mel = on_device(model, frontend_cfg, cfg["precision"])
    bs = min(cfg["batch_size"], len(train_set))
    total = cfg["epochs"] * -(-len(train_set) // bs)  # ceil: the baseline's loader keeps the last partial batch
    sr = frontend_cfg["sample_rate"]
    log(
        f"fine-tuning on {len(train_set)} clips of {split} (batch {cfg['batch_size']}): {cfg['epochs']} epochs, "
        f"{total} steps" + (f", from {init_model}" if init_model else ", from scratch")
    )
    # The split decoded and resampled once, kept on the GPU when it fits (docs/performance.md, split 100):
    # a step draws its batch by index there, with the same clips in the same order as a loader would.
    n = clip_samples(cfg["clip_seconds"], sr)
    if decoded:
        clips = Decoded(decoded, sr, n).read(train_set["id"], device, log, paths=train_set["path"])
    else:
        clips = decode_all(train_set["path"].to_numpy(), sr, n, reading.num_workers, device, log)
    y_all = torch.tensor(train_set["label"].to_numpy(), dtype=torch.long).to(device)

    evaluate, eval_every = None, 0
    if cfg.get("test_every_epochs", 0):
        evaluate = _test_accuracy(manifest, model, mel, autocast, n_classes, decoded, reading, sr, n, device, log)
        eval_every = cfg["test_every_epochs"] * -(-len(train_set) // bs)

    def batches(start):
        return indexed_batches(clips, StepSampler(len(train_set), bs, total, seed, start, drop_last=False), device)

    def loss_fn(batch):
        wav, idx = batch  # on the device; the augmentations run there
        wav = roll_waveform(wav, int(cfg["roll_seconds"] * sr))
        x = freq_mixstyle(mel(wav), cfg["mixstyle_p"], cfg["mixstyle_alpha"])
        with autocast():
            out = model(x.contiguous(memory_format=torch.channels_last))
        return F.cross_entropy(out.float(), y_all[idx])

    fp = fingerprint(
        trained_settings(cfg), student_cfg, frontend_cfg, seed, split, train_set["id"].tolist(), init_bytes
    )
    train(
        model,
        batches,
        loss_fn,
        cfg,
        Run("finetune", total, cfg["warmup_steps"], 0.0, fp, Path(ckpt_dir), curve_path, log, evaluate, eval_every),
    )
    save_model(out_model, model, n_classes=n_classes, student=student_cfg, steps=total, split=split, seed=seed)
    return {"steps": total, "clips": int(len(train_set))}


def _test_accuracy(manifest, model, mel, autocast, n_classes, decoded, reading, sr, n, device, log):
    """A function returning {"test_macro_acc": ...} of the model as it is: the test split's clips decoded once, on
    the training device; evaluation mode for the forward, training mode again after it. It draws no random
    number and changes no weight or statistic, so the trained model is the same with it as without."""
    test = manifest[in_split(manifest, "test")]
    if decoded:
        clips = Decoded(decoded, sr, n).read(test["id"], device, log, paths=test["path"])
    else:
        clips = decode_all(test["path"].to_numpy(), sr, n, reading.num_workers, device, log)
    labels = torch.tensor(test["label"].to_numpy(), dtype=torch.long).to(device)

    @torch.no_grad()
    def evaluate() -> dict:
        modes = model.training, mel.training
        model.eval(), mel.eval()
        pred = []
        for i in range(0, len(clips), 256):
            with autocast():
                out = model(mel(clips[i : i + 256]).contiguous(memory_format=torch.channels_last))
            pred.append(out.float().argmax(1))
        model.train(modes[0]), mel.train(modes[1])
        pred = torch.cat(pred)
        per_class = [(pred[labels == c] == c).float().mean() for c in range(n_classes) if (labels == c).any()]
        return {"test_macro_acc": float(torch.stack(per_class).mean())}

    return evaluate


def finetune_step(
    manifest,
    split,
    seed,
    init,
    out,
    curve,
    checkpoint_dir,
    settings: dict,
    decoded=None,
    num_workers: int = 0,
    log=print,
) -> dict:
    """`prunekd finetune` (the baseline without `init`): the step's config slice unpacked, with where the clips
    come from (the decoded store, else decoding processes: flags, not settings)."""
    s = settings
    return finetune(
        manifest,
        f"split{split}",
        s["training"],
        s["student"],
        s["frontend"],
        seed,
        out,
        curve,
        checkpoint_dir,
        init,
        log,
        decoded,
        Reading(num_workers),
    )
