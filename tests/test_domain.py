import numpy as np
import pytest

from prunekd.selection.domain import precision_recall, prune, roc_auc, score, train_classifier, validation_curve

CFG = {"seed": 0, "lr": 1e-3, "batch_size": 600, "epochs": 400}


def _data(rng, shift, n_pos=400, n_neg=600, d=527):
    """Positives shifted along a few dimensions: a known, partial overlap with the negatives."""
    neg = rng.normal(-2, 1, (n_neg, d)).astype(np.float32)
    pos = rng.normal(-2, 1, (n_pos, d)).astype(np.float32)
    pos[:, :5] += shift
    return pos, neg


def test_classifier_separates_to_the_expected_auc():
    rng = np.random.default_rng(0)
    pos, neg = _data(rng, shift=1.5, n_pos=2000, n_neg=3000)
    model, stats = train_classifier(pos, neg, CFG, log=lambda s: None)
    assert stats["iterations_per_epoch"] == 5000 // 600
    vp, vn = _data(np.random.default_rng(1), shift=1.5)
    x = np.concatenate([vp, vn])
    y = np.r_[np.ones(len(vp)), np.zeros(len(vn))]
    # What the known structure allows: the oracle scores only the five shifted dimensions.
    oracle = roc_auc((1 / (1 + np.exp(-x[:, :5]))).sum(1), y)
    assert 0.85 < oracle < 0.99  # a real, partial overlap
    assert roc_auc(score(model, x), y) > oracle - 0.04
    # No signal -> chance.
    m0, _ = train_classifier(*_data(rng, shift=0.0), CFG, log=lambda s: None)
    tp, tn = _data(np.random.default_rng(2), shift=0.0)
    s0 = score(m0, np.concatenate([tp, tn]))
    assert abs(roc_auc(s0, np.r_[np.ones(len(tp)), np.zeros(len(tn))]) - 0.5) < 0.1


def test_kept_share_falls_as_threshold_rises_and_seed_fixes_the_set():
    rng = np.random.default_rng(0)
    pos, neg = _data(rng, shift=2.0)
    pool = np.concatenate(_data(np.random.default_rng(5), shift=2.0, n_pos=300, n_neg=3000))
    kept = []
    for _ in range(2):
        model, _ = train_classifier(pos, neg, CFG, log=lambda s: None)
        s = score(model, pool)
        kept.append([prune(s, t) for t in (0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 0.9)])
    sizes = [len(k) for k in kept[0]]
    assert sizes == sorted(sizes, reverse=True) and sizes[0] > sizes[-1]
    assert all(np.array_equal(a, b) for a, b in zip(kept[0], kept[1]))


def test_auc_and_precision_recall_by_hand():
    s = np.array([0.9, 0.8, 0.4, 0.35, 0.1])
    y = np.array([1, 0, 1, 0, 0])
    assert abs(roc_auc(s, y) - 5 / 6) < 1e-12  # 5 of 6 positive-negative pairs ordered right
    pr = precision_recall(s, y, [0.3])[0]
    assert pr["precision_plain"] == 2 / 4 and pr["recall"] == 1.0
    # class-weighted: tp/n_pos = 2/2, fp/n_neg = 2/3 -> 1 / (1 + 2/3)
    assert pr["precision_class_weighted"] == pytest.approx(1 / (1 + 2 / 3))
    assert pr["kept_share_of_negatives"] == pytest.approx(2 / 3)
    assert (pr["tp"], pr["fp"], pr["fn"], pr["tn"]) == (2, 2, 0, 1)


def test_the_two_precisions_differ_as_the_authors_confusion_shows():
    # The confusion the authors' notebook prints: 29,680 test positives, 3,934 held-out negatives,
    # tp 28,388 and fp 289. Plain precision 99.0 %, class-weighted (their train.py) 92.9 %.
    n_pos, n_neg, tp, fp = 29680, 3934, 28388, 289
    labels = np.r_[np.ones(n_pos), np.zeros(n_neg)]
    scores = np.r_[np.ones(tp), np.zeros(n_pos - tp), np.ones(fp), np.zeros(n_neg - fp)]
    pr = precision_recall(scores, labels, [0.5])[0]
    assert round(100 * pr["precision_plain"], 1) == 99.0
    assert round(100 * pr["precision_class_weighted"], 1) == 92.9
    assert round(100 * pr["recall"], 1) == 95.6


def test_the_validation_curve_matches_the_per_threshold_figures():
    rng = np.random.default_rng(0)
    s, y = rng.random(500), rng.random(500) < 0.3
    curve = validation_curve(s, y)
    at = precision_recall(s, y, [0.3])[0]
    i = curve["threshold"].index(0.3)
    for k in ("precision_plain", "precision_class_weighted", "recall", "kept_share_of_negatives"):
        assert curve[k][i] == at[k]
    assert curve["kept_share_of_negatives"] == sorted(curve["kept_share_of_negatives"], reverse=True)
