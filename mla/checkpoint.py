"""Resumable training state, kept under ``work/`` (outside every DVC output) until a job finishes.

Layout, one directory per job (``work/<config name>/<job id>/``)::

    .lock                 held (flock) by the process training the job: a second one stops
    seed<k>/fingerprint.json  what the state belongs to: job, seed, resolved config, code hash,
                          torch version; a mismatch discards the seed's directory
    seed<k>/state.pt      the run at the end of its last finished epoch, replaced atomically
                          every epoch (model with its buffers, optimizer, scheduler, batch
                          generator, Python/NumPy/torch RNGs, epoch log, selection state)
    seed<k>/run/          the finished run directory, the same files as the output

A run's output directory (``results/...``) is written only when the run is complete: a copy
of ``seed<k>/run/``. Snakemake deletes a failed job's output directory, finished seeds
included, before it reruns the job, so the finished seeds are kept here and copied back
without retraining; ``work/<config>/<job id>/`` is removed once every seed is published.

Every directory created, replaced or deleted here is checked first to lie inside ``work/`` (or
``results/`` for a published run), symbolic links resolved (``mla/safepaths.py``): a name that
escaped the config's checks still cannot make a job write or delete elsewhere.

Everything saved loads with ``torch.load(..., weights_only=True)``: tensors and plain
containers only (RNG states as tensors or tuples of ints).
"""
from __future__ import annotations

import hashlib
import io
import json
import random
import shutil
import time
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from mla import config as config_mod, grid
from mla.io import atomic_directory, atomic_file, name_on_error, try_lock, writable_directory, write_json
from mla.safepaths import confine, project_dir, remove_tree

WORK_ROOT = project_dir("work")
RESULTS_ROOT = project_dir("results")  # where publish() may replace a run directory


def job_work_dir(cfg: dict, job: grid.Job) -> Path:
    """``work/<config name>/<job id>``: the job's resumable state, beside ``results/<config name>``."""
    return WORK_ROOT / cfg["name"] / job.id


@lru_cache(maxsize=1)
def code_sha256() -> str:
    """Hash of the ``mla`` package's source files. Any edit under ``mla/`` discards unfinished
    states (conservative: a resumed run must be the run this code would have produced)."""
    root = Path(__file__).parent
    h = hashlib.sha256()
    for f in sorted(p for ext in ("*.py", "*.yaml") for p in root.rglob(ext)):
        h.update(f.relative_to(root).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def torch_bytes(obj: object) -> bytes:
    """``torch.save`` into memory. Written to a file by Python, a full disk is an ``OSError``
    (ENOSPC); ``torch.save`` writing a file itself reports "unexpected pos" instead."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


# --- RNG states ---------------------------------------------------------------------------
def rng_state(device: torch.device) -> dict:
    """Python, NumPy and torch (CPU, and the run's CUDA device) RNG states, weights_only-safe."""
    version, py_state, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    return {
        "python": (version, py_state, gauss),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
    }


def set_rng_state(state: dict, device: torch.device) -> None:
    """Restore what :func:`rng_state` captured."""
    version, py_state, gauss = state["python"]
    random.setstate((version, tuple(py_state), gauss))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].cpu().numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    torch.set_rng_state(state["torch"].cpu())  # RNG states are CPU byte tensors, wherever the state was loaded
    if state["cuda"] is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)


def capture(epoch: int, method: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler,
            gen: torch.Generator, device: torch.device, **loop: object) -> dict:
    """The training state after ``epoch``; ``loop`` holds the loop's own plain state (log, selection)."""
    return {
        "epoch": epoch,
        "method": method.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": None if scheduler is None else scheduler.state_dict(),
        "generator": gen.get_state(),
        "rng": rng_state(device),
        **loop,
    }


def restore(state: dict, method: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler,
            gen: torch.Generator, device: torch.device) -> None:
    """Load a :func:`capture`d state into freshly built objects of the same run."""
    method.load_state_dict(state["method"])
    optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None:
        scheduler.load_state_dict(state["scheduler"])
    gen.set_state(state["generator"].cpu())
    set_rng_state(state["rng"], device)


