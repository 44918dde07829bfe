# The slices of the config each step reads (its `params.settings`): a changed value reruns that step only.
# Keys that choose only how a step reads its input (src/prunekd/dag/reruns.py, IO_KEYS) are left out of them: the
# rules pass those as resources (not a rerun trigger) to the command's flags, so that changing them reruns nothing.
_reruns = _load("dag.reruns")


def computed(section):
    """config[section] without the reading options: what decides a step's result."""
    return _reruns.computed(config[section])


def training_settings(epochs_key, target):
    t = computed("training")
    t.pop("epochs_finetune"), t.pop("epochs_baseline")
    if not t.get("test_every_epochs"):  # off: the settings (and checkpoints' fingerprints) of runs before it
        t.pop("test_every_epochs", None)
    t["epochs"] = config["training"][epochs_key]
    t["clip_seconds"] = TARGETS[target]["clip_seconds"]
    return t


def clip_settings(dataset):
    """How a dataset's clips are cut for the teachers."""
    if dataset == "audioset":
        return {"clip_seconds": config["data"]["audioset_clip_seconds"], "tile_to_10s": False}
    return {k: TARGETS[dataset][k] for k in ("clip_seconds", "tile_to_10s")}


def teacher_settings(dataset):
    teachers = {**computed("teachers"), "members": MEMBERS}  # `all` as the list it stands for
    # Only AudioSet's training clips can come from released logits; the key is left out where it is unset, so
    # that stores computed before it existed are not recomputed.
    teachers.pop("released_logits", None)
    if dataset == "audioset" and RELEASED is not None:
        teachers["released_logits"] = RELEASED
    return settings(shard_size=config["teachers"]["shard_size"], teachers=teachers, data=clip_settings(dataset))


def released_settings():
    return settings(shard_size=config["teachers"]["shard_size"], released_logits=RELEASED)


def agreement_settings():
    teachers = {**computed("teachers"), "members": MEMBERS, "released_logits": RELEASED}
    return settings(teachers=teachers, data=clip_settings("audioset"), thresholds=config["grid"]["thresholds"])


def target_settings(target):
    """What a target's manifest is built from."""
    t = TARGETS[target]
    keys = ["adapter", "splits"] + (["root"] if t["adapter"] == "tau2022" else ["csv", "audio_root"])
    if t["adapter"] == "tau2022":
        keys, t = keys + ["split_dir"], {**t, "split_dir": _layouts.tau_split_dir(t["root"], t.get("split_dir"))}
    return settings(
        **{k: t[k] for k in keys}, test_split=t.get("test_split", "test"), bad_audio=config["data"]["bad_audio"]
    )


def eval_settings(target):
    return settings(
        frontend=config["frontend"],
        student=config["student"],
        clip_seconds=TARGETS[target]["clip_seconds"],
    )


def distill_settings(trainset):
    """The distillation's config slice; a seeded distillation (grid.seeded_distillation) takes distillation.seed
    plus its fine-tuning seed, the shuffled control its way of shuffling. Keys only where they apply, so that the
    other distillations keep their settings (and are not rerun)."""
    k, d = TRAINSETS[trainset], computed("distillation")
    if SEEDED:
        d["seed"] = d["seed"] + int(k["seed"])
    if k["selection"] == "shuffled":
        d["shuffle"] = config["controls"]["shuffled"]
    return d


def selection_settings(sel, ensemble):
    """What `prunekd select` reads: the classifier's settings (its hold-out, and the method itself), the members,
    the method's own settings and the proxy's."""
    method = GRID.selection_specs[sel]["method"]
    own = config["selection"].get(method)
    return settings(
        domain_classifier=config["domain_classifier"],
        members=ENSEMBLES[ensemble],
        seed=config["selection"]["seed"],
        proxy=config["selection"]["proxy"],
        **({method: own} if own else {}),
    )
