"""``python -m mla score-released``: the authors' released MLA checkpoints, scored with our evaluation.

[C]'s README lists checkpoints (Zenodo record 10828670), but its evaluation mode crashes (``main.py``
L957-963 pass the undeclared ``args.ewc_flag`` to ``valid``), so they cannot be re-scored with [C]
itself. After ``mla convert-weights --kind released`` (read with ``torch.load(weights_only=True)``,
every name and shape checked: mla/weights/released.py):

1. build ``mla_released`` with the dataset's encoders from the config (their pre-trained ``weights``
   dropped: every parameter comes from the checkpoint), the modalities in [C]'s order (audio,
   video; text, image; audio, image, text), so that the fixed fusion is [C]'s 0.55/0.45 (text
   first for Food-101/MVSA; ``main.py`` L968) or 0.35/0.25/0.40 (L56-58);
2. load the converted file strictly (:func:`mla.weights.load.load_method_state`);
3. map the head's rows onto the store's classes: [C] indexes classes by sorted name
   (``dataset/dataset.py`` L91, L160; OGM-GE's CREMA-D uses a fixed order instead), or
   ``released_checkpoints.<d>.classes`` names the rows; head row ``head_rows[k]`` scores the
   store's class ``k`` (recorded in metrics.json). Our stores of CREMA-D, Food-101, MVSA and IEMOCAP
   sort the names as [C] does (mla/data/samples.py ``sorted_classes``), so the mapping is the identity
   there; Kinetics-Sounds (OGM-GE's lists carry no class names) and the built-in datasets need ``classes``;
4. score the WHOLE official test split of the feature store (list order, no dropped batch) with
   :func:`mla.evaluate.accuracies`: ``multi`` under both fusions of ``mla_released`` (``fixed``;
   ``dynamic`` = [C]'s batch-level entropy gate over blocks of ``eval_block`` = 64 consecutive test
   examples, ``main.py`` L65-106, L640-646) and each modality through the shared head;
5. write ``<out>/metrics.json`` (byte-stable) and ``<out>/provenance.json`` (wall time, host).

Inputs: the config's ``model.inputs`` for the dataset, through the training's own path
(:func:`mla.train.split_tensors`, batch by batch). ``config/paper.yaml`` sets [C]'s (pixels with
ImageNet's per-channel mean/std, fbanks as stored); ``--set model.inputs.pixels=centred`` and
``--set model.inputs.fbank=standardised`` score with ours instead, to measure the difference.
"""
from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import torch

from mla import catalog, grid
from mla.config import model_for
from mla.data.splits import sha256_file
from mla.devices import placement
from mla.evaluate import accuracies, split_metrics
from mla.features.store import read_manifest
from mla.io import atomic_file, name_on_error, writable_directory, write_json
from mla.methods.mla_released import FIXED_WEIGHTS
from mla.provenance import runtime_provenance, static_provenance
from mla.train import build_method, load_dataset, set_threads, split_tensors
from mla.weights.load import load_method_state
from mla.weights.released import ARCHITECTURES

METHOD = "mla_released"
C_DATASETS = ("cremad", "food101", "mvsa", "iemocap")  # the datasets [C]'s README trains
SORTED_RULE = "[C]: position in the sorted class names (dataset/dataset.py L91, L160)"
# What each model.inputs value feeds (mla/batches.py), for metrics.json; [C]'s are pixels: imagenet, fbank: raw.
INPUT_TEXT = {
    ("pixels", "imagenet"): "/255, then per channel minus ImageNet's mean (0.485, 0.456, 0.406) over its std "
                            "(0.229, 0.224, 0.225), as [C]'s test transforms (dataset/dataset.py L139, L418, L714)",
    ("pixels", "centred"): "/255, minus 0.5, over 0.25, every channel (ours; [C] uses ImageNet's mean/std)",
    ("fbank", "raw"): "the stored Kaldi fbank as is, not normalised, as [C] (dataset/dataset.py L117, L789-790)",
    ("fbank", "standardised"): "fbank minus the training split's scalar mean, over its scalar std (ours; [C]: as is)",
}
KIND = {"image": "pixels", "video": "pixels", "audio": "fbank"}


