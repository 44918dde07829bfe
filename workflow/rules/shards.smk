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


def shards(dataset):
    n = listed_rows(dataset)
    size = config["teachers"]["shard_size"]
    return [f"{i:05d}" for i in range(max(1, -(-n // size)))]


def packed_stores(wildcards):
    """Packed AudioSet stores that distillation reads (none when it decodes the source files)."""
    if config["distillation"]["audio_input"] != "packed":
        return []
    return expand(f"{R}/packed/audioset/{{shard}}.zarr", shard=shards("audioset"))
