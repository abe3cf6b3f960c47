"""Device choice (GPU claims via lock files) and the bf16 / channels-last paths, all on CPU."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from mla import devices
from mla.batches import to_tensors
from mla.devices import Placement, claim_gpu, select_device
from mla.methods import METHODS, create_method
from mla.models.encoders import create_encoder
from mla.train import train_run
from tiny import (MAX_LEN, N_CLASSES, VOCAB, one_thread, tiny_config, tiny_dataset,  # noqa: F401 (autouse)
                  training_jobs)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def fake_gpus(monkeypatch, tmp_path):
    """torch sees ``n`` CUDA devices (only the queries select_device makes are faked); the
    lock files go to tmp_path/work/gpu-locks; returns the list of set_device calls."""
    calls: list[int] = []

    def install(n: int, visible: str | None = None) -> list[int]:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: n > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: n)
        monkeypatch.setattr(torch.cuda, "set_device", calls.append)
        if visible is None:
            monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
        else:
            monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
        return calls

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(devices, "_claimed", [])
    return install


def test_claims_spread_over_gpus_and_freed_gpus_are_reused(tmp_path):
    locks = tmp_path / "locks"
    held = [claim_gpu(["0", "1", "2"], locks) for _ in range(5)]
    assert [i for i, _ in held] == [0, 1, 2, 0, 1]
    held[1][1].close()  # both jobs on GPU 1 end (a killed job's flock goes with it too)
    held[4][1].close()
    # Jobs per GPU now 2, 0, 1: GPU 1 twice (the second time tied with GPU 2, lowest index wins), then GPU 2.
    held += [claim_gpu(["0", "1", "2"], locks) for _ in range(3)]  # (kept: a dropped lock file is released)
    assert [i for i, _ in held[5:]] == [1, 1, 2]
    assert claim_gpu(["0"], locks) == (0, None)  # one visible GPU: nothing to choose, no lock


def test_select_device_takes_the_least_used_visible_gpu(fake_gpus):
    calls = fake_gpus(4, visible="3,1,0,2")
    lock_dir = Path("work/gpu-locks")
    others = [claim_gpu(["3", "1"], lock_dir), claim_gpu(["1", "3"], lock_dir)]  # jobs that see other subsets
    assert [i for i, _ in others] == [0, 0]  # they took physical GPUs 3 and 1
    device = select_device("cuda")
    assert device == torch.device("cuda", 2) and calls == [2]  # cuda:2 is physical GPU 0, the first free
    assert select_device("auto") == device  # later seeds of the job stay on the same GPU
    assert sorted(p.name for p in lock_dir.iterdir()) == ["gpu-0.0.lock", "gpu-1.0.lock", "gpu-3.0.lock"]


def test_select_device_single_visible_gpu_is_cuda0_without_locks(fake_gpus):
    calls = fake_gpus(1, visible="5")
    assert select_device("cuda") == torch.device("cuda", 0) and calls == [0]
    assert not Path("work").exists()


def test_select_device_cpu_and_missing_cuda(fake_gpus):
    fake_gpus(0)
    assert select_device("auto") == torch.device("cpu") == select_device("cpu")
    with pytest.raises(RuntimeError, match="cuda requested but no CUDA device"):
        select_device("cuda")


def _encoders(mods: tuple[str, ...]) -> nn.ModuleDict:
    specs = {"image": {"name": "resnet18", "width": 2, "stem": "small"},
             "text": {"name": "text_transformer", "layers": 1, "heads": 2, "vocab_size": VOCAB, "max_len": MAX_LEN}}
    return nn.ModuleDict({m: create_encoder(m, 16, specs[m]) for m in mods})


@pytest.mark.parametrize("name", METHODS.names())
def test_bf16_channels_last_steps_on_cpu(name):
    """A few steps of every method under CPU bf16 autocast with channels-last CNN weights."""
    torch.manual_seed(0)
    mods = ("image",) if name == "unimodal" else ("image", "text")
    place = Placement(torch.device("cpu"), precision="bf16", channels_last=True)
    method = place.module(create_method(name, _encoders(mods), n_classes=N_CLASSES, feature_dim=16))
    arr = tiny_dataset(n_train=32).splits["train"]
    data = place.data(to_tensors(arr.arrays, arr.labels, mods))
    assert data.batch(torch.arange(8))["image"].is_contiguous(memory_format=torch.channels_last)
    conv = method.encoders["image"].stem[0].weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and conv.dtype == torch.float32
    opt = torch.optim.SGD(method.parameters(), lr=0.05, momentum=0.9)
    gen = torch.Generator().manual_seed(0)
    losses = []
    for batch in list(method.epoch_batches(data, 16, gen))[:3]:
        with place.autocast():
            losses.append(method.train_step(batch, opt))
    assert losses and all(math.isfinite(v) for v in losses)  # full-batch methods (cpm_net) take one step
    method.eval()
    with torch.no_grad(), place.autocast():
        out = method.predict(data.batch(torch.arange(8)))
        feats = method.embed(data.batch(torch.arange(8)))
    assert out["multi"].shape == (8, N_CLASSES) and all(v.shape == (8, N_CLASSES) for v in out.values())
    assert feats["image"].dtype == torch.bfloat16  # autocast really ran the convolutions in bf16
    assert all(torch.isfinite(v.float()).all() for v in out.values())


def test_train_run_with_bf16_and_channels_last_on_cpu():
    cfg = tiny_config(ROOT, epochs=2, precision="bf16", channels_last=True)
    job = next(j for j in training_jobs(cfg) if j.method == "mla")
    metrics, log, state, _ = train_run(cfg, job, tiny_dataset(), 0)
    assert len(log) == 2 and all(math.isfinite(r["train_loss"]) for r in log)
    assert 0 <= metrics["test"]["multi"] <= 100 and state["P"].dtype == torch.float64
