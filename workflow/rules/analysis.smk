# Analysis phase: test-set embeddings of the compared methods, modality gap, t-SNE.


rule analyze:
    input:
        runs=lambda w: [j.job_dir for j in grid.analysis_jobs(CFG)[w.dataset]],
        code=CODE_ANALYSIS,
    output:
        directory(f"{RES}/analysis/{{dataset}}"),
    params:
        config=CONFIG_FILE,
        analysis=json.dumps(CFG["analysis"], sort_keys=True),
    log:
        f"logs/{NAME}/analysis/{{dataset}}.log",
    conda:
        ENV
    threads: CFG["threads"]
    resources:
        mem_mb=lambda wildcards, attempt: 3000 * attempt,
        runtime=lambda wildcards, attempt: 60 * attempt,
    shell:
        "python -m mla analyze --config {params.config} --dataset {wildcards.dataset} > {log} 2>&1"


rule phase_analysis:
    input:
        [grid.analysis_dir(CFG, d) for d in CFG["analysis"]["datasets"]],
