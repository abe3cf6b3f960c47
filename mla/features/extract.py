"""Decode a raw dataset once into the sharded feature store (see :mod:`mla.features.store`).

Raw layout read here (the built-in generator writes it; any dataset shipping it works)::

    <raw_dir>/generator.json   # needs "modalities"; "dataset", if present, must match
    <raw_dir>/classes.txt      # class names, index = line position
    <raw_dir>/train.txt, test.txt   # "<id> <class name>" per line
    <raw_dir>/AudioWAV/<id>.wav, VideoMP4/<id>.mp4, Images/<id>.png, Texts/<id>.txt

Nothing is skipped: a missing or corrupt media file aborts the build with an error naming it, and the
output is written to a temporary sibling directory that only replaces ``out_dir`` when everything succeeded.
"""
from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from mla.data.splits import carve_validation, read_list, sha256_file
from mla.features.image import image_features
from mla.features.store import MANIFEST, SPLITS, save_shard
from mla.io import atomic_directory
from mla.io import write_json
from mla.features.text import Tokenizer, read_text
from mla.features.video import video_features

FORMAT_VERSION = 1

MEDIA: dict[str, tuple[str, str]] = {
    "audio": ("AudioWAV", ".wav"),
    "video": ("VideoMP4", ".mp4"),
    "image": ("Images", ".png"),
    "text": ("Texts", ".txt"),
}

SECTION_KEYS: dict[str, tuple[str, ...]] = {
    "audio": ("sample_rate", "n_mels", "frame_length_ms", "frame_shift_ms", "n_frames"),
    "video": ("n_frames", "size"),
    "image": ("size",),
    "text": ("max_len", "min_freq"),
}
_FLOAT_KEYS = {"frame_length_ms", "frame_shift_ms"}


def validate_feature_cfg(cfg: dict, modalities: list[str]) -> dict:
    """Check a feature config; unknown or missing keys raise ValueError naming them.

    Sections for modalities the dataset lacks may be present (configs are shared across datasets) but are
    dropped from the returned config, so they do not affect the manifest.
    """
    if not isinstance(cfg, dict):
        raise ValueError("feature config: expected a mapping")
    for key in sorted(set(cfg) - {"shard_size", *SECTION_KEYS}, key=str):
        raise ValueError(f"feature config: unknown key {key!r}")
    if "shard_size" not in cfg:
        raise ValueError("feature config: missing key 'shard_size'")
    out: dict[str, Any] = {"shard_size": _positive("shard_size", cfg["shard_size"], integer=True)}
    for section, keys in SECTION_KEYS.items():
        if section not in cfg:
            if section in modalities:
                raise ValueError(f"feature config: missing key {section!r}")
            continue
        sub = cfg[section]
        if not isinstance(sub, dict):
            raise ValueError(f"feature config: {section!r} must be a mapping")
        for key in sorted(set(sub) - set(keys), key=str):
            raise ValueError(f"feature config: unknown key '{section}.{key}'")
        for key in keys:
            if key not in sub:
                raise ValueError(f"feature config: missing key '{section}.{key}'")
        if section in modalities:
            out[section] = {k: _positive(f"{section}.{k}", sub[k], integer=k not in _FLOAT_KEYS) for k in keys}
    return out


def _positive(name: str, value: Any, integer: bool) -> int | float:
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok_type or value <= 0:
        kind = "a positive integer" if integer else "a positive number"
        raise ValueError(f"feature config: '{name}' must be {kind}, got {value!r}")
    return int(value) if integer else float(value)


def array_specs(cfg: dict, modalities: list[str]) -> dict[str, dict]:
    """Per-sample dtype and shape of every stored array kind (``labels`` plus each modality)."""
    specs = {"labels": {"dtype": "int64", "shape": []}}
    if "audio" in modalities:
        a = cfg["audio"]
        specs["audio"] = {"dtype": "float32", "shape": [1, a["n_frames"], a["n_mels"]]}
    if "video" in modalities:
        v = cfg["video"]
        specs["video"] = {"dtype": "uint8", "shape": [v["n_frames"], 3, v["size"], v["size"]]}
    if "image" in modalities:
        specs["image"] = {"dtype": "uint8", "shape": [3, cfg["image"]["size"], cfg["image"]["size"]]}
    if "text" in modalities:
        specs["text"] = {"dtype": "int64", "shape": [cfg["text"]["max_len"]]}
    return specs


