# prunekd: target-specific dataset pruning for knowledge distillation (UPB-NT, DCASE2024 Task 1).
# manifest -> teacher logits (Zarr) -> domain classifier -> pruned set -> distilled student
#          -> fine-tuned model -> evaluation -> summary tables and report.


configfile: "config.yaml"


# Helpers (no rules): config and checks, data paths, shard planning, the grid, the settings slices.
include: "workflow/rules/common.smk"
include: "workflow/rules/inputs.smk"
include: "workflow/rules/shards.smk"
include: "workflow/rules/grid.smk"
include: "workflow/rules/settings.smk"
include: "workflow/rules/submission_common.smk"
# Rules, in the order of the data flow (docs/architecture.md).
include: "workflow/rules/data.smk"
include: "workflow/rules/teachers.smk"
include: "workflow/rules/domain.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/results.smk"
include: "workflow/rules/submission.smk"


# Every params function of every rule, its signature worked out once (per_job, workflow/rules/common.smk).
for _rule in workflow.rules:
    for _param in _rule.params:
        if inspect.isfunction(_param):
            per_job(_param)


report: "workflow/report/workflow.rst"


onstart:
    refuse_missing_data(workflow.dag)
    warn_ungrouped(workflow)


rule all:
    default_target: True
    input:
        summary_outputs(),
        submission_outputs(),
        package_outputs(),
