"""Prepare a real dataset: official split lists + raw files in the dataset's own layout -> feature store.

    prepare("cremad", "data/raw/cremad", "data/splits/cremad", "data/features/cremad",
            options=cfg.get("prepare", {}).get("cremad"), split_seed=0, val_fraction=0.1)

Steps: read and verify the official lists (``mla.acquire.official_splits``; sha256 and record counts of
``sources.yaml``); map every listed sample onto its files (``mla/data/<dataset>.py``); check that every
file exists (one error names the missing ones; only Kinetics-Sounds may exclude clips, and only those
its ``allow_missing`` listing names); carve the validation split from the training list (stratified,
``split_seed``); decode every sample once into the shards of ``mla/features/store.py``, with
``manifest.json`` recording the preprocessing parameters, the list checksums and the counts.
IEMOCAP's face crop (``face.crop: haar``) records the detector (``face_detector``) and lists, per
split, every sample whose frame had no detected face and got the centre square instead
(``face_fallback``, counted under ``counts.face_fallback`` and printed).

The store is written to a temporary sibling that replaces ``out_dir`` only when everything succeeded,
and the same inputs give the same bytes (the ``workers`` count included).
"""
from __future__ import annotations

import copy
import importlib
import json
import multiprocessing
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any, Iterator

import numpy as np

from mla import catalog
from mla.acquire.errors import SplitFormatError
from mla.acquire.official_splits import SplitLists, read_split_lists
from mla.acquire.sources import load_sources, split_spec
from mla.data.options import NOT_RECORDED, resolve_options
from mla.data.samples import Resolved, Sample, require_files
from mla.data.splits import carve_validation, sha256_file
from mla.features.extract import single_torch_thread, write_split
from mla.features.inputs import Extracted, extract
from mla.features.store import MANIFEST, SPLITS
from mla.features.wordpiece import VocabError, WordPiece, build_vocab
from mla.io import atomic_directory, write_json

FORMAT_VERSION = 1
# Said when files are missing (Kinetics-Sounds has its own hint: it may exclude listed clips).
PARTIAL_HINT = ("{d} must have every file its split lists name. To prepare a partial copy, give lists that name only "
                "the samples you have and set config key prepare.{d}.verify_lists: false (command line: "
                "--set prepare.{d}.verify_lists=false); the store's manifest then records lists_verified: false")
MODULES = {
    "cremad": "mla.data.cremad",
    "ks": "mla.data.kinetics_sounds",
    "food101": "mla.data.food101",
    "mvsa": "mla.data.mvsa",
    "iemocap": "mla.data.iemocap",
}
# How each kind of input becomes an array, for the manifest (in brackets: the released code's files at
# commit ab6c184 that do the same).
RECIPES = {
    "wav": "soundfile read (must be audio.sample_rate), waveform mean removed, torchaudio Kaldi fbank: htk_compat, "
           "hanning window, dither 0, no energy; zero-padded or cut to n_frames; not normalised "
           "[data/extract_fbank.py, data/preprocess_iemo.py]",
    "track": "audio stream resampled to audio.sample_rate 16-bit PCM by libswresample (ffmpeg's pcm_s16le "
             "conversion), /32768, mean of all channels removed, channel 0, then the fbank of 'wav' "
             "[data/mp4_to_wav.py, data/extract_fbank.py]",
    "frames": "PyAV decode; keep frames i with i % int(fps) == 0 (fps = the stream's average rate, truncated: "
              "the first frame of every second); frames 0, n//3, 2(n//3) of the n kept (sorted by time; the "
              "released code lists them unsorted); RGB, bilinear resize to size x size as the test transform "
              "Resize((224, 224)); no JPEG round trip [data/video_preprocessing.py, dataset/dataset.py]",
    "image": "RGB, Resize(size, bicubic) of the shorter side + CenterCrop(size): the test transform [dataset/dataset.py]",
    "face": "the dialogue video's first frame at or after the utterance's midpoint; the region of the frame (the "
            "speaker's half, or face.region); face.crop haar: OpenCV's frontal-face Haar cascade (face_detector), "
            "the largest box enlarged by its margin to a square inside the region; no face found, or face.crop "
            "center: the region's largest centred square (with haar, such samples are listed under "
            "face_fallback); bilinear resize to image.size [dataset/dataset.py]",
    "text": "BERT bert-base-uncased WordPiece (pure Python), no [CLS]/[SEP], truncated or padded with [PAD] = 0 to "
            "text.max_len; padding mask = ids == 0 [data/extract_token.py]",
}


