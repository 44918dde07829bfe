# The experiment grid as data. Per target, ensemble and (split, threshold) pair: a pruned set, and as
# `controls` asks its random control; per ensemble one distillation on all of AudioSet. Each distilled
# student is fine-tuned on the split and evaluated, beside the baseline trained from scratch.
#
# Every trained model is a key: {target, ensemble, split, selection, threshold, seed}, where selection is
# pruned | random (a pruned set or its random control, at a threshold), full (all of AudioSet, no
# threshold) or baseline (no distillation, no ensemble). Paths are made from keys, never parsed: the rules
# whose outputs hold several shapes of key (distill: pruned sets and `full`; evaluate: fine-tunings and
# baselines) have one wildcard per trained thing (trainset, model) and look its key up in TRAINSETS/MODELS.


def threshold_label(t):
    """How a threshold is written in paths and wildcards: 0.3, never 0.30."""
    return f"{float(t):g}"


def splits(target):
    return [str(s) for s in TARGETS[target]["splits"]]


def grid_pairs(target):
    """(split, threshold) pairs of a target that get a pruned set, a distillation and fine-tunings."""
    g, sweep = config["grid"], TARGETS[target]["sweep_split"]
    thrs = [threshold_label(t) for t in g["thresholds"]]
    if g["mode"] == "full":
        return [(s, t) for s in splits(target) for t in thrs]
    sweep = None if sweep is None else str(sweep)
    pairs = [(sweep, t) for t in thrs] if sweep in splits(target) else []
    pairs += [(s, threshold_label(g["threshold"])) for s in splits(target) if s != sweep]
    return pairs


def selections(ensemble):
    """Which AudioSet subsets get distilled per pruned set: the pruned set, its random control, and the pruned
    set with its teacher targets shuffled across its clips (the negative control)."""
    if ensemble != "all":
        return ["pruned"]
    return (
        ["pruned"]
        + (["random"] if config["controls"]["random"] else [])
        + (["shuffled"] if config["controls"]["shuffled"] != "none" else [])
    )


SEEDED = config["grid"]["seeded_distillation"]  # each fine-tuning seed distils its own student


def with_full(ensemble):
    return ensemble == "all" and config["controls"]["full"]


def grid_models(target):
    """The keys of a target's trained models, in the summary's order."""
    seeds = config["grid"]["seeds"]
    keys = []
    for ens in ENSEMBLES:
        keys += [
            dict(target=target, ensemble=ens, split=s, selection=sel, threshold=t, seed=k)
            for s, t in grid_pairs(target)
            for sel in selections(ens)
            for k in seeds
        ]
        if with_full(ens):
            keys += [
                dict(target=target, ensemble=ens, split=s, selection="full", threshold=None, seed=k)
                for s in splits(target)
                for k in seeds
            ]
    keys += [
        dict(target=target, ensemble=None, split=s, selection="baseline", threshold=None, seed=k)
        for s in splits(target)
        for k in config["grid"].get("baseline_seeds", seeds)
    ]
    return keys


# ---- paths from keys ----------------------------------------------------------------------------


def pruned_set_dir(k):
    """Folder of a pruned set (and its random control) under prune/."""
    return f"{k['target']}/{k['ensemble']}/split{k['split']}/thr{k['threshold']}"


def trainset_name(k):
    """The AudioSet clips a student is distilled on (and, with grid.seeded_distillation, its seed), as a folder
    under distill/."""
    if k["selection"] == "full":
        name = f"full/{k['ensemble']}"
    else:
        name = f"{k['target']}/{k['ensemble']}/split{k['split']}/{k['selection']}/thr{k['threshold']}"
    return f"{name}/seed{k['seed']}" if SEEDED else name


def model_name(k):
    """A trained model's folder under results/ (and under eval/)."""
    if k["selection"] == "baseline":
        return f"baseline/{k['target']}/split{k['split']}/seed{k['seed']}"
    trained = "full" if k["selection"] == "full" else f"{k['selection']}/thr{k['threshold']}"
    return f"finetune/{k['target']}/{k['ensemble']}/split{k['split']}/{trained}/seed{k['seed']}"


def summary_key(k):
    """The key `prunekd evaluate` writes into metrics.json: the summary's row (src/prunekd/summarise.py)."""
    return {
        "target": k["target"],
        "ensemble": k["ensemble"],
        "split": k["split"],
        "method": k["selection"],
        "threshold": None if k["threshold"] is None else float(k["threshold"]),
        "seed": int(k["seed"]),
    }


MODELS = {model_name(k): k for t in TARGETS for k in grid_models(t)}
TRAINSETS = {
    trainset_name(k): {
        key: k[key] for key in ("target", "ensemble", "split", "selection", "threshold", *(["seed"] if SEEDED else []))
    }
    for k in MODELS.values()
    if k["selection"] != "baseline"
}
FINETUNED = [m for m, k in MODELS.items() if k["selection"] != "baseline"]
BASELINES = [m for m, k in MODELS.items() if k["selection"] == "baseline"]


wildcard_constraints:
    trainset=_alternatives(TRAINSETS),
    model=_alternatives(MODELS),


# ---- what a rule reads, by key ----------------------------------------------------------------


def selection_list(w):
    """The AudioSet clips a distillation trains on: a pruned set, its random control, or all clips."""
    k = TRAINSETS[w.trainset]
    if k["selection"] == "full":
        return f"{R}/prune/full.tsv"
    return f"{R}/prune/{pruned_set_dir(k)}/{'random' if k['selection'] == 'random' else 'kept'}.tsv"


def student_for(w):
    """The distilled student a fine-tuning starts from."""
    return f"{R}/distill/{trainset_name(MODELS[w.model])}/student.pt"


