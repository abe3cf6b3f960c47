# Data phase: generate the built-in benchmark's raw media, then decode every dataset once
# into its feature store (shards + manifest).


rule generate_builtin:
    input:
        code=CODE_DATA,
    output:
        directory("data/raw/builtin/{dataset}"),
    params:
        config=CONFIG_FILE,
        generator=lambda w: json.dumps(CFG["data"][w.dataset], sort_keys=True),
    log:
        "logs/data/generate_{dataset}.log",
    conda:
        ENV
    threads: 1
    shell:
        "python -m mla generate --config {params.config} --dataset {wildcards.dataset} --out {output} > {log} 2>&1"


rule features_builtin:
    input:
        raw="data/raw/builtin/{dataset}",
        code=CODE_FEATURES,
    output:
        directory("data/features/builtin/{dataset}"),
    params:
        config=CONFIG_FILE,
        features=json.dumps([CFG["features"], CFG["split_seed"], CFG["val_fraction"]], sort_keys=True),
    log:
        "logs/data/features_{dataset}.log",
    conda:
        ENV
    threads: 1
    shell:
        "python -m mla features --config {params.config} --dataset {wildcards.dataset} "
        "--raw {input.raw} --out {output} > {log} 2>&1"


rule phase_data:
    input:
        [grid.feature_dir(d) for d in CFG["datasets"]],
