"""Released ensemble logits in EfficientAT's layout: the restricted index reader and the coverage."""

import os
import pickle

import numpy as np
import pandas as pd
import pytest

from prunekd.dag.layouts import ytid_of_audio_name
from prunekd.teachers.released import (
    ReleasedLogitsError,
    load_index,
    open_logits,
    rows_by_clip,
    to_compute,
    write_coverage,
)


def efficientat_files(tmp_path, names, dtype=np.float32, seed=0, as_numpy=False):
    """passt_enemble_logits_mAP_495.npy (np.save'd [N, 527]) and fname_to_index.pkl (name -> row), rows shuffled."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(-4, 2, (len(names), 527)).astype(dtype)
    order = rng.permutation(len(names))
    index = {n: (np.int64(r) if as_numpy else int(r)) for n, r in zip(names, order)}
    np.save(tmp_path / "passt_enemble_logits_mAP_495.npy", logits)
    with open(tmp_path / "fname_to_index.pkl", "wb") as fh:
        pickle.dump(index, fh)
    return tmp_path / "passt_enemble_logits_mAP_495.npy", tmp_path / "fname_to_index.pkl", logits, index


class _Evil:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def test_a_pickle_that_would_run_code_is_refused_and_runs_nothing(tmp_path):
    victim = tmp_path / "created_by_the_pickle"
    for payload in ({"Yabc.mp3": _Evil(victim)}, _Evil(victim)):
        path = tmp_path / "fname_to_index.pkl"
        path.write_bytes(pickle.dumps(payload))
        with pytest.raises(ReleasedLogitsError) as e:
            load_index(path)
        assert str(path) in str(e.value) and "refused" in str(e.value) and "\n" not in str(e.value)
        assert not victim.exists()
    # The same payload does run under a plain pickle.load: the test would catch a reader that used it.
    pickle.loads(pickle.dumps(_Evil(victim)))
    assert victim.exists()


@pytest.mark.parametrize(
    "payload",
    [["Yabc.mp3"], {"Yabc.mp3": 1.5}, {"Yabc.mp3": "3"}, {1: 2}, {"Yabc.mp3": True}, {"Yabc.mp3": np.float32(1)}],
)
def test_anything_but_a_dict_of_str_to_int_is_refused(tmp_path, payload):
    path = tmp_path / "i.pkl"
    path.write_bytes(pickle.dumps(payload))
    with pytest.raises(ReleasedLogitsError, match="refused"):
        load_index(path)


def test_efficientats_layout_reads_with_int_or_numpy_int_rows(tmp_path):
    names = ["Y--PJHxphWEs.mp3", "Y0bRUkLsttto.mp3", "03/YYx_9BVhvpCI.mp3"]
    for as_numpy in (False, True):
        npy, pkl, logits, index = efficientat_files(tmp_path, names, as_numpy=as_numpy)
        got = load_index(pkl)
        assert got == {k: int(v) for k, v in index.items()} and all(type(v) is int for v in got.values())
        arr = open_logits(npy)
        assert arr.shape == (3, 527) and np.array_equal(arr[got["Y0bRUkLsttto.mp3"]], logits[index["Y0bRUkLsttto.mp3"]])
    by_clip = rows_by_clip(got, ytid_of_audio_name, 3)
    # The HDF5 names map to the YTIDs the manifest holds; a YTID that itself starts with Y keeps it.
    assert set(by_clip) == {"--PJHxphWEs", "0bRUkLsttto", "Yx_9BVhvpCI"}
    np.save(tmp_path / "bad.npy", np.zeros((3, 10), np.float32))
    with pytest.raises(ReleasedLogitsError, match="bad.npy"):
        open_logits(tmp_path / "bad.npy")
    with pytest.raises(ReleasedLogitsError, match="row 7"):
        rows_by_clip({"Yabc.mp3": 7}, ytid_of_audio_name, 3, "i.pkl")


def test_eval_is_always_computed_and_uncovered_training_clips_as_configured():
    subsets = ["eval", "eval", "balanced_train", "unbalanced_train", "unbalanced_train"]
    ids = ["e1", "e2", "b1", "u1", "u2"]
    covered = {"e1": 0, "b1": 1, "u2": 2}
    assert list(to_compute(subsets, ids, covered, "compute")) == [True, True, False, True, False]
    assert list(to_compute(subsets, ids, covered, "list")) == [True, True, False, False, False]


def _manifest(tmp_path, n_eval=4, n_train=10):
    rows = [("eval", f"e{i}") for i in range(n_eval)] + [
        ("balanced_train" if i < 4 else "unbalanced_train", f"t{i}") for i in range(n_train)
    ]
    man = pd.DataFrame(
        {
            "row": range(len(rows)),
            "id": [i for _, i in rows],
            "subset": [s for s, _ in rows],
            "path": [f"/a/{i}.wav" for _, i in rows],
            "labels": "0",
            "status": "ok",
        }
    )
    man.loc[5, "status"] = "missing"
    path = tmp_path / "audioset.tsv"
    man.to_csv(path, sep="\t", index=False)
    return path, man


@pytest.mark.parametrize("uncovered", ["compute", "list"])
def test_coverage_counts_every_clip_and_lists_what_the_members_compute(tmp_path, uncovered):
    man_path, man = _manifest(tmp_path)
    # EfficientAT's file covers t0..t7 and an eval clip (never taken from it), lacks t8 and t9.
    names = [f"Y{i}.mp3" for i in ["t0", "t1", "t2", "t3", "t4", "t5", "t6", "t7", "e0"]]
    npy, pkl, _, index = efficientat_files(tmp_path, names)
    cfg = {"logits": str(npy), "index": str(pkl), "uncovered": uncovered}
    counts = write_coverage(man_path, cfg, planned_shards=2, shard_size=4, out_dir=tmp_path / "rel", log=lambda s: None)
    rel = pd.read_csv(tmp_path / "rel/released.tsv", sep="\t")
    compute = pd.read_csv(tmp_path / "rel/compute.tsv", sep="\t")["row"].tolist()
    unc = pd.read_csv(tmp_path / "rel/uncovered.tsv", sep="\t")
    assert list(rel["id"]) == [f"t{i}" for i in range(8)]
    assert list(rel["released_row"]) == [index[f"Yt{i}.mp3"] for i in range(8)]
    assert list(unc["id"]) == ["t8", "t9"]
    assert compute == [0, 1, 2, 3] + ([12, 13] if uncovered == "compute" else [])
    assert counts["covered"] == 8 and counts["covered_usable"] == 7 and counts["uncovered"] == 2
    assert counts["computed_by_members"] == len(compute) and counts["computed_eval"] == 4
    with pytest.raises(ReleasedLogitsError, match="planned 1"):
        write_coverage(man_path, cfg, planned_shards=1, shard_size=2, out_dir=tmp_path / "rel2", log=lambda s: None)
