"""Student front end and augmentations of the DCASE2024 baseline (docs/method.md)."""

from __future__ import annotations

import torch
import torchaudio
from torch import nn


class MelFrontEnd(nn.Module):
    """MelSpectrogram(32 kHz, n_fft 4096, window 3072, hop 500, 256 mels) -> log(x + 1e-5).

    SpecAugment (frequency masks only) is applied in training mode only. On the CPU the power is taken as re^2 + im^2
    and the mel filter bank applied band by band (`banded_mel`): the same numbers to float rounding, the front end
    several times faster (benchmarks/frontend.py).
    """

    def __init__(self, cfg: dict):
        super().__init__()
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=cfg["sample_rate"],
            n_fft=cfg["n_fft"],
            win_length=cfg["win_length"],
            hop_length=cfg["hop_length"],
            n_mels=cfg["n_mels"],
            f_min=cfg["f_min"],
            f_max=cfg["f_max"],
        )
        fm = cfg["freqm"]
        self.freqm = torchaudio.transforms.FrequencyMasking(fm, iid_masks=True) if fm > 0 else nn.Identity()
        self._bands = mel_bands(self.mel.mel_scale.fb)  # index ranges only: the filters stay the module's buffer

    def _power(self, wav: torch.Tensor) -> torch.Tensor:
        """torchaudio's power spectrogram (its STFT, power 2) as re^2 + im^2: on the CPU |z| is a hypot per bin,
        several times slower than the two squares, and squared again after."""
        sp = self.mel.spectrogram
        z = torchaudio.functional.spectrogram(
            wav, pad=sp.pad, window=sp.window, n_fft=sp.n_fft, hop_length=sp.hop_length, win_length=sp.win_length,
            power=None, normalized=sp.normalized, center=sp.center, pad_mode=sp.pad_mode, onesided=sp.onesided,
        )  # fmt: skip
        return z.real.square() + z.imag.square()

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        """wav [B, T] -> log mel [B, 1, n_mels, frames]."""
        if wav.device.type == "cpu":
            x = banded_mel(self._power(wav), self.mel.mel_scale.fb, self._bands).unsqueeze(1)
        else:  # one dense product is one kernel on a GPU
            x = self.mel(wav).unsqueeze(1)
        if self.training:
            x = self.freqm(x)
        return (x + 1e-5).log()


def mel_bands(fb: torch.Tensor, width: int = 16) -> list[tuple[int, int, int, int]]:
    """The filter bank [bins, mels] cut into groups of `width` adjacent filters, each with the one range of
    frequency bins where any of them is non-zero: (first bin, end bin, first filter, end filter)."""
    bands = []
    for start in range(0, fb.shape[1], width):
        stop = min(start + width, fb.shape[1])
        used = (fb[:, start:stop] != 0).any(1).nonzero().squeeze(1)
        lo, hi = (int(used.min()), int(used.max()) + 1) if len(used) else (0, 1)
        bands.append((lo, hi, start, stop))
    return bands


def banded_mel(spec: torch.Tensor, fb: torch.Tensor, bands) -> torch.Tensor:
    """torchaudio's MelScale (spec [..., bins, frames] -> [..., mels, frames]) computed per band of filters: the
    triangular filters cover a few bins each, so a dense product spends nearly all of its time on zeros. The
    same products and sums over the non-zero bins; only float rounding differs (docs/method.md, "Student, front
    end, evaluation")."""
    st = spec.transpose(-1, -2)
    parts = [torch.matmul(st[..., lo:hi], fb[lo:hi, a:b].contiguous()) for lo, hi, a, b in bands]
    return torch.cat(parts, -1).transpose(-1, -2)


def to_device(t: torch.Tensor, device) -> torch.Tensor:
    """A small CPU tensor (random numbers drawn on the CPU) on `device` without stalling the host: a copy from
    pageable memory first waits for all queued GPU work (CUDA's rule for pageable copies), once per call, every
    step; from pinned memory it is queued like a kernel. Made contiguous first: a strided source (Beta's samples
    are a view) would be copied through a pageable temporary."""
    if torch.device(device).type == "cuda":
        return t.contiguous().pin_memory().to(device, non_blocking=True)
    return t.to(device)


