"""Packed audio: what distillation reads equals what decoding the sources gives, bad clips are listed."""

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
import zarr

from prunekd.data.audio import load_clip
from prunekd.data.datasets import WaveDataset
from prunekd.data.packed import CLIPS_PER_FILE, PackedAudio, PackedReader, RawLayoutError, pack_shard, reader_batches
from prunekd.student.training import StepSampler, as_float


@pytest.fixture
def sources(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for i in range(CLIPS_PER_FILE + 9):  # more than one Zarr shard file, the last one partial
        p = tmp_path / f"c{i}.flac"
        if i % 3 == 0:  # stereo at 44.1 kHz: downmixed and resampled
            p = tmp_path / f"c{i}.wav"
            sf.write(str(p), rng.normal(0, 0.1, (44100, 2)), 44100)
        else:
            sf.write(str(p), rng.normal(0, 0.1, 32000 if i % 2 else 20000), 32000)  # some short: padded
        rows.append(
            {
                "row": i,
                "id": f"c{i}",
                "subset": "eval" if i == 5 else "unbalanced_train",
                "path": str(p),
                "labels": "0",
                "duration": 1.0,
                "status": "ok",
            }
        )
    (tmp_path / "c7.flac").write_bytes(b"not audio")  # corrupt after the manifest was built
    pd.DataFrame(rows).to_csv(tmp_path / "m.tsv", sep="\t", index=False)
    return tmp_path


def test_packed_equals_decoded_and_lists_bad_clips(sources):
    out = sources / "packed.zarr"
    stats = pack_shard(sources / "m.tsv", 0, 1000, ["balanced_train", "unbalanced_train"], 32000, 1.0, out)
    g = zarr.open_group(str(out), mode="r")
    rows = g["row"][:]
    assert 5 not in rows and 7 not in rows  # eval is never distilled; the corrupt clip is skipped ...
    assert [r for r, _ in g.attrs["rejected"]] == [7] and stats["rejected"] == 1  # ... and listed
    assert len(rows) == CLIPS_PER_FILE + 7 == g["audio"].shape[0]
    files = [p for p in out.rglob("*") if p.is_file() and "audio" in p.parts]
    assert len(files) <= 4  # a few shard files, not one file per clip
    want = [r for r in rows if r % 4 == 0 or r == rows[-1]]
    packed = PackedAudio([out], want, 32000)
    man = pd.read_csv(sources / "m.tsv", sep="\t")
    decoded = WaveDataset(man["path"].to_numpy()[want], 32000, 32000)
    for i in range(len(want)):
        x, j, why = packed[i]
        assert j == i and why == "" and x.dtype == torch.int16  # int16 up to the device: half the bytes
        # on the device as_float makes exactly the floats numpy makes of the stored samples
        assert torch.equal(as_float(x), torch.from_numpy(x.numpy().astype(np.float32) / 32768.0))
        np.testing.assert_allclose(as_float(x).numpy(), decoded[i][0].numpy(), atol=1.5 / 32768)
    first = as_float(packed[0][0]).numpy()
    np.testing.assert_allclose(first, load_clip(man["path"][want[0]], 32000, 32000), atol=1.5 / 32768)


def test_clip_missing_from_packed_stores_is_named(sources):
    out = sources / "packed.zarr"
    pack_shard(sources / "m.tsv", 0, 1000, ["unbalanced_train"], 32000, 1.0, out)
    with pytest.raises(KeyError, match=r"rows \[5\]"):
        PackedAudio([out], [4, 5], 32000)


def test_reader_reads_the_same_samples_as_zarr_across_stores_in_sampler_order(sources):
    # Two stores (two teacher-shard blocks), each with a partial last shard file; rows asked in random order.
    stores = [sources / "a.zarr", sources / "b.zarr"]
    for shard, out in enumerate(stores):
        pack_shard(sources / "m.tsv", shard, 40, ["unbalanced_train"], 32000, 1.0, out)
    rows = np.concatenate([zarr.open_group(str(p), mode="r")["row"][:] for p in stores])
    rows = np.random.default_rng(1).permutation(rows)
    for n in (32000, 20000, 40000):  # the packed length, cut, padded
        reader, ref = PackedReader(stores, rows, n), PackedAudio(stores, rows, n)
        out = np.full(n, 7, np.int16)
        for i in range(len(rows)):
            reader.read_into(i, out)
            np.testing.assert_array_equal(out, ref[i][0].numpy())
    ref = PackedAudio(stores, rows, 32000)
    sampler = StepSampler(len(rows), 8, 12, seed=3)  # more steps than one epoch
    got = list(reader_batches(PackedReader(stores, rows, 32000), sampler, threads=3, pin=False, ahead=2))
    assert len(got) == 12
    for (wav, idx), want in zip(got, sampler):
        assert idx.tolist() == want and wav.dtype == torch.int16
        assert torch.equal(wav, torch.stack([ref[i][0] for i in want]))


def test_reader_names_a_truncated_store_and_leaves_other_layouts_to_zarr(sources):
    out = sources / "packed.zarr"
    pack_shard(sources / "m.tsv", 0, 1000, ["unbalanced_train"], 32000, 1.0, out)
    reader = PackedReader([out], [0], 32000)
    shard_file = out / "audio" / "c" / "0" / "0"
    data = shard_file.read_bytes()
    shard_file.write_bytes(data[:1000] + data[-(16 * CLIPS_PER_FILE + 4) :])  # clips cut, index kept
    with pytest.raises(OSError, match=r"c/0/0"):
        reader.read_into(0, np.zeros(32000, np.int16))
    g = zarr.open_group(str(sources / "zstd.zarr"), mode="w")  # compressed: not the raw layout
    g.create_array("row", data=np.arange(2))
    g.create_array("audio", data=np.zeros((2, 32000), np.int16), chunks=(1, 32000), shards=(2, 32000))
    with pytest.raises(RawLayoutError):
        PackedReader([sources / "zstd.zarr"], [0], 32000)


def _open_fds() -> int:
    import os

    return len(os.listdir("/proc/self/fd"))


def test_reader_opens_each_shard_file_once_and_closes_them(sources):
    # Read unstaged, every clip was an open and a close: on a cluster file system a metadata round trip each.
    stores = [sources / "a.zarr", sources / "b.zarr"]
    for shard, out in enumerate(stores):
        pack_shard(sources / "m.tsv", shard, 40, ["unbalanced_train"], 32000, 1.0, out)
    rows = np.concatenate([zarr.open_group(str(p), mode="r")["row"][:] for p in stores])
    ref = PackedAudio(stores, rows, 32000)
    before = _open_fds()
    sampler = StepSampler(len(rows), 8, 30, seed=5)  # 240 clip reads from 2 files
    with PackedReader(stores, rows, 32000) as reader:
        for (wav, _), want in zip(reader_batches(reader, sampler, threads=4, pin=False), sampler):
            assert torch.equal(wav, torch.stack([ref[i][0] for i in want]))
        assert reader.files.opens == 2 and _open_fds() == before + 2
    assert _open_fds() == before  # closed with the reader


def test_reader_over_its_open_file_limit_closes_the_least_recent_and_reads_the_same(sources):
    out = sources / "packed.zarr"
    pack_shard(sources / "m.tsv", 0, 1000, ["unbalanced_train"], 32000, 1.0, out)
    rows = zarr.open_group(str(out), mode="r")["row"][:]
    ref = PackedAudio([out], rows, 32000)
    before = _open_fds()
    with PackedReader([out], rows, 32000) as reader:
        reader.files.limit = 1  # two shard files, one may stay open
        sampler = StepSampler(len(rows), 8, 20, seed=2)
        for (wav, _), want in zip(reader_batches(reader, sampler, threads=3, pin=False), sampler):
            assert torch.equal(wav, torch.stack([ref[i][0] for i in want]))
            assert _open_fds() <= before + 1 + 3  # the one kept, and at most one per reading thread meanwhile
        assert reader.files.opens > 2
    assert _open_fds() == before
