"""The DCASE2024 Task 1 submission package: every split's evaluation-set predictions and the meta file, zipped.

Layout (the challenge's submission instructions and its validator, toni-heittola/dcase2024_task1_submission_validator):
`task1/<LABEL>/<LABEL>.output.split_<S>.csv` for the splits 5, 10, 25, 50, 100 and `task1/<LABEL>/<LABEL>.meta.yaml`,
in one zip; `<LABEL>` is `<Lastname>_<Institute>_task1_<1-4>`. The checks here are the validator's (header, tab
delimiter, field count, scene labels, float scores, one row per evaluation file, the meta file's fields at every
level, the label in the file names = the one in the meta file), written anew: the package is checked after it is
written, and a package that fails is removed.
"""

from __future__ import annotations

import csv
import io
import json
import re
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from prunekd.errors import PrunekdError
from prunekd.student.submission import read_eval_meta

SPLITS = ("5", "10", "25", "50", "100")
SCENES = ("airport", "bus", "metro", "metro_station", "park", "public_square", "shopping_mall", "street_pedestrian",
          "street_traffic", "tram")  # fmt: skip
DEVICES = ("a", "b", "c", "s1", "s2", "s3", "s4", "s5", "s6")
OUTPUT_FIELDS = ("filename", "scene_label", *SCENES)
# Four parts split at "_", the third `task1`, the fourth the system's number; no "." (the validator splits the file
# names there) and no "/".
LABEL = re.compile(r"^[^_./\s]+_[^_./\s]+_task1_[1-4]$")
META_FIELDS = {
    "submission": ("label", "name", "abbreviation", "authors"),
    "author": ("lastname", "firstname", "email", "affiliation"),
    "system": ("description", "complexity", "external_datasets", "source_code"),
    "description": (
        "input_sampling_rate",
        "acoustic_features",
        "data_augmentation",
        "machine_learning_method",
        "external_data_usage",
        "complexity_management",
        "pipeline",
        "framework",
        "split_adaptations",
        "system_adaptations",
    ),  # fmt: skip
    "complexity": ("total_model_size", "total_parameters", "macs"),
    "external_dataset": ("name", "url", "total_audio_length"),
}


class PackageError(PrunekdError, ValueError):
    pass


def output_name(label: str, split: str) -> str:
    return f"{label}.output.split_{split}.csv"


def meta_name(label: str) -> str:
    return f"{label}.meta.yaml"


def _is_float(v) -> bool:
    if v is None or isinstance(v, bool):
        return False
    try:
        return bool(np.isfinite(float(v)))
    except (TypeError, ValueError):
        return False


def check_label(label) -> list[str]:
    if not isinstance(label, str) or not LABEL.match(label):
        return [f"submission.label {label!r}: must be <Lastname>_<Institute>_task1_<1-4>, e.g. Werning_UPB_task1_1"]
    return []


def check_output(text: str, n_files: int, name: str = "output") -> list[str]:
    """Problems of one output file: tab-separated, header `filename scene_label <the ten scenes>`, per row 12
    fields, a scene label, float scores, a file `<i>.wav` with 0 <= i < n_files, once; n_files rows."""
    rows = list(csv.reader(io.StringIO(text), delimiter="\t"))
    if not rows:
        return [f"{name}: empty"]
    header, problems, seen = rows[0], [], set()
    if sorted(header) != sorted(OUTPUT_FIELDS) or len(header) != len(OUTPUT_FIELDS):
        problems.append(f"{name}: header {header}, expected the tab-separated fields {list(OUTPUT_FIELDS)}")
        return problems
    col = {f: header.index(f) for f in OUTPUT_FIELDS}
    for line, row in enumerate(rows[1:], start=2):
        where = f"{name} line {line}"
        if len(row) != len(OUTPUT_FIELDS):
            problems.append(f"{where}: {len(row)} fields, expected {len(OUTPUT_FIELDS)}")
            continue
        f = row[col["filename"]].rsplit("/", 1)[-1]
        stem, ext = (f[:-4], f[-4:]) if len(f) > 4 else (f, "")
        if ext != ".wav" or not stem.isdigit() or not 0 <= int(stem) < n_files:
            problems.append(f"{where}: file {f!r} is not one of 0.wav ... {n_files - 1}.wav")
        elif f in seen:
            problems.append(f"{where}: file {f} a second time")
        seen.add(f)
        if row[col["scene_label"]] not in SCENES:
            problems.append(f"{where}: scene label {row[col['scene_label']]!r} is not one of the ten scenes")
        bad = [s for s in SCENES if not _is_float(row[col[s]])]
        if bad:
            problems.append(f"{where}: not a number in {bad}")
    if len(seen) != n_files:
        problems.append(f"{name}: {len(seen)} distinct files, the evaluation set has {n_files}")
    return problems


