"""A DCASE submission: a fine-tuned model's predictions on the challenge's evaluation set, with its complexity.

Evaluation set (TAU-urban-acoustic-scenes-2024-mobile-evaluation): `meta.csv`, tab-separated, one column
`filename` (e.g. `audio/0.wav`), no labels; the audio beside it. Submission format (the DCASE2024 baseline's
`run_training.py --evaluate`): `output.csv`, tab-separated, `filename` (without the `audio/` folder), the
predicted `scene_label` (`label` for generic targets, as in evaluate.py), then one softmax score per class in
class order; `info.json` with `MACs`, `Params` and the model's development-test results. The model predicts with
its parameters in float16, as submitted (evaluate.PRECISION). The challenge wants one row per evaluation file:
a silent clip is a clip like any other; one that cannot be decoded stops the step (`undecodable: fail`) or is
predicted from silence and listed (`undecodable: silence`). The package of all splits is package.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from prunekd.data.datasets import WaveDataset, collate
from prunekd.data.tables import MetadataError, class_names
from prunekd.errors import PrunekdError
from prunekd.student.evaluate import PRECISION, complexity, load_model, log_softmax
from prunekd.student.frontend import MelFrontEnd

UNDECODABLE = ("fail", "silence")


def read_eval_meta(root) -> pd.DataFrame:
    """The evaluation set's clips: `filename` (relative to root) and `path`; errors name the file and line."""
    meta_path = Path(root) / "meta.csv"
    if not meta_path.exists():
        raise MetadataError(f"{meta_path}: no such file (targets.<name>.evaluation.root)")
    try:
        meta = pd.read_csv(meta_path, sep="\t", dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise MetadataError(f"{meta_path}: cannot parse: {e}") from None
    if "filename" not in meta.columns:
        raise MetadataError(f"{meta_path}: no `filename` column; found {list(meta.columns)} (is it tab-separated?)")
    empty = meta["filename"].str.strip() == ""
    if empty.any():
        raise MetadataError(f"{meta_path} line {int(np.flatnonzero(empty)[0]) + 2}: empty filename")
    dup = meta["filename"].duplicated()
    if dup.any():
        i = int(np.flatnonzero(dup)[0])
        raise MetadataError(f"{meta_path} line {i + 2}: duplicate filename {meta['filename'][i]}")
    if meta.empty:
        raise MetadataError(f"{meta_path}: no clips listed")
    return pd.DataFrame({"filename": meta["filename"], "path": [str(Path(root) / f) for f in meta["filename"]]})


def choose(candidates: list[tuple[str, dict]]) -> tuple[str, dict]:
    """The candidate (model path, its metrics) with the best development-test macro accuracy; the first on ties."""
    if not candidates:
        raise ValueError("no fine-tuned model to choose from")
    return max(candidates, key=lambda c: c[1]["macro_accuracy"])


class SubmissionError(PrunekdError, ValueError):
    pass


@torch.no_grad()
def predict_clips(
    model_path,
    paths,
    frontend_cfg: dict,
    clip_seconds: float,
    batch_size: int = 256,
    num_workers: int = 0,
    undecodable: str = "fail",
    names=None,
) -> tuple[np.ndarray, list[tuple[int, str]], int]:
    """Softmax scores [N, classes] of a saved student in float16, a row for every clip. A silent clip is
    predicted like any other; a clip that does not decode raises (naming it, `names[i]` or its path) with
    `undecodable: fail`, else it is predicted from silence and comes back as (index, reason)."""
    model, ck = load_model(model_path, PRECISION)
    mel = MelFrontEnd(frontend_cfg).eval()
    sr = frontend_cfg["sample_rate"]
    paths = list(paths)
    names = list(names) if names is not None else paths
    dl = torch.utils.data.DataLoader(
        WaveDataset(paths, sr, int(clip_seconds * sr)),  # a failed clip comes as silence, with its reason
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=collate,
    )
    probs, from_silence = [], []
    for wav, _, bad in dl:
        bad = [(i, why) for i, why in bad if why != "silent"]  # all-zero samples: the clip itself, not a failure
        if bad and undecodable == "fail":
            i, why = bad[0]
            raise SubmissionError(
                f"{names[i]}: {why}; every evaluation clip needs a row: replace the file, or set "
                "submission.undecodable: silence to predict it from silence"
            )
        from_silence += bad
        probs.append(np.exp(log_softmax(model, mel(wav))))
    return np.concatenate(probs), from_silence, ck["n_classes"]


def submission(
    model_paths,
    metrics_paths,
    manifest_path,
    eval_root,
    frontend_cfg: dict,
    clip_seconds: float,
    models: str,
    out_csv,
    out_info,
    num_workers: int = 0,
    log=print,
    undecodable: str = "fail",
) -> dict:
    """Choose the model (one candidate per split and seed, or the best of several), predict, write both files."""
    from prunekd.atomic import write_json, write_table

    candidates = [(str(m), json.loads(Path(j).read_text())) for m, j in zip(model_paths, metrics_paths)]
    model_path, dev = choose(candidates)
    manifest = pd.read_csv(manifest_path, sep="\t", keep_default_na=False)
    classes = class_names(manifest)
    clips = read_eval_meta(eval_root)
    probs, from_silence, n_classes = predict_clips(
        model_path,
        clips["path"],
        frontend_cfg,
        clip_seconds,
        num_workers=num_workers,
        undecodable=undecodable,
        names=clips["path"],
    )
    if n_classes != len(classes):
        raise ValueError(f"{model_path}: {n_classes} outputs, but {manifest_path} has {len(classes)} classes")
    label_col = "scene_label" if "scene_label" in manifest.columns else "label"
    # The baseline writes names relative to the audio folder (`audio/0.wav` -> `0.wav`).
    names = clips["filename"].str.replace(r"^audio/", "", regex=True)
    pred = pd.DataFrame({"filename": names, label_col: [classes[i] for i in probs.argmax(1)]})
    for c, s in enumerate(classes):
        pred[s] = probs[:, c]
    write_table(out_csv, pred, sep="\t", float_format="%.4f")
    cx = complexity(load_model(model_path)[1]["student"], frontend_cfg, n_classes, clip_seconds)
    test_keys = ("macro_accuracy", "accuracy", "n", "per_device", "per_class", "logloss", "per_class_logloss",
                 "per_device_logloss", "precision", "by_precision")  # fmt: skip
    info = {
        "model": model_path,
        "models": models,
        "precision": PRECISION,
        "MACs": cx["macs"],
        "Params": cx["parameters"],
        "parameter_bytes_fp16": cx["parameter_bytes_fp16"],
        "within_limits": cx["within_limits"],
        "test": {k: dev[k] for k in test_keys if k in dev},
        "candidates": {m: c["macro_accuracy"] for m, c in candidates},
        "eval_clips": int(len(clips)),
        "predicted": int(len(pred)),
        "undecodable": undecodable,
        "from_silence": [{"filename": clips["filename"][i], "reason": why} for i, why in from_silence],
    }
    write_json(out_info, info)
    if from_silence:
        log(
            f"{eval_root}: {len(from_silence)} evaluation clips failed to decode and were predicted from silence "
            f"(submission.undecodable: silence; listed in {out_info}), e.g. "
            f"{clips['filename'][from_silence[0][0]]}: {from_silence[0][1]}"
        )
    log(
        f"{out_csv}: {len(pred)} evaluation clips predicted by {model_path} with {PRECISION} parameters "
        f"(development-test macro accuracy {100 * dev['macro_accuracy']:.2f} %; {cx['parameters']} parameters, "
        f"{cx['macs']} MACs)"
    )
    return info


def submission_step(
    models, metrics, manifest, eval_root, out, info, settings: dict, num_workers: int = 0, log=print
) -> dict:
    """`prunekd submission`: one metrics.json per candidate model, then the step's config slice unpacked."""
    if len(models) != len(metrics):
        raise SubmissionError("--models and --metrics must pair up (one metrics.json per model)")
    s = settings
    return submission(
        models,
        metrics,
        manifest,
        eval_root,
        s["frontend"],
        s["clip_seconds"],
        s["models"],
        out,
        info,
        num_workers,
        log,
        s["undecodable"],
    )
