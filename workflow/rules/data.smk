# Data phase: generate the built-in benchmark's raw media, then decode every dataset once
# into its feature store (shards + manifest). Both directories are keyed by the settings that
# produce them (mla/grid.py raw_dir, feature_dir: <dataset>-<12 hex digits of their sha256>), so
# configs with other settings get their own copies and configs with the same settings share them.

BUILTIN = [d for d in CFG["datasets"] if d in CFG["data"]]


rule generate_builtin:
    input:
        code=CODE_DATA,
    output:
        directory("data/raw/builtin/{dataset}-{key}"),
    params:
        generator=lambda w: json.dumps(grid.generator_settings(CFG, w.dataset), sort_keys=True),
    log:
        "logs/data/generate_{dataset}-{key}.log",
    wildcard_constraints:
        dataset=one_of(BUILTIN),
        key=one_of(sorted({grid.raw_dir(CFG, d).rsplit("-", 1)[1] for d in BUILTIN})),
    conda:
        ENV
    threads: 1
    shell:
        "{PYTHON:q} -m mla generate --config {MLA_CONFIG:q} --dataset {wildcards.dataset:q} --out {output:q} > {log:q} 2>&1"


rule features_builtin:
    input:
        raw=lambda w: grid.raw_dir(CFG, w.dataset),
        code=CODE_FEATURES,
    output:
        directory("data/features/builtin/{dataset}-{key}"),
    params:
        features=lambda w: json.dumps(grid.feature_settings(CFG, w.dataset), sort_keys=True),
    log:
        "logs/data/features_{dataset}-{key}.log",
    wildcard_constraints:
        dataset=one_of(BUILTIN),
        key=one_of(sorted({grid.feature_dir(CFG, d).rsplit("-", 1)[1] for d in BUILTIN})),
    conda:
        ENV
    threads: 1
    shell:
        "{PYTHON:q} -m mla features --config {MLA_CONFIG:q} --dataset {wildcards.dataset:q} "
        "--raw {input.raw:q} --out {output:q} > {log:q} 2>&1"


rule phase_data:
    input:
        [grid.feature_dir(CFG, d) for d in CFG["datasets"]],
