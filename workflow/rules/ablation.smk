# Ablation phase (Table 3): MLA variants (HGM off); HGM-on runs are the train phase's.


use rule train as train_ablation with:
    input:
        unpack(train_inputs("ablation")),
    output:
        directory(f"{RES}/ablation/{{dataset}}/{{tag}}"),
    params:
        job=lambda w: f"ablation/{w.dataset}/{w.tag}",
        fingerprint=train_params("ablation"),
    log:
        f"logs/{NAME}/ablation/{{dataset}}/{{tag}}.log",


rule phase_ablation:
    input:
        [j.job_dir for j in JOBS.values() if j.phase == "ablation"],