# --- classes and modalities -------------------------------------------------------------------------
def class_mapping(dataset: str, store_classes: list[str], given: list[str] | None = None
                  ) -> tuple[list[str], list[int], str]:
    """The checkpoint's class order (head rows), ``head_rows`` (store class k is scored by head row
    ``head_rows[k]``) and the rule that gave the order."""
    if given is None:
        if dataset not in C_DATASETS:
            raise ValueError(f"{dataset}: [C] trains no {dataset} checkpoint, so its class order is unknown; "
                             f"give the head rows' class names (released_checkpoints.{dataset}.classes)")
        checkpoint, rule = sorted(store_classes), SORTED_RULE
    else:
        checkpoint, rule = list(given), f"given: released_checkpoints.{dataset}.classes"
    if sorted(checkpoint) != sorted(store_classes) or len(set(checkpoint)) != len(checkpoint):
        raise ValueError(f"{dataset}: checkpoint classes {checkpoint} are not the feature store's {store_classes}")
    return checkpoint, [checkpoint.index(c) for c in store_classes], rule


def released_modalities(dataset: str) -> tuple[str, ...]:
    """``dataset``'s modalities in [C]'s order (mla.weights.released.ARCHITECTURES)."""
    mods = set(catalog.dataset_info(dataset).modalities)
    for entries in ARCHITECTURES.values():
        order = tuple(m for m, _, _ in entries)
        if set(order) == mods:
            return order
    raise ValueError(f"{dataset}: modalities {sorted(mods)} match no classifier of [C]")


def permute_head(head: torch.nn.Linear, rows: list[int]) -> None:
    """Reorder the head's output rows in place: row k becomes the checkpoint's row ``rows[k]``."""
    index = torch.tensor(rows, dtype=torch.long)
    with torch.no_grad():
        head.weight.copy_(head.weight[index].clone())
        head.bias.copy_(head.bias[index].clone())


# --- the scoring ---------------------------------------------------------------------------------------
def scoring_config(cfg: dict, dataset: str) -> dict:
    """``cfg`` with ``dataset``'s model as the only model section and no encoder ``weights``: the
    checkpoint replaces every parameter, so no pre-trained file is read."""
    model = model_for(cfg, dataset)
    out = copy.deepcopy(cfg)
    out["model"] = {"feature_dim": model["feature_dim"], "inputs": model["inputs"], "encoders": {
        m: {k: v for k, v in spec.items() if k not in ("weights", "weights_prefix")}
        for m, spec in model["encoders"].items()}}
    return out


def read_conversion(checkpoint: Path) -> dict | None:
    """The ``<checkpoint>.json`` report of ``convert-weights`` (source, its sha256, architecture), if any."""
    path = checkpoint.with_name(checkpoint.name + ".json")
    if not path.is_file():
        return None
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except ValueError as exc:
        raise ValueError(f"conversion report {path}: not valid JSON ({exc}); rerun mla convert-weights") from None


def check_conversion(conversion: dict | None, checkpoint: Path, dataset: str, modalities: tuple[str, ...],
                     expected_sha: str | None) -> None:
    """The conversion report must fit ``dataset`` and, if ``expected_sha`` is given, name that source."""
    if conversion is None:
        if expected_sha:
            raise ValueError(f"{checkpoint}.json is missing: the source's sha256 {expected_sha} cannot be checked "
                             f"(convert with `mla convert-weights --kind released`, which writes it)")
        return
    if conversion.get("kind") != "released":
        raise ValueError(f"{checkpoint}: converted with --kind {conversion.get('kind')}, not released")
    if set(conversion.get("modalities", ())) != set(modalities):
        raise ValueError(f"{checkpoint}: a checkpoint of modalities {conversion.get('modalities')} "
                         f"({conversion.get('architecture')}), but {dataset} has {list(modalities)}")
    if expected_sha and conversion.get("source_sha256") != expected_sha:
        raise ValueError(f"{conversion.get('source')}: sha256 {conversion.get('source_sha256')} differs from "
                         f"released_checkpoints.{dataset}.sha256 {expected_sha}")


def describe_inputs(inputs: dict, modalities: tuple[str, ...]) -> dict:
    """``model.inputs`` and what each modality is fed, for metrics.json."""
    fed = {m: INPUT_TEXT[(KIND[m], inputs[KIND[m]])] if m in KIND else "token ids as stored ([PAD] = 0), as [C]"
           for m in modalities}
    return {**inputs, **fed}


