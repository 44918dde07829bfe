# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SMK := $(BIN)/snakemake

.PHONY: demo tour known-answer known-answer-seeds compare-selections test test-fast report lint fmt dryrun bench clean install-profile

# --no-cache-dir: pip's wheel cache would hold a second copy of PyTorch's ~3 GB of CUDA wheels; a CI machine with
# little disk failed the install on it ("No space left on device").
PIP := $(BIN)/pip install --quiet --no-cache-dir
$(STAMP): envs/requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(PIP) --upgrade pip
	$(PIP) -r envs/requirements.txt
	$(PIP) --no-deps -e .
	touch $(STAMP)

# The whole pipeline on a built-in synthetic world whose answer is known (docs/known-answer.md), then the HTML
# report, which opens on the verdict: pruned > random > no distillation, and no gain with shuffled teachers.
demo: $(STAMP)
	PATH=$(abspath $(BIN)):$$PATH $(SMK) --profile profiles/demo
	PATH=$(abspath $(BIN)):$$PATH $(SMK) --profile profiles/demo --report results/report.html \
	    --report-metadata results/known_answer/report_metadata.yaml
	@cat results/known_answer/table.md
	@echo "Verdict, table and plot: results/known_answer/  Report (opens on the verdict): results/report.html"

# Every feature on the tour world (two targets, the CSV target, damaged clips, the threshold sweep, the full-set
# control): what the tests run. Its accuracies mean nothing; the demo's world is the one whose answer is known.
tour: $(STAMP)
	PATH=$(abspath $(BIN)):$$PATH $(SMK) --profile profiles/tour
	PATH=$(abspath $(BIN)):$$PATH $(SMK) --profile profiles/tour --report results/tour/report.html
	@echo "Tables: results/tour/summary/<target>/ (table1, table2, controls: .md .csv .html; tau, sounds)  Report: results/tour/report.html"

# The pipeline on a synthetic world whose answer is known (docs/known-answer.md): the pruned set against the
# world's truth, pruned > random > no distillation over 3 seeds (6 without distillation), the shuffled control.
KA := results/known-answer
known-answer: $(STAMP)
	PATH=$(abspath $(BIN)):$$PATH $(SMK) --profile profiles/known-answer
	PATH=$(abspath $(BIN)):$$PATH $(SMK) --profile profiles/known-answer --report $(KA)/report.html \
	    --report-metadata $(KA)/known_answer/report_metadata.yaml
	@cat $(KA)/known_answer/table.md
	@echo "Table and plot: $(KA)/known_answer/ (table.md .csv .html, plot.png, verdict.json)  Report: $(KA)/report.html"

# The demo's verdict at world seeds nobody chose, each run once in its own folders, its data and intermediate
# results removed after it (docs/known-answer.md, "Over world seeds"): results/seeds/record.md.
SEEDS ?= 101 102 103 104 105
known-answer-seeds: $(STAMP)
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/python -m prunekd.demo.seeds --profile profiles/demo --seeds $(SEEDS) \
	    --out results/seeds

# Every selection method on both features at equal budget, three fine-tuning seeds each, on the graded world whose
# pool holds look-alike and partly useful clips beside the target-like ones (docs/selections.md, "The graded world").
# make compare-selections WORLD_SEED=1: the same on another seed's world, in its own folders (...-seed1/).
WORLD_SEED ?= 0
CS := results/compare-selections$(if $(filter 0,$(WORLD_SEED)),,-seed$(WORLD_SEED))
CS_DATA := data/compare-selections$(if $(filter 0,$(WORLD_SEED)),,-seed$(WORLD_SEED))
CS_ARGS := --configfiles config.yaml profiles/known-answer/known-answer.yaml \
    profiles/compare-selections/compare-selections.yaml $(CS)/world.yaml
compare-selections: $(STAMP)
	mkdir -p $(CS)
	printf 'demo: {seed: %s}\npaths: {audioset: %s/audioset, teacher_weights: %s/weights, results: %s}\ntargets: {tau: {root: %s/tau}}\n' \
	    $(WORLD_SEED) $(CS_DATA) $(CS) $(CS) $(CS_DATA) > $(CS)/world.yaml
	PATH=$(abspath $(BIN)):$$PATH $(SMK) --profile profiles/compare-selections $(CS_ARGS)
	PATH=$(abspath $(BIN)):$$PATH $(SMK) --profile profiles/compare-selections $(CS_ARGS) --report $(CS)/report.html
	@cat $(CS)/summary/tau/selections.md
	@echo "Table and plot: $(CS)/summary/tau/selections.{md,csv,html,png}  Report: $(CS)/report.html"

test: $(STAMP)
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/python -m pytest -q -n 2 --dist loadfile --durations=12 tests

# The edit-test loop: everything but the tests that start Snakemake (the DAG) or need the real SLURM.
test-fast: $(STAMP)
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/python -m pytest -q -m "not slow and not slurm" tests

# Formatting and lint of the Python (ruff) and the rules (snakefmt, snakemake --lint); CI runs it.
LINTED := src tests benchmarks
RULES := Snakefile workflow
lint: $(STAMP)
	$(BIN)/ruff format --check $(LINTED)
	$(BIN)/ruff check $(LINTED)
	$(BIN)/snakefmt --check $(RULES)
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/python .ci/snakemake-lint $(SMK)
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/python .ci/snakemake-lint $(SMK) --profile profiles/demo
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/python .ci/snakemake-lint $(SMK) --profile profiles/tour

# Apply the formatters (what `make lint` checks).
fmt: $(STAMP)
	$(BIN)/ruff format $(LINTED)
	$(BIN)/ruff check --fix $(LINTED)
	$(BIN)/snakefmt $(RULES)

dryrun: $(STAMP)
	PATH=$(abspath $(BIN)):$$PATH $(SMK) -n --quiet rules

clean:
	rm -rf results data/demo data/tour data/known-answer* data/compare-selections* .snakemake

# The SLURM profile, installed by name: afterwards `snakemake --profile slurm` (docs/cluster.md, "SLURM").
PROFILE_DIR := $(or $(XDG_CONFIG_HOME),$(HOME)/.config)/snakemake
install-profile:
	mkdir -p $(PROFILE_DIR)
	ln -sfn $(abspath profiles/slurm) $(PROFILE_DIR)/slurm
	@echo "$(PROFILE_DIR)/slurm -> $(abspath profiles/slurm)"
