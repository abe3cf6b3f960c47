# Train phase (Table 1): datasets x methods x seeds, one process per job (all its seeds).


rule train:
    input:
        unpack(train_inputs("train")),
    output:
        directory(f"{RES}/train/{{dataset}}/{{tag}}"),
    params:
        config=CONFIG_FILE,
        job=lambda w: f"train/{w.dataset}/{w.tag}",
        fingerprint=train_params("train"),
    log:
        f"logs/{NAME}/train/{{dataset}}/{{tag}}.log",
    conda:
        ENV
    threads: CFG["threads"]  # the torch threads a job uses (mla.train.set_threads), so a cluster allocates them
    resources:
        mem_mb=lambda wildcards, attempt: 3000 * attempt,
        runtime=lambda wildcards, attempt: 240 * attempt,
    shell:
        "python -m mla train --config {params.config} --job {params.job} > {log} 2>&1"


rule phase_train:
    input:
        [j.job_dir for j in JOBS.values() if j.phase == "train"],
