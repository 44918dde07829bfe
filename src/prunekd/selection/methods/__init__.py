"""Selection methods: which AudioSet training clips a student is distilled on (docs/selections.md).

Each method is one module with NAME, PROBABILITY (its score is a probability: a threshold budget applies) and
`fit(pos, neg, feature, cfg, log) -> Fitted` (methods.base): fitted on the target split's features (positives)
and AudioSet eval's (negatives, the domain classifier's hold-out), it scores clips and picks k of them.
Adding a method: a module here and one line in METHODS.
"""

from prunekd.selection.methods import (
    centroid,
    density_ratio,
    domain_classifier,
    importance,
    knn,
    random_draw,
)

METHODS = {
    m.NAME: m
    for m in (
        domain_classifier,
        random_draw,
        centroid,
        knn,
        density_ratio,
        importance,
    )
}
