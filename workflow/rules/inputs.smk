# Where the raw data lies, what the demo writes, and the absent-data checks (before any job).

# segments (lists + one file per clip) or hdf5 (PaSST's *_mp3.hdf); the demo writes segment lists.
AUDIOSET_LAYOUT = (
    "segments"
    if DEMO
    else _layouts.audioset_layout(AUDIOSET, config["data"]["audioset_subsets"], config["paths"]["audioset_layout"])
)

SUBSET_FILES = _layouts.SEGMENT_FILES


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


def weight_files():
    return [f"{WEIGHTS}/{CKPT_FILES[m]}" for m in MEMBERS]


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
    planned = {
        j.wildcards.get("target", "audioset")
        for j in dag.needrun_jobs()
        if j.rule.name in ("manifest_audioset", "manifest_target")
    }
    lines = [l for ds, lines in MISSING_DATA.items() if ds in planned for l in lines]
    if lines:
        refuse("\n".join(lines) + f"\n(config files: {', '.join(CONFIG_FILES)}; a dry run, -n, plans without data)")
