"""The challenge submission: the demo's evaluation set in the TAU 2024 layout, a row for every evaluation clip from
the float16 model, the package's layout and meta file, and the checks the challenge's validator makes (written
here anew: the validator is not imported)."""

import copy
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
import yaml

from prunekd.demo.worlds import make_tau_evaluation
from prunekd.student import package as pk
from prunekd.student.cpmobile import build_student
from prunekd.student.evaluate import load_model, write_evaluation
from prunekd.student.submission import SubmissionError, read_eval_meta, submission

REPO = Path(__file__).resolve().parents[1]
_CONFIG = yaml.safe_load((REPO / "config.yaml").read_text())
STUDENT, FRONTEND = _CONFIG["student"], _CONFIG["frontend"]
SUB = {
    "target": "tau",
    "label": "Doe_ACME_task1_2",
    "name": "test system",
    "abbreviation": "TS",
    "authors": [
        {"lastname": "Doe", "firstname": "Jane", "email": "j@x.org", "affiliation": "ACME", "corresponding": True},
        {"lastname": "Roe", "firstname": "Rick", "email": "r@x.org", "affiliation": "ACME"},
    ],
    "source_code": "https://example.org/code",
    "undecodable": "fail",
}


def _model(path, seed=0):
    torch.manual_seed(seed)
    m = build_student(STUDENT, 10)
    for mod in m.modules():  # running statistics away from the identity: logits of a trained model's size
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.normal_(0, 0.5)
            mod.running_var.uniform_(0.2, 2.0)
    torch.save({"state_dict": m.state_dict(), "student": STUDENT, "n_classes": 10}, path)
    return path


def _tau_manifest(path, clips):
    """A TAU target's manifest: the ten scenes (as the baseline orders them), the test clips given, then one
    training clip of each scene."""
    rows = [
        {"id": f"c{i}", "path": str(p), "label": i % 10, "class_label": pk.SCENES[i % 10],
         "scene_label": pk.SCENES[i % 10], "device": pk.DEVICES[i % 9], "test": str(i < len(clips)), "status": "ok"}
        for i, p in enumerate(list(clips) + [clips[0]] * 10)
    ]  # fmt: skip
    pd.DataFrame(rows).to_csv(path, sep="\t", index=False)
    return path


def test_the_demo_writes_an_evaluation_set_in_the_tau_2024_layout_with_a_silent_clip(tmp_path):
    make_tau_evaluation(tmp_path / "ev", 7, 44100, seed=3)
    meta = pd.read_csv(tmp_path / "ev/meta.csv", sep="\t")
    assert list(meta.columns) == ["filename"] and list(meta["filename"]) == [f"audio/{i}.wav" for i in range(7)]
    assert sorted(p.name for p in (tmp_path / "ev/audio").iterdir()) == sorted(f"{i}.wav" for i in range(7))
    peaks = [np.abs(sf.read(str(tmp_path / f"ev/audio/{i}.wav"))[0]).max() for i in range(7)]
    assert sf.info(str(tmp_path / "ev/audio/0.wav")).samplerate == 44100
    assert [p == 0 for p in peaks] == [i == 3 for i in range(7)]  # clip n // 2 is silent, the others are not
    assert list(read_eval_meta(tmp_path / "ev")["filename"]) == list(meta["filename"])
    make_tau_evaluation(tmp_path / "again", 7, 44100, seed=3)  # its own generator: the same clips again
    assert (tmp_path / "again/audio/5.wav").read_bytes() == (tmp_path / "ev/audio/5.wav").read_bytes()


@pytest.fixture(scope="module")
def evaluation(tmp_path_factory):
    """A saved student, its development metrics, a TAU manifest and a 6-clip evaluation set (clip 3 silent)."""
    d = tmp_path_factory.mktemp("sub")
    make_tau_evaluation(d / "ev", 6, 44100, seed=0)
    model = _model(d / "model.pt")
    man = _tau_manifest(d / "tau.tsv", [d / f"ev/audio/{i}.wav" for i in range(6)])
    return d, model, man