def _missing(block, fields, where) -> list[str]:
    if not isinstance(block, dict):
        return [f"{where}: missing (a mapping with {', '.join(fields)})"]
    gone = [f for f in fields if block.get(f) in (None, "", [])]
    return [f"{where}: missing {', '.join(gone)}"] if gone else []


def check_meta(meta, splits=SPLITS) -> list[str]:
    """Problems of the meta file: every field the validator requires, at every level, set (not null), the
    development results numbers; `splits`: those whose results must be there (the challenge: all five)."""
    if not isinstance(meta, dict):
        return ["meta: not a mapping"]
    problems = _missing(meta.get("submission"), META_FIELDS["submission"], "submission")
    sub = meta.get("submission") or {}
    problems += check_label(sub.get("label"))
    if isinstance(sub.get("abbreviation"), str) and len(sub["abbreviation"]) > 10:
        problems.append(f"submission.abbreviation {sub['abbreviation']!r}: at most 10 characters")
    authors = sub.get("authors") or []
    for i, a in enumerate(authors):
        problems += _missing(a, META_FIELDS["author"], f"submission.authors[{i}]")
    if sum(bool(isinstance(a, dict) and a.get("corresponding")) for a in authors) != 1:
        problems.append("submission.authors: exactly one author must be marked `corresponding: true`")
    problems += _missing(meta.get("system"), META_FIELDS["system"], "system")
    system = meta.get("system") or {}
    for block in ("description", "complexity"):
        if block in system:
            problems += _missing(system[block], META_FIELDS[block], f"system.{block}")
    cx = system.get("complexity") or {}
    for k in META_FIELDS["complexity"]:
        if k in cx and not (isinstance(cx[k], int) and not isinstance(cx[k], bool)):
            problems.append(f"system.complexity.{k}: {cx[k]!r} is not a whole number")
    for i, d in enumerate(system.get("external_datasets") or []):
        problems += _missing(d, META_FIELDS["external_dataset"], f"system.external_datasets[{i}]")
    dev = ((meta.get("results") or {}).get("development_dataset")) or {}
    if not dev:
        problems.append("results.development_dataset: missing")
    for s in splits:
        res = dev.get(f"split_{s}")
        where = f"results.development_dataset.split_{s}"
        if not isinstance(res, dict):
            problems.append(f"{where}: missing")
            continue
        blocks = {"overall": {"": res.get("overall")}, "class_wise": res.get("class_wise"),
                  "device_wise": res.get("device_wise")}  # fmt: skip
        for block, names in (("overall", ("",)), ("class_wise", SCENES), ("device_wise", DEVICES)):
            items = blocks[block]
            if not isinstance(items, dict):
                problems.append(f"{where}.{block}: missing")
                continue
            for n in names:
                item = items.get(n)
                at = f"{where}.{block}" + (f".{n}" if n else "")
                if not isinstance(item, dict) or not all(_is_float(item.get(k)) for k in ("accuracy", "logloss")):
                    problems.append(f"{at}: accuracy and logloss must both be numbers")
    return problems


