"""The experiment grid (src/prunekd/dag/grid.py): which models a configuration trains and where their files go."""

import copy
from pathlib import Path

import pytest
import yaml

from prunekd.dag import grid

CONFIG = yaml.safe_load((Path(__file__).parents[1] / "config.yaml").read_text())


def make(**changes):
    """A Grid of config.yaml with `section.key` changes, the targets of grid.targets and the ensembles."""
    cfg = copy.deepcopy(CONFIG)
    for key, value in changes.items():
        if "__" in key:
            section, name = key.split("__")
            cfg[section][name] = value
        else:
            cfg[key] = value
    ensembles = {"all": None, **cfg["ensembles"]}
    return grid.Grid(cfg, {t: cfg["targets"][t] for t in cfg["grid"]["targets"]}, ensembles)


def test_the_paper_grid_is_the_reports_two_tables_and_the_random_controls():
    g = make()
    # Table 1: five thresholds on split 100; Table 2: threshold 0.3 on the other splits.
    assert g.pairs("tau") == [("100", t) for t in ("0.1", "0.2", "0.3", "0.4", "0.5")] + [
        (s, "0.3") for s in ("5", "10", "25", "50")
    ]
    by_selection = {}
    for k in g.models.values():
        by_selection[k["selection"]] = by_selection.get(k["selection"], 0) + 1
    assert by_selection == {"pruned": 9, "random": 9, "baseline": 25}  # one seed per cell, 5 baseline runs per split
    assert len(g.trainsets) == 18 and len(g.finetuned) == 18 and len(g.baselines) == 25
    assert g.pruned_splits("tau") == ["10", "100", "25", "5", "50"]


def test_paths_are_made_from_keys():
    g = make()
    k = g.models["finetune/tau/all/split5/pruned/thr0.3/seed0"]
    assert k == dict(target="tau", ensemble="all", split="5", selection="pruned", threshold="0.3", seed=0)
    assert g.student("finetune/tau/all/split5/pruned/thr0.3/seed0").endswith(
        "/distill/tau/all/split5/pruned/thr0.3/student.pt"
    )
    assert g.selection_list("tau/all/split5/random/thr0.3").endswith("/prune/tau/all/split5/thr0.3/random.tsv")
    assert grid.summary_key(k) == dict(target="tau", ensemble="all", split="5", method="pruned", threshold=0.3, seed=0)
    assert grid.model_name(g.models["baseline/tau/split5/seed4"]) == "baseline/tau/split5/seed4"


def test_seeded_distillation_gives_each_seed_its_own_student_and_the_shuffled_control_reads_the_pruned_set():
    g = make(grid__seeds=[0, 1], grid__seeded_distillation=True, controls__shuffled="targets")
    assert g.student("finetune/tau/all/split5/shuffled/thr0.3/seed1").endswith(
        "/distill/tau/all/split5/shuffled/thr0.3/seed1/student.pt"
    )
    assert g.selection_list("tau/all/split5/shuffled/thr0.3/seed1").endswith("/prune/tau/all/split5/thr0.3/kept.tsv")
    assert g.trainsets["tau/all/split5/pruned/thr0.3/seed0"]["seed"] == 0
    assert len(g.trainsets) == 2 * 3 * 9  # seeds x (pruned, random, shuffled) x pairs


def test_a_member_ablation_gets_pruned_sets_only_and_full_runs_one_per_ensemble_and_split():
    g = make(ensembles={"swa": ["passt_s_swa_p16_128_ap476"]}, controls__full=True)
    assert g.selections("swa") == ["pruned"] and g.selections("all") == ["pruned", "random"]
    full = [k for k in g.models.values() if k["selection"] == "full"]
    assert {(k["ensemble"], k["split"]) for k in full} == {("all", s) for s in ("5", "10", "25", "50", "100")}
    assert g.selection_list("full/all").endswith("/prune/full.tsv")
    assert len(g.prune_files("tau", "stats.json")) == 2 * 9


def test_full_mode_crosses_every_split_with_every_threshold():
    assert len(make(grid__mode="full").pairs("tau")) == 25


def test_a_per_seed_submission_needs_the_grid_threshold_on_that_split():
    g = make(grid__threshold=0.25)
    g.targets["tau"] = {**g.targets["tau"], "evaluation": {"root": "x", "models": "per_seed"}}
    with pytest.raises(ValueError, match="per_seed submits the pruned set at grid.threshold 0.25"):
        g.submission_candidates("tau", "100", "seed0")
    assert g.submission_candidates("tau", "100", "best")[0] == "finetune/tau/all/split100/pruned/thr0.1/seed0"


def test_known_answer_settings_are_refused_with_the_key_that_is_wrong():
    cfg = copy.deepcopy(CONFIG)
    targets = {"tau": cfg["targets"]["tau"]}
    cfg["known_answer"] = {**cfg["known_answer"], "enabled": True, "target": "tau", "split": 25}
    assert grid.known_answer_problem(cfg, targets)[0] == "known_answer.enabled"  # not the synthetic world
    cfg["demo"]["enabled"] = True
    assert grid.known_answer_problem(cfg, targets) is None
    cfg["known_answer"]["split"] = 7
    assert grid.known_answer_problem(cfg, targets) == ("known_answer.split", "'7' is not one of the target's splits")
    cfg["known_answer"]["target"] = "other"
    assert grid.known_answer_problem(cfg, targets)[0] == "known_answer.target"


