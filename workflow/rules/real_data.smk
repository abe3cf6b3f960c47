# Data phase of the real datasets (config/paper.yaml): official split lists, raw data (downloaded,
# or a user's copy verified where it lies), `mla prepare` into the feature store, and the
# conversion of third-party encoder weights. Paths: mla/real_paths.py; helpers: common.smk.
# The raw data of a copy used in place are never an output here: its manifest is.

# Downloads and in-place verification run on the submit host under a cluster executor (compute
# nodes often have no internet access, and a user's copy is where the user can see it).
localrules: split_lists, download_raw, verify_raw


rule split_lists:
    output:
        directory("data/splits/{dataset}"),
    params:
        sources=lambda w: sources_fingerprint(w.dataset),
    log:
        "logs/data/split_lists_{dataset}.log",
    wildcard_constraints:
        dataset=one_of(REAL),
    conda:
        ENV
    threads: 1
    shell:
        "{PYTHON:q} -m mla acquire --dataset {wildcards.dataset:q} --splits {output:q} > {log:q} 2>&1"


# The manifest is written last, so a failed or interrupted download leaves no output while its
# files stay in data/raw/<dataset>/ and the next run resumes them.
rule download_raw:
    input:
        splits="data/splits/{dataset}",
    output:
        "data/raw/{dataset}/manifest.json",
    params:
        args=acquire_args,
        sources=lambda w: sources_fingerprint(w.dataset),
    log:
        "logs/data/download_{dataset}.log",
    wildcard_constraints:
        dataset=one_of(DOWNLOADED),
    conda:
        ENV
    threads: 4
    shell:
        "{PYTHON:q} -m mla acquire --dataset {wildcards.dataset:q} --lists {input.splits:q} --manifest {output:q} "
        "--workers {threads} {params.args} > {log:q} 2>&1"


# A copy that stays where it lies (raw.<dataset>.path): every expected file is hashed in place
# and listed with its sha256 in the manifest. Changes inside the copy are not watched: after
# replacing files, rerun with `--forcerun verify_raw`.
rule verify_raw:
    input:
        unpack(acquire_inputs),
    output:
        "data/raw/{dataset}/manifest.json",
    params:
        args=acquire_args,
        sources=lambda w: sources_fingerprint(w.dataset),
    log:
        "logs/data/verify_{dataset}.log",
    wildcard_constraints:
        dataset=one_of(IN_PLACE),
    conda:
        ENV
    threads: 4
    shell:
        "{PYTHON:q} -m mla acquire --dataset {wildcards.dataset:q} --lists {input.splits:q} --manifest {output:q} "
        "--workers {threads} {params.args} > {log:q} 2>&1"


rule prepare:
    input:
        unpack(prepare_inputs),
    output:
        directory("data/features/{dataset}"),
    params:
        root=lambda w: real_paths.raw_root(CFG, w.dataset),
        options=prepare_params,
    log:
        "logs/data/prepare_{dataset}.log",
    wildcard_constraints:
        dataset=one_of(REAL),
    conda:
        ENV
    threads: prepare_threads
    resources:
        mem_mb=lambda wildcards, attempt: 16000 * attempt,
        runtime=lambda wildcards, attempt: 720 * attempt,
    shell:
        "{PYTHON:q} -m mla prepare --config {MLA_CONFIG:q} --dataset {wildcards.dataset:q} --raw {params.root:q} "
        "--splits {input.splits:q} --out {output:q} --workers {threads} > {log:q} 2>&1"


rule convert_weights:
    input:
        unpack(weights_inputs),
    output:
        weights="data/weights/{name}.pt",
        report="data/weights/{name}.pt.json",
    params:
        args=convert_args,
    log:
        "logs/data/convert_weights_{name}.log",
    wildcard_constraints:
        name=one_of(sorted(WEIGHTS)),
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=lambda wildcards, attempt: 8000 * attempt,
    shell:
        "{PYTHON:q} -m mla convert-weights {params.args} --out {output.weights:q} > {log:q} 2>&1"


# Everything the real datasets' training needs; the DVC data stage of paper/dvc.yaml runs it
# together with phase_data.
rule phase_real_data:
    input:
        real_paths.data_outputs(CFG),
