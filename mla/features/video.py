"""Video features: decode with PyAV and keep a fixed number of frames, as the released loader does."""
from __future__ import annotations

from pathlib import Path

import av
from av.video.reformatter import VideoReformatter
import numpy as np
from PIL import Image

from mla.features import MediaError

_REFORMATTER = VideoReformatter()  # reused across calls (not thread-safe; extraction is single-threaded)


def frame_positions(n: int, k: int) -> list[int]:
    """Frame indices kept from an ``n``-frame clip: 0, n//k, 2*(n//k), ...; all 0 if n < k (released rule)."""
    if n < k:
        return [0] * k
    return [i * (n // k) for i in range(k)]


def resize_rgb(img: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (size, size, 3) uint8; bilinear, a no-op when the size already matches."""
    if img.shape[0] == size and img.shape[1] == size:
        return img
    return np.asarray(Image.fromarray(img).resize((size, size), Image.BILINEAR))


def video_features(path: str | Path, cfg: dict) -> np.ndarray:
    """``cfg["n_frames"]`` frames of one video as uint8 ``(n_frames, 3, size, size)``; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"missing video file {path}")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise MediaError(f"video file {path} has no video stream")
            stream = container.streams.video[0]
            # single-threaded decoding: frames are tiny, and codec threads only add contention
            stream.thread_type = "NONE"
            stream.thread_count = 1
            frames = list(container.decode(stream))
            if not frames:
                raise MediaError(f"video file {path} has no decodable frames")
            # convert only the kept frames, through one shared reformatter: building a swscale context
            # per frame (what VideoFrame.to_ndarray(format=...) does) costs several times the decode
            picked = [_REFORMATTER.reformat(frames[i], format="rgb24").to_ndarray()
                      for i in frame_positions(len(frames), cfg["n_frames"])]
    except MediaError:
        raise
    except Exception as exc:  # av.error.* (invalid data, EOF ...) carry no reliable path; add it
        raise MediaError(f"cannot decode video file {path}: {exc}") from exc
    picked = [resize_rgb(img, cfg["size"]) for img in picked]
    return np.stack(picked).transpose(0, 3, 1, 2).copy()
