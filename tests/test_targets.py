"""Beyond the report: a generic target through the whole DAG, the random-subset and full-AudioSet controls,
and teacher-member ablations on the stored logits."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import zarr
from conftest import snakemake
from test_reruns import UPSTREAM, planned

PRUNE = "results/prune/tau/all"


def _write_target(root, rng):
    """A CSV target unlike the demo's: 3 classes, 22.05 kHz WAV, nested named splits, no device column,
    semicolon-separated (the adapter sniffs the delimiter)."""
    lines = ["filename;label;split"]
    for i in range(36):
        label = ["low", "mid", "high"][i % 3]
        t = np.arange(int(1.5 * 22050)) / 22050
        x = 0.3 * np.sin(2 * np.pi * [200, 800, 3200][i % 3] * t) + 0.05 * rng.standard_normal(len(t))
        sf.write(str(root / f"w{i:02d}.wav"), x.astype(np.float32), 22050)
        split = "test" if i >= 24 else ("small big" if i < 12 else "big")
        lines.append(f"w{i:02d}.wav;{label};{split}")
    (root / "tones.csv").write_text("\n".join(lines) + "\n")


def test_generic_target_runs_through_the_dag(demo_run, tmp_path):
    wd = tmp_path / "run"
    shutil.copytree(demo_run, wd, symlinks=True)
    data = wd / "data/tones"
    data.mkdir(parents=True)
    _write_target(data, np.random.default_rng(0))
    cfg = tmp_path / "tones.yaml"
    cfg.write_text(
        "targets:\n  tones:\n    adapter: csv\n    csv: data/tones/tones.csv\n    audio_root: data/tones\n"
        "    clip_seconds: 1.5\n    tile_to_10s: false\n    splits: [big]\n    sweep_split: null\n"
        "grid:\n  targets: [tones]\ncontrols:\n  random: false\n  full: false\n"
    )
    jobs = planned(wd, cfg)
    # Only the new target's own jobs: its manifest and teacher pass, never AudioSet's.
    assert jobs["teacher_logits"] == ["results/logits/tones/shards/00000.zarr"]
    assert not {"demo_data", "manifest_audioset", "demo_teacher", "pack_audio"} & set(jobs)
    assert {
        r: len(v) for r, v in jobs.items() if r in ("domain_classifier", "distill", "finetune", "baseline", "evaluate")
    } == {"domain_classifier": 1, "distill": 1, "finetune": 1, "baseline": 1, "evaluate": 2}
    snakemake(wd, extra_config=[str(cfg)])
    man = pd.read_csv(wd / "results/manifests/tones.tsv", sep="\t", keep_default_na=False)
    assert (man["splitbig"].sum(), man["test"].sum()) == (24, 12) and "splitsmall" not in man  # not asked for
    assert sorted(man["class_label"].unique()) == ["high", "low", "mid"]
    g = zarr.open_group(str(wd / "results/logits/tones.zarr"), mode="r")
    assert g["ensemble"].shape == (36, 527)
    for s in ("big",):
        v = json.loads((wd / f"results/domain/tones/all/split{s}/validation.json").read_text())
        assert v["n_train_pos"] == v["n_split_clips"] == 24 and v["n_val_pos"] == 12  # whole split; test split
        m = json.loads((wd / f"results/eval/finetune/tones/all/split{s}/pruned/thr0.3/seed0/metrics.json").read_text())
        assert set(m["per_class"]) == {"low", "mid", "high"} and m["n"] == 12 and m["per_device"].keys() == {"all"}
        assert m["key"] == {
            "target": "tones",
            "ensemble": "all",
            "split": s,
            "method": "pruned",
            "threshold": 0.3,
            "seed": 0,
        }
        pred = pd.read_csv(wd / f"results/eval/baseline/tones/split{s}/seed0/output.csv", sep="\t")
        assert list(pred.columns) == ["filename", "label", "high", "low", "mid"]
    t2 = pd.read_csv(wd / "results/summary/tones/table2.csv")
    assert list(t2["split"]) == ["big"] and "paper_method" not in t2
    assert set(pd.read_csv(wd / "results/summary/rejected_counts.csv")["dataset"]) == {"audioset", "tones"}


def test_random_subset_has_the_pruned_size_and_is_reproducible_from_its_seed():
    from prunekd.selection.controls import random_subset
    from prunekd.teachers.logit_store import write_ids

    g = zarr.open_group(store=zarr.storage.MemoryStore(), mode="w")
    g.create_array("row", data=np.arange(1000, dtype=np.int64) + 7)
    write_ids(g, [f"clip{i}" for i in range(1000)])
    train = np.arange(100, 1000)
    a = random_subset(g, train, 250, seed=0, name="tau/all/split100/thr0.3")
    assert len(a) == 250 and a["position"].is_unique and set(a["position"]) <= set(train)
    assert list(a["row"]) == list(a["position"] + 7) and list(a["id"]) == [f"clip{p}" for p in a["position"]]
    again = random_subset(g, train, 250, seed=0, name="tau/all/split100/thr0.3")
    pd.testing.assert_frame_equal(a, again)
    other_seed = random_subset(g, train, 250, seed=1, name="tau/all/split100/thr0.3")
    other_set = random_subset(g, train, 250, seed=0, name="tau/all/split5/thr0.3")
    assert set(a["position"]) != set(other_seed["position"]) and set(a["position"]) != set(other_set["position"])
    with pytest.raises(ValueError, match="1000 clips asked, only 900 exist"):
        random_subset(g, train, 1000, seed=0, name="x")


def test_demo_controls_match_their_pruned_sets_and_fill_the_summary(demo_run):
    for s, t in [(100, 0.2), (100, 0.3), (5, 0.3)]:
        kept = pd.read_csv(demo_run / f"{PRUNE}/split{s}/thr{t:g}/kept.tsv", sep="\t")
        rnd = pd.read_csv(demo_run / f"{PRUNE}/split{s}/thr{t:g}/random.tsv", sep="\t")
        assert len(rnd) == len(kept) and rnd["position"].is_unique
    full = pd.read_csv(demo_run / "results/prune/full.tsv", sep="\t")
    stats = json.loads((demo_run / f"{PRUNE}/split100/thr0.3/stats.json").read_text())
    assert len(full) == stats["train_clips"]
    for target, n_rows in (("tau", 3),):
        ct = pd.read_csv(demo_run / f"results/summary/{target}/controls.csv")
        assert len(ct) == n_rows
        for _, r in ct.iterrows():
            st = json.loads((demo_run / f"{PRUNE}/split{r['split']}/thr{r['threshold']:g}/stats.json").read_text())
            assert r["kept_clips"] == st["kept"]
        for col in ("pruned", "random", "full", "no_distillation"):
            assert ct[col].between(0, 100).all() and (ct[f"{col}_seeds"] == 1).all(), (target, col)
        runs = pd.read_csv(demo_run / f"results/summary/{target}/runs.tsv", sep="\t")
        m = json.loads(
            (
                demo_run / f"results/eval/finetune/{target}/all/split{ct['split'][0]}/random/thr"
                f"{ct['threshold'][0]:g}/seed0/metrics.json"
            ).read_text()
        )
        assert ct["random"][0] == pytest.approx(100 * m["macro_accuracy"], abs=0.01)
        assert set(runs["method"]) == {"pruned", "random", "full", "baseline"}
    assert "<table" in (demo_run / "results/summary/tau/controls.html").read_text()


def test_member_subset_changes_the_embeddings_and_schedules_no_teacher_job(demo_run, tmp_path):
    from prunekd.teachers.logit_store import embeddings, open_store

    pair = ["passt_s_swa_p16_128_ap476", "passt_s_p16_s16_128_ap468"]
    cfg = tmp_path / "ens.yaml"
    cfg.write_text(f"ensembles:\n  pair: {json.dumps(pair)}\n")
    jobs = planned(demo_run, cfg)
    assert not (UPSTREAM | {"pack_audio"}) & set(jobs), jobs.keys()
    assert sorted(jobs["domain_classifier"]) == sorted(
        f"results/domain/{t}/pair/split{s}/classifier.pt, results/domain/{t}/pair/split{s}/validation.json"
        for t, s in [("tau", 5), ("tau", 100)]
    )
    assert all("/pair/" in o for o in jobs["distill"]) and len(jobs["distill"]) == 3
    assert "random_subset" not in jobs  # the controls are for the report's ensemble
    # Run the ablation's domain classifier and scores (in a copy) and compare with the whole ensemble's.
    wd = tmp_path / "run"
    shutil.copytree(demo_run, wd, symlinks=True)
    snakemake(wd, "results/domain/tau/pair/split100/scores.npy", extra_config=[str(cfg)])
    v = json.loads((wd / "results/domain/tau/pair/split100/validation.json").read_text())
    assert v["members"] == pair
    v_all = json.loads((wd / "results/domain/tau/all/split100/validation.json").read_text())
    assert len(v_all["members"]) == 3
    s_pair = np.load(wd / "results/domain/tau/pair/split100/scores.npy")
    s_all = np.load(wd / "results/domain/tau/all/split100/scores.npy")
    assert not np.allclose(s_pair[~np.isnan(s_pair)], s_all[~np.isnan(s_all)])
    store = open_store(wd / "results/logits/audioset.zarr")
    rows = np.arange(10)
    sub = embeddings(store, rows, pair)
    idx = [list(store.attrs["members"]).index(m) for m in pair]
    np.testing.assert_allclose(sub, store["member_logits"][:10][:, idx].astype(np.float32).mean(1), atol=1e-6)
    assert not np.allclose(sub, embeddings(store, rows))
