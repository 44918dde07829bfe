"""What the workflow plans before any job (src/prunekd/dag/plan.py): the raw inputs and the shard counts."""

import copy
from pathlib import Path

import yaml

from prunekd.dag import layouts, plan

CONFIG = yaml.safe_load((Path(__file__).parents[1] / "config.yaml").read_text())

SEGMENTS_HEADER = (
    "# Segments csv created Sun Mar  5 10:54:31 2017\n"
    "# num_ytids=3, num_segs=3, num_unique_labels=3, num_positive_labels=3\n"
    "# YTID, start_seconds, end_seconds, positive_labels\n"
)


def make(tmp_path, demo=False, **targets):
    cfg = copy.deepcopy(CONFIG)
    cfg["paths"]["audioset"] = str(tmp_path / "audioset")
    cfg["demo"]["enabled"] = demo
    cfg["targets"]["tau"] = {**cfg["targets"]["tau"], "root": str(tmp_path / "tau"), **targets}
    return plan.Plan(cfg, {"tau": cfg["targets"]["tau"]}, "segments"), cfg


def test_before_the_data_is_there_the_shards_are_planned_from_the_real_datas_list_lengths(tmp_path):
    p, cfg = make(tmp_path)
    rows = sum(layouts.NOMINAL_ROWS[s] for s in cfg["data"]["audioset_subsets"])
    assert p.listed_rows("audioset") == rows
    assert len(p.shards("audioset")) == -(-rows // cfg["teachers"]["shard_size"])
    assert p.listed_rows("tau") == layouts.NOMINAL_ROWS["tau2022"]


def test_lists_on_disk_are_counted_in_the_released_layouts(tmp_path):
    p, cfg = make(tmp_path)
    (tmp_path / "audioset").mkdir()
    body = '--4gqARaEJE, 0.000, 10.000, "/m/068hy,/m/07q6cd_"\n'
    (tmp_path / "audioset" / "eval_segments.csv").write_text(SEGMENTS_HEADER + body * 3)
    (tmp_path / "tau").mkdir()
    (tmp_path / "tau" / "meta.csv").write_text("filename\tscene_label\tidentifier\tsource_label\n" + "a\tb\tc\td\n" * 7)
    nominal = sum(layouts.NOMINAL_ROWS[s] for s in cfg["data"]["audioset_subsets"] if s != "eval")
    assert p.listed_rows("audioset") == 3 + nominal  # eval counted, the absent subsets nominal
    assert p.listed_rows("tau") == 7


def test_the_split_files_are_found_where_the_dcase_baseline_puts_them(tmp_path):
    p, _ = make(tmp_path)
    assert p.target_lists("tau")[1] == f"{tmp_path}/tau/split5.csv"
    (tmp_path / "tau" / "split_setup").mkdir(parents=True)
    (tmp_path / "tau" / "split_setup" / "test.csv").write_text("filename\tscene_label\n")
    assert p.target_lists("tau")[0] == f"{tmp_path}/tau/meta.csv"
    assert p.target_lists("tau")[1:] == [f"{tmp_path}/tau/split_setup/{f}" for f in layouts.TAU_SPLIT_FILES]


def test_the_demo_plans_what_it_will_write_and_names_its_folders(tmp_path):
    p, cfg = make(tmp_path, demo=True)
    assert p.listed_rows("audioset") == sum(cfg["demo"]["audioset_clips"][s] for s in cfg["data"]["audioset_subsets"])
    assert p.listed_rows("tau") == cfg["demo"]["tau_train_clips"] + cfg["demo"]["tau_test_clips"]
    assert p.demo_folders() == {"paths.audioset": f"{tmp_path}/audioset", "targets.tau.root": f"{tmp_path}/tau"}
    assert p.data_paths() == []  # nothing of the user's is read
    # an evaluation set the demo writes is the demo's too; one it does not write is the user's, checked
    p.targets["tau"] = p.config["targets"]["tau"] = {**p.targets["tau"], "evaluation": {"root": f"{tmp_path}/eval"}}
    p.config["demo"] = {**p.config["demo"], "evaluation_clips": 4}
    assert p.demo_evaluations() == {"tau": f"{tmp_path}/eval"} and p.data_paths() == []
    p.config["demo"]["evaluation_clips"] = 0
    assert dict(p.data_paths())["tau"]["targets.tau.evaluation.root (meta.csv)"] == f"{tmp_path}/eval/meta.csv"


def test_the_real_datas_paths_are_checked_by_config_key(tmp_path):
    p, _ = make(tmp_path)
    (ds, audioset), (target, tau) = p.data_paths()
    assert (
        ds == "audioset" and audioset["paths.audioset (eval_segments.csv)"] == f"{tmp_path}/audioset/eval_segments.csv"
    )
    assert audioset["paths.audioset_audio"] == f"{tmp_path}/audioset/audio"
    assert target == "tau" and tau["targets.tau.root (meta.csv)"] == f"{tmp_path}/tau/meta.csv"
    # every file the manifest reads: the audio folder and all the challenge split files
    assert tau["targets.tau.root (audio/)"] == f"{tmp_path}/tau/audio"
    assert not any("evaluation" in k for k in tau)
    p.targets["tau"] = {**p.targets["tau"], "evaluation": {"root": f"{tmp_path}/eval", "models": "best"}}
    assert dict(p.data_paths())["tau"]["targets.tau.evaluation.root (meta.csv)"] == f"{tmp_path}/eval/meta.csv"
    assert [tau[f"targets.tau.root ({f})"] for f in layouts.TAU_SPLIT_FILES] == p.target_lists("tau")[1:]
    hdf5 = plan.Plan(p.config, p.targets, "hdf5")
    assert hdf5.audioset_lists()[0] == f"{tmp_path}/audioset/eval_segments_mp3.hdf"


def test_every_absent_path_is_one_line_and_an_absent_folder_counts_what_lies_inside(tmp_path):
    from prunekd.dag.checks import missing_data

    (tmp_path / "tau").mkdir()
    (tmp_path / "tau/meta.csv").write_text("")
    paths = {
        "paths.audioset": f"{tmp_path}/as",
        "paths.audioset (eval_segments.csv)": f"{tmp_path}/as/eval_segments.csv",
        "paths.audioset_audio": f"{tmp_path}/as/audio",
        "targets.tau.root (meta.csv)": f"{tmp_path}/tau/meta.csv",
        "targets.tau.root (test.csv)": f"{tmp_path}/tau/test.csv",
        "targets.tau.root (audio/)": f"{tmp_path}/tau/audio",
    }
    assert missing_data(paths) == [
        f"paths.audioset: {tmp_path}/as does not exist (nor the 2 files and folders read inside it)",
        f"targets.tau.root (test.csv): {tmp_path}/tau/test.csv does not exist",
        f"targets.tau.root (audio/): {tmp_path}/tau/audio does not exist",
    ]


def test_without_released_logits_teacher_shards_are_the_packing_shards(tmp_path):
    p, _ = make(tmp_path, demo=True)
    assert p.teacher_shards("audioset", None) == p.shards("audioset")
    released = {"index": str(tmp_path / "absent.pkl"), "uncovered": "compute"}
    assert p.teacher_shards("audioset", released) == p.shards("audioset")  # index not there yet: every row planned
