"""Memory policy of a training job: which splits stay converted in memory, and the memory a job
declares to Snakemake (``resources: mem_mb``). No torch, so the DAG can call it.

Training streams its data (``mla/batches.py``): a split's feature rows stay in the store's shard
files and only the rows of the current batch are read and converted, so a job's memory does not
grow with the dataset; a split whose inputs fit in RESIDENT_MB is converted once and kept instead.
What a job holds, in MB (rounded up to 100 MB):

    RUNTIME_MB                           interpreter, torch, NumPy, this package (490 MiB after
                                         ``import mla.train`` on the CPU, measured)
  + CUDA_MB                (cuda, auto)  the CUDA context and its libraries in host memory
  + MODEL_COPIES x model                 parameters, gradients, SGD momentum, the best epoch's copy
                                         and the per-epoch saved state while it is serialised; model =
                                         the encoders' converted weight files, or ENCODER_MB per encoder
                                         trained from scratch (a ResNet-18 at width 64: 11.2 M
                                         parameters, 45 MB), times (width / 64)^2 if it has a width
  + IN_FLIGHT x B x sum_m n_m x (raw_m + 12)
                                         B = max(batch_size, eval_batch_size) examples, n_m values of
                                         modality m per example (the manifest's shapes), raw_m bytes per
                                         stored value: the raw rows, their input, the masked copy and
                                         the pixel-table index
  + ACTIVATION_FACTOR x batch_size x sum_m 4 n_m
                                         (cpu only) a training step's saved activations; on a GPU they
                                         are in device memory
  + STATS_MB               (audio)       the chunks of the fbank statistics (batches.STATS_CHUNK)
  + every split's inputs that fit in RESIDENT_MB (every built-in split)
  + N x (120 + 2 M) bytes                index arrays of all N examples: label, presence mask (tensor
                                         and array), id string

The shard files' page cache is not counted: rows are read, not memory-mapped, so those pages are
not in the job's RSS, and the kernel reclaims them (they are clean) under a job's memory limit.
Before the store exists (a dry run) its manifest is unknown and the data terms are 0; Snakemake
evaluates the resource again when the job is ready to run, once its input, the store, exists.
Snakemake multiplies the value by the attempt on a retry.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from mla import catalog
from mla.config import model_for

RESIDENT_MB = 256
RUNTIME_MB = 600
CUDA_MB = 3000  # [assumed] host memory of torch's CUDA context with cuBLAS and cuDNN loaded; not measured here
ENCODER_MB = 50
MODEL_COPIES = 6
IN_FLIGHT = 2  # the batch in use and the next one being read
ACTIVATION_FACTOR = 64  # [ours] from builtin_av (799 MiB peak RSS per job, width-4 ResNets, batch 64)
STATS_MB = 64
RAW_BYTES = {"uint8": 1, "float32": 4, "int64": 8}


def input_bytes(dtype: str) -> int:
    """Bytes per value of the encoder input made from a stored value of ``dtype`` (a NumPy dtype
    name): float32 from uint8 pixels and from floats, int64 from integer token ids."""
    return 4 if dtype == "uint8" or dtype.startswith("float") else 8


def model_mb(cfg: dict, dataset: str, modalities: list[str]) -> float:
    """Size of the encoders' parameters: their weight files where they load one, else an allowance."""
    encoders = model_for(cfg, dataset)["encoders"]
    total = 0.0
    for m in modalities:
        spec = encoders.get(m, {})
        path = Path(str(spec.get("weights", "")))
        if spec.get("weights") and path.is_file():
            total += path.stat().st_size / 2**20
        else:
            total += ENCODER_MB * (spec["width"] / 64) ** 2 if "width" in spec else ENCODER_MB
    return total


def train_mem_mb(cfg: dict, dataset: str, feature_dir: str | Path) -> int:
    """Memory (MB) one training job of ``dataset`` needs, from the config and the store's manifest."""
    manifest_path = Path(feature_dir) / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else None
    modalities = manifest["modalities"] if manifest else list(catalog.dataset_info(dataset).modalities)
    mb = RUNTIME_MB + (CUDA_MB if cfg["device"] != "cpu" else 0) + MODEL_COPIES * model_mb(cfg, dataset, modalities)
    if manifest:
        tr = cfg["training"]
        dtype = {m: manifest["arrays"][m]["dtype"] for m in modalities}
        values = {m: math.prod(manifest["arrays"][m]["shape"]) for m in modalities}
        batch = max(tr["batch_size"], tr["eval_batch_size"])
        mb += IN_FLIGHT * batch * sum(n * (RAW_BYTES.get(dtype[m], 8) + 12) for m, n in values.items()) / 2**20
        if cfg["device"] == "cpu":  # saved for backward by training steps (evaluation runs without grad)
            mb += ACTIVATION_FACTOR * tr["batch_size"] * sum(4 * n for n in values.values()) / 2**20
        if "audio" in modalities:
            mb += STATS_MB
        per_example = sum(n * input_bytes(dtype[m]) for m, n in values.items()) / 2**20
        splits = manifest["splits"].values()
        mb += sum(s["count"] * per_example for s in splits if s["count"] * per_example <= RESIDENT_MB)
        mb += sum(s["count"] for s in splits) * (120 + 2 * len(modalities)) / 2**20
    return int(math.ceil(mb / 100) * 100)
