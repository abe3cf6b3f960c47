"""IEMOCAP's image: one face crop from the utterance's video frame.

The released code used pre-cropped face images resized to 256 x 256 (bilinear; ``data/preprocess_iemo.py``
L138-152 reads them from a ``faces/`` folder) and shipped neither the cropping tool nor the crops. Here
the crop is computed from the frame, deterministically:

1. ``region``: the whole frame, or its ``left`` or ``right`` half (mla/data/iemocap.py picks the
   speaker's half).
2. ``crop: haar`` (default): OpenCV's bundled frontal-face Haar cascade
   (``cv2.data.haarcascades + "haarcascade_frontalface_default.xml"``) on the region converted to grey
   (``cv2.COLOR_RGB2GRAY``, no histogram equalisation), ``detectMultiScale`` with the fixed
   parameters below (:data:`SCALE_FACTOR`, :data:`MIN_NEIGHBORS`, :data:`MIN_SIZE`, flags 0), on one
   OpenCV thread. Of the boxes found, the largest (area) is kept; ties go to the topmost, then the
   leftmost. It is enlarged by :data:`MARGIN` of its side on every side to a square about the box's
   centre; a square larger than the region's shorter side is cut to that side, and a square that
   crosses the region's edge is shifted inside it (so the crop stays square and undistorted).
3. No face found: the region's largest centred square is used instead, and the result says so
   (``FaceCrop.fallback``): ``mla prepare`` lists every such sample in the manifest (``face_fallback``)
   and prints their count; nothing is substituted silently. ``crop: center`` uses that centred square
   for every frame (no detection, no fallback).
4. The square is resized to ``size`` x ``size`` (PIL bilinear) and returned as uint8 ``(3, size, size)``.

The margin and detector parameters are ours: [C]'s cropper is unknown. :func:`detector_info` gives
them, with OpenCV's version and the cascade file's sha256, for the manifest. ``cv2`` is imported only
when a detection runs, so modules that build the workflow stay light.
"""
from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from PIL import Image

REGIONS = ("full", "left", "right")
CROPS = ("haar", "center")
CASCADE = "haarcascade_frontalface_default.xml"
SCALE_FACTOR = 1.1  # image pyramid step of detectMultiScale
MIN_NEIGHBORS = 5  # overlapping candidate boxes needed to keep a detection
MIN_SIZE = (30, 30)  # smallest face box, pixels (width, height)
FLAGS = 0  # no CASCADE_* flags
MARGIN = 0.2  # added on every side of the detected box, as a fraction of its side


class FaceCrop(NamedTuple):
    """A crop: the uint8 ``(3, size, size)`` array, the square it was cut from (``left, top, side`` in
    the region's pixels), and whether the centre square stands in for a face that was not found."""

    array: np.ndarray
    box: tuple[int, int, int]
    fallback: bool


def cascade_path() -> Path:
    """The bundled frontal-face cascade file; an error says so if this OpenCV build lacks it."""
    import cv2

    base = getattr(getattr(cv2, "data", None), "haarcascades", None)
    if not base:
        raise FileNotFoundError(f"OpenCV {cv2.__version__} ({cv2.__file__}) has no cv2.data.haarcascades folder: "
                                f"install opencv-python-headless as pinned in pyproject.toml")
    path = Path(base) / CASCADE
    if not path.is_file():
        raise FileNotFoundError(f"Haar cascade {path} does not exist: this OpenCV build ({cv2.__version__}) does "
                                f"not ship {CASCADE}; install opencv-python-headless as pinned in pyproject.toml")
    return path


@functools.lru_cache(maxsize=1)
def _classifier() -> Any:
    import cv2

    cv2.setNumThreads(1)  # one thread: the same boxes whatever the machine
    path = cascade_path()
    classifier = cv2.CascadeClassifier(str(path))
    if classifier.empty():
        raise RuntimeError(f"OpenCV could not load the Haar cascade {path}")
    return classifier


