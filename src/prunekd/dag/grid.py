"""The experiment grid as data: which models a configuration trains, and the paths their files take.

Every trained model is a key {target, ensemble, split, selection, threshold, seed}, where selection is
pruned | random | shuffled (a pruned set, its random control, or the pruned set with its teacher targets
shuffled, at a threshold), full (all of AudioSet, no threshold) or baseline (no distillation, no ensemble).
Paths are made from keys, never parsed: the rules whose outputs hold several shapes of key (distill: pruned
sets and `full`; evaluate: fine-tunings and baselines) have one wildcard per trained thing (trainset, model)
and look its key up in `Grid.trainsets` / `Grid.models`.

Standard library only: the workflow builds its DAG from this at parse time (workflow/rules/grid.smk).
"""

from __future__ import annotations

import re

TRAINSET_KEYS = ("target", "ensemble", "split", "selection", "threshold")
# What a Grid reads of the config and of a target to list a target's models and files (Grid.spec)
SPEC_GRID_KEYS = ("mode", "thresholds", "threshold", "seeds", "baseline_seeds", "seeded_distillation", "selections")
SPEC_CONTROL_KEYS = ("random", "shuffled", "full")
SPEC_TARGET_KEYS = ("splits", "sweep_split")


def alternatives(names) -> str:
    """A regex matching exactly `names` (a wildcard constraint), as a trie of their common prefixes.

    A plain alternation `a|b|c` costs Snakemake one try per name for every file it resolves, so a grid of
    thousands of models made the DAG's build time grow with files x models; the trie reads each character once.
    """
    trie: dict = {}
    for name in names:
        node = trie
        for ch in str(name):
            node = node.setdefault(ch, {})
        node[""] = {}

    def pattern(node: dict) -> str:
        branches = [re.escape(ch) + pattern(child) for ch, child in sorted(node.items()) if ch]
        if not branches:
            return ""
        alt = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        if "" in node:  # a name ends here: the rest is optional
            return f"(?:{alt})?"
        return alt

    return pattern(trie) if trie else "(?!)"  # no names: matches nothing


def threshold_label(t) -> str:
    """How a threshold is written in paths and wildcards: 0.3, never 0.30."""
    return f"{float(t):g}"


BUILTIN_SELECTIONS = ("pruned", "random", "shuffled", "full", "baseline")


def selection_name(spec: dict) -> str:
    """The folder (and `selection` key) of a grid.selections entry: <method>-<feature>, then its budget unless it
    is the default equal budget (-f0.1: a kept fraction; -thr: the pair's threshold)."""
    budget = spec.get("budget", "equal")
    tail = "" if budget == "equal" else "-thr" if budget == "threshold" else f"-f{float(budget):g}"
    return f"{spec['method']}-{spec['feature']}{tail}"


def selection_budget(spec: dict, threshold: str) -> dict:
    """The budget of a grid.selections entry at a pruned set's threshold (prunekd.selection.budget's form)."""
    budget = spec.get("budget", "equal")
    if budget in ("equal", "threshold"):
        return {budget: float(threshold)}
    return {"fraction": float(budget)}


def selections_problem(config: dict) -> tuple[str, str] | None:
    """(config key, problem) when grid.selections asks for what the teacher stores cannot give; None when fine."""
    specs = config["grid"].get("selections") or []
    names = [selection_name(s) for s in specs]
    if len(set(names)) != len(names):
        return "grid.selections", f"an entry is listed twice ({sorted(n for n in names if names.count(n) > 1)[0]})"
    for s in specs:
        if s.get("budget") == "threshold" and s["method"] != "domain_classifier":
            return "grid.selections", f"{s['method']}: budget threshold needs a probability score (domain_classifier)"
        if s["feature"] == "embeddings":
            if not config["teachers"].get("embeddings", False):
                return "grid.selections", f"{s['method']} on embeddings needs teachers.embeddings: true"
            if config["teachers"].get("released_logits") is not None:
                return (
                    "grid.selections",
                    f"{s['method']} on embeddings: teachers.released_logits rows carry no embeddings; use logits",
                )
    return None


def pruned_set_dir(k: dict) -> str:
    """Folder of a pruned set (and its random control) under prune/."""
    return f"{k['target']}/{k['ensemble']}/split{k['split']}/thr{k['threshold']}"


