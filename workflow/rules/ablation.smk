# Ablation phase (Table 3): MLA variants (HGM off); HGM-on runs are the train phase's.


use rule train as train_ablation with:
    input:
        unpack(train_inputs("ablation")),
    output:
        f"{RES}/ablation/{{dataset}}/{{tag}}/{grid.COMPLETE}",
    params:
        job=lambda w: f"ablation/{w.dataset}/{w.tag}",
        fingerprint=train_params("ablation"),
    log:
        f"logs/{NAME}/ablation/{{dataset}}/{{tag}}.log",


rule phase_ablation:
    input:
        [j.marker for j in JOBS.values() if j.phase == "ablation"],
