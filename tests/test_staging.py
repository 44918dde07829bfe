"""Node-local staging of a distillation's packed clips: the same samples, only where it pays and fits, no leftovers."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import zarr

from prunekd.data import staging
from prunekd.data.packed import PackedAudio, PackedReader, pack_shard, reader_batches
from prunekd.student.training import StepSampler


@pytest.fixture(autouse=True)
def any_free_space(monkeypatch):
    """The tests' copies are a few MB: they need not leave staging.MARGIN (1 GB) free on the test machine."""
    monkeypatch.setattr(staging, "MARGIN", 0)


@pytest.fixture
def stores(tmp_path):
    """Two packed stores (two row blocks) made from real audio files, as pack-audio writes them."""
    import pandas as pd

    rng = np.random.default_rng(0)
    rows = []
    for i in range(150):  # 3 shard files per store, the last partial
        p = tmp_path / "audio" / f"c{i}.flac"
        p.parent.mkdir(exist_ok=True)
        sf.write(str(p), rng.normal(0, 0.1, 8000 if i % 5 else 6000), 32000)
        rows.append({"row": i, "id": f"c{i}", "subset": "unbalanced_train", "path": str(p), "labels": "0"})
        rows[-1].update(duration=0.25, status="ok")
    pd.DataFrame(rows).to_csv(tmp_path / "m.tsv", sep="\t", index=False)
    out = [tmp_path / "a.zarr", tmp_path / "b.zarr"]
    for shard, p in enumerate(out):
        pack_shard(tmp_path / "m.tsv", shard, 75, ["unbalanced_train"], 32000, 0.25, p)
    return out


def _pruned(stores):
    rows = np.concatenate([zarr.open_group(str(p), mode="r")["row"][:] for p in stores])
    return np.random.default_rng(2).permutation(rows)[:97]  # a pruned set: some clips of each store, any order


def test_staged_copy_gives_the_steps_the_same_batches_and_is_removed_after(stores, tmp_path):
    rows = _pruned(stores)
    node = tmp_path / "node_tmp"
    node.mkdir()
    sampler = StepSampler(len(rows), 16, 20, seed=4)  # 320 draws of 97 clips: staging pays
    ref = PackedAudio(stores, rows, 8000)
    log = []
    with staging.staged(PackedReader(stores, rows, 8000), node, 320, threads=3, log=log.append) as reader:
        assert isinstance(reader, staging.StagedClips)
        early = list(reader_batches(reader, sampler, threads=2, pin=False))  # while the copy runs
        assert reader.wait(timeout=60) and reader.ready == 97
        copies = list(node.glob("prunekd-stage-*/clips.i16"))
        assert len(copies) == 1 and copies[0].stat().st_size == 97 * 8000 * 2
        got = list(reader_batches(reader, sampler, threads=2, pin=False))  # all from the copy
        reader.ready = 40  # as if the copy were part way: the first 40 from the copy, the rest from the stores
        part = list(reader_batches(reader, sampler, threads=2, pin=False))
        reader.ready = 97

        def no_shared_reads(i, out):
            raise AssertionError("a copied clip was read from the shared stores")

        reader.source.read_into = no_shared_reads  # once copied, every clip comes from the copy
        assert torch.equal(next(reader_batches(reader, sampler, threads=2, pin=False))[0], got[0][0])
    assert list(node.iterdir()) == []  # the copy is gone when the job ends
    assert any(line.startswith("staged 97 clips") for line in log)
    for batches in (early, got, part):
        for (wav, idx), want in zip(batches, sampler):
            assert idx.tolist() == want
            assert torch.equal(wav, torch.stack([ref[i][0] for i in want]))
    for n in (6000, 9000):  # cut and padded as the shared reads
        with staging.staged(PackedReader(stores, rows, n), node, 320, 2, log.append) as reader:
            reader.wait()
            out = np.full(n, 5, np.int16)
            for i in range(len(rows)):
                reader.read_into(i, out)
                assert np.array_equal(out, PackedAudio(stores, rows, n)[i][0].numpy())