def dataset_module(dataset: str) -> ModuleType:
    """The module that maps ``dataset``'s lists onto its raw files; unknown names list the valid ones."""
    if dataset not in MODULES:
        raise ValueError(f"no preparation for dataset {dataset!r}; real datasets: {', '.join(sorted(MODULES))}")
    return importlib.import_module(MODULES[dataset])


def not_official_hint(dataset: str) -> str:
    """What to do about split lists that are not the official ones (the settings named)."""
    return (f"; these are not the official lists: fetch them with `mla acquire --dataset {dataset} --splits DIR`, "
            f"or, to prepare from other lists (a subset of the data, or a copy written by `mla fixture`), set config "
            f"key prepare.{dataset}.verify_lists: false (command line: --set prepare.{dataset}.verify_lists=false)")


def read_lists(name: str, split_dir: str | Path, verify: bool, dataset: str = "") -> tuple[SplitLists, dict[str, str]]:
    """Parse the official lists ``name`` of ``sources.yaml`` from ``split_dir``; with ``verify`` their
    record counts and sha256 must be the pinned ones, and an error names the file and the setting that
    accepts other lists (``prepare.<dataset>.verify_lists``). Returns the lists and ``{file name: sha256}``."""
    sources = load_sources()
    spec = split_spec(sources, name)
    for entry in sources["split_lists"][name]["files"].values():
        entry.pop("records", None)  # counted below, where the error can say what to do
    lists = read_split_lists(name, split_dir, sources=sources)
    hint = not_official_hint(dataset or name)
    sha = {}
    for role, entry in spec["files"].items():
        path = lists.paths[role]
        sha[path.name] = sha256_file(path)
        if not verify:
            continue
        found = len(lists.classes) if role == "classes" else len(lists.samples[role])
        if entry.get("records") is not None and found != entry["records"]:
            raise SplitFormatError(f"{path}: {found} records, expected {entry['records']}{hint}")
        if sha[path.name] != entry["sha256"]:
            raise SplitFormatError(f"{path}: sha256 {sha[path.name]} differs from the official list's "
                                   f"{entry['sha256']}{hint}")
    return lists, sha


def array_specs(modalities: tuple[str, ...], opts: dict) -> dict[str, dict]:
    """Per-sample dtype and shape of every stored array (``labels`` and each modality)."""
    specs: dict[str, dict] = {"labels": {"dtype": "int64", "shape": []}}
    for m in modalities:
        if m == "audio":
            specs[m] = {"dtype": "float32", "shape": [1, opts["audio"]["n_frames"], opts["audio"]["n_mels"]]}
        elif m == "video":
            v = opts["video"]
            specs[m] = {"dtype": "uint8", "shape": [v["n_frames"], 3, v["size"], v["size"]]}
        elif m == "image":
            specs[m] = {"dtype": "uint8", "shape": [3, opts["image"]["size"], opts["image"]["size"]]}
        elif m == "text":
            specs[m] = {"dtype": "int64", "shape": [opts["text"]["max_len"]]}
    return specs


def _media_row(job: tuple[Sample, dict]) -> dict[str, Extracted]:
    sample, opts = job
    return {m: extract(inp, opts) for m, inp in sample.inputs.items() if inp.kind != "text"}


def _init_worker(uses_torch: bool) -> None:
    if uses_torch:  # one fbank per process on one thread (see mla.features.extract.single_torch_thread)
        import torch

        torch.set_num_threads(1)


