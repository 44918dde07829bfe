# prunekd: target-specific dataset pruning for knowledge distillation (UPB-NT, DCASE2024 Task 1).
# manifest -> teacher logits (Zarr) -> domain classifier -> pruned set -> distilled student
#          -> fine-tuned model -> evaluation -> summary tables and report.

configfile: "config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/submission_common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/teachers.smk"
include: "workflow/rules/domain.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/results.smk"
include: "workflow/rules/submission.smk"


report: "workflow/report/workflow.rst"


onstart:
    refuse_missing_data(workflow.dag)


rule all:
    input:
        summary_outputs(),
        submission_outputs(),
    default_target: True
