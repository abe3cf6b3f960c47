"""Where a job computes: the device it was given, and the optional bf16 autocast and channels-last.

Device (config ``device``): ``cpu``, ``cuda`` or ``auto`` (cuda when available). A job uses the
GPUs it can see: ``CUDA_VISIBLE_DEVICES``, which a scheduler such as SLURM sets to the GPUs it
allocated, and which torch numbers cuda:0, cuda:1, ... With one visible GPU the job uses cuda:0.

With several visible GPUs (a workstation running local jobs side by side) the job claims the
least-used one. Snakemake cannot say which: ``resources: gpu=1`` with ``--resources gpu=N``
only caps how many GPU jobs run at once, and Snakemake 9 gives a local job no slot or GPU id
(snakemake/snakemake#281, open). So each job takes a lock file
``work/gpu-locks/gpu-<id>.<slot>.lock`` (``<id>`` as in ``CUDA_VISIBLE_DEVICES``, so jobs that
see different subsets still agree) on the GPU with the fewest held locks, and holds it
(``flock``) for its lifetime; the kernel releases it however the process ends, so a killed
job leaves no stale claim. Under ``--resources gpu=N`` with N GPUs every job gets its own GPU;
without a cap, jobs are spread evenly.

``precision: bf16`` runs training steps and evaluation under ``torch.autocast`` with bfloat16
on the device's type (CPU included); ``channels_last: true`` stores the CNN encoders' 4-D
weights and image-like inputs channels-last. The defaults (fp32, false) give the tables' numbers.
"""
from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import torch
from torch import nn

from mla.batches import SplitTensors
from mla.checkpoint import WORK_ROOT
from mla.io import try_lock

GPU_LOCK_DIR = WORK_ROOT / "gpu-locks"
_claimed: list[tuple[int, IO | None]] = []  # this process's GPU and its lock, held until exit


def visible_gpus() -> list[str]:
    """The ids of the GPUs this process sees, in torch's cuda:<i> order."""
    n = torch.cuda.device_count()
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [e.strip() for e in env.split(",")] if env else [str(i) for i in range(n)]
    return ids[:n]


def _lock_path(lock_dir: Path, gpu: str, slot: int) -> Path:
    return lock_dir / f"gpu-{re.sub(r'[^A-Za-z0-9_.-]', '_', gpu)}.{slot}.lock"


def _usage(lock_dir: Path, gpu: str) -> tuple[int, int]:
    """(jobs holding a slot of ``gpu``, its first free slot), by probing its lock files."""
    held, free = 0, None
    slot = 0
    while (path := _lock_path(lock_dir, gpu, slot)).exists():
        fh = try_lock(path)
        if fh is None:
            held += 1
        else:
            fh.close()
            free = slot if free is None else free
        slot += 1
    return held, slot if free is None else free


def claim_gpu(gpus: list[str], lock_dir: Path = GPU_LOCK_DIR) -> tuple[int, IO | None]:
    """Index (into ``gpus``) of the GPU with the fewest jobs (lowest index on ties), and its lock.

    Keep the returned file open while using the GPU. One visible GPU needs no lock.
    """
    if len(gpus) <= 1:
        return 0, None
    lock_dir.mkdir(parents=True, exist_ok=True)
    while True:  # another job may take the chosen slot between probe and claim: probe again
        usage = [_usage(lock_dir, g) for g in gpus]
        i = min(range(len(gpus)), key=lambda k: usage[k][0])
        lock = try_lock(_lock_path(lock_dir, gpus[i], usage[i][1]))
        if lock is not None:
            return i, lock


def select_device(name: str) -> torch.device:
    """``cpu``, ``cuda`` or ``auto`` (cuda when available); on cuda, this process's GPU (see above)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RuntimeError("config device: cuda requested but no CUDA device is available")
    if not _claimed:  # once per process: every seed of the job stays on the same GPU
        _claimed.append(claim_gpu(visible_gpus()))
    index = _claimed[0][0]
    torch.cuda.set_device(index)
    return torch.device("cuda", index)


@dataclass(frozen=True)
class Placement:
    """A run's device and numeric settings, applied to its model, data and steps."""

    device: torch.device
    precision: str = "fp32"
    channels_last: bool = False

    def module(self, module: nn.Module) -> nn.Module:
        """``module`` on the device (4-D weights channels-last if asked)."""
        if self.channels_last:
            return module.to(self.device, memory_format=torch.channels_last)
        return module.to(self.device)

    def data(self, split: SplitTensors) -> SplitTensors:
        """A split's tensors on the device, moved once per run."""
        return split.to(self.device, channels_last=self.channels_last)

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast on the device's type if ``precision`` is bf16, else a no-op."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16")


def placement(cfg: dict) -> Placement:
    """The config's ``device``, ``precision`` (default fp32) and ``channels_last`` (default false)."""
    return Placement(select_device(cfg["device"]), cfg.get("precision", "fp32"), bool(cfg.get("channels_last", False)))
