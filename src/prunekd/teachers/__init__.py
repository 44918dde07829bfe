"""Stage 2, the teachers: the PaSST members, their logits per shard and the gathered Zarr store, released logits."""
