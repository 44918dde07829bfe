"""Evaluation on a target's test split: macro-average class accuracy and logloss, per device, per class.

The model is evaluated as the challenge runs it: parameters (and activations) in float16, as the DCASE2024
baseline converts the model (`model.half()`) before predicting the test and evaluation sets; the float32 figures
stay beside them. Also the challenge's complexity check and a predictions file in the submission layout
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
PRECISION = "float16"  # the submitted model's parameter type (torch.float16, IEEE half, as the baseline's .half())
DTYPES = {"float16": torch.float16, "float32": torch.float32}


def class_accuracies(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    acc = np.full(n_classes, np.nan)
    for c in range(n_classes):
        m = y_true == c
        if m.any():
            acc[c] = (y_pred[m] == c).mean()
    return acc


def clip_logloss(y_true: np.ndarray, log_probs: np.ndarray) -> np.ndarray:
    """Each clip's cross-entropy (natural log) of its true class: the baseline's `F.cross_entropy` per sample."""
    return -log_probs[np.arange(len(y_true)), y_true]


def metrics(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    devices: np.ndarray,
    classes: list[str],
    cities: np.ndarray | None = None,
    log_probs: np.ndarray | None = None,
) -> dict:
    """Macro accuracy = mean of the per-class accuracies (classes present in y_true). With `cities`, the
    accuracy per city too (correct / clips of the city, as the authors' eval_model.py). With `log_probs`
    ([N, classes], natural log), the logloss: per class and per device the mean over their clips (as the baseline),
    overall the mean of the per-class ones, as the overall accuracy is."""
    n_classes = len(classes)
    per_class = class_accuracies(y_true, y_pred, n_classes)
    out = {
        "macro_accuracy": float(np.nanmean(per_class)),
        "accuracy": float((y_true == y_pred).mean()),
        "n": int(len(y_true)),
        "per_class": {classes[c]: (None if np.isnan(a) else float(a)) for c, a in enumerate(per_class)},
    }
    if log_probs is not None:
        loss = clip_logloss(y_true, log_probs)
        by_class = {classes[c]: float(loss[y_true == c].mean()) for c in range(n_classes) if (y_true == c).any()}
        out["logloss"] = float(np.mean(list(by_class.values())))
        out["logloss_per_clip"] = float(loss.mean())
        out["per_class_logloss"] = {c: by_class.get(c) for c in classes}
        out["per_device_logloss"] = {d: float(loss[devices == d].mean()) for d in sorted(set(devices))}
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


def _to_half(module, inputs, output):
    return output.half().float()


def load_model(model_path, precision: str = PRECISION):
    """A saved student in inference mode, its parameters in `precision` (float16: as submitted).

    float16: the parameters, the input and every layer's output rounded to IEEE half (torch.float16), computed with
    float32 accumulation as a GPU's half convolutions are. PyTorch's own half convolution on a CPU gives the same
    probabilities up to rounding and is several times slower (benchmarks/student_eval.py, docs/performance.md)."""
    ck = torch.load(model_path, map_location="cpu", weights_only=True)
    model = build_student(ck["student"], ck["n_classes"])
    model.load_state_dict(ck["state_dict"])
    model.eval().to(DTYPES[precision])
    if precision == "float16":
        model.float()  # the values stay those of float16
        for m in model.modules():
            if not any(m.children()):
                m.register_forward_hook(_to_half)
    model.precision = precision
    return model, ck


def log_softmax(model, x: torch.Tensor) -> np.ndarray:
    """Class log-probabilities of a batch of log-mel inputs (float32), the input rounded to the model's precision
    as the baseline casts it (`x.half()`); the softmax in float32, so that a clip's logloss is not rounded."""
    if getattr(model, "precision", "float32") == "float16":
        x = x.half().float()
    return torch.log_softmax(model(x).float(), dim=1).numpy()


@torch.no_grad()
def predict_log_probs(
    model_path,
    manifest_path,
    frontend_cfg: dict,
    clip_seconds: float = 1.0,
    batch_size: int = 256,
    num_workers: int = 0,
    decoded=None,
    precisions=(PRECISION,),
):
    """Class log-probabilities of the test clips, one array per precision (one pass over the clips); clips from
    the target's decoded store (decoded.py) when given, else decoded here in `num_workers` processes."""
    models = {p: load_model(model_path, p)[0] for p in precisions}
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
    out, skipped = {p: [] for p in precisions}, []
    for wav, bad in batches:
        skipped += bad
        x = mel(wav)
        for p, model in models.items():
            out[p].append(log_softmax(model, x))
    return manifest, test, {p: np.concatenate(v) for p, v in out.items()}, skipped


def predict(
    model_path,
    manifest_path,
    frontend_cfg: dict,
    clip_seconds: float = 1.0,
    batch_size: int = 256,
    num_workers: int = 0,
    decoded=None,
    precision: str = PRECISION,
):
    """Class probabilities of the test clips by the model in `precision` (see predict_log_probs)."""
    manifest, test, lp, skipped = predict_log_probs(
        model_path, manifest_path, frontend_cfg, clip_seconds, batch_size, num_workers, decoded, (precision,)
    )
    return manifest, test, np.exp(lp[precision]), skipped


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
    """Metrics of the model as submitted (float16) and, under `by_precision`, the float16 and float32 headline
    figures side by side; the predictions are the float16 model's."""
    manifest, test, log_probs, skipped = predict_log_probs(
        model_path,
        manifest_path,
        frontend_cfg,
        clip_seconds,
        num_workers=num_workers,
        decoded=decoded,
        precisions=(PRECISION, "float32"),
    )
    classes = class_names(manifest)
    bad = {i for i, _ in skipped}
    keep = np.array([i not in bad for i in range(len(test))], dtype=bool)
    cities = city_of_clips(test)
    y_true = test["label"].to_numpy()[keep]
    devices = test["device"].astype(str).to_numpy()[keep]
    by_precision = {}
    for p, lp in log_probs.items():
        by_precision[p] = metrics(
            y_true, lp[keep].argmax(1), devices, classes, None if cities is None else cities[keep], lp[keep]
        )
    m = by_precision[PRECISION]
    m["precision"] = PRECISION
    m["by_precision"] = {
        p: {k: pm[k] for k in ("macro_accuracy", "accuracy", "logloss")} for p, pm in by_precision.items()
    }
    m["complexity"] = complexity(student_cfg, frontend_cfg, len(classes), clip_seconds)
    m["skipped"] = [{"id": test["id"][i], "reason": why} for i, why in skipped]
    probs = np.exp(log_probs[PRECISION])
    label_col = "scene_label" if "scene_label" in manifest.columns else "label"
    pred = pd.DataFrame({"filename": test["id"], label_col: [classes[i] for i in probs.argmax(1)]})
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
    f32 = m["by_precision"]["float32"]
    log(
        f"{json.dumps(key)}: macro accuracy {100 * m['macro_accuracy']:.2f} %, logloss {m['logloss']:.3f} on "
        f"{m['n']} test clips ({PRECISION} parameters; float32: {100 * f32['macro_accuracy']:.2f} %, "
        f"logloss {f32['logloss']:.3f})"
    )
    return m


def evaluate_step(model, manifest, key: str, out, predictions, settings: dict, decoded=None, num_workers=0, log=print):
    """`prunekd evaluate` (`key`: JSON, the summary's row)."""
    import json

    s = {**settings, "num_workers": num_workers, "decoded": decoded}
    return write_evaluation(model, manifest, s, json.loads(key), out, predictions, log)
