import numpy as np
import pytest

from prunekd.student.evaluate import metrics


def test_macro_accuracy_by_hand_on_imbalanced_classes():
    # class 0: 8 clips, 6 right; class 1: 2 clips, 1 right.
    y_true = np.array([0] * 8 + [1] * 2)
    y_pred = np.array([0] * 6 + [1] * 2 + [1, 0])
    dev = np.array(["a"] * 5 + ["s4"] * 5)
    m = metrics(y_true, y_pred, dev, ["x", "y"])
    assert m["accuracy"] == pytest.approx(7 / 10)
    assert m["macro_accuracy"] == pytest.approx((6 / 8 + 1 / 2) / 2)  # 0.625, not 0.7
    assert m["per_class"] == {"x": pytest.approx(0.75), "y": pytest.approx(0.5)}
    # Per device as the DCASE2024 baseline: correct / clips of the device (not a macro over classes).
    # device a: five class-0 clips, all right -> 1.0; device s4: 3 class-0 (1 right), 2 class-1 (1 right) -> 2/5
    assert m["per_device"]["a"] == pytest.approx(1.0)
    assert m["per_device"]["s4"] == pytest.approx(2 / 5)  # not (1/3 + 1/2) / 2
    assert m["per_device_group"]["real"] == pytest.approx(1.0)
    assert m["per_device_group"]["unseen_simulated"] == pytest.approx(2 / 5)
    assert m["confusion"] == [[6, 2], [1, 1]]
    assert "per_city" not in m


def test_per_city_accuracy_is_correct_over_the_clips_of_the_city():
    import pandas as pd

    from prunekd.student.evaluate import city_of_clips

    test = pd.DataFrame({"identifier": ["lisbon-1000", "lisbon-1001", "paris-7", "paris-8", "paris-9"]})
    cities = city_of_clips(test)
    assert list(cities) == ["lisbon", "lisbon", "paris", "paris", "paris"]
    y_true, y_pred = np.array([0, 1, 0, 0, 1]), np.array([0, 0, 0, 1, 1])
    m = metrics(y_true, y_pred, np.array(["a"] * 5), ["x", "y"], cities)
    assert m["per_city"] == {"lisbon": pytest.approx(1 / 2), "paris": pytest.approx(2 / 3)}
    assert city_of_clips(pd.DataFrame({"id": ["a"]})) is None


def test_summary_orders_numeric_splits_by_number_and_named_ones_as_configured():
    from prunekd.results.summarise import _sorted_splits

    assert _sorted_splits(["100", "5", "25", "5"]) == ["5", "25", "100"]
    assert _sorted_splits(["small", "big", "small", "all"]) == ["small", "big", "all"]


def test_logloss_per_class_per_device_and_overall_by_hand():
    # Three clips of class x, one of class y; natural log as the baseline's cross-entropy.
    p = np.array([[0.5, 0.5], [0.25, 0.75], [1.0, 0.0], [0.2, 0.8]])
    with np.errstate(divide="ignore"):
        lp = np.log(p)
    y_true = np.array([0, 0, 0, 1])
    dev = np.array(["a", "a", "b", "b"])
    m = metrics(y_true, p.argmax(1), dev, ["x", "y", "z"], log_probs=lp)
    x = (np.log(2) + np.log(4) + 0.0) / 3
    y = -np.log(0.8)
    assert m["per_class_logloss"] == {"x": pytest.approx(x), "y": pytest.approx(y), "z": None}
    assert m["logloss"] == pytest.approx((x + y) / 2)  # over classes, as the overall (macro) accuracy
    assert m["logloss_per_clip"] == pytest.approx((3 * x + y) / 4)
    assert m["per_device_logloss"] == {"a": pytest.approx((np.log(2) + np.log(4)) / 2), "b": pytest.approx(y / 2)}
    assert "logloss" not in metrics(y_true, p.argmax(1), dev, ["x", "y", "z"])


def test_a_summary_plots_the_curves_that_are_there_and_names_the_missing_ones(tmp_path):
    from prunekd.results.summarise import present_curves

    (tmp_path / "a.tsv").write_text("step\tloss\tlr\n1\t0.5\t0.1\n")
    said = []
    out = present_curves({"distill:a": str(tmp_path / "a.tsv"), "finetune:b": str(tmp_path / "b.tsv")}, said.append)
    assert out == {"distill:a": str(tmp_path / "a.tsv")}
    assert len(said) == 1 and str(tmp_path / "b.tsv") in said[0]