def test_every_evaluation_clip_gets_a_row_from_the_float16_model_an_undecodable_one_stops_the_step(evaluation):
    d, model, man = evaluation
    dev = d / "metrics.json"
    m = write_evaluation(model, man, {"frontend": FRONTEND, "student": STUDENT}, {"k": 1}, dev, d / "p.csv", print)
    # metrics.json: the model as submitted (float16), the float32 figures beside, logloss per class and device
    assert m["precision"] == "float16" and set(m["by_precision"]) == {"float16", "float32"}
    assert m["by_precision"]["float16"]["macro_accuracy"] == m["macro_accuracy"]
    assert m["by_precision"]["float16"]["logloss"] == m["logloss"] > 0
    # The development test leaves out a clip that yields no audio (clip 3, silent, device s1), as it did before.
    assert set(m["per_device_logloss"]) == {"a", "b", "c", "s2", "s3"} and m["n"] == 5
    assert set(m["per_class_logloss"]) == set(pk.SCENES) and m["per_class_logloss"]["metro_station"] is None
    assert m["per_class_logloss"]["tram"] is None  # no test clip of its own
    out = d / "out.csv"
    info = submission([model], [dev], man, d / "ev", FRONTEND, 1.0, "best", out, d / "info.json", log=print)
    pred = pd.read_csv(out, sep="\t")
    assert list(pred["filename"]) == [f"{i}.wav" for i in range(6)]  # the silent clip 3 included
    assert info["precision"] == "float16" and info["from_silence"] == [] and info["predicted"] == 6
    assert info["test"]["logloss"] == m["logloss"]
    # The scores are the float16 model's (the float32 one's differ), as written with four decimals.
    wav = torch.stack([torch.from_numpy(sf.read(str(d / f"ev/audio/{i}.wav"), dtype="float32")[0]) for i in range(6)])
    from prunekd.data.audio import resample
    from prunekd.student.evaluate import log_softmax
    from prunekd.student.frontend import MelFrontEnd

    x = MelFrontEnd(FRONTEND).eval()(torch.from_numpy(np.stack([resample(w.numpy(), 44100, 32000) for w in wav])))
    with torch.no_grad():
        p16 = np.exp(log_softmax(load_model(model, "float16")[0], x))
        p32 = np.exp(log_softmax(load_model(model, "float32")[0], x))
    assert not np.array_equal(p16, p32)
    half = load_model(model, "float32")[0].half()  # PyTorch's own float16 model: the same probabilities
    with torch.no_grad():
        np.testing.assert_allclose(p16, torch.softmax(half(x.half()).float(), dim=1).numpy(), atol=2e-5)
    np.testing.assert_allclose(pred[list(pk.SCENES)].to_numpy(), p16, atol=6e-5)

    (d / "ev/audio/4.wav").write_bytes(b"RIFF\x00\x00")  # truncated
    out.unlink()
    with pytest.raises(SubmissionError, match=r"^\S+ev/audio/4.wav: exists but unreadable; .*undecodable: silence"):
        submission([model], [dev], man, d / "ev", FRONTEND, 1.0, "best", out, d / "info.json", log=print)
    assert not out.exists()
    info = submission([model], [dev], man, d / "ev", FRONTEND, 1.0, "best", out, d / "info.json", undecodable="silence")
    assert len(pd.read_csv(out, sep="\t")) == 6
    assert info["from_silence"] == [{"filename": "audio/4.wav", "reason": "exists but unreadable"}]


def _dev_test():
    return {
        "macro_accuracy": 0.5,
        "logloss": 1.4,
        "per_class": {s: 0.5 for s in pk.SCENES},
        "per_class_logloss": {s: 1.4 for s in pk.SCENES},
        "per_device": {x: 0.5 for x in pk.DEVICES},
        "per_device_logloss": {x: 1.4 for x in pk.DEVICES},
    }


