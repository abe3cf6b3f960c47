"""A tiny in-memory image + text dataset and config for in-process training tests (no files)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mla import catalog, config, grid
from mla.features.store import SplitArrays
from mla.train import DatasetArrays

VOCAB, MAX_LEN, N_CLASSES = 20, 8, 4


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread, as every job runs (``threads: 1``): on a busy machine two OpenMP threads
    waiting on each other make these tiny steps many times slower. Import it to use it."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_config(root, epochs: int = 3, **top) -> dict:
    """The repository's config, shrunk to seconds: builtin_it, one seed, small encoders."""
    cfg = config.load(root / "config" / "config.yaml")
    cfg.update({"seeds": [0], "datasets": ["builtin_it"], "save_state_every_s": 0, **top})  # resume state every epoch
    cfg["methods"] = [m for m in catalog.METHODS if 2 in catalog.method_info(m).modality_counts]
    cfg["model"] = {"feature_dim": 16, "encoders": {
        "image": {"name": "resnet18", "width": 2, "stem": "small"},
        "text": {"name": "text_transformer", "layers": 1, "heads": 2}}}
    cfg["features"]["text"]["max_len"] = MAX_LEN
    cfg["training"].update(epochs=epochs, batch_size=16, eval_batch_size=64)
    return cfg


def tiny_dataset(n_train: int = 48, n_eval: int = 16, seed: int = 0) -> DatasetArrays:
    """Random images (3 x 8 x 8 uint8) and token ids whose label is learnable from both."""
    rng = np.random.default_rng(seed)
    splits = {}
    for split, n in (("train", n_train), ("val", n_eval), ("test", n_eval)):
        labels = np.arange(n) % N_CLASSES
        image = rng.integers(0, 256, (n, 3, 8, 8), dtype=np.uint8)
        image[:, 0, 0, :] = (labels[:, None] * 60).astype(np.uint8)
        text = rng.integers(1, VOCAB, (n, MAX_LEN))
        text[:, 0] = 1 + labels
        splits[split] = SplitArrays([f"{split}{i}" for i in range(n)], labels, {"image": image, "text": text})
    return DatasetArrays(("image", "text"), N_CLASSES, splits, VOCAB, MAX_LEN)


def training_jobs(cfg: dict) -> list[grid.Job]:
    """Every job of the config that trains (not the ones that assemble other runs)."""
    return [j for j in grid.jobs(cfg) if j.phase == "train" and not catalog.method_info(j.method).reuses]
