# How many teacher and packing jobs a dataset gets: its listed rows, known before its manifest is built
# (src/prunekd/dag/plan.py).


def shards(dataset):
    """Blocks of a dataset's manifest rows (the packed-audio shards; the teacher shards without released logits)."""
    return PLAN.shards(dataset)


def teacher_shards(dataset):
    """The teacher jobs of a dataset: with released logits, AudioSet's cover only what is left to compute."""
    try:
        return PLAN.teacher_shards(dataset, RELEASED)
    except _released.ReleasedLogitsError as e:
        refuse(f"teachers.released_logits.index: {e}")


PACKED = config["distillation"]["audio_input"] == "packed"
# Packed AudioSet stores that distillation reads (none when it decodes the source files).
PACKED_STORES = expand(f"{R}/packed/audioset/{{shard}}.zarr", shard=shards("audioset")) if PACKED else []
PACKED_ARGS = shlex.join(["--packed", *PACKED_STORES]) if PACKED else ""
# One file that stands for all the stores, written once they are complete: a distillation waits for it alone. A
# rebuilt or missing store reruns it and so every distillation after it; listing every store as every
# distillation's input made the DAG's cost grow as jobs x stores.
PACKED_LIST = f"{R}/packed/audioset.txt"


PACKED_INPUT = [PACKED_LIST] if PACKED else []  # a distillation's input: the list, when it reads packed stores
