"""Peak memory of training on a feature store larger than the memory it is allowed.

Writes a synthetic image + text store in the feature store's own format (``write_split``, several
shards per split) under a temporary directory, then runs the real code path on it: ``load_split``
of every split, ``split_tensors``, ``build_method`` (the built-in config's encoders), a few
``train_step``s on ``epoch_batches``, ``accuracies`` over the whole validation split, and one full
pass of ``epoch_batches`` over the training split without the model (every row of the store read
and converted). Reports the process's peak RSS (``getrusage``) beside the store's size, and
deletes the store.

    python bench/stream_memory.py --cap-mb 2000     # 2.8 GiB store: 16,000 + 2 x 2,000 images 3 x 224 x 224
    python bench/stream_memory.py --train 4000 --eval 500

Measured (2-core CPU box, 1 torch thread): the 2.8 GiB store (11.2 GiB as float32 inputs) trains
and evaluates at 1,398 MiB peak RSS under RLIMIT_DATA 2000 MB; with ``--train 4000 --eval 500``
(718 MiB store) 1,396 MiB, where the code before streaming (every split converted up front,
commit 11a0297) peaked at 5,824 MiB with the same loss and accuracy. The peak is the runtime and
a training step's CPU activations on 224 x 224 images, not the store.

``--cap-mb`` also sets RLIMIT_DATA (the process's anonymous memory) to that many MB, so a run that
tried to hold the split in memory would fail, not merely report a larger peak. Shard pages the
kernel caches are not the process's memory (rows are read, not mapped) and are not counted.
"""
from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mla import config, grid  # noqa: E402
from mla.evaluate import accuracies  # noqa: E402
from mla.features.extract import write_split  # noqa: E402
from mla.features.store import load_split  # noqa: E402
from mla.train import DatasetArrays, build_method, build_optimizer, seed_everything, split_tensors  # noqa: E402

N_CLASSES, VOCAB, TEXT_LEN = 8, 50, 16


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_store(root: Path, counts: dict[str, int], size: int, shard_size: int) -> int:
    """A store of ``counts[split]`` examples (uint8 image 3 x size x size, int64 text); its bytes."""
    specs = {"labels": {"dtype": "int64", "shape": []},
             "image": {"dtype": "uint8", "shape": [3, size, size]},
             "text": {"dtype": "int64", "shape": [TEXT_LEN]}}
    rng = np.random.default_rng(0)
    splits = {}
    for split, n in counts.items():
        labels = np.arange(n, dtype=np.int64) % N_CLASSES

        def rows(start: int, stop: int):
            for i in range(start, stop):  # learnable from both: the label in a row of pixels and a token
                image = rng.integers(0, 256, (3, size, size), dtype=np.uint8)
                image[0, 0, :] = labels[i] * 30
                text = rng.integers(1, VOCAB, TEXT_LEN)
                text[0] = 1 + labels[i]
                yield {"image": image, "text": text}

        splits[split] = write_split(root, split, [f"{split}{i}" for i in range(n)], labels, ["image", "text"],
                                    specs, shard_size, N_CLASSES, rows)
    manifest = {"modalities": ["image", "text"], "classes": [f"c{k}" for k in range(N_CLASSES)],
                "arrays": specs, "splits": splits}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return sum(p.stat().st_size for p in root.rglob("*.npy"))


def measure(root: Path, args: argparse.Namespace) -> None:
    """The real code path on the store at ``root``, in a process that has not held the store's rows."""
    if args.cap_mb:
        cap = args.cap_mb * 2**20
        resource.setrlimit(resource.RLIMIT_DATA, (cap, cap))
    torch.set_num_threads(1)
    cfg = config.load(ROOT / "config" / "config.yaml")
    cfg["training"].update(batch_size=64, eval_batch_size=256)
    job = next(j for j in grid.jobs(cfg) if j.id == "train/builtin_it/concat")
    start_rss = peak_rss_mb()
    t0 = time.perf_counter()
    ds = DatasetArrays(("image", "text"), N_CLASSES, {s: load_split(root, s) for s in ("train", "val", "test")},
                       VOCAB, TEXT_LEN)
    data, _ = split_tensors(ds, ds.modalities, 0, None)
    gen = seed_everything(0)
    method = build_method(cfg, job, ds, ds.modalities)
    optimizer, _ = build_optimizer(cfg, method.parameters())
    method.train()
    for _, batch in zip(range(args.steps), method.epoch_batches(data["train"], 64, gen)):
        loss = method.train_step(batch, optimizer)
    t_train = time.perf_counter()
    acc = accuracies(method, data["val"], cfg["training"]["eval_batch_size"])
    t_eval = time.perf_counter()
    n = 0
    for batch in method.epoch_batches(data["train"], 64, gen):  # every row of the training split, converted
        n += len(batch["label"])
    t_pass = time.perf_counter()
    assert n == len(data["train"])
    print(f"{args.steps} train steps (loss {loss:.3f}) after opening the store: {t_train - t0:.1f} s; validation "
          f"({len(data['val'])} examples, accuracy {acc['multi']}): {t_eval - t_train:.1f} s; full pass over {n} "
          f"training examples without the model: {t_pass - t_eval:.1f} s ({n / (t_pass - t_eval):.0f} examples/s)")
    print(f"peak RSS: {peak_rss_mb():.0f} MiB (after imports: {start_rss:.0f} MiB)"
          + (f"; RLIMIT_DATA {args.cap_mb} MB" if args.cap_mb else ""), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--train", type=int, default=16000, help="training examples")
    ap.add_argument("--eval", type=int, default=2000, help="validation and test examples each")
    ap.add_argument("--size", type=int, default=224, help="image side (pixels)")
    ap.add_argument("--shard-size", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=5, help="training steps with the model")
    ap.add_argument("--cap-mb", type=int, default=None, help="RLIMIT_DATA of the measuring process, in MB")
    ap.add_argument("--store", type=Path, default=None, help=argparse.SUPPRESS)  # the measuring process
    args = ap.parse_args()
    if args.store is not None:
        measure(args.store, args)
        return
    root = Path(tempfile.mkdtemp(prefix="mla-stream-", dir="/tmp"))
    try:
        t0 = time.perf_counter()
        counts = {"train": args.train, "val": args.eval, "test": args.eval}
        store_bytes = write_store(root, counts, args.size, args.shard_size)
        float_bytes = sum(counts.values()) * (3 * args.size ** 2 * 4 + TEXT_LEN * 8)
        print(f"store: {store_bytes / 2**20:.0f} MiB in {len(list(root.rglob('image-*.npy')))} image shards "
              f"({args.train} + {args.eval} + {args.eval} examples, image 3x{args.size}x{args.size} uint8), "
              f"{float_bytes / 2**20:.0f} MiB as encoder inputs; written in {time.perf_counter() - t0:.0f} s", flush=True)
        subprocess.run([sys.executable, __file__, *sys.argv[1:], "--store", str(root)], check=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