def check_package(zip_path, n_files: int, splits=SPLITS) -> list[str]:
    """Problems of a package: its files' names and places (task1/<LABEL>/...), each output file, the meta file,
    the label in every file name and folder = the meta file's `submission.label`."""
    problems = []
    with zipfile.ZipFile(zip_path) as z:
        if z.testzip() is not None:
            return [f"{zip_path}: a damaged member"]
        names = [n for n in z.namelist() if not n.endswith("/")]
        metas = [n for n in names if n.endswith(".meta.yaml")]
        if len(metas) != 1:
            return [f"{zip_path}: {len(metas)} meta files, expected one task1/<LABEL>/<LABEL>.meta.yaml"]
        meta = yaml.safe_load(z.read(metas[0]))
        problems += check_meta(meta, splits)
        label = ((meta or {}).get("submission") or {}).get("label")
        expected = {f"task1/{label}/{meta_name(label)}"} | {f"task1/{label}/{output_name(label, s)}" for s in splits}
        for n in sorted(set(names) - expected):
            problems.append(f"{zip_path}: {n} is not task1/{label}/{label}.output.split_<S>.csv or .meta.yaml")
        for n in sorted(expected - set(names)):
            problems.append(f"{zip_path}: {n} missing")
        for s in splits:
            n = f"task1/{label}/{output_name(label, s)}"
            if n in names:
                problems += check_output(z.read(n).decode("utf-8"), n_files, n)
    return problems


def _pct(x):
    return None if x is None else round(100 * float(x), 2)


def _loss(x):
    return None if x is None else round(float(x), 4)


def split_results(test: dict) -> dict:
    """A split's block of `results.development_dataset`: accuracy (%) and logloss of the submitted model on the
    development-test split, overall (macro over the classes, as the challenge ranks), per scene, per device."""
    per = test.get("per_class", {}), test.get("per_class_logloss", {})
    dev = test.get("per_device", {}), test.get("per_device_logloss", {})
    return {
        "overall": {"accuracy": _pct(test.get("macro_accuracy")), "logloss": _loss(test.get("logloss"))},
        "class_wise": {c: {"accuracy": _pct(per[0].get(c)), "logloss": _loss(per[1].get(c))} for c in SCENES},
        "device_wise": {d: {"accuracy": _pct(dev[0].get(d)), "logloss": _loss(dev[1].get(d))} for d in DEVICES},
    }


def meta_document(sub: dict, infos: dict, settings: dict, audioset_hours: float) -> dict:
    """The meta file: what only a person knows from `submission` (config), the rest from the run."""
    first = infos[next(iter(infos))]
    fe, d, t = settings["frontend"], settings["distillation"], settings["training"]
    thresholds = {s: re.search(r"/thr([^/]+)/", i["model"]) for s, i in infos.items()}
    chosen = ", ".join(f"split {s}: {m.group(1) if m else '?'}" for s, m in thresholds.items())
    silence = any(i.get("from_silence") for i in infos.values())
    authors = [{k: a[k] for k in ("lastname", "firstname", "email", "affiliation", "corresponding") if k in a}
               for a in sub["authors"]]  # fmt: skip
    return {
        "submission": {
            "label": sub["label"],
            "name": sub["name"],
            "abbreviation": sub["abbreviation"],
            "authors": authors,
        },
        "system": {
            "description": {
                "input_sampling_rate": f"{fe['sample_rate'] / 1000:g}kHz",
                "acoustic_features": f"log-mel energies ({fe['n_mels']} bins, window {fe['win_length']}, "
                f"hop {fe['hop_length']} samples)",
                "data_augmentation": "mixup, time rolling (distillation); frequency masking (SpecAugment), "
                "Freq-MixStyle, time rolling (fine-tuning)",
                "machine_learning_method": "CNN (CP-Mobile), knowledge distillation",
                "external_data_usage": "AudioSet clips pruned by a domain classifier towards the split, with the "
                "logits of a PaSST ensemble pre-trained on AudioSet as distillation targets",
                "complexity_management": f"{first['precision']} parameters",
                "pipeline": f"domain classifier on PaSST ensemble logits -> AudioSet pruned at a score threshold -> "
                f"offline distillation ({d['iterations']} iterations, lambda {d['kd_lambda']}) -> fine-tuning "
                f"({t['epochs_finetune']} epochs)",
                "framework": "pytorch",
                "split_adaptations": "per split its own domain classifier, pruned AudioSet subset, distilled and "
                "fine-tuned model",
                "system_adaptations": f"pruning threshold per split ({chosen})"
                + ("; undecodable evaluation clips predicted from silence" if silence else ""),
            },
            "complexity": {
                "total_model_size": int(first["parameter_bytes_fp16"]),
                "total_parameters": int(first["Params"]),
                "macs": int(first["MACs"]),
            },
            "external_datasets": [
                {
                    "name": "AudioSet",
                    "url": "https://research.google.com/audioset/",
                    "total_audio_length": f"{audioset_hours:.1f}h",
                },
                {
                    "name": "PaSST pre-trained models (AudioSet)",
                    "url": "https://github.com/kkoutini/PaSST/releases",
                    "total_audio_length": f"{audioset_hours:.1f}h (the AudioSet clips above)",
                },
            ],  # fmt: skip
            "source_code": sub["source_code"],
        },
        "results": {"development_dataset": {f"split_{s}": split_results(i["test"]) for s, i in infos.items()}},
    }