def test_no_copy_where_it_does_not_pay_or_fit(stores, tmp_path, monkeypatch):
    import errno

    rows = _pruned(stores)
    node = tmp_path / "node_tmp"
    node.mkdir()
    log = []
    reader = PackedReader(stores, rows, 8000)
    with staging.staged(reader, node, 97, 2, log.append) as got:  # each clip drawn about once
        assert got is reader
    assert "a copy would read more than it saves" in log[-1]

    class Usage:
        free = staging.MARGIN + 97 * 8000 * 2 - 1

    monkeypatch.setattr(staging.shutil, "disk_usage", lambda p: Usage)
    with staging.staged(reader, node, 10_000, 2, log.append) as got:
        assert got is reader
    assert f"has {Usage.free / 1e9:.1f} GB free" in log[-1] and str(node) in log[-1]
    with staging.staged(reader, tmp_path / "missing", 10_000, 2, log.append) as got:
        assert got is reader
    assert "missing is not a folder" in log[-1]
    monkeypatch.undo()
    monkeypatch.setattr(staging, "MARGIN", 0)

    def no_space(fd, size):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(staging, "reserve", no_space)  # the whole copy's space is taken up front
    with staging.staged(reader, node, 10_000, 2, log.append) as got:
        assert got is reader
    assert f"no copy in {node}" in log[-1] and "No space left on device" in log[-1]
    assert list(node.iterdir()) == []


def test_no_copy_into_memory(stores, tmp_path, monkeypatch):
    """A temp folder on tmpfs would hold the copy in the job's memory: the steps read the shared stores."""
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(
        "22 1 252:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw\n"
        f"30 22 0:25 / {tmp_path}/shm rw,nosuid shared:5 - tmpfs tmpfs rw,size=65536k\n"
    )
    (tmp_path / "shm" / "job").mkdir(parents=True)
    assert staging.file_system_type(tmp_path / "shm" / "job", mountinfo) == "tmpfs"
    assert staging.file_system_type(tmp_path / "shmx", mountinfo) == "ext4"  # a prefix of the name is not a mount
    odd = tmp_path / "back\\slash dir"  # mountinfo writes \\ and spaces in octal: \\134, \\040
    odd.mkdir()
    escaped = str(odd).replace("\\", "\\134").replace(" ", "\\040")
    mountinfo.write_text(f"22 1 252:1 / / rw - ext4 /dev/vda1 rw\n31 22 0:26 / {escaped} rw - tmpfs tmpfs rw\n")
    assert staging.file_system_type(odd, mountinfo) == "tmpfs"
    monkeypatch.setattr(staging, "file_system_type", lambda p: "tmpfs")
    log = []
    reader = PackedReader(stores, _pruned(stores), 8000)
    with staging.staged(reader, tmp_path / "shm" / "job", 10_000, 2, log.append) as got:
        assert got is reader
    assert "is tmpfs: the copy would be held in memory" in log[-1]


def test_a_disk_that_fills_or_a_bad_store_stops_the_copy_and_the_steps_read_the_stores(stores, tmp_path, monkeypatch):
    import errno

    rows = _pruned(stores)
    ref = PackedAudio(stores, rows, 8000)
    node = tmp_path / "node_tmp"
    node.mkdir()
    log = []
    real = os.pwrite

    def fills(fd, data, offset):
        if offset > 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data, offset)

    monkeypatch.setattr(staging.os, "pwrite", fills)
    monkeypatch.setattr(staging, "BLOCK", 32)
    with staging.staged(PackedReader(stores, rows, 8000), node, 320, 2, log.append) as reader:
        assert reader.wait(60) and reader.ready == 32
        out = np.zeros(8000, np.int16)
        for i in range(len(rows)):
            reader.read_into(i, out)
            assert np.array_equal(out, ref[i][0].numpy())
    assert "stopped after 32 of 97 clips (No space left on device)" in log[-1]
    assert list(node.iterdir()) == []
    monkeypatch.setattr(staging.os, "pwrite", real)

    shard_file = stores[1] / "audio" / "c" / "0" / "0"
    shard_file.write_bytes(shard_file.read_bytes()[:100] + shard_file.read_bytes()[-(16 * 64 + 4) :])
    bad = [i for i, r in enumerate(rows) if 75 <= r < 75 + 64]  # clips in the cut file
    with staging.staged(PackedReader(stores, rows, 8000), node, 320, 2, log.append) as reader:
        assert reader.wait(300), log  # the copy has ended (a loaded machine can take its time), and said why
        with pytest.raises(OSError, match="b.zarr/audio/c/0/0"):  # the step that draws one names the file
            reader.read_into(bad[0], np.zeros(8000, np.int16))
    assert "staging stopped" in log[-1] and "b.zarr/audio/c/0/0" in log[-1]
    assert list(node.iterdir()) == []


