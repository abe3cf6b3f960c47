# MLA reproduction pipeline: table of contents.
#   snakemake --cores 8 all                                   built-in benchmark -> reports/builtin/
#   snakemake --cores 8 --configfile config/paper.yaml all    the paper's grid  -> reports/paper/
# Phase targets (one per DVC stage): phase_data, phase_train, phase_missing, phase_ablation,
# phase_analysis, phase_report.

configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/real_data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/missing.smk"
include: "workflow/rules/ablation.smk"
include: "workflow/rules/analysis.smk"
include: "workflow/rules/report.smk"

# Light rules that stay on the submit host under a cluster executor (profiles/slurm):
# generating the built-in media, decoding features, writing the report.
localrules: generate_builtin, features_builtin, report


rule all:
    default_target: True
    input:
        REPORT_FILES,