def model_name(k: dict) -> str:
    """A trained model's folder under results/ (and under eval/)."""
    if k["selection"] == "baseline":
        return f"baseline/{k['target']}/split{k['split']}/seed{k['seed']}"
    trained = "full" if k["selection"] == "full" else f"{k['selection']}/thr{k['threshold']}"
    return f"finetune/{k['target']}/{k['ensemble']}/split{k['split']}/{trained}/seed{k['seed']}"


def summary_key(k: dict) -> dict:
    """The key `prunekd evaluate` writes into metrics.json: the summary's row (src/prunekd/results/summarise.py)."""
    return {
        "target": k["target"],
        "ensemble": k["ensemble"],
        "split": k["split"],
        "method": k["selection"],
        "threshold": None if k["threshold"] is None else float(k["threshold"]),
        "seed": int(k["seed"]),
    }


class Grid:
    """The models of one configuration (`config`: the validated config; `targets`: the targets that run, name ->
    settings; `ensembles`: name -> member subset, `all` first), and the files each step reads and writes."""

    def __init__(self, config: dict, targets: dict, ensembles: dict):
        self.config, self.targets, self.ensembles = config, targets, ensembles
        self.results = config["paths"]["results"]
        self.seeded = bool(config["grid"]["seeded_distillation"])  # each fine-tuning seed distils its own student
        # grid.selections: the other selection methods, distilled like the pruned set (report ensemble only)
        self.selection_specs = {selection_name(s): s for s in config["grid"].get("selections") or []}
        self.models = {model_name(k): k for t in targets for k in self.target_models(t)}
        self.trainsets = {
            self.trainset_name(k): {key: k[key] for key in (*TRAINSET_KEYS, *(["seed"] if self.seeded else []))}
            for k in self.models.values()
            if k["selection"] != "baseline"
        }
        self.finetuned = [m for m, k in self.models.items() if k["selection"] != "baseline"]
        self.baselines = [m for m, k in self.models.items() if k["selection"] == "baseline"]

    def spec(self, target: str) -> dict:
        """What a target's part of this grid is made of, JSON-ready: exactly the settings the grid reads for it
        (SPEC_GRID_KEYS, SPEC_CONTROL_KEYS, the target's splits), the ensembles in order, the results folder.

        A step that reads every file of a target (the summaries) is given this in its settings and lists the files
        with the same methods as its rule (Grid.from_spec): in a researcher's sweep the list is longer than Linux
        lets one command line be (128 KiB). Only what decides the files, so that nothing else reruns the step."""
        g, c = self.config["grid"], self.config["controls"]
        return {
            "config": {
                "grid": {k: g[k] for k in SPEC_GRID_KEYS if k in g},
                "controls": {k: c[k] for k in SPEC_CONTROL_KEYS},
                "paths": {"results": self.results},
            },
            "targets": {target: {k: self.targets[target][k] for k in SPEC_TARGET_KEYS}},
            "ensembles": list(self.ensembles.items()),  # pairs: a JSON object's keys may be sorted
        }

    @classmethod
    def from_spec(cls, spec: dict) -> Grid:
        return cls(spec["config"], spec["targets"], dict(spec["ensembles"]))

    # ---- the keys ----------------------------------------------------------------------------

    def splits(self, target: str) -> list[str]:
        return [str(s) for s in self.targets[target]["splits"]]

    def pairs(self, target: str) -> list[tuple[str, str]]:
        """(split, threshold) pairs of a target that get a pruned set, a distillation and fine-tunings: in
        `grid.mode: paper` every threshold on the sweep split and `grid.threshold` on the others."""
        g, sweep = self.config["grid"], self.targets[target]["sweep_split"]
        thrs = [threshold_label(t) for t in g["thresholds"]]
        if g["mode"] == "full":
            return [(s, t) for s in self.splits(target) for t in thrs]
        sweep = None if sweep is None else str(sweep)
        pairs = [(sweep, t) for t in thrs] if sweep in self.splits(target) else []
        return pairs + [(s, threshold_label(g["threshold"])) for s in self.splits(target) if s != sweep]

    def pruned_splits(self, target: str) -> list[str]:
        """The splits of a target that get a domain classifier and pruned sets."""
        return sorted({s for s, _ in self.pairs(target)})

    def selections(self, ensemble: str) -> list[str]:
        """Which AudioSet subsets get distilled per pruned set: the pruned set and, for the report's ensemble,
        the controls asked for (its random control; the pruned set with its teacher targets shuffled)."""
        if ensemble != "all":
            return ["pruned"]
        controls = self.config["controls"]
        return (
            ["pruned"]
            + (["random"] if controls["random"] else [])
            + (["shuffled"] if controls["shuffled"] != "none" else [])
            + list(self.selection_specs)
        )

    def with_full(self, ensemble: str) -> bool:
        return ensemble == "all" and bool(self.config["controls"]["full"])

    def target_models(self, target: str) -> list[dict]:
        """The keys of a target's trained models, in the summary's order."""
        seeds = self.config["grid"]["seeds"]
        keys = []
        for ens in self.ensembles:
            keys += [
                dict(target=target, ensemble=ens, split=s, selection=sel, threshold=t, seed=k)
                for s, t in self.pairs(target)
                for sel in self.selections(ens)
                for k in seeds
            ]
            if self.with_full(ens):
                keys += [
                    dict(target=target, ensemble=ens, split=s, selection="full", threshold=None, seed=k)
                    for s in self.splits(target)
                    for k in seeds
                ]
        return keys + [
            dict(target=target, ensemble=None, split=s, selection="baseline", threshold=None, seed=k)
            for s in self.splits(target)
            for k in self.config["grid"].get("baseline_seeds", seeds)
        ]

    def trainset_name(self, k: dict) -> str:
        """The AudioSet clips a student is distilled on (and, with grid.seeded_distillation, its seed), as a
        folder under distill/."""
        if k["selection"] == "full":
            name = f"full/{k['ensemble']}"
        else:
            name = f"{k['target']}/{k['ensemble']}/split{k['split']}/{k['selection']}/thr{k['threshold']}"
        return f"{name}/seed{k['seed']}" if self.seeded else name

    # ---- what a step reads -------------------------------------------------------------------

    def selection_list(self, trainset: str) -> str:
        """The AudioSet clips a distillation trains on: a pruned set (also for the shuffled control), its random
        control, or all clips."""
        k = self.trainsets[trainset]
        if k["selection"] == "full":
            return f"{self.results}/prune/full.tsv"
        if k["selection"] in self.selection_specs:
            return self.selection_file(k, k["selection"], "kept.tsv")
        return f"{self.results}/prune/{pruned_set_dir(k)}/{'random' if k['selection'] == 'random' else 'kept'}.tsv"

    def selection_file(self, k: dict, name: str, file: str) -> str:
        """A file of a grid.selections entry at a pruned set (its kept.tsv, stats.json)."""
        return f"{self.results}/select/{pruned_set_dir(k)}/{name}/{file}"

    def selection_sets(self, target: str) -> dict[str, str]:
        """<selection>/split<s>/thr<t> -> kept list of every selection a target's comparison holds: the pruned sets,
        their random controls and the grid.selections entries (report ensemble)."""
        out = {}
        for s, t in self.pairs(target):
            k = dict(target=target, ensemble="all", split=s, threshold=t)
            for sel in self.selections("all"):
                if sel in ("pruned", "random") or sel in self.selection_specs:
                    out[f"{sel}/split{s}/thr{t}"] = self.selection_list_of(k, sel)
        return out

    def selection_list_of(self, k: dict, sel: str) -> str:
        if sel in self.selection_specs:
            return self.selection_file(k, sel, "kept.tsv")
        return f"{self.results}/prune/{pruned_set_dir(k)}/{'random' if sel == 'random' else 'kept'}.tsv"

    def student(self, model: str) -> str:
        """The distilled student a fine-tuning starts from."""
        return f"{self.results}/distill/{self.trainset_name(self.models[model])}/student.pt"

    def eval_metrics(self, target: str) -> list[str]:
        return [f"{self.results}/eval/{m}/metrics.json" for m, k in self.models.items() if k["target"] == target]

    def training_curves(self, target: str) -> dict[str, str]:
        """<kind>:<run> -> curve.tsv of every training run behind a target's summary: its fine-tunings and
        baselines, and the distillations they start from (one plot each in the report)."""
        out = {}
        for m, k in self.models.items():
            if k["target"] == target:
                if k["selection"] != "baseline":
                    out[f"distill:{self.trainset_name(k)}"] = (
                        f"{self.results}/distill/{self.trainset_name(k)}/curve.tsv"
                    )
                kind, run = m.split("/", 1)
                out[f"{kind}:{run}"] = f"{self.results}/{m}/curve.tsv"
        return out

    def validation_reports(self, target: str) -> list[str]:
        """The domain classifiers' validation.json of a target (every ensemble, every split with pruned sets)."""
        return [
            f"{self.results}/domain/{target}/{ens}/split{s}/validation.json"
            for ens in self.ensembles
            for s in self.pruned_splits(target)
        ]

    def prune_files(self, target: str, name: str) -> list[str]:
        """A file of every pruned set of a target (stats.json, enrichment.json, ...), ensembles then pairs."""
        return [
            f"{self.results}/prune/{target}/{ens}/split{s}/thr{t}/{name}"
            for ens in self.ensembles
            for s, t in self.pairs(target)
        ]

    def agreement_classifiers(self) -> dict[str, str]:
        """Domain classifiers whose kept sets the released-logits agreement check compares: the report's
        ensemble, every target and split that gets pruned sets."""
        return {
            f"{t}/split{s}": f"{self.results}/domain/{t}/all/split{s}/classifier.pt"
            for t in self.targets
            for s in self.pruned_splits(t)
        }

    def known_answer_metrics(self, target: str, split: str) -> list[str]:
        """The evaluations of the known-answer split's models (baseline, and the grid threshold's
        distillations with the report's ensemble)."""
        thr = threshold_label(self.config["grid"]["threshold"])
        return [
            f"{self.results}/eval/{m}/metrics.json"
            for m, k in self.models.items()
            if k["target"] == target
            and k["split"] == split
            and k["ensemble"] in (None, "all")
            and (k["selection"] == "baseline" or k["threshold"] == thr)
        ]

    def known_answer_students(self, target: str, split: str) -> dict[str, str]:
        """<selection>/seed<k> -> student.pt of the split's distillations at the grid threshold (report ensemble):
        the students whose zero-shot accuracy the known-answer report holds against their fine-tuned one."""
        thr = threshold_label(self.config["grid"]["threshold"])
        out = {}
        for m, k in self.models.items():
            if (k["target"], k["split"], k["ensemble"], k["threshold"]) == (target, split, "all", thr):
                out.setdefault(f"{k['selection']}/seed{k['seed']}", self.student(m))
        return out

    # ---- submissions (targets.<name>.evaluation) ---------------------------------------------

    def submission_picks(self, target: str) -> list[str]:
        """per_seed: one submission per seed (seed<k>); best: one per split (best)."""
        ev = self.targets[target].get("evaluation")
        if not ev:
            return []
        return ["best"] if ev["models"] == "best" else [f"seed{k}" for k in self.config["grid"]["seeds"]]

    def submission_candidates(self, target: str, split: str, pick: str) -> list[str]:
        """Evaluated runs a submission chooses from: the method's fine-tunings (report ensemble, pruned sets)."""
        thrs = [t for s, t in self.pairs(target) if s == split]
        method = dict(target=target, ensemble="all", split=split, selection="pruned")
        seeds = self.config["grid"]["seeds"]
        if pick == "best":
            return [model_name({**method, "threshold": t, "seed": k}) for t in thrs for k in seeds]
        thr = threshold_label(self.config["grid"]["threshold"])
        if thr not in thrs:
            raise ValueError(
                f"targets.{target}.evaluation.models: per_seed submits the pruned set at grid.threshold {thr}, "
                f"which split {split} does not have (its thresholds: {thrs}); use models: best"
            )
        return [model_name({**method, "threshold": thr, "seed": pick.removeprefix("seed")})]


