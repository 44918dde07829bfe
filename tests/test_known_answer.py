"""The known-answer run's pieces (docs/known-answer.md): the world and its truth, the shuffled-targets control,
the pruned set against the truth (also on the session's demo run), and the known-answer profile's DAG."""

import json
import subprocess

import numpy as np
import pandas as pd
import pytest
import torch
import zarr
from conftest import BIN, LOCAL_ENV, REPO

from prunekd.demo.known_answer import TruthError, claims, condition_table, permutation_p, pruned_vs_truth
from prunekd.demo.worlds import N_EVENTS, SCENE_EVENTS, SCENE_PAIRS, TRUTH_FILE, make_demo_data
from prunekd.student.distill import shuffled_targets
from prunekd.teachers.logit_store import ids as ids_of
from prunekd.teachers.logit_store import write_ids

WORLD = {
    "seed": 3,
    "world": "known_answer",
    "audioset_clips": {"eval": 20, "balanced_train": 20, "unbalanced_train": 60},
    "audioset_sample_rate": 32000,
    "audioset_clip_seconds": 0.25,
    "scene_share": 0.3,
    "tau_train_clips": 20,
    "tau_test_clips": 10,
    "tau_clip_seconds": 0.5,
}


def test_the_world_writes_down_which_clips_carry_the_scenes_kinds(tmp_path):
    make_demo_data(tmp_path / "audioset", tmp_path / "tau", WORLD)
    truth = pd.read_csv(tmp_path / "audioset" / TRUTH_FILE, sep="\t", dtype={"id": str})
    listed = []
    for subset in ("eval", "balanced_train", "unbalanced_train"):
        seg = pd.read_csv(
            tmp_path / "audioset" / f"{subset}_segments.csv", comment="#", header=None, skipinitialspace=True
        )
        listed += [(i, subset, str(lab)) for i, lab in zip(seg[0], seg[3])]
    assert [(i, s) for i, s, _ in listed] == list(zip(truth["id"], truth["subset"]))
    scene_mids = {f"/m/demo{e:03d}" for e in SCENE_EVENTS}
    for (_, _, labels), like in zip(listed, truth["target_like"]):
        mids = set(labels.split(","))
        assert mids <= scene_mids if like else not mids & scene_mids  # the kinds decide the truth
    assert 0.1 < truth["target_like"].mean() < 0.5  # scene_share 0.3 of 100 clips
    # Every scene its own pair of the scene kinds: a scene is told by its events.
    assert len(set(SCENE_PAIRS)) == len(SCENE_PAIRS) and all(set(p) <= set(SCENE_EVENTS) for p in SCENE_PAIRS)
    assert max(SCENE_EVENTS) < N_EVENTS
    import soundfile as sf

    meta = pd.read_csv(tmp_path / "tau" / "meta.csv", sep="\t")
    assert sf.info(str(tmp_path / "tau" / meta["filename"][0])).frames == 22050  # tau_clip_seconds 0.5 at 44.1 kHz


def test_shuffled_targets_deal_the_logits_to_other_clips():
    teacher = torch.arange(200, dtype=torch.float32).reshape(50, 4)
    labels = torch.arange(50).unsqueeze(1) % 7 == 0
    t0, l0 = shuffled_targets(teacher, labels, "none", 0)
    assert t0 is teacher and l0 is labels
    t1, l1 = shuffled_targets(teacher, labels, "logits", 0)
    assert torch.equal(l1, labels)  # the labels stay with their clips
    assert sorted(t1[:, 0].tolist()) == teacher[:, 0].tolist()  # each clip's logits, whole, on another clip
    assert torch.equal(t1 % 4, teacher % 4) and (t1[:, 0] != teacher[:, 0]).float().mean() > 0.8
    t2, l2 = shuffled_targets(teacher, labels, "targets", 0)
    assert torch.equal(t2, t1)  # the same permutation, the labels moved with the logits
    assert torch.equal(l2, labels[(t2[:, 0] / 4).long()])
    assert not torch.equal(shuffled_targets(teacher, labels, "logits", 1)[0], t1)  # seeded
    with pytest.raises(ValueError, match="controls.shuffled"):
        shuffled_targets(teacher, labels, "all", 0)