def _split_files(d, n=4, splits=pk.SPLITS):
    """Per split an output.csv (n evaluation clips) and an info.json as the submission step writes them."""
    outputs, infos = {}, {}
    for s in splits:
        p = np.full((n, 10), 0.05)
        p[:, 1] = 0.55
        df = pd.DataFrame(p, columns=list(pk.SCENES))
        df.insert(0, "scene_label", "bus")
        df.insert(0, "filename", [f"{i}.wav" for i in range(n)])
        (d / s).mkdir(parents=True)
        df.to_csv(d / s / "output.csv", sep="\t", index=False, float_format="%.4f")
        info = {"model": f"finetune/tau/all/split{s}/pruned/thr0.3/seed0/model.pt", "precision": "float16",
                "Params": 61148, "MACs": 29419156, "parameter_bytes_fp16": 122296, "test": _dev_test(),
                "from_silence": []}  # fmt: skip
        (d / s / "info.json").write_text(json.dumps(info))
        outputs[s], infos[s] = d / s / "output.csv", d / s / "info.json"
    return outputs, infos


def _package(tmp_path, n=4, splits=pk.SPLITS, sub=SUB):
    make_tau_evaluation(tmp_path / "ev", n, 32000, seed=0, seconds=0.1)
    (tmp_path / "audioset.tsv").write_text("id\tstatus\n" + "a\tok\n" * 360 + "b\tmissing\n")
    outputs, infos = _split_files(tmp_path / "splits", n, splits)
    cfg = {"submission": sub, "frontend": FRONTEND, "distillation": {"iterations": 100000, "kd_lambda": 0.9},
           "training": {"epochs_finetune": 100}, "audioset_clip_seconds": 10}  # fmt: skip
    out = tmp_path / "results/submission/task1" / sub["label"]
    z = tmp_path / f"results/submission/{sub['label']}.zip"
    logged = []
    missing = pk.write_package(outputs, infos, tmp_path / "ev", tmp_path / "audioset.tsv", cfg, out, z, logged.append)
    return out, z, missing, logged


def test_the_package_holds_every_split_and_the_meta_file_under_task1_label(tmp_path):
    out, z, missing, logged = _package(tmp_path)
    label = SUB["label"]
    names = [f"{label}.output.split_{s}.csv" for s in pk.SPLITS] + [f"{label}.meta.yaml"]
    assert sorted(zipfile.ZipFile(z).namelist()) == sorted(f"task1/{label}/{n}" for n in names)
    assert sorted(p.name for p in out.iterdir()) == sorted(names)
    assert missing == [] and not any("warning" in line for line in logged)
    assert pk.check_package(z, 4) == []
    meta = yaml.safe_load((out / f"{label}.meta.yaml").read_text())
    assert meta["submission"]["label"] == label and meta["submission"]["authors"][0]["corresponding"] is True
    assert meta["system"]["complexity"] == {"total_model_size": 122296, "total_parameters": 61148, "macs": 29419156}
    assert meta["system"]["external_datasets"][0]["total_audio_length"] == "1.0h"  # 360 usable 10 s clips
    assert meta["system"]["source_code"] == SUB["source_code"]
    res = meta["results"]["development_dataset"]["split_25"]
    assert res["overall"] == {"accuracy": 50.0, "logloss": 1.4} and res["device_wise"]["s6"]["logloss"] == 1.4
    assert "split 25: 0.3" in meta["system"]["description"]["system_adaptations"]


def test_a_package_of_some_splits_is_written_and_says_which_are_missing(tmp_path):
    _, z, missing, logged = _package(tmp_path, splits=("5", "100"))
    assert missing == ["10", "25", "50"] and "the challenge wants all five" in logged[0]
    assert pk.check_package(z, 4, ("5", "100")) == []
    assert any("split_10: missing" in p for p in pk.check_package(z, 4))  # as the challenge sees it