def audioset_hours(manifest_path, clip_seconds: float) -> float:
    """Hours of the usable AudioSet clips (each padded or cropped to clip_seconds)."""
    m = pd.read_csv(manifest_path, sep="\t", usecols=["status"], keep_default_na=False)
    return float((m["status"] == "ok").sum() * clip_seconds / 3600)


def _pairs(items, flag) -> dict:
    out = {}
    for item in items:
        split, sep, path = str(item).partition("=")
        if not sep:
            raise PackageError(f"{flag} {item}: expected SPLIT=PATH")
        out[split] = path
    return out


def write_bytes(path, data: bytes) -> None:
    from prunekd.atomic import atomic_path

    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data)


def write_package(outputs: dict, infos: dict, eval_root, audioset_manifest, settings: dict, out_dir, out_zip,
                  log=print) -> list[str]:  # fmt: skip
    """The package's files under out_dir (task1/<LABEL>/), then the zip; both checked, removed on a problem."""
    sub = settings["submission"]
    problems = check_label(sub["label"])
    if problems:
        raise PackageError(problems[0])
    label, out_dir = sub["label"], Path(out_dir)
    if out_dir.name != label:
        raise PackageError(f"{out_dir}: the package folder must be named after submission.label {label}")
    splits = sorted(outputs, key=lambda s: SPLITS.index(s) if s in SPLITS else len(SPLITS))
    infos = {s: json.loads(Path(infos[s]).read_text()) for s in splits}
    n_files = len(read_eval_meta(eval_root))
    meta = meta_document(sub, infos, settings, audioset_hours(audioset_manifest, settings["audioset_clip_seconds"]))
    files = {meta_name(label): yaml.safe_dump(meta, sort_keys=False, allow_unicode=True).encode()}
    for s in splits:
        files[output_name(label, s)] = Path(outputs[s]).read_bytes()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for n, data in files.items():
            z.writestr(f"task1/{label}/{n}", data)
    problems = check_package(io.BytesIO(buf.getvalue()), n_files, splits)
    if problems:
        raise PackageError(f"{out_zip}: not written, {len(problems)} problems, e.g. {problems[0]}")
    for n, data in files.items():
        write_bytes(out_dir / n, data)
    write_bytes(out_zip, buf.getvalue())
    missing = [s for s in SPLITS if s not in splits]
    if missing:
        log(
            f"warning: {out_zip} holds the splits {', '.join(splits)}; the challenge wants all five "
            f"(missing: {', '.join(missing)}): targets.<name>.splits"
        )
    log(f"{out_zip}: task1/{label}/ with {len(splits)} outputs of {n_files} evaluation clips each and the meta file")
    return missing


def package_step(outputs, infos, eval_root, audioset_manifest, out_dir, out_zip, settings: dict, log=print):
    """`prunekd submission-package`: SPLIT=output.csv and SPLIT=info.json pairs of the per-split submissions."""
    o, i = _pairs(outputs, "--outputs"), _pairs(infos, "--infos")
    if set(o) != set(i):
        raise PackageError("--outputs and --infos must name the same splits")
    return write_package(o, i, eval_root, audioset_manifest, settings, out_dir, out_zip, log)