def eval_metrics(target):
    return [f"{R}/eval/{m}/metrics.json" for m, k in MODELS.items() if k["target"] == target]


def training_curves(target):
    """<kind>:<run> -> curve.tsv of every training run behind a target's summary: its fine-tunings and baselines,
    and the distillations they start from (plotted by `summarise`, one plot each in the report)."""
    out = {}
    for m, k in MODELS.items():
        if k["target"] == target:
            if k["selection"] != "baseline":
                out[f"distill:{trainset_name(k)}"] = f"{R}/distill/{trainset_name(k)}/curve.tsv"
            kind, run = m.split("/", 1)
            out[f"{kind}:{run}"] = f"{R}/{m}/curve.tsv"
    return out


def validation_reports(target):
    """The domain classifiers' validation.json of a target (every ensemble, every split with pruned sets)."""
    return [
        f"{R}/domain/{target}/{ens}/split{s}/validation.json"
        for ens in ENSEMBLES
        for s in sorted({s for s, _ in grid_pairs(target)})
    ]


def enrichment_files(target, ext):
    """Every pruned set's class enrichment (enrichment.json or .tsv), in prune_stats' order."""
    return [
        f"{R}/prune/{target}/{ens}/split{s}/thr{t}/enrichment.{ext}" for ens in ENSEMBLES for s, t in grid_pairs(target)
    ]


def prune_stats(target):
    return [f"{R}/prune/{target}/{ens}/split{s}/thr{t}/stats.json" for ens in ENSEMBLES for s, t in grid_pairs(target)]


RELEASED_DIR = f"{R}/logits/audioset/released"  # with teachers.released_logits: what the files cover


def compute_table(w):
    """The rows the members compute (released-index), for AudioSet's shards when released logits are set."""
    return [f"{RELEASED_DIR}/compute.tsv"] if w.dataset == "audioset" and RELEASED is not None else []


def released_coverage(w):
    return [f"{RELEASED_DIR}/released.json"] if w.dataset == "audioset" and RELEASED is not None else []


def agreement_classifier_names():
    """Domain classifiers whose kept sets the released-logits agreement check compares: the report's ensemble,
    every target and split that gets pruned sets."""
    return {
        f"{t}/split{s}": f"{R}/domain/{t}/all/split{s}/classifier.pt"
        for t in TARGETS
        for s in sorted({s for s, _ in grid_pairs(t)})
    }


def agreement_classifiers():
    return list(agreement_classifier_names().values())


# ---- what `all` builds ----------------------------------------------------------------------

SUMMARY_NAMES = ["table1", "table2", "controls", "validation"]
ENRICHMENT_NAMES = ["enrichment", "classifier_weights"]


# The known-answer report (docs/known-answer.md): on the demo's synthetic world only, whose truth it reads.
KNOWN_ANSWER = None
if config["known_answer"]["enabled"]:
    if not DEMO:
        refuse_key("known_answer.enabled", "needs demo.enabled: true (the truth is the synthetic world's)")
    KNOWN_ANSWER = {k: v for k, v in config["known_answer"].items() if k != "enabled"}
    KNOWN_ANSWER["split"] = str(KNOWN_ANSWER["split"])
    if KNOWN_ANSWER["target"] not in TARGETS or TARGETS[KNOWN_ANSWER["target"]]["adapter"] != "tau2022":
        refuse_key("known_answer.target", f"{KNOWN_ANSWER['target']!r} is not a TAU-format target of grid.targets")
    if KNOWN_ANSWER["split"] not in splits(KNOWN_ANSWER["target"]):
        refuse_key("known_answer.split", f"{KNOWN_ANSWER['split']!r} is not one of the target's splits")


def known_answer_metrics():
    """The evaluations of the known-answer split's models (baseline, and the grid threshold's distillations)."""
    ka, thr = KNOWN_ANSWER, threshold_label(config["grid"]["threshold"])
    return [
        f"{R}/eval/{m}/metrics.json"
        for m, k in MODELS.items()
        if k["target"] == ka["target"]
        and k["split"] == ka["split"]
        and k["ensemble"] in (None, "all")
        and (k["selection"] == "baseline" or k["threshold"] == thr)
    ]


def summary_outputs():
    out = [f"{R}/known_answer/{n}" for n in ("table.html", "plot.png", "verdict.json")] if KNOWN_ANSWER else []
    for target in TARGETS:
        out += expand(f"{R}/summary/{target}/{{name}}.{{ext}}", name=SUMMARY_NAMES, ext=["csv", "md", "html"])
        out += [f"{R}/summary/{target}/{n}.png" for n in ("table1", "table2", "controls", "devices", "enrichment")]
        out += expand(f"{R}/summary/{target}/{{name}}.{{ext}}", name=ENRICHMENT_NAMES, ext=["csv", "md", "html"])
        for ens in ENSEMBLES:
            for s in sorted({s for s, _ in grid_pairs(target)}):
                out += [f"{R}/domain/{target}/{ens}/split{s}/{f}" for f in ("score_histogram.png", "validation.json")]
    if RELEASED is not None:
        out += [f"{R}/logits/audioset/released/agreement.json"]
    return out + [f"{R}/summary/rejected_counts.html"]


def pruned_sets_report(name, caption, figure):
    """A per-target file on what the pruned sets contain, in the report under Pruned sets / <target>."""
    return report(
        f"{R}/summary/{{target}}/{name}",
        caption=f"../report/{caption}.rst",
        category="Pruned sets",
        subcategory="{target}",
        labels={"figure": figure},
    )


def summary_report(name, caption, figure):
    """A per-target summary file, in the report under Results / <target>."""
    return report(
        f"{R}/summary/{{target}}/{name}",
        caption=f"../report/{caption}.rst",
        category="Results",
        subcategory="{target}",
        labels={"figure": figure},
    )
