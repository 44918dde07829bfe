"""The report's method: a linear domain classifier (prunekd.selection.domain), its sigmoid output as score."""

from __future__ import annotations

import numpy as np

from prunekd.selection.domain import score, train_classifier
from prunekd.selection.methods.base import Fitted

NAME = "domain_classifier"
PROBABILITY = True  # a threshold budget applies


class Classifier(Fitted):
    def __init__(self, model, sigmoid_input: bool):
        self.model, self.sigmoid_input = model, sigmoid_input

    def score(self, x: np.ndarray) -> np.ndarray:
        return score(self.model, x, sigmoid_input=self.sigmoid_input)


def fit(pos: np.ndarray, neg: np.ndarray, feature: str, cfg: dict, log=print) -> Classifier:
    """cfg: domain_classifier's settings. On `logits` the raw logits go in and the classifier takes their
    sigmoid, exactly as the report's step does (same arithmetic, same scores)."""
    sig = feature == "logits"
    model, _ = train_classifier(pos, neg, cfg, log, sigmoid_input=sig)
    return Classifier(model, sig)
