"""Decode real video containers with PyAV: frames kept at 1 fps, one frame at a time stamp, the audio track.

These follow the released preprocessing: OpenCV reads every frame and keeps the first of
every second (``data/video_preprocessing.py``); the WAV conversion is ffmpeg's 16 kHz pcm_s16le
(``data/mp4_to_wav.py``), here the same libswresample conversion through PyAV. Every error names the file.
"""
from __future__ import annotations

import math
from pathlib import Path

import av
from av.video.reformatter import VideoReformatter
import numpy as np

from mla.features import MediaError

_REFORMATTER = VideoReformatter()  # one swscale context cache for all conversions (single-threaded use)


def _open(path: Path):
    if not path.is_file():
        raise MediaError(f"missing video file {path}")
    try:
        return av.open(str(path))
    except Exception as exc:  # av.error.InvalidDataError etc. carry no reliable path
        raise MediaError(f"cannot open video file {path}: {exc}") from exc


def _video_stream(container, path: Path):
    if not container.streams.video:
        raise MediaError(f"video file {path} has no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "NONE"  # deterministic, and small frames gain nothing from codec threads
    stream.thread_count = 1
    return stream


def kept_per_second(path: str | Path, per_second: int) -> list[np.ndarray]:
    """RGB frames ``(H, W, 3)`` uint8 kept at ``per_second`` frames per second of video.

    As the released extractor: ``F = int(fps)`` (OpenCV's CAP_PROP_FPS, truncated); frames are counted
    from 0 in decoding order; within each run of F frames, frames ``0, F//k, 2(F//k) ... < k(F//k)``
    are kept (k = ``per_second``; k = 1 keeps frame indices 0, F, 2F, ...).
    """
    path = Path(path)
    try:
        with _open(path) as container:
            stream = _video_stream(container, path)
            rate = stream.average_rate or stream.base_rate or stream.guessed_rate
            fps = int(float(rate)) if rate else 0
            if fps < per_second:
                raise MediaError(f"video file {path} reports {float(rate or 0):.3f} fps, fewer than the "
                                 f"{per_second} frames per second to keep")
            step = fps // per_second
            kept = [_REFORMATTER.reformat(frame, format="rgb24").to_ndarray()
                    for i, frame in enumerate(container.decode(stream))
                    if (i % fps) % step == 0 and (i % fps) < step * per_second]
    except MediaError:
        raise
    except Exception as exc:
        raise MediaError(f"cannot decode video file {path}: {exc}") from exc
    if not kept:
        raise MediaError(f"video file {path} has no decodable frames")
    return kept


def frame_at(path: str | Path, seconds: float) -> np.ndarray:
    """The first frame whose presentation time is at or after ``seconds``: RGB ``(H, W, 3)`` uint8.

    Seeks to the key frame before ``seconds`` and decodes forward, which gives the same frame as
    decoding from the start. A frame without a time stamp, or a video that ends before ``seconds``,
    is an error naming the file.
    """
    path = Path(path)
    try:
        with _open(path) as container:
            stream = _video_stream(container, path)
            if stream.time_base is None:
                raise MediaError(f"video file {path} has no time base")
            # the smallest time stamp at or after `seconds` (less a rounding guard: 3.1 s x 25 = 77.50000000000001)
            target = math.ceil(seconds / float(stream.time_base) - 1e-6)
            container.seek(max(target, 0), stream=stream, backward=True, any_frame=False)
            for frame in container.decode(stream):
                if frame.pts is None:
                    raise MediaError(f"video file {path}: a frame without a time stamp near {seconds:.3f} s")
                if frame.pts >= target:
                    return _REFORMATTER.reformat(frame, format="rgb24").to_ndarray()
    except MediaError:
        raise
    except Exception as exc:
        raise MediaError(f"cannot decode video file {path}: {exc}") from exc
    raise MediaError(f"video file {path} ends before {seconds:.3f} s")


def audio_track(path: str | Path, sample_rate: int) -> np.ndarray:
    """The first audio stream resampled to ``sample_rate`` as 16-bit PCM, returned as float32 ``(C, N)``
    in [-1, 1) (PCM / 32768, as torchaudio loads a pcm_s16le WAV). Channels are kept."""
    path = Path(path)
    try:
        with _open(path) as container:
            if not container.streams.audio:
                raise MediaError(f"video file {path} has no audio stream")
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="s16p", rate=sample_rate)
            parts = []
            for frame in container.decode(stream):
                parts += [f.to_ndarray() for f in resampler.resample(frame)]
            parts += [f.to_ndarray() for f in resampler.resample(None)]  # flush the resampler's delay
    except MediaError:
        raise
    except Exception as exc:
        raise MediaError(f"cannot decode the audio of {path}: {exc}") from exc
    if not parts or sum(p.shape[1] for p in parts) == 0:
        raise MediaError(f"video file {path} has no audio samples")
    return (np.concatenate(parts, axis=1).astype(np.float32) / 32768.0)