def _store(tmp_path, ids, subsets):
    """A logits store's id/row arrays and the manifest they index (what training_rows reads)."""
    pd.DataFrame({"id": ids, "subset": subsets}).to_csv(tmp_path / "m.tsv", sep="\t", index=False)
    g = zarr.open_group(str(tmp_path / "s.zarr"), mode="w")
    write_ids(g, ids)
    g.create_array("row", data=np.arange(len(ids), dtype=np.int64))
    return tmp_path / "s.zarr", tmp_path / "m.tsv"


def test_pruned_set_against_the_truth_by_hand(tmp_path):
    ids = ["e0", "a", "b", "c", "d", "e"]
    store, man = _store(tmp_path, ids, ["eval"] + ["balanced_train"] * 2 + ["unbalanced_train"] * 3)
    np.save(tmp_path / "scores.npy", np.array([np.nan, 0.9, 0.6, 0.4, 0.2, 0.95], np.float32))
    truth = tmp_path / "truth.tsv"
    pd.DataFrame({"id": ids, "subset": "x", "target_like": [1, 1, 0, 1, 0, 0]}).to_csv(truth, sep="\t", index=False)
    pr = pruned_vs_truth(store, man, tmp_path / "scores.npy", truth, [0.1, 0.5, 0.92]).set_index("threshold")
    assert pr.attrs == {"clips": 5, "target_like": 2}  # eval is not a training clip
    assert pr.loc[0.1, "kept"] == 5 and pr.loc[0.1, "precision"] == 2 / 5 and pr.loc[0.1, "recall"] == 1.0
    assert pr.loc[0.5, "kept"] == 3 and pr.loc[0.5, "precision"] == 1 / 3 and pr.loc[0.5, "recall"] == 0.5
    assert pr.loc[0.92, "kept"] == 1 and pr.loc[0.92, "precision"] == 0.0
    pd.DataFrame({"id": ids[:-1], "target_like": 1}).to_csv(truth, sep="\t", index=False)
    with pytest.raises(TruthError, match="'e' of the store is not in the truth"):
        pruned_vs_truth(store, man, tmp_path / "scores.npy", truth, [0.5])


def test_claims_hold_by_a_one_sided_permutation_test_and_the_control_by_no_gain():
    # By hand: better [3] against worse [1, 2]; of the 3 dealings of the pooled values, 1 (the observed) reaches
    # the observed difference.
    assert permutation_p([3], [1, 2]) == pytest.approx(1 / 3)
    assert permutation_p([1, 2], [3]) == pytest.approx(1.0)

    def acc(values):
        rows = [(m, k, v) for m, vals in values.items() for k, v in enumerate(vals)]
        return pd.DataFrame(rows, columns=["method", "seed", "macro_acc"])

    five = {
        "baseline": [40, 42, 44, 41, 43],
        "shuffled": [39, 43, 41, 42, 40],
        "random": [50, 53, 51, 47, 52],
        "pruned": [52, 54, 49, 55, 53],
    }
    cl = claims(acc(five), 0.95).set_index("claim")
    assert cl["holds"].to_dict() == {
        "pruned > random": False,  # +2.0 with overlapping runs: p = 0.13, not shown at 95 %
        "random > baseline": True,  # every random run above every baseline run: p = 1/252
        "pruned > baseline": True,
        "shuffled - baseline: no gain": True,
    }
    assert cl.loc["random > baseline", "p"] == pytest.approx(1 / 252)
    assert cl.loc["pruned > random", "difference"] == pytest.approx(2.0)
    # A control well above the baseline has a gain: the control fails.
    assert not claims(acc({**five, "shuffled": [50, 51, 52, 53, 54]})).iloc[-1]["holds"]
    # Three runs each cannot show anything below p = 1/20: at 99 % confidence no claim holds, at 95 % it can.
    three = {m: v[:3] for m, v in five.items()}
    assert not claims(acc(three), 0.99).iloc[:3]["holds"].any()
    assert claims(acc(three), 0.95).set_index("claim").loc["random > baseline", "p"] == pytest.approx(1 / 20)


