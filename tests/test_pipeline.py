"""The demo DAG at its smallest size (tests/tiny.yaml), checked by what it produced."""

import json
import warnings

import numpy as np
import pandas as pd
import pytest
import zarr
from conftest import LOCAL_ENV, REPO, snakemake

from prunekd.teachers.logit_store import ids

SPLITS, THRS, SEEDS = [5, 100], [0.2, 0.3], [0]
BAD = 5  # clips the demo damages on purpose (config demo.bad_clips), all AudioSet training
TRAIN = 40 + 100 - BAD  # usable AudioSet training clips of the tiny demo
PAIRS = [(100, 0.2), (100, 0.3), (5, 0.3)]  # paper grid: sweep on split 100, 0.3 elsewhere
RULES = [
    "manifest_audioset",
    "manifest_target",
    "teacher_logits",
    "gather_logits",
    "domain_classifier",
    "score",
    "score_histogram",
    "prune",
    "random_subset",
    "distill",
    "finetune",
    "baseline",
    "evaluate",
    "summarise",
    "pack_audio",
    "decode_target",
    "rejected_clips",
    "enrichment",
    "enrichment_summary",
]
DOM = "results/domain/tau/all"
PRUNE = "results/prune/tau/all"


def test_logits_stores(demo_run):
    for ds, n_listed in (("audioset", 200), ("tau", 100)):
        man = pd.read_csv(demo_run / f"results/manifests/{ds}.tsv", sep="\t", keep_default_na=False)
        assert len(man) == n_listed
        g = zarr.open_group(str(demo_run / f"results/logits/{ds}.zarr"), mode="r")
        decode_failed = len(pd.read_csv(demo_run / f"results/logits/{ds}.rejected.tsv", sep="\t")) - len(
            pd.read_csv(demo_run / f"results/manifests/{ds}.rejected.tsv", sep="\t")
        )
        n = (man["status"] == "ok").sum() - decode_failed
        assert g["member_logits"].shape == (n, 3, 527) and g["member_logits"].dtype == np.float16
        assert g["ensemble"].shape == (n, 527) and g["ensemble"].dtype == np.float32
        ml, en = g["member_logits"][:].astype(np.float32), g["ensemble"][:]
        assert np.isfinite(en).all()
        np.testing.assert_allclose(en, ml.mean(axis=1), atol=1e-3)
        assert np.array_equal(g["row"][:], np.sort(g["row"][:]))
        assert list(ids(g)) == list(man["id"].to_numpy()[g["row"][:]])
        # Only data types of the Zarr v3 specification: opening and reading every array warns of nothing.
        with warnings.catch_warnings():
            warnings.filterwarnings("error", message=".*Zarr V3 specification.*")
            reopened = zarr.open_group(str(demo_run / f"results/logits/{ds}.zarr"), mode="r")
            assert all(a[:1] is not None for _, a in reopened.arrays()) and "id" not in reopened
        assert len(g.attrs["checkpoints"]) == 3 and all(len(c["sha256"]) == 64 for c in g.attrs["checkpoints"].values())
        # Several shards were gathered (shard size 80).
        shards = sorted((demo_run / f"results/logits/{ds}/shards").iterdir())
        assert len(shards) == -(-n_listed // 80)
    labels = zarr.open_group(str(demo_run / "results/logits/audioset.zarr"), mode="r")["labels"][:]
    assert labels.shape[1] == 527 and labels.any(axis=1).all()


def test_domain_classifier_and_pruning(demo_run):
    for s in SPLITS:
        v = json.loads((demo_run / f"{DOM}/split{s}/validation.json").read_text())
        assert 0 <= v["auc"] <= 1 and v["n_val_neg"] == 12 and v["iterations"] == 300
        assert [r["threshold"] for r in v["at_threshold"]] == [0.1, 0.3, 0.5]
        # Trained on every clip of the split; validated on held-out eval against the target's test split.
        man = pd.read_csv(demo_run / "results/manifests/tau.tsv", sep="\t", dtype=str, keep_default_na=False)
        ok = man["status"] == "ok"
        assert v["n_train_pos"] == v["n_split_clips"] == ((man[f"split{s}"] == "True") & ok).sum() > 0
        assert v["n_val_pos"] == ((man["test"] == "True") & ok).sum() > 0
        assert all(0 <= r["recall"] <= 1 and not r["precision_plain"] > 1 for r in v["at_threshold"])  # NaN: none kept
        scores = np.load(demo_run / f"{DOM}/split{s}/scores.npy")
        train = ~np.isnan(scores)
        assert train.sum() == TRAIN and ((scores[train] >= 0) & (scores[train] <= 1)).all()
    shares = []
    for s, t in PAIRS:
        st = json.loads((demo_run / f"{PRUNE}/split{s}/thr{t:g}/stats.json").read_text())
        kept = pd.read_csv(demo_run / f"{PRUNE}/split{s}/thr{t:g}/kept.tsv", sep="\t")
        assert len(kept) == st["kept"] and st["train_clips"] == TRAIN
        assert (kept["score"] > t).all()
        scores = np.load(demo_run / f"{DOM}/split{s}/scores.npy")
        assert st["kept"] == int((scores[~np.isnan(scores)] > t).sum())
        if s == 100:
            shares.append(st["kept_share"])
    assert shares == sorted(shares, reverse=True)


def test_training_and_evaluation(demo_run):
    for s, t in PAIRS:
        curve = pd.read_csv(demo_run / f"results/distill/tau/all/split{s}/pruned/thr{t:g}/curve.tsv", sep="\t")
        assert list(curve["step"]) == [1, 2, 3, 4] and np.isfinite(curve["loss"]).all()
    keys = (
        [f"finetune/tau/all/split{s}/{sel}/thr{t:g}/seed0" for s, t in PAIRS for sel in ("pruned", "random")]
        + [f"finetune/tau/all/split{s}/full/seed0" for s in SPLITS]
        + [f"baseline/tau/split{s}/seed0" for s in SPLITS]
    )
    for k in keys:
        m = json.loads((demo_run / f"results/eval/{k}/metrics.json").read_text())
        assert 0 <= m["macro_accuracy"] <= 1 and m["n"] == 40
        assert set(m["per_device"]) <= {"a", "b", "c", "s1", "s2", "s3", "s4", "s5", "s6"}
        assert np.array(m["confusion"]).sum() == 40
        assert m["complexity"] == {
            "parameters": 61148,
            "parameter_bytes_fp16": 122296,
            "macs": 29419156,
            "within_limits": True,
        }
        pred = pd.read_csv(demo_run / f"results/eval/{k}/output.csv", sep="\t")
        assert len(pred) == 40 and list(pred.columns[:2]) == ["filename", "scene_label"]
        np.testing.assert_allclose(pred.iloc[:, 2:].sum(axis=1), 1.0, atol=1e-3)


def test_summary_tables_hold_every_cell(demo_run):
    t1 = pd.read_csv(demo_run / "results/summary/tau/table1.csv")
    t2 = pd.read_csv(demo_run / "results/summary/tau/table2.csv")
    assert list(t1["threshold"]) == THRS and list(t2["split"]) == SPLITS
    m = json.loads((demo_run / "results/eval/finetune/tau/all/split100/pruned/thr0.3/seed0/metrics.json").read_text())
    assert t1.loc[t1["threshold"] == 0.3, "macro_acc"].item() == pytest.approx(100 * m["macro_accuracy"], abs=0.01)
    b = json.loads((demo_run / "results/eval/baseline/tau/split5/seed0/metrics.json").read_text())
    assert t2.loc[t2["split"] == 5, "baseline_macro_acc"].item() == pytest.approx(100 * b["macro_accuracy"], abs=0.01)
    assert t2.loc[t2["split"] == 5, "baseline_logloss"].item() == pytest.approx(b["logloss"], abs=0.001)
    assert t1.loc[t1["threshold"] == 0.3, "paper_macro_acc"].item() == 60.0
    assert t2.loc[t2["split"] == 5, "paper_baseline"].item() == 42.4
    st = json.loads((demo_run / f"{PRUNE}/split100/thr0.2/stats.json").read_text())
    assert t1.loc[t1["threshold"] == 0.2, "kept_share_pct"].item() == pytest.approx(100 * st["kept_share"], abs=0.01)
    assert "<table" in (demo_run / "results/summary/tau/table2.html").read_text()
    # Beside the report's relative size: the classifier's kept share of the held-out eval clips.
    v = json.loads((demo_run / f"{DOM}/split100/validation.json").read_text())
    i = v["curve"]["threshold"].index(0.2)
    assert t1.loc[t1["threshold"] == 0.2, "kept_share_of_heldout_eval_pct"].item() == pytest.approx(
        100 * v["curve"]["kept_share_of_negatives"][i], abs=0.01
    )
    vt = pd.read_csv(demo_run / "results/summary/tau/validation.csv")
    assert sorted(set(vt["split"])) == SPLITS and list(vt[vt["split"] == 100]["threshold"]) == [0.1, 0.3, 0.5]
    row = vt[(vt["split"] == 100) & (vt["threshold"] == 0.3)].iloc[0]
    at = [r for r in v["at_threshold"] if r["threshold"] == 0.3][0]
    assert row["precision_class_weighted_pct"] == pytest.approx(100 * at["precision_class_weighted"], abs=0.05)
    assert row["authors_precision_class_weighted_pct"] == 87.8
    # Per city beside per device: the demo's test clips come from cities named in meta.csv.
    assert set(m["per_city"]) and all(0 <= a <= 1 for a in m["per_city"].values())
    runs = pd.read_csv(demo_run / "results/summary/tau/runs.tsv", sep="\t")
    assert {f"city_{c}" for c in m["per_city"]} <= set(runs.columns)
    for f in ("table1.md", "table1.png", "table2.png", "devices.png", "validation.md"):
        assert (demo_run / "results/summary/tau" / f).stat().st_size > 100


def test_every_rule_logs_and_benchmarks(demo_run):
    root = demo_run / "results/logs"
    logs = {p.relative_to(root).parts[0].removesuffix(".log") for p in root.rglob("*.log")}
    for r in [
        "manifest",
        "teacher_logits",
        "gather_logits",
        "domain_classifier",
        "score",
        "prune",
        "distill",
        "finetune",
        "baseline",
        "evaluate",
        "demo_teacher",
        "submission_package",
    ]:
        assert r in logs, r
    assert len(list((demo_run / "results/benchmarks").rglob("*.tsv"))) > 20


def test_rerun_plans_nothing_and_report_builds(demo_run):
    p = snakemake(demo_run, "-n", "--quiet", "rules")
    assert "Nothing to be done" in p.stdout + p.stderr
    snakemake(demo_run, "--report", "results/report.html")
    html = (demo_run / "results/report.html").read_text(errors="ignore")
    assert len(html) > 10000 and "Table 1" in html and "Pruned sets" in html
    # Every training run's curve as a plot in the report: 7 distillations, 8 fine-tunings, 2 baselines.
    curves = demo_run / "results/summary/tau/curves"
    assert {k: len(list((curves / k).glob("*.png"))) for k in ("distill", "finetune", "baseline")} == {
        "distill": 7,
        "finetune": 8,
        "baseline": 2,
    }
    assert "Training curves" in html and "tau_all_split100_pruned_thr0.2" in html


def test_every_pruned_set_has_its_class_enrichment(demo_run):
    names = pd.read_csv(demo_run / "data/demo/audioset/class_labels_indices.csv")["display_name"].tolist()
    labels = zarr.open_group(str(demo_run / "results/logits/audioset.zarr"), mode="r")["labels"][:]
    man = pd.read_csv(demo_run / "results/manifests/audioset.tsv", sep="\t", dtype=str, keep_default_na=False)
    g = zarr.open_group(str(demo_run / "results/logits/audioset.zarr"), mode="r")
    train = np.flatnonzero(np.isin(man["subset"].to_numpy()[g["row"][:]], ["balanced_train", "unbalanced_train"]))
    for s, t in PAIRS:
        d = demo_run / f"{PRUNE}/split{s}/thr{t:g}"
        table = pd.read_csv(d / "enrichment.tsv", sep="\t")
        e = json.loads((d / "enrichment.json").read_text())
        kept = pd.read_csv(d / "kept.tsv", sep="\t")["position"].to_numpy()
        assert len(table) == 527 and table["class"].tolist() == names
        # Shares by labels, checked against the store by hand.
        np.testing.assert_allclose(table["share_kept_labels"], labels[kept].mean(0), atol=1e-6)
        np.testing.assert_allclose(table["share_all_labels"], labels[train].mean(0), atol=1e-6)
        assert len(e["top_by_teachers"]["over"]) == 20 and e["top_by_teachers"]["over"][0]["class"] in names
        assert len(e["classifier_weights"]["towards_target"]) == 10
        assert 0 <= e["class_mix_distance"]["random_vs_pruned"] <= 1
    ct = pd.read_csv(demo_run / "results/summary/tau/controls.csv")
    e = json.loads((demo_run / f"{PRUNE}/split100/thr0.2/enrichment.json").read_text())
    row = ct[(ct["split"] == 100) & (ct["threshold"] == 0.2)].iloc[0]
    assert row["random_vs_pruned_class_mix_tvd"] == pytest.approx(e["class_mix_distance"]["random_vs_pruned"], abs=1e-4)
    top = pd.read_csv(demo_run / "results/summary/tau/enrichment.csv")
    assert set(top["threshold"]) == {0.2, 0.3} and set(top["view"]) == {"labels", "teachers"}
    w = pd.read_csv(demo_run / "results/summary/tau/classifier_weights.csv")
    assert sorted(set(w["split"])) == SPLITS and set(w["direction"]) == {"towards_target", "away_from_target"}
    assert (demo_run / "results/summary/tau/enrichment.png").stat().st_size > 1000


def test_dry_run_of_default_config_lists_every_rule(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    smk = Path(sys.executable).parent / "snakemake"
    p = subprocess.run(
        [
            str(smk),
            "-s",
            str(REPO / "Snakefile"),
            "--directory",
            str(tmp_path),
            "--configfile",
            str(REPO / "config.yaml"),
            "-n",
            "--quiet",
            "rules",
        ],
        capture_output=True,
        text=True,
        env=LOCAL_ENV,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    out = p.stdout + p.stderr
    for r in RULES + ["download_teachers"]:
        assert r in out, r
    # Full AudioSet (2,084,332 listed segments) in shards of 10,000, plus 24 TAU shards.
    assert any(line.split()[:2] == ["teacher_logits", str(209 + 24)] for line in out.splitlines())


def test_bad_config_fails_naming_the_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("grid:\n  thresholds: [0.3, 1.5]\n")
    p = snakemake(tmp_path, "-n", extra_config=[str(bad)], check=False)
    out = p.stdout + p.stderr
    assert p.returncode != 0 and "thresholds" in out and "1.5" in out
    bad.write_text("distillation:\n  iteratons: 5\n")
    p = snakemake(tmp_path, "-n", extra_config=[str(bad)], check=False)
    assert p.returncode != 0 and "iteratons" in p.stdout + p.stderr


def test_damaged_clips_are_skipped_listed_and_counted_in_the_report(demo_run):
    rej = pd.read_csv(demo_run / "results/summary/rejected.tsv", sep="\t", keep_default_na=False)
    assert sorted(rej["reason"]) == sorted(
        ["missing", "empty", "silent", "exists but unreadable", "non-finite samples"]
    )
    assert set(rej["dataset"]) == {"audioset"}
    # Listed by the manifest (missing) or by the teacher pass (the rest), and never in a store.
    ids_ = set(ids(zarr.open_group(str(demo_run / "results/logits/audioset.zarr"), mode="r")))
    assert not ids_ & set(rej["id"])
    counts = pd.read_csv(demo_run / "results/summary/rejected_counts.csv")
    assert counts.loc[counts["dataset"] == "audioset", "clips"].sum() == BAD
    assert counts.loc[counts["dataset"] == "tau", "reason"].tolist() == ["(none)"]
    html = (demo_run / "results/summary/rejected_counts.html").read_text()
    assert "non-finite samples" in html and "unreadable" in html


def _strict_json(text: str):
    def refuse(token):
        raise ValueError(f"{token} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_a_figure_that_does_not_exist_is_written_as_null():
    from prunekd.atomic import strict, write_json

    assert strict({"auc": float("nan"), "x": [np.float32("inf"), np.int64(3)], "m": np.array([0.5, np.nan])}) == {
        "auc": None,
        "x": [None, 3],
        "m": [0.5, None],
    }
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        write_json(Path(d) / "v.json", {"precision": np.float64("nan"), "n": np.int32(4)})
        assert _strict_json((Path(d) / "v.json").read_text()) == {"precision": None, "n": 4}


def test_every_json_file_the_run_writes_parses_strictly(demo_run):
    """jq, JavaScript and strict parsers refuse bare NaN or Infinity: every JSON file a run leaves, the Zarr
    stores' metadata included."""
    names = ("*.json", ".zattrs", ".zarray", ".zgroup", ".zmetadata")
    files = sorted({p for n in names for p in (demo_run / "results").rglob(n)})
    assert any(p.name == "validation.json" for p in files) and any(p.name == "metrics.json" for p in files)
    bad = []
    for p in files:
        try:
            _strict_json(p.read_text())
        except ValueError as e:
            bad.append(f"{p.relative_to(demo_run)}: {e}")
    assert not bad, bad