def _read_classes(path: Path) -> list[str]:
    if not path.is_file():
        raise FileNotFoundError(f"missing class list {path}")
    classes = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not classes or len(set(classes)) != len(classes):
        raise ValueError(f"{path}: class list is empty or has duplicates")
    return classes


def _extractors(modalities: list[str], cfg: dict, tokenizer: Tokenizer | None) -> dict[str, Callable]:
    fns: dict[str, Callable] = {}
    if "audio" in modalities:
        from mla.features.audio import audio_features  # imports torch, so only when needed

        fns["audio"] = lambda p: audio_features(p, cfg["audio"])
    if "video" in modalities:
        fns["video"] = lambda p: video_features(p, cfg["video"])
    if "image" in modalities:
        fns["image"] = lambda p: image_features(p, cfg["image"])
    if "text" in modalities:
        assert tokenizer is not None
        fns["text"] = lambda p: tokenizer.encode(read_text(p), cfg["text"]["max_len"])
    return fns


@contextlib.contextmanager
def single_torch_thread(active: bool) -> Iterator[None]:
    """Run one fbank at a time on one thread: intra-op threads on 5k-sample clips only spin (20x slower
    on a loaded 2-core box). The previous thread count is restored afterwards."""
    if not active:
        yield
        return
    import torch

    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(prev)


def write_split(tmp: Path, split: str, ids: list[str], labels: np.ndarray, modalities: list[str],
                specs: dict[str, dict], shard_size: int, n_classes: int,
                rows: Callable[[int, int], Iterable[dict[str, np.ndarray]]]) -> dict:
    """Write one split of the store: ``ids.txt`` and, per shard, the labels and each modality's array.

    ``rows(start, stop)`` yields the arrays (by modality) of samples ``start .. stop - 1`` in order.
    Returns the split's manifest entry. A wrong shape names the sample.
    """
    split_dir = tmp / split
    split_dir.mkdir()
    ids_path = split_dir / "ids.txt"
    ids_path.write_text("".join(f"{sid}\n" for sid in ids), encoding="utf-8")
    shards = []
    for k, start in enumerate(range(0, len(ids), shard_size)):
        stop = min(start + shard_size, len(ids))
        files = {"labels": save_shard(split_dir, "labels", k, labels[start:stop])}
        arrays = {m: np.empty((stop - start, *specs[m]["shape"]), dtype=specs[m]["dtype"]) for m in modalities}
        for i, row in enumerate(rows(start, stop)):
            for m in modalities:
                if row[m].shape != arrays[m].shape[1:]:
                    raise ValueError(f"{m} features of {split} sample {ids[start + i]!r} have shape "
                                     f"{row[m].shape}, expected {arrays[m].shape[1:]}")
                arrays[m][i] = row[m]
        for m in modalities:
            files[m] = save_shard(split_dir, m, k, arrays[m])
        shards.append({"shard": k, "count": stop - start, "files": files})
    return {
        "count": len(ids),
        "label_counts": np.bincount(labels, minlength=n_classes).tolist(),
        "ids_sha256": sha256_file(ids_path),
        "shards": shards,
    }


def _write_split(tmp: Path, split: str, items: list[tuple[str, int]], raw_dir: Path, modalities: list[str],
                 fns: dict[str, Callable], specs: dict[str, dict], shard_size: int, n_classes: int) -> dict:
    def rows(start: int, stop: int) -> Iterator[dict[str, np.ndarray]]:
        for sid, _ in items[start:stop]:
            row = {}
            for m in modalities:
                sub, ext = MEDIA[m]
                path = raw_dir / sub / f"{sid}{ext}"
                row[m] = fns[m](path)
                if row[m].shape != tuple(specs[m]["shape"]):
                    raise ValueError(f"{m} features of {path} have shape {row[m].shape}, expected {tuple(specs[m]['shape'])}")
            yield row

    labels = np.array([y for _, y in items], dtype=np.int64)
    return write_split(tmp, split, [sid for sid, _ in items], labels, modalities, specs, shard_size, n_classes, rows)