def test_the_demo_runs_pruned_sets_against_its_worlds_truth(demo_run):
    """(1) on the session's demo run: the precision and recall the known-answer report gives are those of the
    pruned sets the prune step wrote, against the truth the world wrote (no accuracy asserted: the tiny demo's
    teachers train 10 steps)."""
    r = demo_run / "results"
    truth = pd.read_csv(demo_run / "data/demo/audioset" / TRUTH_FILE, sep="\t", dtype={"id": str})
    like = truth.set_index("id")["target_like"].astype(bool)
    man = pd.read_csv(r / "manifests/audioset.tsv", sep="\t", dtype=str, keep_default_na=False)
    store_ids = set(ids_of(zarr.open_group(str(r / "logits/audioset.zarr"), mode="r")))
    kept_all = [i for i in man["id"][man["subset"] != "eval"] if i in store_ids]  # the scored training clips
    for split, thr in ((100, 0.2), (100, 0.3), (5, 0.3)):
        pr = pruned_vs_truth(
            r / "logits/audioset.zarr",
            r / "manifests/audioset.tsv",
            r / f"domain/tau/all/split{split}/scores.npy",
            demo_run / "data/demo/audioset" / TRUTH_FILE,
            [thr],
        ).iloc[0]
        kept = pd.read_csv(r / f"prune/tau/all/split{split}/thr{thr:g}/kept.tsv", sep="\t", dtype={"id": str})
        assert pr["kept"] == len(kept) and pr["target_like_kept"] == like.loc[kept["id"]].sum()
        assert pr["recall"] == pr["target_like_kept"] / like.loc[like.index.isin(kept_all)].sum()


def test_known_answer_profile_plans_three_seeds_of_every_distilled_condition_and_six_baselines(tmp_path):
    import re

    cmd = [str(BIN / "snakemake"), "-s", str(REPO / "Snakefile"), "--directory", str(tmp_path), "--configfiles"]
    cmd += [str(REPO / "config.yaml"), str(REPO / "profiles/known-answer/known-answer.yaml"), "--cores", "2"]
    p = subprocess.run([*cmd, "-n", "-p"], capture_output=True, text=True, env=LOCAL_ENV)
    assert p.returncode == 0, p.stderr[-3000:]
    counts = {}
    for line in p.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
    # pruned, random and shuffled, each distilled and fine-tuned per seed; the baseline, the cheapest, at six seeds.
    assert counts["distill"] == 9 and counts["finetune"] == 9 and counts["baseline"] == 6
    assert counts["known_answer"] == 1 and counts["evaluate"] == 15
    perf = (REPO / "docs/performance.md").read_text()  # the job count the docs quote is today's
    assert f"`make known-answer` ({counts['total']} jobs today" in perf
    settings = {}
    for line in p.stdout.splitlines():
        if "prunekd distill" in line:
            out = re.search(r"--out (\S+)", line).group(1)
            settings[out] = json.loads(re.search(r"--settings '(.*?)' 2>", line).group(1))["distillation"]
    seeds = {o: s["seed"] for o, s in settings.items()}
    assert sorted(seeds.values()) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert all(o.endswith(f"/seed{s}/student.pt") for o, s in seeds.items())
    assert {o.split("/")[-4] for o, s in settings.items() if s.get("shuffle") == "targets"} == {"shuffled"}
    assert sum("shuffle" in s for s in settings.values()) == 3


def test_the_logits_a_student_is_distilled_on_are_its_clips_own(demo_run):
    """Row and id alignment through the whole DAG: for clips of a pruned set, the teachers run again on the
    manifest's audio give the store's logits, and the packed clip a distillation reads is that audio."""
    from prunekd.data.audio import load_clip
    from prunekd.data.packed import PackedReader
    from prunekd.teachers.logit_store import embeddings, open_store
    from prunekd.teachers.passt import MEMBERS, Ensemble, load_member

    r = demo_run / "results"
    man = pd.read_csv(r / "manifests/audioset.tsv", sep="\t", dtype={"labels": str}, keep_default_na=False)
    store = open_store(r / "logits/audioset.zarr")
    kept = pd.read_csv(r / "prune/tau/all/split100/thr0.2/kept.tsv", sep="\t", dtype={"id": str})
    pick = kept.iloc[np.linspace(0, len(kept) - 1, 6).astype(int)]
    rows = store["row"][:][pick["position"]]
    assert list(man["id"].to_numpy()[rows]) == list(pick["id"]) == list(ids_of(store)[pick["position"]])
    wav = np.stack([load_clip(demo_run / p, 32000, 32000) for p in man["path"].to_numpy()[rows]])
    members = list(store.attrs["members"])
    arch = {"n_mels": 128, "embed_dim": 64, "depth": 2, "num_heads": 4}  # profiles/tour/tour.yaml
    ens = Ensemble([load_member(r / f"demo/weights/{MEMBERS[m][2]}", MEMBERS[m][0], arch) for m in members]).eval()
    with torch.no_grad():
        again = ens(torch.from_numpy(wav)).mean(1).numpy()
    np.testing.assert_allclose(embeddings(store, pick["position"].to_numpy()), again, atol=2e-2)
    packed = sorted((r / "packed/audioset").glob("*.zarr"))
    out = np.zeros((len(rows), 32000), np.int16)
    with PackedReader(packed, rows, 32000) as reader:
        for i in range(len(rows)):
            reader.read_into(i, out[i])
    np.testing.assert_allclose(out / 32768.0, wav, atol=1.5 / 32768)