def test_a_package_with_a_missing_row_is_not_written(tmp_path):
    with pytest.raises(pk.PackageError, match=r"\.zip: not written, 5 problems, e\.g\. .*3 distinct files, .* has 4"):
        make_tau_evaluation(tmp_path / "ev5", 4, 32000, seed=0, seconds=0.1)
        outputs, infos = _split_files(tmp_path / "s", 3)
        cfg = {"submission": SUB, "frontend": FRONTEND, "distillation": {"iterations": 1, "kd_lambda": 0.9},
               "training": {"epochs_finetune": 1}, "audioset_clip_seconds": 10}  # fmt: skip
        (tmp_path / "a.tsv").write_text("id\tstatus\na\tok\n")
        pk.write_package(outputs, infos, tmp_path / "ev5", tmp_path / "a.tsv", cfg, tmp_path / "p" / SUB["label"],
                         tmp_path / "p.zip")  # fmt: skip
    assert not (tmp_path / "p.zip").exists() and not (tmp_path / "p").exists()


GOOD = (
    "filename\tscene_label\t"
    + "\t".join(pk.SCENES)
    + "\n"
    + "".join(f"{i}.wav\tbus\t" + "\t".join(["0.1"] * 10) + "\n" for i in range(3))
)


@pytest.mark.parametrize(
    "text, problem",
    [
        (GOOD.replace("\t", ","), "header"),
        (GOOD.replace("scene_label", "label"), "header"),
        (GOOD.replace("1.wav\tbus\t0.1", "1.wav\tbus"), "line 3: 11 fields, expected 12"),
        (GOOD.replace("2.wav\tbus", "2.wav\tbeach"), "line 4: scene label 'beach'"),
        (GOOD.replace("0.wav\tbus\t0.1", "0.wav\tbus\tx"), "line 2: not a number in ['airport']"),
        (GOOD.replace("2.wav", "1.wav"), "line 4: file 1.wav a second time"),
        (GOOD.replace("2.wav", "3.wav"), "line 4: file '3.wav' is not one of 0.wav ... 2.wav"),
        (GOOD.replace("2.wav", "b.flac"), "line 4: file 'b.flac'"),
        (GOOD.rsplit("2.wav", 1)[0], "2 distinct files, the evaluation set has 3"),
    ],
)
def test_the_output_checks_find_what_the_validator_refuses(text, problem):
    assert pk.check_output(GOOD, 3) == []
    found = pk.check_output(text, 3)
    assert any(problem in p for p in found), found


def _meta():
    return pk.meta_document(SUB, {s: {"model": "x/thr0.3/", "precision": "float16", "Params": 1, "MACs": 2,
                                      "parameter_bytes_fp16": 2, "test": _dev_test()} for s in pk.SPLITS},
                            {"frontend": FRONTEND, "distillation": {"iterations": 1, "kd_lambda": 0.9},
                             "training": {"epochs_finetune": 1}}, 1.0)  # fmt: skip


@pytest.mark.parametrize(
    "path, problem",
    [
        (("submission", "abbreviation"), "submission: missing abbreviation"),
        (("submission", "authors", 0, "email"), "submission.authors[0]: missing email"),
        (("submission", "authors", 0, "corresponding"), "exactly one author"),
        (("system", "source_code"), "system: missing source_code"),
        (("system", "description", "pipeline"), "system.description: missing pipeline"),
        (("system", "complexity", "macs"), "system.complexity: missing macs"),
        (("system", "external_datasets", 1, "url"), "system.external_datasets[1]: missing url"),
        (("results", "development_dataset", "split_50"), "split_50: missing"),
        (("results", "development_dataset", "split_5", "overall", "logloss"), "split_5.overall: accuracy and"),
        (("results", "development_dataset", "split_10", "class_wise", "tram"), "split_10.class_wise.tram:"),
        (("results", "development_dataset", "split_100", "device_wise", "s4", "accuracy"), "device_wise.s4:"),
    ],
)
def test_the_meta_checks_find_every_missing_field_at_every_level(path, problem):
    assert pk.check_meta(_meta()) == []
    meta = copy.deepcopy(_meta())
    at = meta
    for k in path[:-1]:
        at = at[k]
    del at[path[-1]]
    found = pk.check_meta(meta)
    assert any(problem in p for p in found), found