def test_grid_selections_are_distilled_like_the_pruned_set_and_off_by_default():
    assert make().selection_specs == {}  # the paper grid: the report's method alone
    specs = [{"method": "centroid", "feature": "embeddings"}, {"method": "knn", "feature": "logits", "budget": 0.1},
             {"method": "domain_classifier", "feature": "embeddings", "budget": "threshold"}]  # fmt: skip
    g = make(grid__selections=specs, ensembles={"swa": ["passt_s_swa_p16_128_ap476"]})
    names = ["centroid-embeddings", "knn-logits-f0.1", "domain_classifier-embeddings-thr"]
    assert list(g.selection_specs) == names
    by_selection = {}
    for k in g.models.values():
        by_selection[k["selection"]] = by_selection.get(k["selection"], 0) + 1
    assert all(by_selection[n] == 9 for n in names)  # every pair of the report's ensemble, none of the ablation
    assert not any(k["selection"] in names for k in g.models.values() if k["ensemble"] == "swa")
    ts = g.trainset_name({"target": "tau", "ensemble": "all", "split": "25", "selection": names[0], "threshold": "0.3"})
    assert g.selection_list(ts) == "results/select/tau/all/split25/thr0.3/centroid-embeddings/kept.tsv"
    sets = g.selection_sets("tau")
    assert sets["pruned/split25/thr0.3"] == "results/prune/tau/all/split25/thr0.3/kept.tsv"
    assert sets["random/split25/thr0.3"] == "results/prune/tau/all/split25/thr0.3/random.tsv"
    assert len(sets) == 9 * 5
    assert grid.selection_budget(specs[0], "0.3") == {"equal": 0.3}
    assert grid.selection_budget(specs[1], "0.3") == {"fraction": 0.1}
    assert grid.selection_budget(specs[2], "0.5") == {"threshold": 0.5}


@pytest.mark.parametrize(
    "spec, teachers, says",
    [
        ({"method": "knn", "feature": "embeddings"}, {"embeddings": False}, "needs teachers.embeddings: true"),
        ({"method": "knn", "feature": "embeddings"}, {"released_logits": {"logits": "x.npy", "index": "x.pkl"}},
         "released_logits rows carry no embeddings"),
        ({"method": "centroid", "feature": "logits", "budget": "threshold"}, {}, "needs a probability score"),
    ],
)  # fmt: skip
def test_a_selection_the_stores_cannot_give_is_refused_naming_the_key(spec, teachers, says):
    cfg = copy.deepcopy(CONFIG)
    cfg["grid"]["selections"] = [spec]
    cfg["teachers"].update(teachers)
    key, problem = grid.selections_problem(cfg)
    assert key == "grid.selections" and says in problem and "\n" not in problem
    cfg["grid"]["selections"] = [spec, spec]
    assert "listed twice" in grid.selections_problem(cfg)[1]
    assert grid.selections_problem(CONFIG) is None


def test_the_graded_world_refuses_a_scene_share_its_three_kinds_cannot_hold():
    cfg = copy.deepcopy(CONFIG)
    cfg["demo"].update(enabled=True, world="graded", scene_share=0.4)
    key, problem = grid.graded_world_problem(cfg)
    assert key == "demo.scene_share" and "1/3" in problem
    cfg["demo"]["scene_share"] = 0.15
    assert grid.graded_world_problem(cfg) is None
    cfg["demo"].update(world="known_answer", scene_share=0.4)
    assert grid.graded_world_problem(cfg) is None


def test_a_summary_lists_a_sweeps_files_from_the_grid_spec_that_fits_a_command_line():
    import json

    thresholds = [round(0.04 * i, 2) for i in range(1, 21)]
    ablation = {"ablation": ["passt_s_swa_p16_128_ap476", "passt_s_swa_p16_128_ap4761"]}  # sorts before "all"
    g = make(
        grid__mode="full", grid__thresholds=thresholds, grid__seeds=[0, 1, 2, 3, 4], grid__seeded_distillation=True,
        ensembles=ablation,
    )  # fmt: skip
    again = grid.Grid.from_spec(json.loads(json.dumps(g.spec("tau"), sort_keys=True)))  # as settings() writes it
    for name in ("eval_metrics", "validation_reports", "training_curves", "selection_sets"):
        assert getattr(again, name)("tau") == getattr(g, name)("tau"), name
    for name in ("stats.json", "enrichment.json", "enrichment.tsv"):
        assert again.prune_files("tau", name) == g.prune_files("tau", name)
    files = [*g.eval_metrics("tau"), *g.training_curves("tau").values(), *g.prune_files("tau", "stats.json")]
    # Linux refuses one argument over 128 KiB (bash -c "<the whole command>"): the list would not fit, the spec does
    assert len(" ".join(files)) > 128 * 1024 > 4 * len(json.dumps(g.spec("tau")))


def test_a_summarys_grid_spec_holds_only_what_decides_its_files():
    base = make().spec("tau")
    other_target = {**CONFIG["targets"], "mine": {**CONFIG["targets"]["tau"], "root": "data/mine"}}
    unrelated = [
        make(targets={**CONFIG["targets"], "tau": {**CONFIG["targets"]["tau"], "root": "elsewhere"}}),
        make(controls={**CONFIG["controls"], "seed": 7}),
        make(targets=other_target, grid={**CONFIG["grid"], "targets": ["tau", "mine"]}),
    ]
    assert all(u.spec("tau") == base for u in unrelated)  # a moved data root or another target reruns no summary
    assert make(grid__thresholds=[0.1, 0.2]).spec("tau") != base
