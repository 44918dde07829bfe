"""Evaluation on a target's test split: macro-average class accuracy, per device, per class.

Also the challenge's complexity check and a predictions file in the submission layout
(filename, scene_label, one score column per class; `label` in place of scene_label for generic targets).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import torch

from prunekd.data.datasets import WaveDataset, collate
from prunekd.data.decoded import Decoded, clip_samples, in_split, read_manifest
from prunekd.data.tables import class_names
from prunekd.student.cpmobile import build_student, count_macs, count_params
from prunekd.student.frontend import MelFrontEnd

DEVICE_GROUPS = {"real": ["a", "b", "c"], "seen_simulated": ["s1", "s2", "s3"], "unseen_simulated": ["s4", "s5", "s6"]}
MAX_PARAM_BYTES = 128_000  # the challenge's limit: 128 kB of parameters at fp16 (docs/method.md)
MAX_MACS = 30_000_000


def class_accuracies(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    acc = np.full(n_classes, np.nan)
    for c in range(n_classes):
        m = y_true == c
        if m.any():
            acc[c] = (y_pred[m] == c).mean()
    return acc


def metrics(
    y_true: np.ndarray, y_pred: np.ndarray, devices: np.ndarray, classes: list[str], cities: np.ndarray | None = None
) -> dict:
    """Macro accuracy = mean of the per-class accuracies (classes present in y_true). With `cities`, the
    accuracy per city too (correct / clips of the city, as the authors' eval_model.py)."""
    n_classes = len(classes)
    per_class = class_accuracies(y_true, y_pred, n_classes)
    out = {
        "macro_accuracy": float(np.nanmean(per_class)),
        "accuracy": float((y_true == y_pred).mean()),
        "n": int(len(y_true)),
        "per_class": {classes[c]: (None if np.isnan(a) else float(a)) for c, a in enumerate(per_class)},
    }
    # Per device: the share of the device's clips classified correctly, as the DCASE2024 baseline computes it
    # (correct / count), not a macro average over classes.
    per_device = {}
    for d in sorted(set(devices)):
        m = devices == d
        per_device[d] = float((y_true[m] == y_pred[m]).mean())
    out["per_device"] = per_device
    groups = {}
    for g, ds in DEVICE_GROUPS.items():
        m = np.isin(devices, ds)
        if m.any():
            groups[g] = float((y_true[m] == y_pred[m]).mean())
    out["per_device_group"] = groups
    if cities is not None:
        out["per_city"] = {c: float((y_true[cities == c] == y_pred[cities == c]).mean()) for c in sorted(set(cities))}
    cm = np.zeros((n_classes, n_classes), dtype=int)
    np.add.at(cm, (y_true, y_pred), 1)
    out["confusion"] = cm.tolist()
    return out


def complexity(student_cfg: dict, frontend_cfg: dict, n_classes: int = 10, clip_seconds: float = 1.0) -> dict:
    """Parameters and MACs per clip; the challenge's limits are for TAU's 1 s clips and 10 classes."""
    model = build_student(student_cfg, n_classes=n_classes)
    frames = int(clip_seconds * frontend_cfg["sample_rate"]) // frontend_cfg["hop_length"] + 1
    params = count_params(model)
    macs = count_macs(model, (1, 1, frontend_cfg["n_mels"], frames))
    return {
        "parameters": params,
        "parameter_bytes_fp16": params * 2,
        "macs": macs,
        "within_limits": bool(params * 2 <= MAX_PARAM_BYTES and macs <= MAX_MACS),
    }


@torch.no_grad()
def predict(
    model_path,
    manifest_path,
    frontend_cfg: dict,
    clip_seconds: float = 1.0,
    batch_size: int = 256,
    num_workers: int = 0,
    decoded=None,
):
    """Class probabilities of the test clips; clips from the target's decoded store (decoded.py) when given,
    else decoded here in `num_workers` processes."""
    ck = torch.load(model_path, map_location="cpu", weights_only=True)
    model = build_student(ck["student"], ck["n_classes"])
    model.load_state_dict(ck["state_dict"])
    model.eval()
    mel = MelFrontEnd(frontend_cfg).eval()
    manifest = read_manifest(manifest_path)
    test = manifest[in_split(manifest, "test")].reset_index(drop=True)
    sr = frontend_cfg["sample_rate"]
    n = clip_samples(clip_seconds, sr)
    if decoded:
        batches = Decoded(decoded, sr, n).batches(test["id"], batch_size, paths=test["path"])
    else:
        dl = torch.utils.data.DataLoader(
            WaveDataset(test["path"], sr, n), batch_size=batch_size, num_workers=num_workers, collate_fn=collate
        )
        batches = ((wav, bad) for wav, _, bad in dl)
    probs, skipped = [], []
    for wav, bad in batches:
        skipped += bad
        probs.append(torch.softmax(model(mel(wav)), dim=1).numpy())
    return manifest, test, np.concatenate(probs), skipped


def city_of_clips(test: pd.DataFrame) -> np.ndarray | None:
    """The city of each test clip: TAU's `identifier` is <city>-<location> (e.g. lisbon-1000); a generic
    target may give a `city` column. None when neither is there."""
    if "city" in test.columns:
        return test["city"].astype(str).to_numpy()
    if "identifier" in test.columns:
        return test["identifier"].astype(str).str.split("-").str[0].to_numpy()
    return None


def evaluate(
    model_path,
    manifest_path,
    frontend_cfg: dict,
    student_cfg: dict,
    clip_seconds: float = 1.0,
    num_workers: int = 0,
    decoded=None,
):
    manifest, test, probs, skipped = predict(
        model_path, manifest_path, frontend_cfg, clip_seconds, num_workers=num_workers, decoded=decoded
    )
    classes = class_names(manifest)
    bad = {i for i, _ in skipped}
    keep = np.array([i not in bad for i in range(len(test))], dtype=bool)
    y_pred = probs.argmax(1)
    cities = city_of_clips(test)
    m = metrics(
        test["label"].to_numpy()[keep],
        y_pred[keep],
        test["device"].astype(str).to_numpy()[keep],
        classes,
        None if cities is None else cities[keep],
    )
    m["complexity"] = complexity(student_cfg, frontend_cfg, len(classes), clip_seconds)
    m["skipped"] = [{"id": test["id"][i], "reason": why} for i, why in skipped]
    label_col = "scene_label" if "scene_label" in manifest.columns else "label"
    pred = pd.DataFrame({"filename": test["id"], label_col: [classes[i] for i in y_pred]})
    for c, s in enumerate(classes):
        pred[s] = probs[:, c]
    return m, pred


def write_evaluation(model_path, manifest_path, cfg: dict, key: dict, out, predictions, log=print) -> dict:
    """`prunekd evaluate`: metrics.json (with the run's key) and the predictions in the challenge layout."""
    from prunekd.atomic import write_json, write_table

    m, pred = evaluate(
        model_path,
        manifest_path,
        cfg["frontend"],
        cfg["student"],
        cfg.get("clip_seconds", 1.0),
        cfg.get("num_workers", 0),
        cfg.get("decoded"),
    )
    m["key"] = key
    write_table(predictions, pred, sep="\t", float_format="%.4f")  # challenge layout: tab-separated
    write_json(out, m)
    log(f"{json.dumps(key)}: macro accuracy {100 * m['macro_accuracy']:.2f} % on {m['n']} test clips")
    return m


def evaluate_step(model, manifest, key: str, out, predictions, settings: dict, decoded=None, num_workers=0, log=print):
    """`prunekd evaluate` (`key`: JSON, the summary's row)."""
    import json

    s = {**settings, "num_workers": num_workers, "decoded": decoded}
    return write_evaluation(model, manifest, s, json.loads(key), out, predictions, log)
