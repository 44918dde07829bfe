"""Selection methods side by side: the report's classifier unchanged, each method finds what it should, budgets
and the proxy."""

import json

import numpy as np
import pandas as pd
import pytest
import zarr

from prunekd.selection import budget as budgets
from prunekd.selection.compare import proxy_figure, run, select_training_clips
from prunekd.selection.methods import METHODS
from prunekd.teachers.logit_store import create_ensemble_array, write_ids

DC = {"seed": 0, "lr": 1e-2, "batch_size": 64, "epochs": 100, "holdout_fraction": 0.2}
CFG = {"domain_classifier": DC, "knn": {"k": 5, "summary": 4096}, "seed": 0}
MEMBERS = ["a", "b"]


def _world(rng, n_target=120, n_eval=200, n_like=150, n_other=600, d=527, e=48):
    """Target clips and AudioSet clips, some like the target (shifted in a few logits and embedding dims)."""

    def clips(n, like):
        logit = rng.normal(-3, 1, (n, d)).astype(np.float32)
        emb = rng.normal(0, 1, (n, e)).astype(np.float32)
        if like:
            logit[:, :8] += 4
            emb[:, :4] += 3
        return logit, emb

    return {
        "target": clips(n_target, True),
        "eval": clips(n_eval, False),
        "train": [clips(n_like, True), clips(n_other, False)],
    }


def _store(path, logits, embs):
    n = len(logits)
    g = zarr.open_group(str(path), mode="w")
    g.create_array("row", data=np.arange(n, dtype=np.int64))
    write_ids(g, [f"c{i}" for i in range(n)])
    member = np.stack([logits - 0.5, logits + 0.5], axis=1).astype(np.float16)
    g.create_array("member_logits", data=member)
    create_ensemble_array(g, n)[:] = member.astype(np.float32).mean(1)
    g.create_array("member_embeddings", data=np.stack([embs, embs], axis=1).astype(np.float16))
    g.attrs["members"] = MEMBERS


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    d = tmp_path_factory.mktemp("stores")
    w = _world(np.random.default_rng(0))
    (tl, te), (el, ee) = w["target"], w["eval"]
    (ll, le), (ol, oe) = w["train"]
    # AudioSet: eval first, then the training clips like the target and the others interleaved
    order = np.random.default_rng(1).permutation(len(ll) + len(ol))
    train_l, train_e = np.concatenate([ll, ol])[order], np.concatenate([le, oe])[order]
    truth = (order < len(ll)).astype(bool)
    _store(d / "audioset.zarr", np.concatenate([el, train_l]), np.concatenate([ee, train_e]))
    subset = ["eval"] * len(el) + ["unbalanced_train"] * len(train_l)
    pd.DataFrame({"row": range(len(subset)), "id": [f"c{i}" for i in range(len(subset))], "subset": subset}).to_csv(
        d / "audioset.tsv", sep="\t", index=False
    )
    _store(d / "tau.zarr", tl, te)
    n = len(tl)
    pd.DataFrame({"row": range(n), "id": [f"c{i}" for i in range(n)], "split25": [i < 90 for i in range(n)],
                  "test": [i >= 90 for i in range(n)]}).to_csv(d / "tau.tsv", sep="\t", index=False)  # fmt: skip
    return d, truth


def _paths(d):
    return [d / "audioset.zarr", d / "audioset.tsv", d / "tau.zarr", d / "tau.tsv"]