def test_fine_tuning_starts_from_the_distilled_weights_with_a_new_head(demo_run, tmp_path, monkeypatch):
    """The distilled student is what fine-tuning trains (not a fresh model), its 527-class layer replaced."""
    import yaml

    import prunekd.student.finetune as ft
    from prunekd.student.cpmobile import build_student

    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    r = demo_run / "results"
    student = r / "distill/tau/all/split5/pruned/thr0.3/student.pt"
    seen = {}
    monkeypatch.setattr(ft, "train", lambda model, *a, **k: seen.setdefault("model", model))
    train_cfg = {**cfg["training"], "epochs": 1, "batch_size": 16, "clip_seconds": 1}
    ft.finetune(
        r / "manifests/tau.tsv", "split5", train_cfg, cfg["student"], cfg["frontend"], 0,
        tmp_path / "m.pt", tmp_path / "c.tsv", tmp_path / "ck", init_model=student, log=lambda s: None,
        decoded=r / "decoded/tau",
    )  # fmt: skip
    distilled = torch.load(student, weights_only=True)["state_dict"]
    got = seen["model"].state_dict()
    body = [k for k in distilled if not k.startswith("head.")]
    assert body and all(torch.equal(got[k].cpu(), distilled[k]) for k in body)
    assert got["head.0.weight"].shape[0] == 10 and distilled["head.0.weight"].shape[0] == 527
    fresh = build_student(cfg["student"], 10).state_dict()
    assert not all(torch.equal(fresh[k], got[k].cpu()) for k in body if "weight" in k)


def test_zero_shot_scores_a_scene_by_its_two_events_in_the_manifests_label_order():
    from prunekd.demo.worlds import SCENES
    from prunekd.demo.zero_shot import _pairs, scene_accuracy

    # The manifest's labels in another order than the world's scenes: each label keeps its scene's pair.
    order = SCENES[::-1]
    manifest = pd.DataFrame({"label": range(10), "class_label": order})
    pairs = _pairs(manifest)
    assert pairs == [SCENE_PAIRS[SCENES.index(s)] for s in order]
    labels = np.repeat(np.arange(10), 3)
    probs = np.full((30, 527), 0.05)
    for i, c in enumerate(labels):
        probs[i, list(pairs[c])] = 0.9
    assert scene_accuracy(probs, labels, pairs) == 1.0
    # One event heard, the other not: the scenes sharing it tie, so not every clip is right.
    half = probs.copy()
    for i, c in enumerate(labels):
        half[i, pairs[c][1]] = 0.05
    assert scene_accuracy(half, labels, pairs) < 1.0
    with pytest.raises(ValueError, match="'office' is not a scene of the known-answer world"):
        _pairs(pd.DataFrame({"label": [0], "class_label": ["office"]}))


def test_the_report_holds_each_conditions_students_zero_shot_beside_its_accuracy():
    acc = pd.DataFrame(
        [(m, k, a) for m, vals in {"baseline": [50, 52], "pruned": [80, 82]}.items() for k, a in enumerate(vals)],
        columns=["method", "seed", "macro_acc"],
    )
    zs = {"teachers": 0.9, "students": {"pruned/seed0": 0.96, "pruned/seed1": 0.94, "random/seed0": 0.3}}
    cond = condition_table(acc, zs).set_index("method")
    assert cond.loc["pruned", "zero_shot"] == pytest.approx(95.0)
    assert cond.loc["random", "zero_shot"] == pytest.approx(30.0) and np.isnan(cond.loc["baseline", "zero_shot"])


