"""Training-time augmentation of stored frames and images (``training.augment``), as the released code's
training transforms do it, batch-wise on the run's device.

The released MLA code (Cecile-hi/Multimodal-Learning-with-Alternating-Unimodal-Adaptation @ ab6c184)
augments every training example when its loader reads it:

- ``video`` (CREMA-D frames, ``AVDataset``, dataset/dataset.py L127-134, L146-149): torchvision 0.9.1
  ``RandomResizedCrop(224)`` (scale 0.08-1, ratio 3/4-4/3, bilinear) and ``RandomHorizontalFlip()``
  (p 0.5), drawn independently for each of the clip's frames;
- ``image`` (Food-101, MVSA: ``M3AEDataset`` L401-412, L430-437; IEMOCAP's face: ``Modal3Dataset``
  L697-708, L735-742): timm 0.4.5 ``create_transform(is_training=True, color_jitter=True, ...)``,
  i.e. ``RandomResizedCropAndInterpolation`` (scale 0.08-1, ratio 3/4-4/3, bicubic), horizontal flip
  p 0.5 and ``ColorJitter(1.0, 1.0, 1.0)`` (brightness, contrast, saturation factors uniform in
  [0, 2], applied in a random order; no hue).

Here the augmentation acts on the stored view (the feature store holds the test-time view, so a crop
is a window of that view, not of the original frame), after :mod:`mla.batches` normalised it:
cropping, resampling and flipping are linear with weights summing to one, so they commute with the
per-channel normalisation; the colour jitter, which is not, runs on the de-normalised pixels in [0, 1]
and is normalised again. Resampling uses Pillow's filters (the released transforms run on PIL
images), in float without Pillow's rounding to 8 bits. docs/methods/encoders.md lists every deviation.

Every random number of one training step comes from a generator seeded from (run seed, epoch, step),
so a seed gives the same augmentation and a resumed run the same bytes. Evaluation never calls this.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from mla.batches import PIXEL_NORMS, SplitTensors

AUGMENTS = ("none", "released")
SCALE = (0.08, 1.0)  # RandomResizedCrop's area fraction (torchvision 0.9.1 and timm 0.4.5 defaults)
RATIO = (3 / 4, 4 / 3)  # and aspect ratio w / h
ATTEMPTS = 10  # tries before the centre-crop fallback (both libraries)
FLIP_P = 0.5
JITTER = 1.0  # ColorJitter(1.0, 1.0, 1.0): factors uniform in [max(0, 1 - 1), 1 + 1]
GRAY = (0.299, 0.587, 0.114)  # Pillow's RGB -> L weights (ImageEnhance's grey image)
_STREAM = 0xA06  # tags the augmentation's random stream


@dataclass(frozen=True)
class Recipe:
    """One modality's released training transform."""

    kernel: str  # Pillow resampling filter of the crop: bilinear or bicubic
    jitter: bool  # ColorJitter(1, 1, 1) after the crop and flip


RECIPES = {"video": Recipe("bilinear", jitter=False), "image": Recipe("bicubic", jitter=True)}


def step_generator(seed: int, epoch: int, step: int) -> torch.Generator:
    """The CPU generator of training step ``step`` of ``epoch`` in the run with ``seed``."""
    state = np.random.SeedSequence([seed, epoch, step, _STREAM]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state >> 1))


# --- random parameters (drawn on the CPU from the step's generator) ---------------------------------