def build_features(dataset: str, raw_dir: str | Path, out_dir: str | Path, feature_cfg: dict, split_seed: int,
                   val_fraction: float) -> dict:
    """Decode ``raw_dir`` (layout above) into the feature store at ``out_dir``; returns the manifest.

    Validation is carved from train.txt with :func:`carve_validation` (stratified, ``split_seed``); the text
    vocabulary is built from the remaining training part only. Written atomically; on error nothing is left.
    """
    raw_dir = Path(raw_dir)
    gen_path = raw_dir / "generator.json"
    if not gen_path.is_file():
        raise FileNotFoundError(f"missing {gen_path}")
    gen = json.loads(gen_path.read_text(encoding="utf-8"))
    if gen.get("dataset", dataset) != dataset:
        raise ValueError(f"{gen_path} describes dataset {gen['dataset']!r}, not {dataset!r}")
    modalities = list(gen["modalities"])
    for m in modalities:
        if m not in MEDIA:
            raise ValueError(f"{gen_path}: unknown modality {m!r}")
    cfg = validate_feature_cfg(feature_cfg, modalities)
    if isinstance(split_seed, bool) or not isinstance(split_seed, int):
        raise ValueError(f"split_seed must be an integer, got {split_seed!r}")
    specs = array_specs(cfg, modalities)

    classes = _read_classes(raw_dir / "classes.txt")
    index = {c: i for i, c in enumerate(classes)}
    lists: dict[str, list[tuple[str, int]]] = {}
    for name in ("train", "test"):
        path = raw_dir / f"{name}.txt"
        if not path.is_file():
            raise FileNotFoundError(f"missing split list {path}")
        pairs = read_list(path)
        for sid, label in pairs:
            if label not in index:
                raise ValueError(f"{path}: sample {sid!r} has label {label!r} not in classes.txt")
        lists[name] = [(sid, index[label]) for sid, label in pairs]
    overlap = {s for s, _ in lists["train"]} & {s for s, _ in lists["test"]}
    if overlap:
        raise ValueError(f"{raw_dir}: train.txt and test.txt share ids, e.g. {sorted(overlap)[:3]}")

    tr_idx, va_idx = carve_validation([y for _, y in lists["train"]], val_fraction, split_seed)
    items = {
        "train": [lists["train"][i] for i in tr_idx],
        "val": [lists["train"][i] for i in va_idx],
        "test": lists["test"],
    }

    with atomic_directory(out_dir) as tmp:
        (tmp / "splits").mkdir()
        list_sha = {}
        for split in ("train", "val"):
            p = tmp / "splits" / f"{split}.txt"
            p.write_text("".join(f"{sid} {classes[y]}\n" for sid, y in items[split]), encoding="utf-8")
            list_sha[f"splits/{split}.txt"] = sha256_file(p)

        tokenizer = None
        text_info = None
        if "text" in modalities:
            sub, ext = MEDIA["text"]
            train_texts = (read_text(raw_dir / sub / f"{sid}{ext}") for sid, _ in items["train"])
            tokenizer = Tokenizer.build(train_texts, cfg["text"]["min_freq"])
            write_json(tmp / "vocab.json", tokenizer.to_dict())
            text_info = {"vocab_file": "vocab.json", "vocab_sha256": sha256_file(tmp / "vocab.json"),
                         "vocab_size": len(tokenizer.vocab), "built_from": "train", "pad_id": 0, "unk_id": 1}

        fns = _extractors(modalities, cfg, tokenizer)
        with single_torch_thread("audio" in modalities):
            split_info = {
                split: _write_split(tmp, split, items[split], raw_dir, modalities, fns, specs,
                                    cfg["shard_size"], len(classes))
                for split in SPLITS
            }
        manifest: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "dataset": dataset,
            "modalities": modalities,
            "classes": classes,
            "n_classes": len(classes),
            "features": cfg,
            "arrays": specs,
            "split_seed": split_seed,
            "val_fraction": float(val_fraction),
            "source_sha256": {f: sha256_file(raw_dir / f)
                              for f in ("classes.txt", "generator.json", "test.txt", "train.txt")},
            "lists_sha256": list_sha,
            "splits": split_info,
        }
        if text_info is not None:
            manifest["text"] = text_info
        write_json(tmp / MANIFEST, manifest)
    return json.loads(json.dumps(manifest))
