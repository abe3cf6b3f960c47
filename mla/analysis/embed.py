"""Test-set embeddings of trained models (the input of the modality-gap analysis)."""
from __future__ import annotations

import numpy as np
import torch

from mla import checkpoint, grid
from mla.config import model_for
from mla.batches import eval_batches
from mla.io import atomic_directory, save_npz
from mla.methods.base import Method
from mla.train import DatasetArrays, build_method, load_dataset, set_threads, split_tensors


def load_trained(cfg: dict, job: grid.Job, ds: DatasetArrays, seed: int) -> Method:
    """Rebuild a run's method and load its selected checkpoint (tensors only, no code)."""
    run_dir = f"{job.job_dir}/seed{seed}"
    ckpt = checkpoint.read_checkpoint(f"{run_dir}/checkpoint.pt", job)
    modalities = (job.modality,) if job.modality else ds.modalities
    method = build_method(cfg, job, ds, modalities)
    method.load_state_dict(ckpt["state_dict"])
    return method.eval()


@torch.no_grad()
def test_embeddings(method: Method, data, batch_size: int) -> dict[str, np.ndarray]:
    """``features_<modality>`` (N, s) for every test example, and ``labels``."""
    feats: dict[str, list[np.ndarray]] = {m: [] for m in method.modalities}
    for batch in eval_batches(data, batch_size):
        for m, f in method.embed(batch).items():
            feats[m].append(f.numpy())
    out = {f"features_{m}": np.concatenate(v).astype(np.float32) for m, v in feats.items()}
    out["labels"] = data.labels.numpy()
    return out


def analyse_dataset(cfg: dict, dataset: str) -> None:
    """Write the embeddings of each compared method at ``analysis.seed``, then the gap and t-SNE,
    atomically; the gap is also measured on every other seed's run (``gap_per_seed`` in gap.json),
    so the report can give it a spread and the claim on it an interval."""
    from mla.analysis.gap import gap_summary
    from mla.analysis.tsne import analyse

    set_threads(cfg["threads"])
    seed = cfg["analysis"]["seed"]
    ds = load_dataset(cfg, dataset)
    inputs, batch_size = model_for(cfg, dataset)["inputs"], cfg["training"]["eval_batch_size"]
    per_seed: dict[str, dict[str, dict[str, float]]] = {}
    with atomic_directory(grid.analysis_dir(cfg, dataset)) as tmp:
        for job in grid.analysis_jobs(cfg)[dataset]:
            for s in cfg["seeds"]:
                method = load_trained(cfg, job, ds, s)
                data, _ = split_tensors(ds, method.modalities, s, None, inputs)
                emb = test_embeddings(method, data["test"], batch_size)
                per_seed.setdefault(job.method, {})[str(s)] = gap_summary(
                    {m: emb[f"features_{m}"] for m in ds.modalities})
                if s == seed:
                    save_npz(tmp / f"embeddings_{job.method}.npz", emb)
        analyse(cfg, dataset, str(tmp), per_seed)
