"""Seconds per run of Table 2's frozen-feature baselines (``ae``, ``cra``, ``mmin``, ``if_mmin``, ...).

    uv run python bench/missing_cost.py ae cra mmin if_mmin --rates 0.1 0.4

One run = one seed at one missing rate, as the grid trains it on ``builtin_ait``: the config's
split sizes (``data.builtin_ait``, ``val_fraction``), ``model.feature_dim``, epochs, batch sizes and
optimiser, masks from ``mla.missing.draw_mask``, identity encoders on (N, s) features, and the
per-epoch scoring of validation and test. The features are Gaussian stand-ins of the frozen
unimodal features' shape (the cost of these methods does not depend on the values; the real
features need trained ``unimodal`` runs); with ``--signal`` each modality's features are a class
centre plus noise, so the test accuracy shows whether a method learns under the given optimiser
(``--adam LR`` replaces the config's optimiser by Adam, the sources' choice). MMIN-style methods
report their in-job pretraining separately. One thread, like a grid job. A run that stops with an
error is printed as such.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import yaml
from torch import nn

from mla.batches import to_tensors
from mla.evaluate import accuracies
from mla.methods.base import create_method
from mla.missing import draw_mask
from mla.train import build_optimizer, seed_everything, set_threads

MODALITIES = ("audio", "image", "text")  # builtin_ait, mla/catalog.py


def split_sizes(cfg: dict) -> dict[str, int]:
    """train / val / test sizes of builtin_ait under the config (validation carved from training)."""
    d = cfg["data"]["builtin_ait"]
    n_val = int(round(d["n_train"] * cfg["val_fraction"]))
    return {"train": d["n_train"] - n_val, "val": n_val, "test": d["n_test"]}


def stand_in(rs: np.random.RandomState, labels: np.ndarray, s: int, signal: bool) -> dict[str, np.ndarray]:
    """(n, s) float32 features per modality: noise, or class centre (fixed per modality) + 1.5 * noise."""
    out = {}
    for i, m in enumerate(MODALITIES):
        noise = rs.randn(len(labels), s).astype(np.float32)
        centres = np.random.RandomState(100 + i).randn(4, s).astype(np.float32)
        out[m] = centres[labels] + 1.5 * noise if signal else noise
    return out


def one_run(cfg: dict, method: str, rate: float, seed: int = 0, signal: bool = False) -> dict[str, float]:
    """Train and score one run; returns seconds (total, of which pretraining) and final test accuracy."""
    gen = seed_everything(seed)
    s, n_classes = cfg["model"]["feature_dim"], 4
    rs = np.random.RandomState(seed)
    data = {}
    for split, n in split_sizes(cfg).items():
        present = draw_mask(cfg["missing"]["masking"], n, len(MODALITIES), rate, seed, split)
        labels = rs.randint(0, n_classes, n)
        data[split] = to_tensors(stand_in(rs, labels, s, signal), labels, MODALITIES, present)
    tr = cfg["training"]
    meth = create_method(method, nn.ModuleDict({m: nn.Identity() for m in MODALITIES}), n_classes=n_classes,
                         feature_dim=s, **cfg["method_options"].get(method, {}))
    optimizer, scheduler = build_optimizer(cfg, meth.parameters())
    start, pretrain = time.perf_counter(), 0.0
    for epoch in range(tr["epochs"]):
        meth.train()
        t0 = time.perf_counter()
        batches = meth.epoch_batches(data["train"], tr["batch_size"], gen)  # MMIN-style: pretrains on the first call
        if epoch == 0:
            pretrain = time.perf_counter() - t0
        for batch in batches:
            meth.train_step(batch, optimizer)
        if scheduler is not None:
            scheduler.step()
        scores = {sp: accuracies(meth, data[sp], tr["eval_batch_size"]) for sp in ("val", "test")}
    return {"seconds": time.perf_counter() - start, "pretrain": pretrain, "test": scores["test"]["multi"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("methods", nargs="+")
    ap.add_argument("--config", default="config/config.yaml")
    ap.add_argument("--rates", nargs="+", type=float, default=[0.1, 0.4])
    ap.add_argument("--signal", action="store_true", help="class-informative stand-in features")
    ap.add_argument("--adam", type=float, metavar="LR", help="train with Adam at this learning rate")
    args = ap.parse_args()
    cfg = yaml.safe_load(open(args.config))  # read raw: only training settings and method_options are used
    if args.adam is not None:
        cfg["training"]["optimizer"] = {"name": "adam", "lr": args.adam, "weight_decay": 0.0}
    set_threads(1)
    sizes = split_sizes(cfg)
    print(f"builtin_ait stand-in: {sizes}, s={cfg['model']['feature_dim']}, epochs={cfg['training']['epochs']}, "
          f"batch {cfg['training']['batch_size']}, {cfg['missing']['masking']} masks, "
          f"{cfg['training']['optimizer']}, {'signal' if args.signal else 'noise'} features, 1 thread", flush=True)
    for method in args.methods:
        for rate in args.rates:
            try:
                r = one_run(cfg, method, rate, signal=args.signal)
            except ValueError as exc:
                print(f"{method:8s} eta={rate:.1f}  error: {exc}", flush=True)
                continue
            print(f"{method:8s} eta={rate:.1f}  {r['seconds']:6.2f} s/run (pretraining {r['pretrain']:5.2f} s)  "
                  f"test acc {r['test']:.1f}{'' if args.signal else ' (noise features: chance expected)'}", flush=True)


if __name__ == "__main__":
    main()
