# Report phase: Tables 1-3 beside the paper's numbers, claims, figures, report.html.

REPORT_FILES = grid.report_files(CFG)


rule report:
    input:
        jobs=[j.marker for j in JOBS.values()],
        analysis=[grid.analysis_dir(CFG, d) for d in CFG["analysis"]["datasets"]],
        released=lambda w: RELEASED_FILES,  # the authors' checkpoints scored, if any are listed (released.smk)
        code=CODE_REPORT,
    output:
        [f for f in REPORT_FILES if not f.endswith((".png", "report.html"))],
        [report(f, category="Figures") for f in REPORT_FILES if f.endswith(".png")],
        html=report(f"{REP}/report.html", category="Report"),
    params:
        out=lambda w, output: str(Path(output.html).parent),
        settings=mla_config.digest(CFG),  # the report lays out the whole config (cheap to rerun)
    log:
        f"logs/{NAME}/report.log",
    conda:
        ENV
    threads: 1
    shell:
        "{PYTHON:q} -m mla report --config {MLA_CONFIG:q} --out {params.out:q} > {log:q} 2>&1"


rule phase_report:
    input:
        REPORT_FILES,