# --- work directories ---------------------------------------------------------------------
class RunWork:
    """The work directory of one run (job x seed): its saved state and, once finished, its run."""

    def __init__(self, directory: Path, fingerprint: dict, root: Path | None = None) -> None:
        """``root`` (default ``work/``): the directory ``directory`` must lie in, checked before any write."""
        self.root = WORK_ROOT if root is None else Path(root)
        confine(directory, self.root)
        self.dir = directory
        self.job_id = fingerprint.get("job", "(unnamed)")
        self.state_path = directory / "state.pt"
        self.run_dir = directory / "run"
        self.resumed_from: int | None = None
        self._prior_wall_s = 0.0
        self._start = time.perf_counter()
        marker = directory / "fingerprint.json"
        with name_on_error(directory):
            if directory.exists() and _read_json(marker) != fingerprint:
                print(f"discarding training state {directory}: written for another config or code", flush=True)
                remove_tree(directory, self.root)
            if not marker.exists():
                directory.mkdir(parents=True, exist_ok=True)
                with atomic_file(marker) as tmp:
                    write_json(tmp, fingerprint)

    @property
    def finished(self) -> bool:
        """Whether the run completed before (its directory is kept here until the job finishes)."""
        return self.run_dir.is_dir()

    def wall_s(self) -> float:
        """Wall time of the epochs that count: earlier attempts up to their last save, plus this one."""
        return self._prior_wall_s + time.perf_counter() - self._start

    def load_state(self, device: torch.device | str = "cpu") -> dict | None:
        """The last saved state (its tensors on ``device``), or None if the run has none."""
        if not self.state_path.exists():
            return None
        try:
            state = torch.load(self.state_path, map_location=device, weights_only=True)
        except Exception as exc:
            raise RuntimeError(f"cannot read training state {self.state_path} of job {self.job_id} "
                               f"({exc}); delete it to train the run from the start") from exc
        self.resumed_from, self._prior_wall_s = state["epoch"], state["wall_s"]
        return state

    def save_state(self, state: dict) -> None:
        """Replace the saved state atomically (a kill mid-save leaves the previous one)."""
        data = torch_bytes({**state, "wall_s": self.wall_s()})
        with name_on_error(self.state_path), atomic_file(self.state_path) as tmp:
            tmp.write_bytes(data)

    def drop_state(self) -> None:
        """Forget the per-epoch state once the finished run is in ``run/``."""
        self.state_path.unlink(missing_ok=True)


class JobWork:
    """The work directory of one job, locked against a second process training the same job."""

    def __init__(self, cfg: dict, job: grid.Job) -> None:
        confine(job_work_dir(cfg, job), WORK_ROOT)  # before creating anything
        self.dir = writable_directory(job_work_dir(cfg, job))
        self.job = job
        self._config = config_mod.dump(cfg)
        with name_on_error(self.dir):
            self._lock = try_lock(self.dir / ".lock")
        if self._lock is None:
            raise RuntimeError(f"job {job.id} is being trained by another process (it holds {self.dir / '.lock'})")

    def run(self, seed: int) -> RunWork:
        """The work directory of one seed (created, or discarded if it belongs to other config or code)."""
        return RunWork(self.dir / f"seed{seed}", {
            "job": self.job.id, "seed": seed, "config": self._config, "code_sha256": code_sha256(),
            "torch": torch.__version__,
        })

    def finish(self) -> None:
        """Remove the job's work directory once every seed is published (releases the lock)."""
        remove_tree(self.dir, WORK_ROOT)
        self._lock.close()


def publish(run: RunWork, out_dir: str | Path) -> None:
    """Copy a finished run from ``work/`` to its output directory, atomically."""
    with name_on_error(out_dir), atomic_directory(out_dir, RESULTS_ROOT) as tmp:
        shutil.copytree(run.run_dir, tmp, dirs_exist_ok=True)


def read_checkpoint(path: str | Path, job: grid.Job) -> dict:
    """A published run's ``checkpoint.pt`` (tensors only); errors name the file and the job, and
    a job without its completion marker is refused (it was interrupted or is still running)."""
    if not Path(job.marker).is_file():
        raise RuntimeError(f"job {job.id} is not complete ({job.marker} is missing): run `mla train --job {job.id}` "
                           f"(or snakemake) first")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise RuntimeError(f"cannot read checkpoint {path} of job {job.id} ({exc}); "
                           f"rerun the job (delete {job.job_dir})") from exc


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
