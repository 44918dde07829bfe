"""Evaluation on the challenge test split: macro-average class accuracy, per device, per class.

Also the challenge's complexity check and a predictions file in the submission layout
(filename, scene_label, one score column per class).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from .cpmobile import build_student, count_macs, count_params
from .frontend import MelFrontEnd
from .manifest import SCENES
from .training import WaveDataset, collate

DEVICE_GROUPS = {"real": ["a", "b", "c"], "seen_simulated": ["s1", "s2", "s3"], "unseen_simulated": ["s4", "s5", "s6"]}
MAX_PARAM_BYTES = 128 * 1024
MAX_MACS = 30_000_000


def class_accuracies(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    acc = np.full(n_classes, np.nan)
    for c in range(n_classes):
        m = y_true == c
        if m.any():
            acc[c] = (y_pred[m] == c).mean()
    return acc


def metrics(y_true: np.ndarray, y_pred: np.ndarray, devices: np.ndarray, n_classes: int = 10) -> dict:
    """Macro accuracy = mean of the per-class accuracies (classes present in y_true)."""
    per_class = class_accuracies(y_true, y_pred, n_classes)
    out = {"macro_accuracy": float(np.nanmean(per_class)), "accuracy": float((y_true == y_pred).mean()),
           "n": int(len(y_true)),
           "per_class": {SCENES[c] if n_classes == len(SCENES) else str(c): (None if np.isnan(a) else float(a))
                         for c, a in enumerate(per_class)}}
    per_device = {}
    for d in sorted(set(devices)):
        m = devices == d
        per_device[d] = float(np.nanmean(class_accuracies(y_true[m], y_pred[m], n_classes)))
    out["per_device"] = per_device
    groups = {}
    for g, ds in DEVICE_GROUPS.items():
        m = np.isin(devices, ds)
        if m.any():
            groups[g] = float(np.nanmean(class_accuracies(y_true[m], y_pred[m], n_classes)))
    out["per_device_group"] = groups
    cm = np.zeros((n_classes, n_classes), dtype=int)
    np.add.at(cm, (y_true, y_pred), 1)
    out["confusion"] = cm.tolist()
    return out


def complexity(student_cfg: dict, frontend_cfg: dict) -> dict:
    model = build_student(student_cfg, n_classes=len(SCENES))
    frames = frontend_cfg["sample_rate"] // frontend_cfg["hop_length"] + 1
    params = count_params(model)
    macs = count_macs(model, (1, 1, frontend_cfg["n_mels"], frames))
    return {"parameters": params, "parameter_bytes_fp16": params * 2, "macs": macs,
            "within_limits": bool(params * 2 <= MAX_PARAM_BYTES and macs <= MAX_MACS)}


@torch.no_grad()
def predict(model_path, manifest_path, frontend_cfg: dict, batch_size: int = 256, num_workers: int = 0):
    ck = torch.load(model_path, map_location="cpu", weights_only=True)
    model = build_student(ck["student"], ck["n_classes"])
    model.load_state_dict(ck["state_dict"])
    model.eval()
    mel = MelFrontEnd(frontend_cfg).eval()
    manifest = pd.read_csv(manifest_path, sep="\t", keep_default_na=False)
    test = manifest[(manifest["test"].astype(str) == "True") & (manifest["status"] == "ok")].reset_index(drop=True)
    sr = frontend_cfg["sample_rate"]
    ds = WaveDataset(test["path"], sr, sr)
    dl = torch.utils.data.DataLoader(ds, batch_size=batch_size, num_workers=num_workers, collate_fn=collate)
    probs, skipped = [], []
    for wav, idx, bad in dl:
        skipped += bad
        probs.append(torch.softmax(model(mel(wav)), dim=1).numpy())
    return test, np.concatenate(probs), skipped


def evaluate(model_path, manifest_path, frontend_cfg: dict, student_cfg: dict, num_workers: int = 0):
    test, probs, skipped = predict(model_path, manifest_path, frontend_cfg, num_workers=num_workers)
    bad = {i for i, _ in skipped}
    keep = np.array([i not in bad for i in range(len(test))], dtype=bool)
    y_pred = probs.argmax(1)
    m = metrics(test["label"].to_numpy()[keep], y_pred[keep], test["device"].to_numpy()[keep])
    m["complexity"] = complexity(student_cfg, frontend_cfg)
    m["skipped"] = [{"id": test["id"][i], "reason": why} for i, why in skipped]
    pred = pd.DataFrame({"filename": test["id"], "scene_label": [SCENES[i] for i in y_pred]})
    for c, s in enumerate(SCENES):
        pred[s] = probs[:, c]
    return m, pred