def test_labels_abbreviation_and_the_label_in_the_file_names(tmp_path):
    assert pk.check_label("Doe_ACME_task1_4") == []
    for bad in ("Doe_ACME_task1_5", "Doe_task1_1", "Doe_AC_ME_task1_1", "Doe.x_ACME_task1_1", "Doe_ACME_task2_1"):
        assert pk.check_label(bad), bad
    meta = _meta()
    meta["submission"]["abbreviation"] = "ElevenChars"
    assert any("at most 10" in p for p in pk.check_meta(meta))
    # A package whose files carry another label than its meta file.
    _, z, _, _ = _package(tmp_path)
    buf = io.BytesIO()
    with zipfile.ZipFile(z) as src, zipfile.ZipFile(buf, "w") as dst:
        for n in src.namelist():
            dst.writestr(n.replace("split_5.csv", "split_5.csv").replace("Doe_ACME_task1_2/", "Doe_ACME_task1_3/"),
                         src.read(n))  # fmt: skip
    found = pk.check_package(buf, 4)
    assert any("task1/Doe_ACME_task1_3/Doe_ACME_task1_2.meta.yaml is not" in p for p in found), found
    assert any("task1/Doe_ACME_task1_2/Doe_ACME_task1_2.meta.yaml missing" in p for p in found), found


def test_the_demo_ends_with_a_package_the_checks_accept(demo_run):
    """The demo's evaluation set (TAU 2024 layout, a silent clip among it) and its package of the trained splits."""
    ev = demo_run / "data/demo/tau_eval"
    n = len(pd.read_csv(ev / "meta.csv", sep="\t"))
    assert n == 12 and sorted(p.name for p in (ev / "audio").iterdir()) == sorted(f"{i}.wav" for i in range(n))
    label = "Demo_Placeholder_task1_1"
    z = demo_run / f"results/submission/{label}.zip"
    assert pk.check_package(z, n, ("5", "100")) == []
    with zipfile.ZipFile(z) as zf:
        assert sorted(zf.namelist()) == sorted(
            [f"task1/{label}/{label}.output.split_{s}.csv" for s in ("5", "100")] + [f"task1/{label}/{label}.meta.yaml"]
        )
        meta = yaml.safe_load(zf.read(f"task1/{label}/{label}.meta.yaml"))
        out = pd.read_csv(io.BytesIO(zf.read(f"task1/{label}/{label}.output.split_100.csv")), sep="\t")
    assert list(out["filename"]) == [f"{i}.wav" for i in range(n)]  # the silent clip 6 has its row
    per_split = demo_run / "results/submission/tau/split100/best"
    assert (demo_run / f"results/submission/task1/{label}/{label}.output.split_100.csv").read_bytes() == (
        per_split / "output.csv"
    ).read_bytes()
    info = json.loads((per_split / "info.json").read_text())
    run = Path(info["model"]).parent.relative_to("results")  # results/finetune/<the chosen model>/model.pt
    dev = json.loads((demo_run / "results/eval" / run / "metrics.json").read_text())
    res = meta["results"]["development_dataset"]["split_100"]["overall"]
    assert res == {"accuracy": round(100 * dev["macro_accuracy"], 2), "logloss": round(dev["logloss"], 4)}
    assert dev["precision"] == "float16" and set(dev["by_precision"]) == {"float16", "float32"}
    assert meta["submission"]["authors"][0]["lastname"] == "Placeholder"  # the demo's placeholders, never invented
    log = (demo_run / f"results/logs/submission_package/{label}.log").read_text()
    assert "missing: 10, 25, 50" in log


def test_a_submission_without_what_only_a_person_knows_is_refused_before_any_job(tmp_path):
    from conftest import snakemake

    cfg = tmp_path / "c.yaml"
    cfg.write_text("submission:\n  label: null\n")
    p = snakemake(tmp_path, "-n", extra_config=[str(cfg)], check=False)
    assert p.returncode != 0 and "submission.label: targets.tau.evaluation asks for a submission" in p.stdout + p.stderr
    cfg.write_text("submission:\n  label: Doe_ACME_task1_9\n")
    p = snakemake(tmp_path, "-n", extra_config=[str(cfg)], check=False)
    assert p.returncode != 0 and "Doe_ACME_task1_9" in p.stdout + p.stderr  # the schema: <Lastname>_<Inst>_task1_<1-4>