def detector_info() -> dict:
    """What the manifest records about the detector (see the module docstring)."""
    import cv2

    path = cascade_path()
    return {"detector": "OpenCV CascadeClassifier.detectMultiScale", "opencv_version": cv2.__version__,
            "cascade": CASCADE, "cascade_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "grey": "cv2.COLOR_RGB2GRAY, no histogram equalisation", "scale_factor": SCALE_FACTOR,
            "min_neighbors": MIN_NEIGHBORS, "min_size": list(MIN_SIZE), "flags": FLAGS, "threads": 1,
            "pick": "the largest box (area); ties: topmost, then leftmost", "margin": MARGIN,
            "square": "side * (1 + 2 * margin) about the box centre, cut to the region's shorter side, "
                      "shifted inside the region",
            "fallback": "no face found: the region's largest centred square, the sample listed under face_fallback"}


def detect_face(rgb: np.ndarray) -> tuple[int, int, int, int] | None:
    """The face box ``(x, y, w, h)`` chosen in an ``(H, W, 3)`` uint8 RGB image, or None if none is found."""
    import cv2

    grey = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
    boxes = _classifier().detectMultiScale(grey, scaleFactor=SCALE_FACTOR, minNeighbors=MIN_NEIGHBORS,
                                           flags=FLAGS, minSize=MIN_SIZE)
    return pick_box(boxes)


def pick_box(boxes: Any) -> tuple[int, int, int, int] | None:
    """The largest ``(x, y, w, h)`` box (area); ties: the topmost, then the leftmost, then the narrowest."""
    if len(boxes) == 0:
        return None
    x, y, w, h = min((tuple(int(v) for v in b) for b in boxes), key=lambda b: (-b[2] * b[3], b[1], b[0], b[2]))
    return x, y, w, h


def face_square(box: tuple[int, int, int, int], width: int, height: int) -> tuple[int, int, int]:
    """``(left, top, side)``: ``box`` enlarged by :data:`MARGIN` to a square, kept inside ``width x height``."""
    x, y, w, h = box
    side = min(int(round(max(w, h) * (1 + 2 * MARGIN))), width, height)
    left = min(max((2 * x + w - side) // 2, 0), width - side)
    top = min(max((2 * y + h - side) // 2, 0), height - side)
    return left, top, side


def face_crop(rgb: np.ndarray, size: int, region: str | None = "full", crop: str = "haar") -> FaceCrop:
    """``(H, W, 3)`` uint8 frame -> :class:`FaceCrop` (see the module docstring)."""
    if crop not in CROPS:
        raise ValueError(f"face crop {crop!r}: expected one of {', '.join(CROPS)}")
    if region not in REGIONS:
        raise ValueError(f"face region {region!r}: expected one of {', '.join(REGIONS)}")
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB frame, got {getattr(rgb, 'dtype', type(rgb))} "
                         f"{getattr(rgb, 'shape', '')}")
    frame_h, frame_w = rgb.shape[:2]
    if region == "left":
        rgb = rgb[:, : frame_w // 2]
    elif region == "right":
        rgb = rgb[:, frame_w // 2:]
    h, w = rgb.shape[:2]
    if h == 0 or w == 0:
        raise ValueError(f"the {region} region of a {frame_w} x {frame_h} frame is empty")
    found = detect_face(rgb) if crop == "haar" else None
    if found is not None:
        left, top, side = face_square(found, w, h)
    else:
        side = min(h, w)
        left, top = (w - side) // 2, (h - side) // 2
    square = Image.fromarray(np.ascontiguousarray(rgb[top:top + side, left:left + side]))
    if side != size:
        square = square.resize((size, size), Image.BILINEAR)
    array = np.asarray(square, dtype=np.uint8).transpose(2, 0, 1).copy()
    return FaceCrop(array, (left, top, side), crop == "haar" and found is None)
