# Analysis phase: test-set embeddings of the compared methods, modality gap, t-SNE.


rule analyze:
    input:
        runs=lambda w: [j.marker for j in grid.analysis_jobs(CFG)[w.dataset]],
        code=CODE_ANALYSIS,
    output:
        directory(f"{RES}/analysis/{{dataset}}"),
    params:
        analysis=json.dumps(CFG["analysis"], sort_keys=True),
        model=lambda w: json.dumps(mla_config.model_for(CFG, w.dataset), sort_keys=True),
    log:
        f"logs/{NAME}/analysis/{{dataset}}.log",
    conda:
        ENV
    threads: CFG["threads"]
    resources:
        mem_mb=lambda wildcards, attempt: 3000 * attempt,
        runtime=lambda wildcards, attempt: 60 * attempt,
    shell:
        "{PYTHON:q} -m mla analyze --config {MLA_CONFIG:q} --dataset {wildcards.dataset:q} > {log:q} 2>&1"


rule phase_analysis:
    input:
        [grid.analysis_dir(CFG, d) for d in CFG["analysis"]["datasets"]],