def test_the_reports_classifier_as_a_method_keeps_todays_set_bit_for_bit(stores, tmp_path):
    from prunekd.selection.domain import prune_training_clips, score_training_clips, train_and_validate

    d, _ = stores
    a, am, t, tm = _paths(d)
    quiet = lambda *_: None  # noqa: E731
    train_and_validate(a, am, t, tm, "25", {**DC, "report_thresholds": [0.3]}, tmp_path / "c.pt", tmp_path / "v.json",
                       quiet)  # fmt: skip
    score_training_clips(a, am, tmp_path / "c.pt", None, tmp_path / "s.npy", quiet)
    prune_training_clips(a, am, tmp_path / "s.npy", 0.3, {}, tmp_path / "kept.tsv", tmp_path / "st.json", quiet)
    select_training_clips(a, am, t, tm, "25", "domain_classifier", "logits", {"threshold": 0.3}, CFG, "x",
                          tmp_path / "new.tsv", tmp_path / "new.json", log=quiet)  # fmt: skip
    today, new = pd.read_csv(tmp_path / "kept.tsv", sep="\t"), pd.read_csv(tmp_path / "new.tsv", sep="\t")
    assert 0 < len(today) < 750
    assert np.array_equal(today["position"], new["position"]) and list(today["id"]) == list(new["id"])
    scores = np.load(tmp_path / "s.npy")
    assert np.array_equal(scores[today["position"]].astype(np.float32), new["score"].to_numpy(np.float32))
    # an equal budget of the same set gives the same clips
    select_training_clips(a, am, t, tm, "25", "domain_classifier", "logits", {"equal": 0.3}, CFG, "x",
                          tmp_path / "eq.tsv", tmp_path / "eq.json", like=tmp_path / "kept.tsv", log=quiet)  # fmt: skip
    assert np.array_equal(pd.read_csv(tmp_path / "eq.tsv", sep="\t")["position"], today["position"])


@pytest.mark.parametrize("feature", ["logits", "embeddings"])
def test_every_method_but_random_finds_the_target_like_clips_at_equal_budget(stores, tmp_path, feature):
    d, truth = stores
    a, am, t, tm = _paths(d)
    k = int(truth.sum())
    for method in METHODS:
        select_training_clips(a, am, t, tm, "25", method, feature, {"fraction": k / len(truth)}, CFG, "x",
                              tmp_path / "k.tsv", tmp_path / "k.json", log=lambda *_: None)  # fmt: skip
        kept = pd.read_csv(tmp_path / "k.tsv", sep="\t")["position"].to_numpy() - 200  # after the 200 eval rows
        stats = json.loads((tmp_path / "k.json").read_text())
        assert len(kept) == stats["kept"] == k, method
        precision = truth[kept].mean()
        if method == "random":
            assert 0.1 < precision < 0.35, precision  # the base rate, 150 of 750
            assert abs(stats["kl_reduction"]) < 0.3
        else:
            assert precision > 0.9, (method, feature, precision)
            assert stats["kl_reduction"] > 0.3, (method, feature, stats)


def test_random_is_todays_control_draw():
    from prunekd.selection.controls import subset_rng

    m = METHODS["random"]
    f = m.fit(None, None, "logits", {}, print)
    got = budgets.choose(m, f, f.score(np.zeros((500, 3))), {"fraction": 0.1}, 7, "tau/all/split25/thr0.3")
    want = np.sort(subset_rng(7, "tau/all/split25/thr0.3").choice(500, size=50, replace=False))
    assert np.array_equal(got, want)


def test_importance_resampling_draws_in_proportion_to_the_weights_without_replacement():
    m = METHODS["importance"]
    rng = np.random.default_rng(0)
    pos, neg = rng.normal(1, 1, (400, 6)), rng.normal(0, 1, (400, 6))
    pool = np.concatenate([rng.normal(1, 1, (1000, 6)), rng.normal(0, 1, (1000, 6))]).astype(np.float32)
    f = m.fit(pos, neg, "embeddings", {"dims": 6}, print)
    s = f.score(pool)
    a, b = f.select(s, 300, 0, "x"), f.select(s, 300, 0, "x")
    c = f.select(s, 300, 1, "x")
    assert np.array_equal(a, b) and not np.array_equal(a, c) and len(np.unique(a)) == 300
    # a draw, not a top-k: mostly target-like, but not only the highest scores
    assert 0.6 < (a < 1000).mean() < 1.0
    assert not np.array_equal(a, np.sort(np.argsort(-s)[:300]))