def test_the_known_answer_students_are_the_split_and_thresholds_distillations():
    import copy

    import yaml

    from prunekd.dag.grid import Grid

    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    profile = yaml.safe_load((REPO / "profiles/known-answer/known-answer.yaml").read_text())
    for section, values in profile.items():
        cfg[section] = {**cfg.get(section, {}), **values} if isinstance(values, dict) else values
    g = Grid(copy.deepcopy(cfg), {"tau": {**cfg["targets"]["tau"]}}, {"all": None})
    students = g.known_answer_students("tau", "25")
    assert sorted(students) == [f"{s}/seed{k}" for s in ("pruned", "random", "shuffled") for k in (0, 1, 2)]
    assert students["random/seed2"].endswith("/distill/tau/all/split25/random/thr0.5/seed2/student.pt")


def test_the_report_and_the_table_open_on_the_verdict(tmp_path):
    """table.md (what `make demo` prints) and the report's first page (workflow/report/workflow.rst, which reads
    verdict.rst beside the known-answer table) start with the verdict, the figures after it."""
    from docutils.core import publish_parts
    from jinja2 import Environment

    from prunekd.demo.known_answer import _markdown, _rst

    acc = pd.DataFrame(
        [
            (m, k, v)
            for m, vals in {"baseline": [50, 52, 51], "pruned": [60, 61, 62]}.items()
            for k, v in enumerate(vals)
        ],
        columns=["method", "seed", "macro_acc"],
    )
    pr = pd.DataFrame([{"threshold": 0.5, "kept": 3, "target_like_kept": 2, "precision": 2 / 3, "recall": 1.0}])
    pr.attrs = {"clips": 9, "target_like": 2}
    info = {"world_seed": 7, "target": "tau", "split": "25", "threshold": 0.5}
    cond, cl = condition_table(acc), claims(acc)
    md = _markdown(pr, cond, cl, info)
    # pruned > baseline at p = 1/20 (every run above every run); the rest has no runs.
    assert md.index("Verdict: 1 of 4 claims hold (not: pruned > random;") < md.index("Macro accuracy")
    assert md.index("Macro accuracy") < md.index("Pruned sets against")
    (tmp_path / "known_answer").mkdir()
    (tmp_path / "known_answer/verdict.rst").write_text(_rst(pr, cond, cl, info))

    class Record:  # what Snakemake's report hands the template for each report file
        def __init__(self, path):
            self.path, self.target = path, path.name

    class Snakemake:
        config = {"grid": {}}

    files = [Record(tmp_path / "summary/table1.html"), Record(tmp_path / "known_answer/table.html")]
    page = Environment(trim_blocks=True, lstrip_blocks=True).from_string(  # as Snakemake renders it
        (REPO / "workflow/report/workflow.rst").read_text()
    )
    html = publish_parts(page.render(snakemake=Snakemake, files=files), writer="html")["html_body"]
    assert html.index("Verdict") < html.index("<table") < html.index("target-specific dataset pruning")
    assert "pruned &gt; baseline" in html and html.count("<table") == 3 and "System Message" not in html
    # Without the known-answer table (the tour, a real run) the page is the project's description alone.
    html = publish_parts(page.render(snakemake=Snakemake, files=files[:1]), writer="html")["html_body"]
    assert "Verdict" not in html and "target-specific dataset pruning" in html


def test_the_seed_record_counts_at_how_many_world_seeds_each_claim_held():
    from prunekd.demo.seeds import record

    def verdict(seed, held):
        names = ["pruned > random", "random > baseline", "pruned > baseline", "shuffled - baseline: no gain"]
        cl = [{"claim": n, "difference": 5.0, "p": 0.01 if h else 0.3, "holds": h} for n, h in zip(names, held)]
        cond = [{"method": m, "mean": 50.0, "std": 1.0} for m in ("baseline", "shuffled", "random", "pruned")]
        return {"world_seed": seed, "claims": cl, "conditions": cond, "confidence": 0.95, "run": {"wall_s": 61}}

    md = record([verdict(3, [True, True, True, True]), verdict(4, [False, True, True, True])])
    rows = {line.split(" | ")[0].strip("| "): line for line in md.splitlines() if line.startswith("| ")}
    assert "**1 of 2**" in rows["pruned > random"] and "p 0.300 (no)" in rows["pruned > random"]
    assert "**2 of 2**" in rows["random > baseline"] and "| seed 3 | seed 4 |" in md
    assert "1 min 1 s" in rows["4"]