def _rows(samples: list[Sample], opts: dict, tokenizer: WordPiece | None, pool: ProcessPoolExecutor | None,
          label: str, fallback: list[str]) -> Any:
    """The ``rows(start, stop)`` callable of :func:`write_split`: media decoded in order (in ``pool``
    if given, its results still in sample order), text tokenised here. The id of every sample with a
    fallback input (a face not found) is appended to ``fallback``, in sample order."""
    def rows(start: int, stop: int) -> Iterator[dict[str, np.ndarray]]:
        jobs = [(s, opts) for s in samples[start:stop]]
        media = (pool.map(_media_row, jobs, chunksize=max(1, len(jobs) // (8 * opts["workers"])))
                 if pool is not None else map(_media_row, jobs))
        for (sample, _), extracted in zip(jobs, media):
            row = {m: e.array for m, e in extracted.items()}
            if any(e.fallback for e in extracted.values()):
                fallback.append(sample.id)
            for m, inp in sample.inputs.items():
                if inp.kind == "text":
                    row[m] = tokenizer.encode(inp.text, opts["text"]["max_len"])
            yield row
        print(f"prepare {label}: {stop}/{len(samples)}", file=sys.stderr, flush=True)
    return rows


def _tokenizer(opts: dict, train: list[Sample], modality: str) -> tuple[WordPiece, dict]:
    t = opts["text"]
    if t["vocab"] is None:
        raise VocabError("text tokenisation needs BERT's WordPiece vocabulary (bert-base-uncased vocab.txt, as the "
                         "released code's data/extract_token.py uses): give its path with --vocab (config key "
                         "prepare.<dataset>.text.vocab), or "
                         "'build' to build a stand-in vocabulary from the training split")
    if t["vocab"] == "build":
        vocab = build_vocab((s.inputs[modality].text for s in train), t["build_size"], t["min_freq"])
        return WordPiece(vocab), {"vocab_source": "built from the training split (not BERT's vocabulary)",
                                  "built_from": "train"}
    tok = WordPiece.from_file(t["vocab"])
    sha = sha256_file(t["vocab"])
    if t["vocab_sha256"] is not None and sha != t["vocab_sha256"]:
        raise VocabError(f"{t['vocab']}: sha256 {sha}, but config key prepare.<dataset>.text.vocab_sha256 expects "
                         f"{t['vocab_sha256']} (another vocabulary file)")
    return tok, {"vocab_source": "file", "source_sha256": sha}


def _recorded_options(opts: dict) -> dict:
    rec = {k: copy.deepcopy(v) for k, v in opts.items() if k not in NOT_RECORDED}
    if "text" in rec:
        rec["text"]["vocab"] = "build" if rec["text"]["vocab"] == "build" else "file"
    if "allow_missing" in rec:
        rec["allow_missing"] = None if rec["allow_missing"] is None else "listing"
    return rec


def prepare(dataset: str, raw_dir: str | Path, split_dir: str | Path, out_dir: str | Path,
            options: dict | None = None, *, split_seed: int, val_fraction: float) -> dict:
    """Build the feature store of real dataset ``dataset`` at ``out_dir``; returns the manifest.

    ``options``: the ``prepare.<dataset>`` config section (mla/data/options.py); ``split_seed`` and
    ``val_fraction``: the validation carve (mla/data/splits.py). Errors name the list line or file.
    """
    info = catalog.dataset_info(dataset)
    module = dataset_module(dataset)
    opts = resolve_options(dataset, options, module.SECTIONS, module.EXTRA)
    if isinstance(split_seed, bool) or not isinstance(split_seed, int):
        raise ValueError(f"split_seed must be an integer, got {split_seed!r}")
    raw_dir = Path(raw_dir)
    if not raw_dir.is_dir():
        raise FileNotFoundError(f"{dataset}: raw directory {raw_dir} does not exist")

    # 1. lists and files
    lists, list_sha = read_lists(module.SPLIT_LISTS, split_dir, opts["verify_lists"], dataset)
    resolved: Resolved = module.resolve(lists, raw_dir, opts)
    if opts["verify_lists"] and len(resolved.classes) != info.n_classes:
        raise ValueError(f"{dataset}: the lists have {len(resolved.classes)} classes, the catalog {info.n_classes}"
                         f"{not_official_hint(dataset)}")
    require_files(resolved.samples, dataset, getattr(module, "HINT", None) or PARTIAL_HINT.format(d=dataset))
    for role in ("train", "test"):
        kept, excl, listed = len(resolved.samples[role]), len(resolved.excluded.get(role, [])), len(lists.samples[role])
        if kept + excl != listed:  # a module bug, never a data condition
            raise RuntimeError(f"{dataset}: {role}: {kept} samples + {excl} excluded != {listed} in {lists.paths[role]}")
    train_all = resolved.samples["train"]
    if not train_all or not resolved.samples["test"]:
        raise ValueError(f"{dataset}: no training or no test samples to prepare")
    kinds = {m: train_all[0].inputs[m].kind for m in info.modalities}

    # 2. validation carve
    tr_idx, va_idx = carve_validation([s.label for s in train_all], val_fraction, split_seed)
    items = {"train": [train_all[i] for i in tr_idx], "val": [train_all[i] for i in va_idx],
             "test": resolved.samples["test"]}
    tokenizer, text_info = None, None
    if "text" in info.modalities:
        tokenizer, text_info = _tokenizer(opts, items["train"], "text")
    specs = array_specs(info.modalities, opts)
    classes = resolved.classes
    detector = None
    if "face" in kinds.values() and opts["face"]["crop"] == "haar":
        from mla.features.face import detector_info

        detector = detector_info()  # imports OpenCV; a missing cascade file fails here, before decoding
    fallback: dict[str, list[str]] = {split: [] for split in SPLITS}

    # 3. decode into the store
    with atomic_directory(out_dir) as tmp:
        (tmp / "splits").mkdir()
        lists_sha = {}
        for split in SPLITS:
            p = tmp / "splits" / f"{split}.txt"
            p.write_text("".join(f"{s.id} {classes[s.label]}\n" for s in items[split]), encoding="utf-8")
            lists_sha[f"splits/{split}.txt"] = sha256_file(p)
        if tokenizer is not None:
            write_json(tmp / "vocab.json", {"vocab": tokenizer.vocab})
            text_info.update({"vocab_file": "vocab.json", "vocab_sha256": sha256_file(tmp / "vocab.json"),
                              "vocab_size": len(tokenizer.vocab), "pad_id": tokenizer.pad_id,
                              "unk_id": tokenizer.unk_id, "max_len": opts["text"]["max_len"]})
        uses_torch = any(k in ("wav", "track") for k in kinds.values())
        pool = None
        if opts["workers"] > 1:
            pool = ProcessPoolExecutor(opts["workers"], mp_context=multiprocessing.get_context("spawn"),
                                       initializer=_init_worker, initargs=(uses_torch,))
        try:
            with single_torch_thread(uses_torch):
                split_info = {
                    split: write_split(tmp, split, [s.id for s in items[split]],
                                       np.array([s.label for s in items[split]], dtype=np.int64),
                                       list(info.modalities), specs, opts["shard_size"], len(classes),
                                       _rows(items[split], opts, tokenizer, pool, f"{dataset} {split}",
                                             fallback[split]))
                    for split in SPLITS
                }
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)
        manifest: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "dataset": dataset,
            "modalities": list(info.modalities),
            "classes": classes,
            "n_classes": len(classes),
            "features": _recorded_options(opts),
            "inputs": {m: {"kind": kinds[m], "layout": module.LAYOUT[m], "recipe": RECIPES[kinds[m]]}
                       for m in info.modalities},
            "arrays": specs,
            "split_seed": split_seed,
            "val_fraction": float(val_fraction),
            "source_sha256": dict(sorted(list_sha.items())),
            "lists_verified": opts["verify_lists"],
            "lists_sha256": lists_sha,
            "counts": {
                "official": {role: len(lists.samples[role]) for role in ("train", "test")},
                "excluded": {role: len(resolved.excluded.get(role, [])) for role in ("train", "test")},
                **{split: len(items[split]) for split in SPLITS},
            },
            "splits": split_info,
        }
        if any(resolved.excluded.values()):
            manifest["excluded"] = {role: ids for role, ids in resolved.excluded.items()}
        if detector is not None:
            manifest["counts"]["face_fallback"] = {split: len(fallback[split]) for split in SPLITS}
            manifest["face_detector"] = detector
            manifest["face_fallback"] = fallback
            n_fb, n_all = sum(map(len, fallback.values())), sum(len(items[split]) for split in SPLITS)
            print(f"prepare {dataset}: no face found in {n_fb} of {n_all} frames; the centre square was used "
                  f"for them (listed under face_fallback in {MANIFEST})", file=sys.stderr, flush=True)
        elif any(fallback.values()):  # only the haar crop falls back
            raise RuntimeError(f"{dataset}: fallback inputs without a face detector: {fallback}")
        if resolved.notes:
            manifest["notes"] = resolved.notes
        if text_info is not None:
            manifest["text"] = text_info
        write_json(tmp / MANIFEST, manifest)
    return json.loads(json.dumps(manifest))
