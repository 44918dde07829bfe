"""The DAG with teachers.released_logits, on a copy of the finished tiny demo run (session fixture)."""

import json
import pickle
import shutil

import numpy as np
import pandas as pd
import zarr
from conftest import snakemake
from test_released import _Evil
from test_reruns import planned

from prunekd.teachers.logit_store import ids as store_ids

STORE = "results/logits/audioset.zarr"
AGREEMENT = "results/logits/audioset/released/agreement.json"


def _released_files(wd, tmp_path, leave_out=3):
    """EfficientAT's layout for the demo's training clips: the members' own ensemble rows (+ noise far below any
    threshold's reach) under the HDF5 names, rows shuffled; `leave_out` usable clips (and every clip the demo
    damaged) missing from the index, and one name of a clip the manifest lacks."""
    man = pd.read_csv(wd / "results/manifests/audioset.tsv", sep="\t", dtype=str, keep_default_na=False)
    g = zarr.open_group(str(wd / STORE), mode="r")
    ids, ens = store_ids(g), g["ensemble"][:]
    train = set(man.loc[man["subset"] != "eval", "id"])
    usable = [i for i in ids if i in train]
    covered, uncovered = usable[leave_out:], usable[:leave_out]
    rng = np.random.default_rng(0)
    pos = {i: k for k, i in enumerate(ids)}
    rows = np.stack([ens[pos[i]] for i in covered] + [rng.normal(size=527).astype(np.float32)])
    rows[:-1] += rng.normal(0, 1e-4, rows[:-1].shape).astype(np.float32)
    order = rng.permutation(len(rows))
    logits = np.empty_like(rows)
    logits[order] = rows
    names = [f"Y{i}.mp3" for i in covered] + ["Ynot-in-the-manifest.mp3"]
    np.save(tmp_path / "passt_enemble_logits_mAP_495.npy", logits)
    with open(tmp_path / "fname_to_index.pkl", "wb") as fh:
        pickle.dump({n: int(r) for n, r in zip(names, order)}, fh)
    cfg = tmp_path / "released.yaml"
    cfg.write_text(
        "teachers:\n  released_logits:\n"
        f"    logits: {tmp_path / 'passt_enemble_logits_mAP_495.npy'}\n    index: {tmp_path / 'fname_to_index.pkl'}\n"
        "    check_clips: 20\n"
    )
    return cfg, man, dict(zip(covered, rows[:-1])), uncovered


def test_released_logits_replace_the_teacher_jobs_of_the_clips_they_cover(demo_run, tmp_path):
    wd = tmp_path / "run"
    shutil.copytree(demo_run, wd, symlinks=True)
    cfg, man, released, uncovered = _released_files(wd, tmp_path)
    n_eval = int((man["subset"] == "eval").sum())
    train = man[man["subset"] != "eval"]
    to_compute = n_eval + int((~train["id"].isin(released)).sum())  # eval + every training clip the index lacks
    jobs = planned(wd, cfg, targets=[STORE])
    # One shard of 80 for the 60 eval clips and the uncovered ones, instead of three for all 200 rows.
    assert to_compute <= 80 and jobs["teacher_logits"] == ["results/logits/audioset/shards/00000.zarr"]
    snakemake(wd, AGREEMENT, extra_config=[str(cfg)])
    counts = json.loads((wd / "results/logits/audioset/released/released.json").read_text())
    assert counts["covered"] == len(released) and counts["uncovered"] == len(train) - len(released)
    assert counts["computed_by_members"] == to_compute and counts["computed_eval"] == n_eval
    g = zarr.open_group(str(wd / STORE), mode="r")
    ids, ens, rel, ml = store_ids(g), g["ensemble"][:], g["released"][:], g["member_logits"][:]
    # Covered clips: the file's row exactly, no member logits; uncovered clips: computed by the members.
    assert {i for i, r in zip(ids, rel) if r} == set(released)
    for k, i in enumerate(ids):
        if rel[k]:
            np.testing.assert_array_equal(ens[k], released[i])
            assert np.isnan(ml[k].astype(np.float32)).all()
        else:
            np.testing.assert_allclose(ens[k], ml[k].astype(np.float32).mean(0), atol=1e-3)
    assert set(uncovered) <= set(ids) and not rel[np.isin(ids, uncovered)].any()
    # The members' embeddings (teachers.embeddings) for the rows they computed; released rows have none.
    emb = g["member_embeddings"][:].astype(np.float32)
    assert np.isnan(emb[rel]).all() and np.isfinite(emb[~rel]).all()
    assert g.attrs["released_logits"]["rows_from_file"] == len(released)
    log = (wd / "results/logs/released_index.log").read_text()
    assert f"{counts['uncovered']} not covered" in log
    # The agreement check ran the members on covered clips: the file's rows are theirs, so they agree.
    a = json.loads((wd / AGREEMENT).read_text())
    assert a["clips"] > 0 and a["agree"] is True and a["logit_abs_diff"]["max"] < 0.05
    assert set(a["classifiers"]) == {"tau/split5", "tau/split100"}
    assert all(t["changed_sides"] == 0 for c in a["classifiers"].values() for t in c["at_threshold"])

    # uncovered: list leaves the clips the index lacks out of the store and lists them as rejected.
    listing = tmp_path / "list.yaml"
    listing.write_text(cfg.read_text() + "    uncovered: list\n")
    snakemake(wd, STORE, extra_config=[str(listing)])
    g = zarr.open_group(str(wd / STORE), mode="r")
    rej = pd.read_csv(wd / "results/logits/audioset.rejected.tsv", sep="\t", dtype=str, keep_default_na=False)
    left = set(rej.loc[rej["reason"] == "not in the released logits", "id"])
    assert set(uncovered) <= left and not left & set(store_ids(g))
    assert set(store_ids(g)) - set(man.loc[man["subset"] == "eval", "id"]) == set(released)

    # A member ablation would silently use the released mean: refused before any job, naming the key.
    abl = tmp_path / "ablation.yaml"
    abl.write_text("ensembles:\n  pair: [passt_s_swa_p16_128_ap476, passt_s_p16_s12_128_ap470]\n")
    p = snakemake(wd, "-n", extra_config=[str(cfg), str(abl)], check=False)
    out = p.stdout + p.stderr
    assert p.returncode != 0 and "ensembles: ['pair']: member ablations need per-member logits" in out

    # An index that would run code is refused when the DAG is built, naming the file; the code never runs.
    victim = tmp_path / "created_by_the_pickle"
    (tmp_path / "fname_to_index.pkl").write_bytes(pickle.dumps({"Yx.mp3": _Evil(victim)}))
    p = snakemake(wd, "-n", extra_config=[str(cfg)], check=False)
    assert p.returncode != 0 and "fname_to_index.pkl: refused" in p.stdout + p.stderr
    assert not victim.exists()
