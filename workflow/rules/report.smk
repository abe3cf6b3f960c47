# Report phase: Tables 1-3 beside the paper's numbers, claims, figures, report.html.

REPORT_FILES = grid.report_files(CFG)


rule report:
    input:
        jobs=[j.job_dir for j in JOBS.values()],
        analysis=[grid.analysis_dir(CFG, d) for d in CFG["analysis"]["datasets"]],
        released=lambda w: RELEASED_FILES,  # the authors' checkpoints scored, if any are listed (released.smk)
        code=CODE_REPORT,
    output:
        [f for f in REPORT_FILES if not f.endswith((".png", "report.html"))],
        [report(f, category="Figures") for f in REPORT_FILES if f.endswith(".png")],
        html=report(f"{REP}/report.html", category="Report"),
    params:
        config=CONFIG_FILE,
        out=lambda w, output: str(Path(output.html).parent),
    log:
        f"logs/{NAME}/report.log",
    conda:
        ENV
    threads: 1
    shell:
        "python -m mla report --config {params.config} --out {params.out} > {log} 2>&1"


rule phase_report:
    input:
        REPORT_FILES,