def test_knn_is_exact_on_small_targets_and_a_kmeans_summary_on_large_ones():
    m = METHODS["knn"]
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 3, (8, 16))  # a target of a few kinds of clip: what a summary can keep
    pos = (centres[rng.integers(0, 8, 300)] + rng.normal(0, 1, (300, 16))).astype(np.float32)
    pool = (rng.normal(0, 3, (50, 16)) + rng.normal(0, 1, (50, 16))).astype(np.float32)
    u = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    brute = np.sort(u(pool) @ u(pos).T, axis=1)[:, -5:].mean(1)
    np.testing.assert_allclose(m.fit(pos, None, "embeddings", {"k": 5}, print).score(pool), brute, rtol=1e-5)
    lines = []
    summary = m.fit(pos, None, "embeddings", {"k": 5, "summary": 32}, lines.append).score(pool)
    assert "summarised by 32 k-means centres" in lines[0]
    assert np.corrcoef(summary, brute)[0, 1] > 0.8


def test_budgets_refuse_what_does_not_apply_in_one_line():
    m = METHODS["centroid"]
    f = m.fit(np.ones((3, 4)), None, "embeddings", {}, print)
    with pytest.raises(budgets.BudgetError, match="method centroid gives no probability"):
        budgets.choose(m, f, np.zeros(10), {"threshold": 0.3}, 0, "x")
    with pytest.raises(budgets.BudgetError, match="one of"):
        budgets.parse({"top": 3})
    with pytest.raises(budgets.BudgetError, match="equal budget needs"):
        budgets.choose(m, f, np.zeros(10), {"equal": 0.3}, 0, "x")
    assert budgets.equal_count(np.array([0.1, 0.31, 0.3, 0.9]), 0.3) == 2


def test_the_proxy_ranks_a_target_like_selection_above_random_above_an_unlike_one():
    rng = np.random.default_rng(0)
    target = rng.normal(-1, 1, (300, 20))
    pool = np.concatenate([rng.normal(-1, 1, (500, 20)), rng.normal(-4, 1, (1500, 20))])
    like, unlike = np.arange(500), np.arange(500, 1000)
    good, bad = proxy_figure(target, pool, like)["kl_reduction"], proxy_figure(target, pool, unlike)["kl_reduction"]
    chance = proxy_figure(target, pool, np.sort(rng.choice(2000, 500, replace=False)))["kl_reduction"]
    assert good > 0.3 and bad < -0.1 and abs(chance) < 0.2


def test_a_method_or_feature_not_known_is_named():
    with pytest.raises(budgets.BudgetError, match="selection method 'nope'"):
        run("nope", "logits", None, None, None, {"fraction": 0.5}, CFG, 0, "x")


