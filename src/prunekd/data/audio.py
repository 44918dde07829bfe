"""Decode, downmix, resample and pad/crop audio clips.

soundfile (libsndfile) decodes WAV, FLAC, MP3, OGG (Vorbis and Opus) and the other formats in
`manifest.AUDIO_EXTS`. Every problem becomes an `AudioError` with a short reason, so callers can skip and list.
"""

from __future__ import annotations

import functools
import os

import numpy as np
import soundfile as sf
import torch
import torchaudio

from prunekd.data.clipref import hdf5_clip


class AudioError(Exception):
    """A clip that cannot be used; `reason` is a short machine-friendly tag."""

    def __init__(self, path, reason: str, detail: str = ""):
        self.path, self.reason = str(path), reason
        super().__init__(f"{path}: {reason}{' (' + detail + ')' if detail else ''}")


@functools.lru_cache(maxsize=16)
def _resampler(orig: int, new: int) -> torchaudio.transforms.Resample:
    # Cached: building the sinc kernel costs more than resampling one short clip.
    return torchaudio.transforms.Resample(orig, new)


def resample(x: np.ndarray, orig: int, new: int) -> np.ndarray:
    if orig == new:
        return x
    with torch.no_grad():
        return _resampler(orig, new)(torch.from_numpy(np.ascontiguousarray(x))).numpy()


def fit_length(x: np.ndarray, n: int) -> np.ndarray:
    """Zero-pad or crop to exactly n samples."""
    if len(x) >= n:
        return x[:n]
    return np.pad(x, (0, n - len(x)))


def load_clip(path, sample_rate: int, n_samples: int | None = None, min_seconds: float = 0.0) -> np.ndarray:
    """Mono float32 at `sample_rate`, padded/cropped to `n_samples` when given."""
    src = hdf5_clip(path)  # an MP3 inside a PaSST-style HDF5 file, decoded from memory; else None
    if src is None and not os.path.exists(path):
        raise AudioError(path, "missing")
    size = src.getbuffer().nbytes if src is not None else os.path.getsize(path)
    if size == 0:  # libsndfile would call it "not a regular file (possibly a pipe?)"
        raise AudioError(path, "empty", "0 bytes")
    try:
        data, sr = sf.read(src or str(path), dtype="float32", always_2d=True)
    except Exception as e:  # libsndfile reports corrupt, truncated and unknown formats alike
        raise AudioError(
            path, "exists but unreadable", f"{size} bytes: " + (str(e).splitlines() or [""])[0][:200]
        ) from None
    if data.shape[0] == 0:
        raise AudioError(path, "empty")
    if not np.isfinite(data).all():
        raise AudioError(path, "non-finite samples")
    x = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if np.max(np.abs(x)) == 0.0:
        raise AudioError(path, "silent")
    if len(x) < min_seconds * sr:
        raise AudioError(path, "too short", f"{len(x) / sr:.3f} s")
    x = resample(x, sr, sample_rate)
    if n_samples is not None:
        x = fit_length(x, n_samples)
    return np.ascontiguousarray(x, dtype=np.float32)
