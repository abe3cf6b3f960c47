# Train phase (Table 1): datasets x methods x seeds, one process per job (all its seeds).
from mla.resources import train_mem_mb  # noqa: E402


rule train:
    input:
        unpack(train_inputs("train")),
    output:
        f"{RES}/train/{{dataset}}/{{tag}}/{grid.COMPLETE}",  # written last: a directory without it reruns
    params:
        job=lambda w: f"train/{w.dataset}/{w.tag}",
        fingerprint=train_params("train"),
    log:
        f"logs/{NAME}/train/{{dataset}}/{{tag}}.log",
    conda:
        ENV
    threads: CFG["threads"]  # the torch threads a job uses (mla.train.set_threads), so a cluster allocates them
    resources:
        # Training streams batches from the store's shard files, so memory is the runtime, the model's
        # copies and a few batches (shapes from the store's manifest), not the dataset: the estimate
        # and its terms are in mla/resources.py. Inherited by train_missing and train_ablation.
        mem_mb=lambda wildcards, input, attempt: train_mem_mb(CFG, wildcards.dataset, input.features) * attempt,
        runtime=lambda wildcards, attempt: 240 * attempt,
    shell:
        "{PYTHON:q} -m mla train --config {MLA_CONFIG:q} --job {params.job:q} > {log:q} 2>&1"


rule phase_train:
    input:
        [j.marker for j in JOBS.values() if j.phase == "train"],
