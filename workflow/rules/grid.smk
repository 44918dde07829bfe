# The experiment grid (src/prunekd/dag/grid.py: the keys of every trained model and the paths made from them), and
# the glue the rules need: wildcard constraints, functions of wildcards, what `all` builds.
_grid = _load("dag.grid")
GRID = _grid.Grid(config, TARGETS, ENSEMBLES)
SEEDED = GRID.seeded
MODELS, TRAINSETS, FINETUNED, BASELINES = GRID.models, GRID.trainsets, GRID.finetuned, GRID.baselines
threshold_label, model_name, summary_key = _grid.threshold_label, _grid.model_name, _grid.summary_key
splits, grid_pairs, selections = GRID.splits, GRID.pairs, GRID.selections


wildcard_constraints:
    trainset=_alternatives(TRAINSETS),
    model=_alternatives(MODELS),
    sel=_alternatives(GRID.selection_specs),


@per_job
def selection_list(w):
    return GRID.selection_list(w.trainset)


@per_job
def finetune_inputs(w):
    """A fine-tuning's (or baseline's) inputs: its target's decoded clips (target_data) and the distilled student it
    starts from (none for a baseline)."""
    out = target_data(w)
    if MODELS[w.model]["selection"] != "baseline":
        out["student"] = GRID.student(w.model)
    return out


def finetune_args(model):
    """The fine-tuning command's --manifest (target_manifest), --split, --seed and --init (the student of
    finetune_inputs)."""
    k = MODELS[model]
    init = ["--init", GRID.student(model)] if k["selection"] != "baseline" else []
    return shlex.join(
        ["--manifest", target_manifest(model), "--split", str(k["split"]), "--seed", str(k["seed"]), *init]
    )


def eval_args(model):
    """The evaluation command's --manifest (target_manifest) and --key (the model's row in the summary)."""
    return shlex.join(["--manifest", target_manifest(model), "--key", json.dumps(summary_key(MODELS[model]))])


@per_job
def target_data(w):
    """A trained model's target data as its jobs' input: the decoded clips (evaluation; fine-tuning's first part)."""
    return {"decoded": f"{R}/decoded/{MODELS[w.model]['target']}"}


def target_manifest(model):
    """The manifest a trained model's jobs read beside its decoded clips (labels, splits, devices). Not an input of
    theirs: the decoded store is made from it (rule decode_target), so it orders and reruns them already, and each
    of a sweep's thousands of jobs would make Snakemake resolve one more file."""
    return f"{R}/manifests/{MODELS[model]['target']}.tsv"


RELEASED_DIR = f"{R}/logits/audioset/released"  # with teachers.released_logits: what the files cover


@per_job
def compute_table(w):
    """The rows the members compute (released-index), for AudioSet's shards when released logits are set."""
    return [f"{RELEASED_DIR}/compute.tsv"] if w.dataset == "audioset" and RELEASED is not None else []


@per_job
def released_coverage(w):
    return [f"{RELEASED_DIR}/released.json"] if w.dataset == "audioset" and RELEASED is not None else []


# ---- what `all` builds ----------------------------------------------------------------------

SUMMARY_NAMES = ["table1", "table2", "controls", "validation"]
ENRICHMENT_NAMES = ["enrichment", "classifier_weights"]


# The known-answer report (docs/known-answer.md): on the demo's synthetic world only, whose truth it reads.
KNOWN_ANSWER = None
_problem = _grid.known_answer_problem(config, TARGETS)
if _problem:
    refuse_key(*_problem)
_problem = _grid.selections_problem(config)
if _problem:
    refuse_key(*_problem)
_problem = _grid.graded_world_problem(config)
if _problem:
    refuse_key(*_problem)
if config["known_answer"]["enabled"]:
    KNOWN_ANSWER = {k: v for k, v in config["known_answer"].items() if k != "enabled"}
    KNOWN_ANSWER["split"] = str(KNOWN_ANSWER["split"])


def known_answer_metrics():
    return GRID.known_answer_metrics(KNOWN_ANSWER["target"], KNOWN_ANSWER["split"])


def known_answer_students():
    return GRID.known_answer_students(KNOWN_ANSWER["target"], KNOWN_ANSWER["split"])


def summary_outputs():
    out = [f"{R}/known_answer/{n}" for n in ("table.html", "plot.png", "verdict.json")] if KNOWN_ANSWER else []
    for target in TARGETS:
        out += expand(f"{R}/summary/{target}/{{name}}.{{ext}}", name=SUMMARY_NAMES, ext=["csv", "md", "html"])
        out += [f"{R}/summary/{target}/{n}.png" for n in ("table1", "table2", "controls", "devices", "enrichment")]
        out += expand(f"{R}/summary/{target}/{{name}}.{{ext}}", name=ENRICHMENT_NAMES, ext=["csv", "md", "html"])
        for ens in ENSEMBLES:
            for s in GRID.pruned_splits(target):
                out += [f"{R}/domain/{target}/{ens}/split{s}/{f}" for f in ("score_histogram.png", "validation.json")]
    if GRID.selection_specs:  # grid.selections: the methods side by side
        out += [f"{R}/summary/{t}/selections.{e}" for t in TARGETS for e in ("csv", "md", "html", "png")]
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
