# The authors' released MLA checkpoints (config key released_checkpoints; docs/paper-grid.md "Scoring
# the authors' checkpoints"): each listed file is converted by the safe path (`mla convert-weights
# --kind released`: torch.load(weights_only=True), every name and shape checked) into
# data/weights/released/<dataset>.pt, then scored on the dataset's official test split with our
# evaluation into results/<name>/released_checkpoints/<dataset>/ ([C]'s own evaluation mode
# crashes: its main.py L957-963 pass the undeclared args.ewc_flag). With the key empty (the default)
# there is nothing here to run.

RELEASED = sorted(real_paths.released_checkpoints(CFG))
RELEASED_FILES = [f"{real_paths.released_scores_dir(RES, d)}/metrics.json" for d in RELEASED]
CODE_SCORE_RELEASED = CODE_TRAIN + code("mla/score_released.py", "mla/weights/*.py", "mla/methods/mla_released.py")


def released_score_params(wildcards):
    """The config values `mla score-released` reads: a change rescores exactly that dataset."""
    d = wildcards.dataset
    keys = ("device", "threads", "precision", "channels_last")
    return json.dumps({"model": mla_config.model_for(CFG, d), "eval_batch_size": CFG["training"]["eval_batch_size"],
                       "options": CFG["method_options"].get("mla_released", {}),
                       "entry": real_paths.released_checkpoints(CFG)[d], **{k: CFG.get(k) for k in keys}},
                      sort_keys=True)


# The same conversion as the pre-trained encoders' (real_data.smk), for the authors' files.
use rule convert_weights as convert_released with:
    input:
        source=lambda w: existing([real_paths.released_checkpoints(CFG)[w.dataset]["path"]]),
        code=CODE_WEIGHTS,
    output:
        weights="data/weights/released/{dataset}.pt",
        report="data/weights/released/{dataset}.pt.json",
    params:
        args=lambda w: real_paths.shell_args(real_paths.released_convert_args(CFG, w.dataset)),
    log:
        "logs/data/convert_released_{dataset}.log",
    wildcard_constraints:
        dataset=one_of(RELEASED),


rule score_released:
    input:
        weights="data/weights/released/{dataset}.pt",
        report="data/weights/released/{dataset}.pt.json",
        features=lambda w: grid.feature_dir(CFG, w.dataset),
        code=CODE_SCORE_RELEASED,
    output:
        metrics=f"{RES}/released_checkpoints/{{dataset}}/metrics.json",
        provenance=f"{RES}/released_checkpoints/{{dataset}}/provenance.json",
    params:
        out=lambda w: real_paths.released_scores_dir(RES, w.dataset),
        fingerprint=released_score_params,
    log:
        f"logs/{NAME}/released/{{dataset}}.log",
    wildcard_constraints:
        dataset=one_of(RELEASED),
    conda:
        ENV
    threads: CFG["threads"]
    resources:
        # Scoring streams the test split batch by batch as training does (mla/resources.py); the runtime
        # is a placeholder, not measured at full size.
        mem_mb=lambda wildcards, input, attempt: train_mem_mb(CFG, wildcards.dataset, input.features) * attempt,
        runtime=lambda wildcards, attempt: 120 * attempt,
    shell:
        "{PYTHON:q} -m mla score-released --config {MLA_CONFIG:q} --dataset {wildcards.dataset:q} "
        "--checkpoint {input.weights:q} --out {params.out:q} > {log:q} 2>&1"


rule phase_released:
    input:
        RELEASED_FILES,
