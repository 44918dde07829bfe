import importlib.util
import json
import os
from pathlib import Path

from snakemake.utils import min_version, validate

min_version("9.0")


validate(config, schema="../schemas/config.schema.yaml")

# The package this workflow ships with (not whatever prunekd is installed): hashes of its code go into
# each rule's params, so that editing a step's code reruns that step and what follows.
PACKAGE_DIR = Path(workflow.basedir) / "src" / "prunekd"
_spec = importlib.util.spec_from_file_location("prunekd_codehash", PACKAGE_DIR / "codehash.py")
_codehash = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_codehash)


def code_version(command):
    """Hash of the code that `prunekd <command>` runs (see src/prunekd/codehash.py)."""
    return _codehash.code_version(command, PACKAGE_DIR)



R = config["paths"]["results"]
DEMO = config["demo"]["enabled"]
AUDIOSET = config["paths"]["audioset"]
TAU = config["paths"]["tau"]
WEIGHTS = config["paths"]["teacher_weights"]

SUBSET_FILES = {
    "eval": "eval_segments.csv",
    "balanced_train": "balanced_train_segments.csv",
    "unbalanced_train": "unbalanced_train_segments.csv",
}
# Listed rows of the real data, to plan shards before the metadata is on disk (REFERENCE.md 4).
NOMINAL_ROWS = {"eval": 20383, "balanced_train": 22160, "unbalanced_train": 2041789, "tau": 230350}
CKPT_FILES = {
    "passt_s_swa_p16_128_ap476": "passt-s-f128-p16-s10-ap.476-swa.pt",
    "passt_s_swa_p16_128_ap4761": "passt-s-f128-p16-s10-ap.4761-swa.pt",
    "passt_s_p16_128_ap472": "passt-s-f128-p16-s10-ap.472.pt",
    "passt_s_p16_s12_128_ap470": "passt-s-f128-p16-s12-ap.470.pt",
    "passt_s_swa_p16_s12_128_ap473": "passt-s-f128-p16-s12-ap.473-swa.pt",
    "passt_s_p16_s14_128_ap469": "passt-s-f128-p16-s14-ap.469.pt",
    "passt_s_swa_p16_s14_128_ap471": "passt-s-f128-p16-s14-ap.471-swa.pt",
    "passt_s_swa_p16_s16_128_ap473": "passt-s-f128-p16-s16-ap.473-swa.pt",
    "passt_s_p16_s16_128_ap468": "passt-s-f128-p16-s16-ap.468.pt",
}
MEMBERS = config["teachers"]["members"]


wildcard_constraints:
    dataset="audioset|tau",
    shard=r"\d+",
    split="5|10|25|50|100",
    thr=r"0\.\d+",
    seed=r"\d+",


def settings(**parts):
    """One JSON object with exactly the config a step reads; a `params` so that a change reruns the step."""
    return json.dumps(parts, sort_keys=True)


def mem(mb):
    """A rule's memory request (MB): what the real data needs; the demo's jobs need far less."""
    return min(mb, 3000) if DEMO else mb


def fmt_thr(t):
    return f"{float(t):g}"


# ---- raw inputs -----------------------------------------------------------------------------------


def audioset_lists():
    return [f"{AUDIOSET}/{SUBSET_FILES[s]}" for s in config["data"]["audioset_subsets"]]


def tau_lists():
    return [f"{TAU}/{n}.csv" for n in ("meta", "split5", "split10", "split25", "split50", "split100", "test")]


def raw_inputs(files):
    """Metadata files as inputs when they exist or a rule makes them (demo).

    Absent real data is left out of the DAG so that a dry run still plans every job; the manifest
    step then stops at once with an error naming the missing file.
    """
    if DEMO:
        return files
    return [f for f in files if Path(f).exists()]


def count_rows(path, header_lines):
    n = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            n += chunk.count(b"\n")
    return max(0, n - header_lines)


def listed_rows(dataset):
    """Rows of a dataset's manifest (= listed segments), known before the manifest is built."""
    if dataset == "audioset":
        total = 0
        for s in config["data"]["audioset_subsets"]:
            f = Path(AUDIOSET) / SUBSET_FILES[s]
            if f.exists():
                total += count_rows(f, 3)
            elif DEMO:
                total += config["demo"]["audioset_clips"][s]
            else:
                total += NOMINAL_ROWS[s]
        return total
    f = Path(TAU) / "meta.csv"
    if f.exists():
        return count_rows(f, 1)
    if DEMO:
        return config["demo"]["tau_train_clips"] + config["demo"]["tau_test_clips"]
    return NOMINAL_ROWS["tau"]


def shards(dataset):
    n = listed_rows(dataset)
    size = config["teachers"]["shard_size"]
    return [f"{i:05d}" for i in range(max(1, -(-n // size)))]


def packed_stores(wildcards):
    """Packed AudioSet stores that distillation reads (none when it decodes the source files)."""
    if config["distillation"]["audio_input"] != "packed":
        return []
    return expand(f"{R}/packed/audioset/{{shard}}.zarr", shard=shards("audioset"))


def weight_files():
    return [f"{WEIGHTS}/{CKPT_FILES[m]}" for m in MEMBERS]


# ---- the experiment grid ------------------------------------------------------------------------


def grid_pairs():
    """(split, threshold) pairs that get a pruned set, a distillation and fine-tunings."""
    g = config["grid"]
    splits, thrs = g["splits"], [fmt_thr(t) for t in g["thresholds"]]
    if g["mode"] == "full":
        return [(s, t) for s in splits for t in thrs]
    pairs = [(g["sweep_split"], t) for t in thrs] if g["sweep_split"] in splits else []
    pairs += [(s, fmt_thr(g["threshold"])) for s in splits if s != g["sweep_split"]]
    return pairs


def kd_metrics():
    return [
        f"{R}/eval/kd/split{s}/thr{t}/seed{seed}/metrics.json"
        for s, t in grid_pairs()
        for seed in config["grid"]["seeds"]
    ]


def baseline_metrics():
    return [
        f"{R}/eval/baseline/split{s}/seed{seed}/metrics.json"
        for s in config["grid"]["splits"]
        for seed in config["grid"]["seeds"]
    ]


def prune_stats():
    return [f"{R}/prune/split{s}/thr{t}/stats.json" for s, t in grid_pairs()]


def summary_outputs():
    splits = sorted({s for s, _ in grid_pairs()})
    return (
        expand(f"{R}/summary/{{name}}.{{ext}}", name=["table1", "table2"], ext=["csv", "md", "html"])
        + [f"{R}/summary/{n}.png" for n in ("table1", "table2", "devices")]
        + [f"{R}/domain/split{s}/score_histogram.png" for s in splits]
        + [f"{R}/domain/split{s}/validation.json" for s in splits]
        + [f"{R}/summary/rejected_counts.html"]
    )


# ---- settings slices ----------------------------------------------------------------------------


def training_settings(epochs_key):
    t = dict(config["training"])
    epochs = t.pop("epochs_finetune"), t.pop("epochs_baseline")
    t["epochs"] = config["training"][epochs_key]
    return t


def teacher_settings(dataset):
    return settings(
        shard_size=config["teachers"]["shard_size"],
        teachers=config["teachers"],
        data={
            k: config["data"][k]
            for k in (
                ["audioset_clip_seconds"]
                if dataset == "audioset"
                else ["tau_clip_seconds", "tau_tile_to_10s"]
            )
        },
    )


def eval_settings():
    return settings(
        frontend=config["frontend"],
        student=config["student"],
        num_workers=0 if DEMO else 4,
    )
