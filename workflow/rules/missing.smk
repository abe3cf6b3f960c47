# Missing-modality phase (Table 2): the same training, with presence masks drawn per split.


use rule train as train_missing with:
    input:
        unpack(train_inputs("missing")),
    output:
        f"{RES}/missing/{{dataset}}/{{tag}}/{grid.COMPLETE}",
    params:
        job=lambda w: f"missing/{w.dataset}/{w.tag}",
        fingerprint=train_params("missing"),
    log:
        f"logs/{NAME}/missing/{{dataset}}/{{tag}}.log",


rule phase_missing:
    input:
        [j.marker for j in JOBS.values() if j.phase == "missing"],
