"""IEMOCAP's image: one face crop from the utterance's video frame (MLA.md 3.11.5).

The released code used pre-cropped face images resized to 256 x 256 (bilinear) and shipped neither the
cropping tool nor the crops. A face detector (for example OpenCV's Haar cascade) needs OpenCV, which
this environment does not install, so the crop here is geometric and deterministic: the frame (or its
left or right half, ``region``) is cut to its largest centred square, then resized bilinearly.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

REGIONS = ("full", "left", "right")
CROPS = ("center",)


def face_crop(rgb: np.ndarray, size: int, region: str | None = "full", crop: str = "center") -> np.ndarray:
    """``(H, W, 3)`` uint8 frame -> ``(3, size, size)`` uint8 crop (see the module docstring)."""
    if crop not in CROPS:
        raise ValueError(f"face crop {crop!r} is not available: a face detector needs OpenCV "
                         f"(opencv-python-headless), which is not installed; available: {', '.join(CROPS)}")
    if region not in REGIONS:
        raise ValueError(f"face region {region!r}: expected one of {', '.join(REGIONS)}")
    h, w = rgb.shape[:2]
    if region == "left":
        rgb = rgb[:, : w // 2]
    elif region == "right":
        rgb = rgb[:, w // 2:]
    h, w = rgb.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = Image.fromarray(np.ascontiguousarray(rgb[top:top + side, left:left + side]))
    if side != size:
        square = square.resize((size, size), Image.BILINEAR)
    return np.asarray(square, dtype=np.uint8).transpose(2, 0, 1).copy()