def graded_world_problem(config: dict) -> tuple[str, str] | None:
    """(config key, problem) when the graded world cannot hold its kinds: each of its three special kinds of clip
    is `scene_share` of the pool (docs/selections.md, "The graded world"), so the share can be at most a third."""
    demo = config["demo"]
    if demo.get("enabled") and demo.get("world") == "graded" and demo["scene_share"] > 1 / 3:
        return (
            "demo.scene_share",
            f"{demo['scene_share']} is above 1/3: the graded world gives that share to each of three kinds of clip",
        )
    return None


def known_answer_problem(config: dict, targets: dict) -> tuple[str, str] | None:
    """(config key, problem) when `known_answer` asks for what the configuration cannot give; None when fine."""
    ka = config["known_answer"]
    if not ka["enabled"]:
        return None
    if not config["demo"]["enabled"]:
        return "known_answer.enabled", "needs demo.enabled: true (the truth is the synthetic world's)"
    t = ka["target"]
    if t not in targets or targets[t]["adapter"] != "tau2022":
        return "known_answer.target", f"{t!r} is not a TAU-format target of grid.targets"
    if str(ka["split"]) not in [str(s) for s in targets[t]["splits"]]:
        return "known_answer.split", f"{str(ka['split'])!r} is not one of the target's splits"
    return None
