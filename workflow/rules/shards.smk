# How many teacher and packing jobs a dataset gets: its listed rows, known before its manifest is built.

# Listed rows of the real data, to plan shards before the metadata is on disk (src/prunekd/layouts.py).
NOMINAL_ROWS = _layouts.NOMINAL_ROWS
count_rows = _layouts.count_listed


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


_PLANNED = {}


def released_rows_to_compute():
    """With teachers.released_logits: AudioSet rows the members compute (eval, and the training clips the index
    lacks unless `uncovered: list`), counted from the lists and the index at DAG time. None when either is not
    on disk yet: every row is planned then, and the shards past what is left to compute run empty."""
    if "audioset" in _PLANNED:
        return _PLANNED["audioset"]
    subsets = config["data"]["audioset_subsets"]
    files = {
        s: Path(AUDIOSET) / (_layouts.HDF5_FILES[s] if AUDIOSET_LAYOUT == "hdf5" else SUBSET_FILES[s]) for s in subsets
    }
    n = None
    if all(f.exists() for f in files.values()) and Path(RELEASED["index"]).exists():
        ids = {s: _layouts.listed_ids(f, AUDIOSET_LAYOUT) for s, f in files.items()}
        try:
            n = _released.planned_rows(ids, RELEASED["index"], _layouts.ytid_of_audio_name, RELEASED["uncovered"])
        except _released.ReleasedLogitsError as e:
            refuse(f"teachers.released_logits.index: {e}")
    _PLANNED["audioset"] = n
    return n


def _blocks(n):
    size = config["teachers"]["shard_size"]
    return [f"{i:05d}" for i in range(max(1, -(-n // size)))]


def shards(dataset):
    """Blocks of a dataset's manifest rows (the packed-audio shards; the teacher shards without released logits)."""
    return _blocks(listed_rows(dataset))


def teacher_shards(dataset):
    """The teacher jobs of a dataset: with released logits, AudioSet's cover only what is left to compute."""
    if dataset == "audioset" and RELEASED is not None:
        n = released_rows_to_compute()
        return _blocks(listed_rows(dataset) if n is None else n)
    return shards(dataset)


def packed_stores(wildcards):
    """Packed AudioSet stores that distillation reads (none when it decodes the source files)."""
    if config["distillation"]["audio_input"] != "packed":
        return []
    return expand(f"{R}/packed/audioset/{{shard}}.zarr", shard=shards("audioset"))
