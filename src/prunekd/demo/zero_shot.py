"""What the teachers and the distilled students know of the known-answer world's scenes before any fine-tuning.

Zero-shot scene accuracy on the target's test clips: a scene is scored as the sum of its two sound events'
sigmoid outputs (demo_data.SCENE_PAIRS), with no training on the target at all. The teachers' figure says
whether the world's teachers know the target's events (through the target's devices); a student's says what
distillation put into it, to be held against its accuracy after fine-tuning. Known-answer world only: the
scene-to-events map is the generator's truth, which no pipeline step reads.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from prunekd.atomic import write_json
from prunekd.data.tables import class_names
from prunekd.demo.worlds import SCENE_PAIRS, SCENES


def scene_accuracy(probs: np.ndarray, labels: np.ndarray, pairs: list[tuple[int, int]]) -> float:
    """Macro accuracy (over the classes present) of the zero-shot rule: class c scores probs[a] + probs[b] for
    its pair (a, b) = pairs[c]."""
    scores = np.stack([probs[:, a] + probs[:, b] for a, b in pairs], axis=1)
    pred = scores.argmax(1)
    return float(np.mean([np.mean(pred[labels == c] == c) for c in range(len(pairs)) if (labels == c).any()]))


def _pairs(manifest: pd.DataFrame) -> list[tuple[int, int]]:
    """Each label's pair of events, by the scene's name (the manifest's label order need not be the world's)."""
    names = class_names(manifest)
    unknown = [n for n in names if n not in SCENES]
    if unknown:
        raise ValueError(f"class {unknown[0]!r} is not a scene of the known-answer world ({', '.join(SCENES)})")
    return [SCENE_PAIRS[SCENES.index(n)] for n in names]


def zero_shot_step(target_store, manifest, decoded, students, out, settings: dict, log=print) -> dict:
    """`prunekd known-answer-zero-shot`: `students` NAME=student.pt; writes {teachers, students: {name: acc}}."""
    from prunekd.data.decoded import Decoded, clip_samples, in_split, read_manifest
    from prunekd.student.cpmobile import build_student
    from prunekd.student.frontend import MelFrontEnd
    from prunekd.teachers.logit_store import ids, open_store

    man = read_manifest(manifest)
    test = man[in_split(man, "test")].reset_index(drop=True)
    labels, pairs = test["label"].to_numpy(), _pairs(man)
    store = open_store(target_store)
    store_ids = ids(store)
    position = pd.Series(np.arange(len(store_ids)), index=store_ids)
    teacher = store["ensemble"].get_orthogonal_selection((position.loc[test["id"]].to_numpy(), slice(None)))
    result = {"teachers": scene_accuracy(1 / (1 + np.exp(-teacher.astype(np.float64))), labels, pairs)}
    log(f"teachers (the ensemble's stored logits): zero-shot {100 * result['teachers']:.1f} %")
    sr = settings["frontend"]["sample_rate"]
    clips = Decoded(decoded, sr, clip_samples(settings["clip_seconds"], sr)).read(
        test["id"], torch.device("cpu"), log, paths=test["path"]
    )
    mel = MelFrontEnd(settings["frontend"]).eval()
    result["students"] = {}
    for spec in students:
        name, path = spec.split("=", 1)
        ck = torch.load(path, map_location="cpu", weights_only=True)
        model = build_student(ck["student"], ck["n_classes"])
        model.load_state_dict(ck["state_dict"])
        model.eval()
        with torch.no_grad():
            probs = torch.cat([torch.sigmoid(model(mel(clips[i : i + 128]))) for i in range(0, len(clips), 128)])
        result["students"][name] = scene_accuracy(probs.numpy(), labels, pairs)
        log(f"{name}: zero-shot {100 * result['students'][name]:.1f} %")
    write_json(out, result)
    return result
