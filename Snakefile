# MLA reproduction pipeline: table of contents.
#   snakemake --cores 8 all                                   built-in benchmark -> reports/builtin/
#   snakemake --cores 8 all --configfile config/smoke.yaml    a two-minute run of every phase -> reports/smoke/
#   snakemake --cores 8 all --configfile config/paper.yaml    the paper's grid  -> reports/paper/
# Targets go BEFORE --configfile (it takes several files), or write --configfile=FILE.
# The config: config/config.yaml, overlaid by --configfile files and --config key=value settings
# (workflow/rules/common.smk, docs/configuration.md).
# Phase targets (one phase alone, e.g. data on a CPU node): phase_data, phase_train,
# phase_missing, phase_ablation, phase_analysis, phase_report.

include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/real_data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/missing.smk"
include: "workflow/rules/ablation.smk"
include: "workflow/rules/analysis.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/released.smk"

# Light rules that stay on the submit host under a cluster executor (profiles/slurm):
# generating the built-in media, decoding features, writing the report.
# Run by Snakemake itself, never submitted to a cluster: the built-in data and report take seconds, and
# the downloads need the internet, which compute nodes often lack.
localrules: generate_builtin, features_builtin, report, split_lists, download_raw


rule all:
    default_target: True
    input:
        REPORT_FILES,
        RELEASED_FILES,  # the authors' checkpoints scored (workflow/rules/released.smk), if any are listed
        # Every job's completion marker, asked for here too: Snakemake reruns a job whose output is
        # missing only when something it must run needs it, and the report may be up to date.
        [j.marker for j in JOBS.values()],
