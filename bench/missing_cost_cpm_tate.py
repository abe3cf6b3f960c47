"""Seconds per Table 2 run of ``cpm_net`` and ``tate`` on builtin_ait-shaped fixed features.

    uv run python bench/missing_cost_cpm_tate.py [--rates 0.1 0.4 0.7] [--set cpm_net.test_epochs=300]

In the grid both methods train on the features of the ``unimodal`` runs (one (N, s) matrix per
modality). Their cost depends on the shapes only, so this script times them on random features
of builtin_ait's shapes (train/val/test sizes from ``data.builtin_ait`` and ``val_fraction``,
``model.feature_dim``, its modalities and classes) under the config's mask (``mla.missing``), with
the config's ``method_options`` and ``training.epochs``: every epoch trains and scores validation
and test, as the training loop does. One thread, one seed. It does not measure accuracy.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import yaml
from torch import nn

from mla import catalog, config
from mla.batches import to_tensors
from mla.evaluate import accuracies
from mla.methods.base import create_method
from mla.missing import draw_mask
from mla.train import set_threads

DATASET = "builtin_ait"


def split_sizes(cfg: dict) -> dict[str, int]:
    """Train / val / test sizes of builtin_ait under the config (validation carved from training)."""
    gen = cfg["data"][DATASET]
    n_val = int(round(gen["n_train"] * cfg["val_fraction"]))
    return {"train": gen["n_train"] - n_val, "val": n_val, "test": gen["n_test"]}


def time_run(cfg: dict, method_name: str, options: dict, rate: float, seed: int = 0) -> float:
    """Seconds for one run: ``training.epochs`` epochs of training plus val/test scoring."""
    info = catalog.dataset_info(DATASET)
    s, mods = config.model_for(cfg, DATASET)["feature_dim"], info.modalities
    rs = np.random.RandomState(seed)
    data = {}
    for split, n in split_sizes(cfg).items():
        labels = rs.randint(0, info.n_classes, size=n)
        arrays = {m: rs.randn(n, s).astype(np.float32) for m in mods}
        present = draw_mask(cfg["missing"]["masking"], n, len(mods), rate, seed, split)
        data[split] = to_tensors(arrays, labels, mods, present)
    torch.manual_seed(seed)
    method = create_method(method_name, nn.ModuleDict({m: nn.Identity() for m in mods}),
                           n_classes=info.n_classes, feature_dim=s, **options)
    gen = torch.Generator().manual_seed(seed)
    tr = cfg["training"]
    start = time.perf_counter()
    for _ in range(tr["epochs"]):
        method.train()
        for batch in method.epoch_batches(data["train"], tr["batch_size"], gen):
            method.train_step(batch, optimizer=None)  # both methods step their own Adam
        for split in ("val", "test"):
            accuracies(method, data[split], tr["eval_batch_size"])
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="config/config.yaml")
    ap.add_argument("--methods", nargs="+", default=["cpm_net", "tate"])
    ap.add_argument("--rates", nargs="+", type=float, default=None, help="default: the config's missing.rates")
    ap.add_argument("--set", nargs="*", default=[], metavar="METHOD.OPTION=VALUE", help="override an option")
    args = ap.parse_args()
    cfg = config.load(args.config)
    set_threads(1)
    overrides: dict[str, dict] = {}
    for item in args.set:
        key, value = item.split("=", 1)
        method, option = key.split(".", 1)
        overrides.setdefault(method, {})[option] = yaml.safe_load(value)
    sizes = split_sizes(cfg)
    print(f"{DATASET}: {sizes}, feature_dim {config.model_for(cfg, DATASET)['feature_dim']}, "
          f"{cfg['training']['epochs']} epochs, masking {cfg['missing']['masking']}", flush=True)
    for name in args.methods:
        options = {**cfg["method_options"].get(name, {}), **overrides.get(name, {})}
        for rate in args.rates or cfg["missing"]["rates"]:
            seconds = time_run(cfg, name, options, rate)
            print(f"{name:8s} eta {rate:.1f}  {seconds:7.1f} s/run  options {options}", flush=True)


if __name__ == "__main__":
    main()