def score(cfg: dict, dataset: str, checkpoint: str | Path, out: str | Path) -> dict:
    """Score the converted released checkpoint of ``dataset`` on its test split; write and return metrics."""
    start = time.perf_counter()
    checkpoint, out = Path(checkpoint), Path(out)
    writable_directory(out)  # fail now, not after loading the store
    entry = (cfg.get("released_checkpoints") or {}).get(dataset) or {}
    modalities = released_modalities(dataset)
    if not checkpoint.is_file():
        raise FileNotFoundError(f"converted checkpoint {checkpoint}: no such file "
                                f"(write it with mla convert-weights --kind released)")
    conversion = read_conversion(checkpoint)
    check_conversion(conversion, checkpoint, dataset, modalities, entry.get("sha256"))

    # --- store and classes ------------------------------------------------------------------------
    feat_dir = Path(grid.feature_dir(cfg, dataset))
    manifest = read_manifest(feat_dir)
    store_classes = list(manifest["classes"])
    ckpt_classes, rows, rule = class_mapping(dataset, store_classes, entry.get("classes"))
    if "text" in modalities and (manifest.get("text") or {}).get("vocab_source") != "file":
        raise ValueError(f"{feat_dir / 'manifest.json'}: the text ids come from a vocabulary built from the "
                         f"training split, not BERT's vocab.txt the checkpoint's text encoder was trained with")
    set_threads(cfg["threads"])  # as training jobs
    place = placement(cfg)
    ds = load_dataset(cfg, dataset)

    # --- build and load ---------------------------------------------------------------------------
    job = grid.Job(phase="released", dataset=dataset, method=METHOD, tag="released", seeds=(), job_dir=str(out))
    scoring = scoring_config(cfg, dataset)
    method = build_method(scoring, job, ds, modalities)
    try:
        load_method_state(method, checkpoint)
    except (RuntimeError, EOFError, OSError) as exc:  # e.g. a truncated file: torch names no path
        if str(checkpoint) in str(exc):
            raise
        raise RuntimeError(f"cannot read converted checkpoint {checkpoint} (score-released {dataset}): {exc}") from exc
    permute_head(method.head, rows)
    method = place.module(method)

    # --- score ------------------------------------------------------------------------------------
    bs, block = int(cfg["training"]["eval_batch_size"]), int(method.options["eval_block"])
    if bs % block:
        raise ValueError(f"config key training.eval_batch_size: {bs} is not a multiple of "
                         f"method_options.{METHOD}.eval_block {block}, so the dynamic fusion's blocks would not "
                         f"be [C]'s test batches")
    tensors, _ = split_tensors(ds, modalities, 0, None, scoring["model"]["inputs"])
    data = place.data(tensors["test"])
    with place.autocast():
        acc = accuracies(method, data, bs)
    plain, fusion = split_metrics(acc)
    counts = manifest.get("counts", {})
    official, excluded = (counts.get("official") or {}).get("test"), (counts.get("excluded") or {}).get("test", 0)
    if official is not None and len(data) != official - excluded:
        raise RuntimeError(f"{feat_dir / 'manifest.json'}: scored {len(data)} test examples, but the official test "
                           f"list has {official} ({excluded} excluded)")
    metrics = {
        "dataset": dataset, "method": METHOD, "split": "test", "test_count": len(data),
        "official_test_count": official, "excluded_test_count": excluded,
        "test": plain, "fusion": fusion, "selected_fusion": method.options["fusion"],
        "fusion_rules": {
            "fixed": dict(zip(modalities, FIXED_WEIGHTS[len(modalities)])),
            "dynamic": f"[C]'s batch-level entropy gate (main.py L65-106): one weight per modality per block "
                       f"of {block} consecutive test examples in list order",
        },
        "modalities": list(modalities), "options": dict(method.options), "eval_batch_size": bs,
        "classes": {"rule": rule, "checkpoint": ckpt_classes, "store": store_classes, "head_rows": rows,
                    "permuted": rows != list(range(len(rows)))},
        "inputs": describe_inputs(scoring["model"]["inputs"], modalities),
        "checkpoint": {
            "path": str(checkpoint), "sha256": sha256_file(checkpoint),
            "source": None if conversion is None else conversion.get("source"),
            "source_sha256": None if conversion is None else conversion.get("source_sha256"),
            "architecture": None if conversion is None else conversion.get("architecture"),
            "saved": None if conversion is None else conversion.get("checkpoint"),  # [C]'s saved_epoch, acc, ...
        },
        "feature_store": {"dir": str(feat_dir), "manifest_sha256": sha256_file(feat_dir / "manifest.json"),
                          "test_ids_sha256": manifest["splits"]["test"]["ids_sha256"],
                          "lists_verified": manifest.get("lists_verified")},  # the official lists' sha256
        "provenance": {**static_provenance(), "device": str(place.device), "threads": torch.get_num_threads()},
    }
    with name_on_error(out):
        with atomic_file(out / "provenance.json") as tmp:
            write_json(tmp, runtime_provenance(time.perf_counter() - start))
        with atomic_file(out / "metrics.json") as tmp:  # last: its presence means complete
            write_json(tmp, metrics)
    return metrics
