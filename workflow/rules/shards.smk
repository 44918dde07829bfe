# How many teacher and packing jobs a dataset gets: its listed rows, known before its manifest is built
# (src/prunekd/plan.py).


def shards(dataset):
    """Blocks of a dataset's manifest rows (the packed-audio shards; the teacher shards without released logits)."""
    return PLAN.shards(dataset)


def teacher_shards(dataset):
    """The teacher jobs of a dataset: with released logits, AudioSet's cover only what is left to compute."""
    try:
        return PLAN.teacher_shards(dataset, RELEASED)
    except _released.ReleasedLogitsError as e:
        refuse(f"teachers.released_logits.index: {e}")


def packed_stores(wildcards):
    """Packed AudioSet stores that distillation reads (none when it decodes the source files)."""
    if config["distillation"]["audio_input"] != "packed":
        return []
    return expand(f"{R}/packed/audioset/{{shard}}.zarr", shard=shards("audioset"))