def test_the_comparison_table_has_a_row_per_selection_with_overlap_accuracy_gain_and_truth(tmp_path):
    from prunekd.results.selections import summarise_selections

    def kept(name, positions):
        p = tmp_path / f"{name}.tsv"
        pd.DataFrame({"position": positions, "row": positions, "id": [f"c{i}" for i in positions]}).to_csv(
            p, sep="\t", index=False
        )
        return str(p)

    sets = {
        "pruned/split25/thr0.3": kept("pruned", [1, 2, 3, 4]),
        "random/split25/thr0.3": kept("random", [4, 7, 8, 9]),
        "centroid-embeddings/split25/thr0.3": kept("centroid", [1, 2, 3, 5]),
    }
    metrics = []
    for sel, accs in {"pruned": [0.5, 0.6], "random": [0.4, 0.4], "centroid-embeddings": [0.7, 0.8]}.items():
        for seed, acc in enumerate(accs):
            f = tmp_path / f"m_{sel}_{seed}.json"
            key = {"target": "tau", "ensemble": "all", "split": "25", "method": sel, "threshold": 0.3, "seed": seed}
            f.write_text(json.dumps({"key": key, "macro_accuracy": acc}))
            metrics.append(f)

    class Proxy:  # a stand-in: the proxy's own arithmetic is tested above
        def figure(self, positions, name):
            return {"kl_reduction": float(len(set(positions) & {1, 2, 3, 5}))}

    truth = {f"c{i}": 1.0 for i in (1, 2, 3, 5)}
    df = summarise_selections(sets, metrics, "tau", tmp_path, {"25": Proxy()}, truth, log=lambda *_: None)
    rows = df.set_index("selection")
    assert list(df["selection"]) == ["centroid-embeddings", "pruned", "random"]  # by accuracy
    assert rows.loc["centroid-embeddings", ["method", "feature", "budget"]].tolist() == [
        "centroid",
        "embeddings",
        "equal",
    ]
    assert rows.loc["centroid-embeddings", "jaccard_vs_pruned"] == pytest.approx(3 / 5)
    assert rows.loc["pruned", "jaccard_vs_pruned"] == 1.0
    assert rows.loc["centroid-embeddings", "acc_mean"] == 75.0 and rows.loc["centroid-embeddings", "seeds"] == 2
    assert rows.loc["centroid-embeddings", "gain_over_random"] == 35.0
    assert rows.loc["pruned", "precision"] == 0.75 and rows.loc["centroid-embeddings", "recall"] == 1.0
    assert rows.loc["centroid-embeddings", "kl_reduction"] == 4.0
    # Two seeds against two: centroid's runs both above pruned's, the best of the C(4, 2) = 6 dealings: p = 1/6.
    assert rows.loc["centroid-embeddings", "p_vs_pruned"] == round(1 / 6, 3)
    assert rows.loc["random", "p_vs_pruned"] == 1.0 and np.isnan(rows.loc["random", "p_vs_random"])
    assert np.isnan(rows.loc["pruned", "p_vs_pruned"]) and rows.loc["pruned", "p_vs_random"] == round(1 / 6, 3)
    for ext in ("csv", "md", "html", "png"):
        assert (tmp_path / f"selections.{ext}").stat().st_size > 0


def test_a_comparison_runs_on_the_demo_from_the_stores_embeddings_to_the_table(demo_run, tmp_path):
    # The demo's results (teacher stores with their embeddings, pruned sets, evaluations) plus two other methods:
    # only their selections, distillations, fine-tunings and evaluations run, and the table compares them.
    import shutil

    from conftest import snakemake

    wd = tmp_path / "wd"
    shutil.copytree(demo_run, wd, symlinks=True)
    extra = tmp_path / "selections.yaml"
    extra.write_text(
        "grid:\n  selections:\n"
        "    - {method: centroid, feature: embeddings}\n    - {method: importance, feature: logits}\n"
    )
    snakemake(wd, "results/summary/tau/selections.csv", extra_config=[str(extra)])
    df = pd.read_csv(wd / "results/summary/tau/selections.csv", dtype={"split": str, "threshold": str})
    assert set(df["selection"]) == {"pruned", "random", "centroid-embeddings", "importance-logits"}
    for (split, thr), here in df.groupby(["split", "threshold"]):
        kept = here.set_index("selection")["kept"]
        assert (kept == kept["pruned"]).all(), (split, thr, kept)  # equal budget: only which clips differs
        assert here["acc_mean"].notna().all() and here["kl_reduction"].notna().all()
        assert here["precision"].between(0, 1).all() and here["recall"].between(0, 1).all()  # the world's truth
    assert (df[df["selection"] == "pruned"]["jaccard_vs_pruned"] == 1).all()
    stats = json.loads((wd / "results/select/tau/all/split5/thr0.3/centroid-embeddings/stats.json").read_text())
    assert stats["feature"] == "embeddings" and stats["budget"] == {"equal": 0.3}
    assert (wd / "results/summary/tau/selections.png").stat().st_size > 0
    assert (wd / "results/logs/select/tau/all/split5_thr0.3/centroid-embeddings.log").is_file()


