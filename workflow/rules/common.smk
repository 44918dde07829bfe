import importlib.util
import json
import os
import re
import sys
from pathlib import Path

import yaml
from snakemake.utils import min_version, validate

min_version("9.0")


# The package this workflow ships with (not whatever prunekd is installed): hashes of its code go into
# each rule's params, so that editing a step's code reruns that step and what follows.
PACKAGE_DIR = Path(workflow.basedir) / "src" / "prunekd"


def _load(name):
    spec = importlib.util.spec_from_file_location(f"prunekd_{name}", PACKAGE_DIR / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


_codehash = _load("codehash")
_checks = _load("checks")  # config, profile and data-path checks: one line each (src/prunekd/checks.py)
_layouts = _load("layouts")  # where the data lies in the layouts users hold (src/prunekd/layouts.py)
CONFIG_FILES = list(dict.fromkeys(str(f) for f in [*workflow.configfiles, *(workflow.overwrite_configfiles or [])]))


def refuse(message):
    """Stop before any job with one line (a bare exception: Snakemake prints its message only)."""
    raise _checks.CheckError(message)


if workflow.is_main_process:
    _msg = _checks.dropped_profile_configfiles(
        sys.argv[1:], os.environ, CONFIG_FILES, [os.environ.get("PWD", "."), workflow.workdir_init, workflow.basedir]
    )
    if _msg:
        refuse(_msg)
with open(Path(workflow.basedir) / "workflow/schemas/config.schema.yaml") as _fh:
    _schema = yaml.safe_load(_fh)
_msg = _checks.unknown_key_message(config, _schema, CONFIG_FILES)
if _msg:
    refuse(_msg)
try:
    validate(config, schema="../schemas/config.schema.yaml")
except Exception as e:  # Snakemake's own message appends the whole schema and config
    cause = e.__context__  # the jsonschema ValidationError
    if not hasattr(cause, "absolute_path"):
        raise
    refuse(_checks.validation_message(cause, CONFIG_FILES))


def code_version(command):
    """Hash of the code that `prunekd <command>` runs (see src/prunekd/codehash.py)."""
    return _codehash.code_version(command, PACKAGE_DIR)



R = config["paths"]["results"]
DEMO = config["demo"]["enabled"]
AUDIOSET = config["paths"]["audioset"]
WEIGHTS = config["paths"]["teacher_weights"]
# segments (lists + one file per clip) or hdf5 (PaSST's *_mp3.hdf); the demo writes segment lists.
AUDIOSET_LAYOUT = "segments" if DEMO else _layouts.audioset_layout(
    AUDIOSET, config["data"]["audioset_subsets"], config["paths"]["audioset_layout"])

SUBSET_FILES = {
    "eval": "eval_segments.csv",
    "balanced_train": "balanced_train_segments.csv",
    "unbalanced_train": "unbalanced_train_segments.csv",
}
# Listed rows of the real data, to plan shards before the metadata is on disk (docs/method.md, "Data").
NOMINAL_ROWS = {"eval": 20383, "balanced_train": 22160, "unbalanced_train": 2041789, "tau2022": 230350}
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


def _checked_targets():
    """The targets that run (grid.targets), each defined under `targets`."""
    out = {}
    for t in config["grid"]["targets"]:
        if t not in config["targets"]:
            raise ValueError(f"grid.targets: {t!r} is not defined under `targets` (defined: {sorted(config['targets'])})")
        out[t] = config["targets"][t]
        bad = [s for s in [out[t]["sweep_split"]] if s is not None and s not in out[t]["splits"]]
        if bad:
            raise ValueError(f"targets.{t}.sweep_split: {bad[0]!r} is not one of targets.{t}.splits {out[t]['splits']}")
    return out


def _checked_ensembles():
    """Ensemble name -> member subset (None: every member, the report's ensemble)."""
    out = {"all": None}
    for name, members in config["ensembles"].items():
        unknown = [m for m in members if m not in MEMBERS]
        if unknown:
            raise ValueError(f"ensembles.{name}: {unknown} not in teachers.members (the stored logits hold {MEMBERS})")
        out[name] = list(members)
    return out


TARGETS = _checked_targets()
ENSEMBLES = _checked_ensembles()


def _alternatives(names):
    return "|".join(re.escape(n) for n in names)


wildcard_constraints:
    dataset=f"audioset|{_alternatives(TARGETS)}",
    target=_alternatives(TARGETS),
    ens=_alternatives(ENSEMBLES),
    shard=r"\d+",
    split=r"[A-Za-z0-9_]+",
    thr=r"0\.\d+",
    seed=r"\d+",
    method=r"(?:pruned|random)_thr0\.\d+|full",


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
    if AUDIOSET_LAYOUT == "hdf5":  # one file per subset holds the names, labels and MP3 bytes
        return [f"{AUDIOSET}/{_layouts.HDF5_FILES[s]}" for s in config["data"]["audioset_subsets"]]
    return [f"{AUDIOSET}/{SUBSET_FILES[s]}" for s in config["data"]["audioset_subsets"]]


def tau_lists(root, split_dir=None):
    return [f"{root}/meta.csv"] + [f"{split_dir or root}/{n}" for n in _layouts.TAU_SPLIT_FILES]


def tau_split_dir(t):
    """Folder of a TAU target's split files (targets.<name>.split_dir, else the root, else root/split_setup)."""
    return _layouts.tau_split_dir(t["root"], t.get("split_dir"))


def target_lists(target):
    """The metadata files a target's manifest is built from."""
    t = config["targets"][target]
    return tau_lists(t["root"], tau_split_dir(t)) if t["adapter"] == "tau2022" else [t["csv"]]


def demo_writes(target):
    """Whether the demo generates this target's data (TAU format, or a csv target it is asked for).

    Over every defined target, not only those that run: choosing targets never reruns the demo data.
    """
    t = config["targets"][target]
    return DEMO and (t["adapter"] == "tau2022" or target in config["demo"]["csv_targets"])


def raw_inputs(files, generated=DEMO):
    """Metadata files as inputs when they exist or a rule makes them (demo).

    Absent real data is left out of the DAG so that a dry run still plans every job; the manifest
    step then stops at once with an error naming the missing file.
    """
    if generated:
        return files
    return [f for f in files if Path(f).exists()]


def demo_folders():
    """Config key -> folder the demo writes into (it may write only into folders it created)."""
    out = {"paths.audioset": AUDIOSET} if DEMO else {}
    for t, v in config["targets"].items():
        if demo_writes(t):
            if v["adapter"] == "tau2022":
                out[f"targets.{t}.root"] = v["root"]
            else:
                out[f"targets.{t}.csv"] = os.path.dirname(v["csv"]) or "."
    return out


def data_paths():
    """(dataset, config key -> path) of the real data the manifests read; what the demo writes is left out."""
    out = []
    if not DEMO:
        keys = {"paths.audioset": AUDIOSET}
        if AUDIOSET_LAYOUT == "hdf5":  # names, labels and audio all in the three HDF5 files
            for s in config["data"]["audioset_subsets"]:
                keys[f"paths.audioset ({_layouts.HDF5_FILES[s]})"] = f"{AUDIOSET}/{_layouts.HDF5_FILES[s]}"
        else:
            for s in config["data"]["audioset_subsets"] + ["class_labels"]:
                f = "class_labels_indices.csv" if s == "class_labels" else SUBSET_FILES[s]
                keys[f"paths.audioset ({f})"] = f"{AUDIOSET}/{f}"
            keys["paths.audioset_audio"] = config["paths"]["audioset_audio"] or f"{AUDIOSET}/audio"
        out.append(("audioset", keys))
    for t, v in TARGETS.items():
        if demo_writes(t):
            continue
        if v["adapter"] == "tau2022":
            keys = {f"targets.{t}.root": v["root"], f"targets.{t}.root (meta.csv)": f"{v['root']}/meta.csv"}
        else:
            keys = {f"targets.{t}.csv": v["csv"], f"targets.{t}.audio_root": v["audio_root"]}
        out.append((t, keys))
    return out


# A user's folder is never a demo folder: Snakemake would delete its metadata (the demo's outputs) before
# the demo job even starts, so refuse when the DAG is built.
try:
    _checks.check_demo_folders(demo_folders())
except _checks.CheckError as e:
    refuse(str(e))

# Absent data: a dry run still plans every job (shards sized from the nominal list lengths) and says what is
# missing; a real run stops before any job (onstart), one line per path, if it would build that manifest.
MISSING_DATA = {ds: _checks.missing_data(keys)[:1] for ds, keys in data_paths()}  # the first absent path says it
if workflow.is_main_process:
    for _line in [l for lines in MISSING_DATA.values() for l in lines]:
        print(f"warning: {_line}", file=sys.stderr)


def refuse_missing_data(dag):
    """onstart: stop a real run whose manifests would read data that is not there."""
    planned = {j.wildcards.get("target", "audioset") for j in dag.needrun_jobs()
               if j.rule.name in ("manifest_audioset", "manifest_target")}
    lines = [l for ds, lines in MISSING_DATA.items() if ds in planned for l in lines]
    if lines:
        refuse("\n".join(lines) + f"\n(config files: {', '.join(CONFIG_FILES)}; a dry run, -n, plans without data)")


def count_rows(path, header_lines):
    n = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            n += chunk.count(b"\n")
    return max(0, n - header_lines)


def listed_rows(dataset):
    """Rows of a dataset's manifest (= listed clips), known before the manifest is built."""
    if dataset == "audioset":
        total = 0
        for s in config["data"]["audioset_subsets"]:
            h = Path(AUDIOSET) / _layouts.HDF5_FILES[s]
            if AUDIOSET_LAYOUT == "hdf5" and h.exists():
                total += _layouts.hdf5_rows(h)
                continue
            f = Path(AUDIOSET) / SUBSET_FILES[s]
            if f.exists():
                total += count_rows(f, 3)
            elif DEMO:
                total += config["demo"]["audioset_clips"][s]
            else:
                total += NOMINAL_ROWS[s]
        return total
    t = TARGETS[dataset]
    f = Path(target_lists(dataset)[0])
    if f.exists():
        return count_rows(f, 1)
    if demo_writes(dataset):
        if t["adapter"] == "tau2022":
            return config["demo"]["tau_train_clips"] + config["demo"]["tau_test_clips"]
        return sum(config["demo"]["csv_target_clips"].values())
    return NOMINAL_ROWS["tau2022"] if t["adapter"] == "tau2022" else 1


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
# Per target, ensemble and (split, threshold) pair: a pruned set, and as `controls` asks a random subset of
# its size; per ensemble one distillation on all of AudioSet. Each distilled student is fine-tuned on the
# split and evaluated, beside the baseline trained from scratch.


def splits(target):
    return [str(s) for s in TARGETS[target]["splits"]]


def grid_pairs(target):
    """(split, threshold) pairs of a target that get a pruned set, a distillation and fine-tunings."""
    g, sweep = config["grid"], TARGETS[target]["sweep_split"]
    thrs = [fmt_thr(t) for t in g["thresholds"]]
    if g["mode"] == "full":
        return [(s, t) for s in splits(target) for t in thrs]
    sweep = None if sweep is None else str(sweep)
    pairs = [(sweep, t) for t in thrs] if sweep in splits(target) else []
    pairs += [(s, fmt_thr(g["threshold"])) for s in splits(target) if s != sweep]
    return pairs


def selections(ens):
    """Which AudioSet subsets get distilled per pruned set: the pruned set, and its random control."""
    return ["pruned", "random"] if ens == "all" and config["controls"]["random"] else ["pruned"]


def with_full(ens):
    return ens == "all" and config["controls"]["full"]


def finetune_runs(target):
    """run paths (finetune/... and baseline/...) of a target, one per evaluated model."""
    seeds = config["grid"]["seeds"]
    runs = []
    for ens in ENSEMBLES:
        for s, t in grid_pairs(target):
            runs += [f"finetune/{target}/{ens}/split{s}/{sel}_thr{t}/seed{k}" for sel in selections(ens) for k in seeds]
        if with_full(ens):
            runs += [f"finetune/{target}/{ens}/split{s}/full/seed{k}" for s in splits(target) for k in seeds]
    runs += [f"baseline/{target}/split{s}/seed{k}" for s in splits(target) for k in seeds]
    return runs


def run_key(run):
    """What an evaluated model is, from its path: the summary's row key."""
    p = run.split("/")
    if p[0] == "baseline":
        return {"target": p[1], "ensemble": None, "split": p[2][5:], "method": "baseline", "threshold": None,
                "seed": int(p[3][4:])}
    sel, _, thr = p[4].partition("_thr")
    return {"target": p[1], "ensemble": p[2], "split": p[3][5:], "method": sel, "threshold": float(thr) if thr else None,
            "seed": int(p[5][4:])}


def eval_metrics(target):
    return [f"{R}/eval/{run}/metrics.json" for run in finetune_runs(target)]


def prune_stats(target):
    return [f"{R}/prune/{target}/{ens}/split{s}/thr{t}/stats.json" for ens in ENSEMBLES for s, t in grid_pairs(target)]


def student_for(w):
    """The distilled student a fine-tuning starts from."""
    if w.method == "full":
        return f"{R}/distill/full/{w.ens}/student.pt"
    return f"{R}/distill/{w.target}/{w.ens}/split{w.split}/{w.method}/student.pt"


def selection_list(w):
    """The AudioSet clips a distillation trains on: a pruned set, its random control, or all clips."""
    if w.trainset.startswith("full/"):
        return f"{R}/prune/full.tsv"
    target, ens, split, method = w.trainset.split("/")
    sel, thr = method.split("_thr")
    return f"{R}/prune/{target}/{ens}/{split}/thr{thr}/{'kept' if sel == 'pruned' else 'random'}.tsv"


def trainset_members(w):
    ens = w.trainset.split("/")[1]
    return ENSEMBLES[ens]


SUMMARY_NAMES = ["table1", "table2", "controls"]


def summary_outputs():
    out = []
    for target in TARGETS:
        out += expand(f"{R}/summary/{target}/{{name}}.{{ext}}", name=SUMMARY_NAMES, ext=["csv", "md", "html"])
        out += [f"{R}/summary/{target}/{n}.png" for n in ("table1", "table2", "controls", "devices")]
        for ens in ENSEMBLES:
            for s in sorted({s for s, _ in grid_pairs(target)}):
                out += [f"{R}/domain/{target}/{ens}/split{s}/{f}" for f in ("score_histogram.png", "validation.json")]
    return out + [f"{R}/summary/rejected_counts.html"]


def summary_report(name, caption, figure):
    """A per-target summary file, in the report under Results / <target>."""
    return report(
        f"{R}/summary/{{target}}/{name}",
        caption=f"../report/{caption}.rst",
        category="Results",
        subcategory="{target}",
        labels={"figure": figure},
    )


# ---- settings slices ----------------------------------------------------------------------------


def training_settings(epochs_key, target):
    t = dict(config["training"])
    t.pop("epochs_finetune"), t.pop("epochs_baseline")
    t["epochs"] = config["training"][epochs_key]
    t["clip_seconds"] = TARGETS[target]["clip_seconds"]
    return t


def clip_settings(dataset):
    """How a dataset's clips are cut for the teachers."""
    if dataset == "audioset":
        return {"clip_seconds": config["data"]["audioset_clip_seconds"], "tile_to_10s": False}
    return {k: TARGETS[dataset][k] for k in ("clip_seconds", "tile_to_10s")}


def teacher_settings(dataset):
    return settings(shard_size=config["teachers"]["shard_size"], teachers=config["teachers"], data=clip_settings(dataset))


def target_settings(target):
    """What a target's manifest is built from."""
    t = TARGETS[target]
    keys = ["adapter", "splits"] + (["root"] if t["adapter"] == "tau2022" else ["csv", "audio_root"])
    if t["adapter"] == "tau2022":
        keys, t = keys + ["split_dir"], {**t, "split_dir": tau_split_dir(t)}
    return settings(**{k: t[k] for k in keys}, test_split=t.get("test_split", "test"),
                    bad_audio=config["data"]["bad_audio"])


def eval_settings(target):
    return settings(
        frontend=config["frontend"],
        student=config["student"],
        clip_seconds=TARGETS[target]["clip_seconds"],
        num_workers=0 if DEMO else 4,
    )
