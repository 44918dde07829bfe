"""The clip datasets: files decoded on the fly, in loader workers, for the teacher pass (ClipDataset), training
and evaluation (WaveDataset)."""

from __future__ import annotations

import numpy as np
import torch

from prunekd.data.audio import AudioError, load_clip


class WaveDataset(torch.utils.data.Dataset):
    """Clips decoded on the fly (in DataLoader workers), resampled and padded/cropped to n samples.

    A clip that fails to decode yields silence and is reported, so one bad file never stops a
    long training job; the teacher pass has already listed such clips.
    """

    def __init__(self, paths, sample_rate: int, n_samples: int):
        self.paths, self.sr, self.n = list(paths), sample_rate, n_samples

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        try:
            return torch.from_numpy(load_clip(self.paths[i], self.sr, self.n)), i, ""
        except AudioError as e:
            return torch.zeros(self.n), i, e.reason


def collate(items):
    return (
        torch.stack([x for x, _, _ in items]),
        torch.tensor([i for _, i, _ in items]),
        [(i, why) for _, i, why in items if why],
    )


class ClipDataset(torch.utils.data.Dataset):
    """Decodes clips in DataLoader workers; failures come back as a reason instead of audio."""

    def __init__(self, paths, rows, sample_rate, n_samples, tile_to=None):
        self.paths, self.rows = list(paths), list(rows)
        self.sr, self.n, self.tile_to = sample_rate, n_samples, tile_to

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        try:
            x = load_clip(self.paths[i], self.sr, self.n)
            if self.tile_to:
                x = np.resize(x, self.tile_to)  # repeat a short clip up to the teacher's 10 s
            return self.rows[i], x, ""
        except AudioError as e:
            return self.rows[i], None, e.reason


def clip_collate(items):
    good = [(r, x) for r, x, _ in items if x is not None]
    bad = [(r, why) for r, x, why in items if x is None]
    wav = torch.from_numpy(np.stack([x for _, x in good])) if good else None
    return [r for r, _ in good], wav, bad
