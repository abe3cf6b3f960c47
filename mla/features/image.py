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


def resize_center_crop(path: str | Path, size: int) -> np.ndarray:
    """The released test transform of the image-text datasets ([C] ``dataset/dataset.py`` L413-420):
    ``Resize(size, bicubic)`` (shorter side to ``size``, the longer one ``int(size * long / short)``, as
    torchvision computes it) then ``CenterCrop(size)`` (offsets ``int(round((extent - size) / 2))``).
    uint8 ``(3, size, size)``.

    Images are converted to RGB ([C] opens them without conversion, which fails on grey-scale or CMYK
    files); EXIF orientation is ignored, as PIL and torchvision do by default. Errors name the file.
    """
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"missing image file {path}")
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            w, h = im.size
            short, long = (w, h) if w <= h else (h, w)
            new_long = int(size * long / short)
            new_w, new_h = (size, new_long) if w <= h else (new_long, size)
            if (new_w, new_h) != (w, h):
                im = im.resize((new_w, new_h), Image.BICUBIC)
            top, left = int(round((new_h - size) / 2.0)), int(round((new_w - size) / 2.0))
            arr = np.asarray(im.crop((left, top, left + size, top + size)), dtype=np.uint8)
    except Exception as exc:  # PIL raises OSError / UnidentifiedImageError / SyntaxError on bad files
        raise MediaError(f"cannot read image file {path}: {exc}") from exc
    return arr.transpose(2, 0, 1).copy()
