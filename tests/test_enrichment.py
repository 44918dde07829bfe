"""What a pruned set contains: class shares by labels and by the teachers, against all training clips."""

import numpy as np
import pandas as pd
import pytest
import zarr

from prunekd.selection.enrichment import class_mix_distance, class_names, class_sums, enrichment_table, top_classes


def _store(tmp_path, n=300, c=527, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.random((n, c)) < 0.02
    labels[:100, 3] = True  # the first 100 clips all carry class 3 ...
    labels[100:, 3] = False
    ens = rng.normal(-5, 1, (n, c)).astype(np.float32)
    ens[:100, 3] = 3.0  # ... and the teachers hear it there
    g = zarr.open_group(str(tmp_path / "s.zarr"), mode="w")
    g.create_array("labels", data=labels)
    g.create_array("ensemble", data=ens)
    return g, labels, ens


def test_class_shares_by_hand_over_several_blocks(tmp_path):
    g, labels, ens = _store(tmp_path)
    kept = np.arange(0, 150)
    sums = class_sums(g, {"kept": kept}, np.arange(300), block=64)
    assert sums["kept"]["clips"] == 150 and sums["all"]["clips"] == 300
    np.testing.assert_array_equal(sums["kept"]["labels"], labels[:150].sum(0))
    np.testing.assert_allclose(sums["all"]["prob"], (1 / (1 + np.exp(-ens.astype(np.float64)))).sum(0), rtol=1e-6)
    names = [f"c{i}" for i in range(527)]
    t = enrichment_table(sums["kept"], sums["all"], names)
    # Class 3: 100 of 150 kept clips vs 100 of 300 training clips -> share 2x, log2 enrichment 1.
    assert t.loc[3, "share_kept_labels"] == pytest.approx(100 / 150)
    assert t.loc[3, "log2_enrichment_labels"] == pytest.approx(1.0, abs=1e-6)
    assert top_classes(t, "log2_enrichment_labels")["over"][0]["class"] == "c3"
    assert top_classes(t, "log2_enrichment_teachers")["over"][0]["class"] == "c3"
    assert len(top_classes(t, "log2_enrichment_teachers")["under"]) == 20


def test_class_mix_distance_is_zero_for_the_same_mix_and_one_for_disjoint_classes():
    a = {"labels": np.array([2.0, 2.0, 0.0, 0.0])}
    assert class_mix_distance(a, {"labels": np.array([1.0, 1.0, 0.0, 0.0])}) == 0.0
    assert class_mix_distance(a, {"labels": np.array([0.0, 0.0, 3.0, 1.0])}) == 1.0
    assert class_mix_distance(a, {"labels": np.array([1.0, 0.0, 1.0, 0.0])}) == pytest.approx(0.5)


def test_class_names_come_from_class_labels_indices(tmp_path):
    f = tmp_path / "class_labels_indices.csv"
    pd.DataFrame({"index": [0, 1], "mid": ["/m/a", "/m/b"], "display_name": ["Speech", "Smash, crash"]}).to_csv(
        f, index=False
    )
    assert class_names(f, 2) == ["Speech", "Smash, crash"]
    assert class_names(tmp_path / "absent.csv", 2) == ["class 0", "class 1"]