def test_the_graded_world_holds_look_alikes_and_partly_useful_clips_and_writes_each_clips_worth(tmp_path):
    # The graded world (docs/selections.md): its kinds are what the labels and the recording say, in the shares
    # asked for, and the known-answer report's truth counts only the clean target-like clips.
    import soundfile as sf

    from prunekd.demo.known_answer import read_truth
    from prunekd.demo.worlds import GRADED_TRUTH, SCENE_EVENTS, TRUTH_FILE, make_demo_data

    world = {
        "seed": 5, "world": "graded", "audioset_sample_rate": 32000, "audioset_clip_seconds": 0.25,
        "audioset_clips": {"eval": 40, "balanced_train": 40, "unbalanced_train": 120}, "scene_share": 0.2,
        "tau_train_clips": 20, "tau_test_clips": 10, "tau_clip_seconds": 0.5,
    }  # fmt: skip
    make_demo_data(tmp_path / "audioset", tmp_path / "tau", world)
    truth = pd.read_csv(tmp_path / "audioset" / TRUTH_FILE, sep="\t", dtype={"id": str})
    assert set(truth["kind"]) == set(GRADED_TRUTH)
    assert (truth["target_like"] == truth["kind"].map(GRADED_TRUTH)).all()
    shares = truth["kind"].value_counts(normalize=True)
    for kind in ("target_like", "look_alike", "partial"):
        assert 0.1 < shares[kind] < 0.3, (kind, shares[kind])  # scene_share 0.2 each of 200 clips
    scene = {f"/m/demo{e:03d}" for e in SCENE_EVENTS}
    labels = {}
    for subset in ("eval", "balanced_train", "unbalanced_train"):
        seg = pd.read_csv(tmp_path / "audioset" / f"{subset}_segments.csv", comment="#", header=None,
                          skipinitialspace=True)  # fmt: skip
        labels.update({i: set(str(lab).split(",")) for i, lab in zip(seg[0], seg[3])})
    for i, kind in zip(truth["id"], truth["kind"]):
        n_scene = len(labels[i] & scene)
        if kind == "target_like":
            assert labels[i] <= scene
        elif kind == "partial":
            assert n_scene == 1 and len(labels[i]) > 1  # one of the scenes' events among unrelated ones
        else:
            assert n_scene == 0  # look-alikes and unrelated clips carry none of the target's events
    like = read_truth(tmp_path / "audioset" / TRUTH_FILE)
    assert like.sum() == (truth["kind"] == "target_like").sum()
    meta = pd.read_csv(tmp_path / "tau" / "meta.csv", sep="\t")
    assert sf.info(str(tmp_path / "tau" / meta["filename"][0])).frames == 22050  # the known-answer world's target


def test_the_selection_table_gives_each_kind_of_clips_share_of_what_a_selection_kept(tmp_path):
    from prunekd.results.selections import table

    ids = [f"c{i}" for i in range(6)]
    kinds = dict(zip(ids, ["target_like", "target_like", "look_alike", "partial", "unrelated", "unrelated"]))
    truth = {i: {"target_like": 1.0, "partial": 0.5}.get(k, 0.0) for i, k in kinds.items()}
    sets = {}
    for name, kept in {"pruned": [0, 1, 3], "centroid-embeddings": [0, 2, 2 + 3]}.items():
        path = tmp_path / f"{name}.tsv"
        pd.DataFrame({"position": kept, "id": [ids[k] for k in kept]}).to_csv(path, sep="\t", index=False)
        sets[f"{name}/split25/thr0.5"] = str(path)
    df = table(sets, [], "tau", truth=truth, kinds=kinds).set_index("selection")
    assert df.loc["pruned", "share_target_like"] == round(2 / 3, 4) and df.loc["pruned", "share_partial"] == round(
        1 / 3, 4
    )
    assert df.loc["centroid-embeddings", "share_look_alike"] == round(1 / 3, 4)
    assert df.loc["pruned", "recall"] == 1.0 and df.loc["pruned", "graded_precision"] == round(2.5 / 3, 4)