def freq_mixstyle(
    x: torch.Tensor, p: float, alpha: float, gen: torch.Generator | None = None, eps: float = 1e-6
) -> torch.Tensor:
    """Freq-MixStyle: mix per-frequency-band statistics (over channel and time) between samples."""
    if torch.rand((), generator=gen).item() > p:
        return x
    b = x.size(0)
    mu = x.mean(dim=(1, 3), keepdim=True).detach()
    sig = (x.var(dim=(1, 3), keepdim=True) + eps).sqrt().detach()
    normed = (x - mu) / sig
    # Drawn on the CPU (the same numbers on any device), copied without waiting for the device.
    lam = to_device(torch.distributions.Beta(alpha, alpha).sample((b, 1, 1, 1)), x.device)
    perm = to_device(torch.randperm(b, generator=gen), x.device)
    return normed * (sig * lam + sig[perm] * (1 - lam)) + (mu * lam + mu[perm] * (1 - lam))


def roll_waveform(wav: torch.Tensor, max_shift: int, gen: torch.Generator | None = None) -> torch.Tensor:
    """Roll each clip by its own random shift in [-max_shift, max_shift] samples."""
    if max_shift <= 0:
        return wav
    # Shifts drawn on the CPU (the same numbers on any device) and copied without waiting for the device; the
    # [B, T] index is built where the clips are, not on the CPU and copied every step.
    shifts = to_device(torch.randint(-max_shift, max_shift + 1, (wav.size(0),), generator=gen), wav.device)
    idx = (torch.arange(wav.size(1), device=wav.device).unsqueeze(0) - shifts.unsqueeze(1)) % wav.size(1)
    return torch.gather(wav, 1, idx)


def mixup_params(batch: int, alpha: float, gen: torch.Generator | None = None):
    """EfficientAT MixUp: permutation and lambda ~ Beta(a, a) folded to max(lam, 1 - lam)."""
    perm = torch.randperm(batch, generator=gen)
    beta = torch.distributions.Beta(torch.tensor(alpha), torch.tensor(alpha))
    lam = beta.sample((batch,))
    return perm, torch.maximum(lam, 1 - lam)


def example_mixup(
    wav: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor, p: float, alpha: float, mix_labels: bool = False
):
    """The authors' distillation MixUp (docs/method.md, "Distillation"): each clip, with probability p, is mixed
    with a partner (here: another clip of the batch) with its own lambda ~ Beta(a, a) folded to >= 0.5. Both
    clips lose their mean first and the mix is centred again; the teacher logits are mixed with the same
    lambda; the labels stay the first clip's (mix_labels: mixed like the logits). Unmixed clips are untouched.
    """
    b = wav.size(0)
    # Drawn on the CPU (the same numbers on any device) and copied without waiting for the device.
    mixed = (torch.rand(b) < p) & (b > 1)
    lam = torch.distributions.Beta(torch.tensor(alpha), torch.tensor(alpha)).sample((b,))
    lam = torch.where(mixed, torch.maximum(lam, 1 - lam), torch.ones(b))  # 1: the clip as it is
    # The partner is another clip, never the clip itself (the authors draw it from a second stream).
    perm = (torch.arange(b) + torch.randint(1, max(b, 2), (b,))) % b
    mixed, perm, lam = (to_device(t, wav.device) for t in (mixed, perm, lam))
    lw = lam.unsqueeze(1)
    centred = wav - wav.mean(dim=1, keepdim=True)
    mix = centred * lw + centred[perm] * (1 - lw)
    wav = torch.where(mixed.unsqueeze(1), mix - mix.mean(dim=1, keepdim=True), wav)
    logits = logits * lw + logits[perm] * (1 - lw)
    if mix_labels:
        labels = labels * lw + labels[perm] * (1 - lw)
    return wav, logits, labels