_KILLED_JOB = """
import sys, time
import numpy as np, zarr
from prunekd.data import staging
from prunekd.data.packed import PackedReader
stores = sys.argv[2:]
rows = np.concatenate([zarr.open_group(p, mode="r")["row"][:] for p in stores])
staging.MARGIN = 0
with staging.staged(PackedReader(stores, rows, 8000), sys.argv[1], 10_000, 2, print) as r:
    print("staged", flush=True)
    for _ in range(1200):  # a job's main thread runs Python between short waits (a sleep(60) would defer the handler)
        time.sleep(0.05)
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_a_killed_job_leaves_no_copy_behind(stores, tmp_path, sig):
    """SIGTERM (SLURM's time limit, scancel): the job removes its copy. SIGKILL (out of memory): the next staging
    job on the node removes it; a live job's copy stays."""
    node = tmp_path / "node_tmp"
    node.mkdir()
    # Unbuffered: the job's lines reach the pipe when printed, as a log does on a terminal or with flush.
    env = {**os.environ, "PYTHONPATH": str(Path(staging.__file__).parents[1]), "PYTHONUNBUFFERED": "1"}
    job = subprocess.Popen(
        [sys.executable, "-c", _KILLED_JOB, str(node), *map(str, stores)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        lines = []
        while "staged\n" not in lines and len(lines) < 10:  # the staging lines in any order, then the job's own
            lines.append(job.stdout.readline())
        assert "staged\n" in lines, lines
        live = list(node.iterdir())
        assert len(live) == 1
        staging.remove_orphans(node)
        assert list(node.iterdir()) == live  # the job still runs: its copy is left alone
        job.send_signal(sig)
        job.wait(timeout=30)
    finally:
        job.kill()
    if sig == signal.SIGTERM:
        assert job.returncode == 128 + signal.SIGTERM and list(node.iterdir()) == []
    else:
        assert list(node.iterdir()) == live
        log = []
        staging.remove_orphans(node, log.append)
        assert list(node.iterdir()) == [] and "killed" in log[0]


def test_orphans_of_other_hosts_and_live_jobs_stay(tmp_path):
    import socket

    host = socket.gethostname()
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()  # a process that has ended: its pid is not alive
    ours = tmp_path / f"prunekd-stage-{host}-{done.pid}-ab12"
    other_host = tmp_path / f"prunekd-stage-{host}-9-{done.pid}-ab12"  # host "{host}-9" (names may have dashes)
    live = tmp_path / f"prunekd-stage-{host}-{os.getpid()}-cd34"
    for d in (ours, other_host, live):
        d.mkdir()
    staging.remove_orphans(tmp_path)
    assert not ours.exists() and other_host.exists() and live.exists()


def test_space_is_reserved_without_writing_it(tmp_path):
    """fallocate(2) takes the copy's space up front, so another job cannot fill the disk part way; it writes
    nothing (posix_fallocate's fallback would write the whole size where the file system cannot reserve)."""
    import errno

    path = tmp_path / "f"
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    try:
        if not staging.reserve(fd, 64 << 20):
            pytest.skip("this file system cannot reserve space (fallocate: EOPNOTSUPP)")
        st = os.fstat(fd)
        assert st.st_size == 64 << 20 and st.st_blocks * 512 >= 64 << 20  # the blocks are the file's now
        with pytest.raises(OSError) as e:
            staging.reserve(fd, 1 << 62)  # more than any disk
        assert e.value.errno in (errno.ENOSPC, errno.EFBIG)
    finally:
        os.close(fd)
