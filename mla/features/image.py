"""Image features: RGB uint8 arrays at a fixed size."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from mla.features import MediaError


def image_features(path: str | Path, cfg: dict) -> np.ndarray:
    """One image as uint8 ``(3, size, size)`` (RGB, bilinear resize if needed); errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"missing image file {path}")
    size = cfg["size"]
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")  # forces a full decode, so truncated files fail here
            if im.size != (size, size):
                im = im.resize((size, size), Image.BILINEAR)
            arr = np.asarray(im, dtype=np.uint8)
    except Exception as exc:  # PIL raises OSError / UnidentifiedImageError / SyntaxError on bad files
        raise MediaError(f"cannot read image file {path}: {exc}") from exc
    return arr.transpose(2, 0, 1).copy()