def crop_boxes(n: int, height: int, width: int, gen: torch.Generator) -> torch.Tensor:
    """(n, 4) int64 boxes ``(top, left, h, w)`` by RandomResizedCrop's rule, one per image.

    Up to :data:`ATTEMPTS` tries of area fraction U(SCALE) and log-aspect U(log RATIO); the first
    box that fits wins, at a uniform position; if none fits, the centre crop of the largest
    in-range aspect (the whole image for a square one).
    """
    fraction = SCALE[0] + (SCALE[1] - SCALE[0]) * torch.rand(n, ATTEMPTS, generator=gen, dtype=torch.float64)
    area = height * width * fraction
    lo, hi = math.log(RATIO[0]), math.log(RATIO[1])
    aspect = torch.exp(lo + (hi - lo) * torch.rand(n, ATTEMPTS, generator=gen, dtype=torch.float64))
    w = torch.round(torch.sqrt(area * aspect)).long()
    h = torch.round(torch.sqrt(area / aspect)).long()
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = fits.long().argmax(dim=1, keepdim=True)  # the first fitting attempt (0 if none fits)
    w, h = w.gather(1, first).squeeze(1), h.gather(1, first).squeeze(1)
    ratio = width / height
    if ratio < RATIO[0]:
        fw, fh = width, int(round(width / RATIO[0]))
    elif ratio > RATIO[1]:
        fw, fh = int(round(height * RATIO[1])), height
    else:
        fw, fh = width, height
    found = fits.any(dim=1)
    w, h = torch.where(found, w, fw), torch.where(found, h, fh)
    u = torch.rand(n, 2, generator=gen, dtype=torch.float64)
    top = torch.where(found, (u[:, 0] * (height - h + 1)).floor().long(), torch.full_like(h, (height - fh) // 2))
    left = torch.where(found, (u[:, 1] * (width - w + 1)).floor().long(), torch.full_like(w, (width - fw) // 2))
    return torch.stack([top, left, h, w], dim=1)


def flip_flags(n: int, gen: torch.Generator) -> torch.Tensor:
    """(n,) bool: which images are mirrored (probability :data:`FLIP_P`)."""
    return torch.rand(n, generator=gen) < FLIP_P


def jitter_params(n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, 3) brightness, contrast, saturation factors, U[max(0, 1 - JITTER), 1 + JITTER], and
    (n, 3) the order they are applied in (a uniform permutation of 0, 1, 2 per image)."""
    low = max(0.0, 1.0 - JITTER)
    factors = low + (1.0 + JITTER - low) * torch.rand(n, 3, generator=gen)
    order = torch.rand(n, 3, generator=gen).argsort(dim=1)
    return factors, order


# --- operations --------------------------------------------------------------------------------------

def _filter(kernel: str, x: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Pillow's resampling filter at distances ``x`` (in input pixels), and its support."""
    x = x.abs()
    if kernel == "bilinear":
        return torch.clamp(1.0 - x, min=0.0), 1.0
    if kernel == "bicubic":  # Pillow's cubic convolution, a = -0.5
        a = -0.5
        near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
        far = (((x - 5.0) * x + 8.0) * x - 4.0) * a
        return torch.where(x < 1.0, near, torch.where(x < 2.0, far, torch.zeros_like(x))), 2.0
    raise ValueError(f"resampling kernel {kernel!r}: expected bilinear or bicubic")


def resample_matrix(start: torch.Tensor, length: torch.Tensor, out_size: int, in_size: int,
                    kernel: str) -> torch.Tensor:
    """(n, out_size, in_size) weights that resize the windows ``[start, start + length)`` of an axis to
    ``out_size`` samples, as Pillow resizes a cropped image: output sample ``o`` is centred at
    ``start + (o + 0.5) * length / out_size``; taps outside the window are dropped and the rest
    renormalised. Windows are never larger than the output here, so no anti-aliasing is needed."""
    device = start.device
    start, length = start.to(torch.float32).view(-1, 1, 1), length.to(torch.float32).view(-1, 1, 1)
    o = torch.arange(out_size, device=device, dtype=torch.float32).view(1, -1, 1)
    k = torch.arange(in_size, device=device, dtype=torch.float32).view(1, 1, -1)
    centre = start + (o + 0.5) * length / out_size
    weight, _ = _filter(kernel, k + 0.5 - centre)
    weight = weight * ((k >= start) & (k < start + length)).to(weight.dtype)
    return weight / weight.sum(dim=-1, keepdim=True)


def resized_crop(x: torch.Tensor, boxes: torch.Tensor, kernel: str) -> torch.Tensor:
    """(N, C, H, W) images -> each box ``(top, left, h, w)`` of ``boxes`` resized back to H x W."""
    n, _, height, width = x.shape
    boxes = boxes.to(x.device)
    rows = resample_matrix(boxes[:, 0], boxes[:, 2], height, height, kernel).to(x.dtype)
    cols = resample_matrix(boxes[:, 1], boxes[:, 3], width, width, kernel).to(x.dtype)
    return rows.unsqueeze(1) @ x @ cols.transpose(1, 2).unsqueeze(1)


def hflip(x: torch.Tensor, flags: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) images, those with ``flags`` mirrored left-right (an exact permutation)."""
    return torch.where(flags.to(x.device).view(-1, 1, 1, 1), x.flip(-1), x)


def _gray(p: torch.Tensor) -> torch.Tensor:
    r, g, b = GRAY
    return (r * p[:, 0] + g * p[:, 1] + b * p[:, 2]).unsqueeze(1)


def color_jitter(p: torch.Tensor, factors: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """Pixels in [0, 1], (N, 3, H, W) -> brightness, contrast and saturation adjusted by ``factors``
    in each image's ``order``, as Pillow's ImageEnhance does them: blend with black, with the mean
    grey level, with the grey image, clipping to [0, 1] after each."""
    factors, order = factors.to(p.device, p.dtype), order.to(p.device)
    for position in range(3):
        f = factors.gather(1, order[:, position:position + 1]).view(-1, 1, 1, 1)
        mean = _gray(p).mean(dim=(2, 3), keepdim=True)
        grey = _gray(p)
        adjusted = torch.stack([p * f, mean + f * (p - mean), grey + f * (p - grey)])  # (3, N, 3, H, W)
        pick = order[:, position].view(1, -1, 1, 1, 1).expand(1, *p.shape)
        p = adjusted.gather(0, pick).squeeze(0).clamp(0.0, 1.0)
    return p


def augment_pixels(x: torch.Tensor, recipe: Recipe, gen: torch.Generator, pixels: str) -> torch.Tensor:
    """One recipe on (N, 3, H, W) inputs normalised by ``PIXEL_NORMS[pixels]``; same shape and norm."""
    n, _, height, width = x.shape
    mean, std = (torch.tensor(v, device=x.device, dtype=x.dtype).view(1, 3, 1, 1) for v in PIXEL_NORMS[pixels])
    boxes = crop_boxes(n, height, width, gen)
    flags = flip_flags(n, gen)
    # Pillow clips each resampled pixel to 0..255 (bicubic overshoots); bounds of [0, 1] after normalisation:
    y = torch.maximum(torch.minimum(resized_crop(x, boxes, recipe.kernel), (1 - mean) / std), -mean / std)
    y = hflip(y, flags)
    if recipe.jitter:
        factors, order = jitter_params(n, gen)
        y = (color_jitter(y * std + mean, factors, order) - mean) / std
    return y


def augment_batch(batch: dict, split: SplitTensors, settings: dict | None, seed: int, epoch: int, step: int) -> dict:
    """A training batch with its frames and images augmented as ``settings`` (``training.augment``) say.

    Returns a new dict (the split's resident inputs are never changed); other modalities pass
    through. Absent inputs (zero, see :meth:`SplitTensors.batch`) stay zero.
    """
    settings = settings or {}
    for modality, value in settings.items():
        if modality not in RECIPES or value not in AUGMENTS:
            raise ValueError(f"config key training.augment.{modality}: {value!r}; valid: "
                             f"{', '.join(RECIPES)} set to one of {', '.join(AUGMENTS)}")
    active = [m for m in RECIPES if settings.get(m, "none") == "released" and m in batch]
    if not active:
        return batch
    gen = step_generator(seed, epoch, step)
    out = dict(batch)
    for m in active:
        x = batch[m]
        flat = x.flatten(0, 1) if x.dim() == 5 else x  # video: every frame on its own, as [C]
        y = augment_pixels(flat, RECIPES[m], gen, split.pixels).view(x.shape)
        keep = batch["present"][:, split.modalities.index(m)]
        y = y * keep.view(-1, *([1] * (y.dim() - 1))).to(y.dtype)
        if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
            y = y.contiguous(memory_format=torch.channels_last)
        out[m] = y
    return out
