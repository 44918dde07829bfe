"""The PaSST teacher ensemble (docs/method.md, "Teachers"): build, locate weights, load, run.

All members share one front end (128 mels, hop 320), so the mel spectrogram is computed once per
batch and fed to every member.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import types
import warnings
from pathlib import Path

import torch
from torch import nn

from prunekd.dag.members import MEMBERS  # member -> (patch stride, release tag, checkpoint file)
from prunekd.errors import PrunekdError
from prunekd.teachers.logit_store import N_CLASSES

RELEASES = "https://github.com/kkoutini/PaSST/releases/download"

RELEASE_FRAMES = 998  # mel frames of a 10 s clip: what every released PaSST checkpoint was trained on


class WeightsError(PrunekdError, FileNotFoundError):
    pass


def checkpoint_file(member: str) -> str:
    return MEMBERS[member][2]


def checkpoint_url(member: str) -> str:
    _, tag, f = MEMBERS[member]
    return f"{RELEASES}/{tag}/{f}"


def _quiet_import():
    # hear21passt prints the model on construction and warns when the input is shorter than 10 s.
    import hear21passt.models.passt as passt

    passt.first_RUN = False
    return passt


def build_member(stride: int, arch: dict, n_frames: int = 998, fused_attention: bool = True) -> nn.Module:
    """PaSST-S with the given patch stride, built for `n_frames` (998: 10 s, as released); `arch` shrinks the
    transformer for the demo (the embedding shapes over time and frequency stay the releases').

    fused_attention: hear21passt's attention, computed by torch's scaled_dot_product_attention (the
    same function, to float tolerance; tested): 2.3x faster on CPU, flash attention on GPU.
    """
    passt = _quiet_import()
    model = passt.PaSST(
        img_size=(arch["n_mels"], n_frames),
        patch_size=16,
        stride=(stride, stride),
        in_chans=1,
        num_classes=N_CLASSES,
        embed_dim=arch["embed_dim"],
        depth=arch["depth"],
        num_heads=arch["num_heads"],
        distilled=True,
    )
    if fused_attention:
        for block in model.blocks:
            block.attn.forward = types.MethodType(_fused_attention, block.attn)
    return model


def _fused_attention(self, x: torch.Tensor) -> torch.Tensor:
    """hear21passt.models.passt.Attention.forward with the attention fused (no attention dropout: PaSST uses 0)."""
    b, n, c = x.shape
    qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
    out = nn.functional.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], scale=self.scale)
    return self.proj_drop(self.proj(out.transpose(1, 2).reshape(b, n, c)))


def build_mel() -> nn.Module:
    """PaSST front end exactly as hear21passt.base.get_basic_model builds it."""
    import contextlib
    import io

    import torchaudio
    from hear21passt.models.preprocess import AugmentMelSTFT

    with contextlib.redirect_stdout(io.StringIO()):
        mel = AugmentMelSTFT(
            n_mels=128,
            sr=32000,
            win_length=800,
            hopsize=320,
            n_fft=1024,
            freqm=48,
            timem=192,
            htk=False,
            fmin=0.0,
            fmax=None,
            norm=1,
            fmin_aug_range=10,
            fmax_aug_range=2000,
        )
    # Evaluation uses the fixed band edges, so its filterbank is built once here and moves with the module.
    # hear21passt rebuilds it on the CPU every call and copies it to the GPU from pageable memory: a host sync
    # per teacher batch that stalls the next batch's launches.
    banks, _ = torchaudio.compliance.kaldi.get_mel_banks(
        mel.n_mels, mel.n_fft, mel.sr, mel.fmin, mel.fmax, vtln_low=100.0, vtln_high=-500.0, vtln_warp_factor=1.0
    )
    mel.register_buffer("eval_mel_basis", nn.functional.pad(banks, (0, 1), mode="constant", value=0), persistent=False)
    mel.forward = types.MethodType(_mel_forward, mel)
    return mel.eval()


def _mel_forward(self, x: torch.Tensor) -> torch.Tensor:
    """hear21passt.models.preprocess.AugmentMelSTFT.forward; in eval mode with the filterbank built once."""
    if self.training:  # the band-edge augmentation draws new edges every call
        return type(self).forward(self, x)
    x = nn.functional.conv1d(x.unsqueeze(1), self.preemphasis_coefficient).squeeze(1)
    x = torch.stft(
        x,
        self.n_fft,
        hop_length=self.hopsize,
        win_length=self.win_length,
        center=True,
        normalized=False,
        window=self.window,
        return_complex=True,
    )
    x = (torch.view_as_real(x) ** 2).sum(dim=-1)  # hear21passt's return_complex=False, without its deprecation
    with torch.autocast(device_type="cuda", enabled=False):  # as hear21passt: the mel in fp32 under autocast
        melspec = torch.matmul(self.eval_mel_basis, x)
    return ((melspec + 0.00001).log() + 4.5) / 5.0


def sha256(path, chunk=1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while b := fh.read(chunk):
            h.update(b)
    return h.hexdigest()


def locate_weights(members: list[str], weights_dir) -> dict[str, Path]:
    """Find each checkpoint in weights_dir, else in the torch hub cache; error lists what is missing."""
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    found, missing = {}, []
    for m in members:
        f = checkpoint_file(m)
        for d in (Path(weights_dir), hub):
            if (d / f).is_file():
                found[m] = d / f
                break
        else:
            missing.append(f"{f}  ({checkpoint_url(m)})")
    if missing:
        raise WeightsError(
            f"teacher weights not found in {weights_dir} nor in {hub}:\n  "
            + "\n  ".join(missing)
            + "\nRun `snakemake download_teachers` (or `prunekd download-teachers`) on a node with network."
        )
    return found


def download_weights(members: list[str], weights_dir) -> list[Path]:
    """Fetch missing checkpoints into weights_dir (run where there is network, e.g. a login node)."""
    out = []
    Path(weights_dir).mkdir(parents=True, exist_ok=True)
    for m in members:
        dst = Path(weights_dir) / checkpoint_file(m)
        if not dst.is_file():
            tmp = dst.with_suffix(".part")
            torch.hub.download_url_to_file(checkpoint_url(m), str(tmp), progress=True)
            os.replace(tmp, dst)
        out.append(dst)
    return out


def trained_frames(time_patches: int, stride: int) -> int:
    """Mel frames a member was built for, from its checkpoint's time positional embedding: hear21passt sizes
    it frames // stride (99 at stride 10, 83 at 12 for the 10 s releases), so 998 where that matches."""
    return RELEASE_FRAMES if RELEASE_FRAMES // stride == time_patches else time_patches * stride


def load_member(path, stride: int, arch: dict, expected_size: int | None = None) -> nn.Module:
    """Load a PaSST checkpoint (a plain state dict, as released) with weights_only=True.

    The member is built for the frames its checkpoint was trained on (998 for every release), whatever the
    clips it will see: PaSST cuts its time positional embedding to a shorter input (1 s TAU clips, 100 frames, take
    the first 9 of 99 time patches at stride 10), as hear21passt's own forward_features does. Longer inputs
    than it was trained on are cut by Ensemble to `max_frames`.
    """
    path = Path(path)
    if expected_size is not None and path.stat().st_size != expected_size:
        raise WeightsError(f"{path}: size {path.stat().st_size} bytes, expected {expected_size}; re-download it")
    passt = _quiet_import()
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated download or another file under the release's name
        raise WeightsError(f"{path}: not a readable PyTorch checkpoint ({type(e).__name__}: {str(e)[:200]})") from None
    trained = state.get("time_new_pos_embed")
    patches = trained.shape[-1] if trained is not None and trained.ndim == 4 else RELEASE_FRAMES // stride
    frames = trained_frames(patches, stride)
    with _parameters_on_meta():  # the checkpoint replaces every parameter: skip PaSST's random init
        model = build_member(stride, arch, frames)
    model.max_frames = (patches - 1) * stride + 16 + stride - 1  # longest input whose grid its embedding covers
    state = passt.checkpoint_filter_fn(state, model)
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as e:
        raise WeightsError(f"{path}: does not fit PaSST with stride {stride} and {arch}: {str(e)[:300]}") from None
    return model.eval()


@contextlib.contextmanager
def _parameters_on_meta():
    """Modules built inside keep their parameters on the meta device (shapes only, no memory, no init).

    Random initialisation is most of the time it takes to load a member (2.5 of 3.7 s for PaSST-S on a CPU
    core); a strict load_state_dict(assign=True) then puts every checkpoint tensor in place, and a
    parameter the checkpoint lacks fails the strict load instead of staying on meta.
    """
    register = nn.Module.register_parameter

    def on_meta(module, name, param):
        if param is not None:
            param = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)
        register(module, name, param)

    nn.Module.register_parameter = on_meta
    try:
        yield
    finally:
        nn.Module.register_parameter = register


def check_weights(members: list[str], weights_dir, arch: dict, log=print) -> None:
    """Load every member's checkpoint the way the teacher jobs do and run a 1 s and a 10 s clip through it:
    the check to make on a login node before submitting the teacher pass. Raises WeightsError naming the file."""
    paths = locate_weights(members, weights_dir)
    for m in members:
        model = load_member(paths[m], MEMBERS[m][0], arch)
        ens = Ensemble([model]).eval()
        for seconds in (1, 10):
            out = ens(torch.zeros(1, seconds * 32000))
            if out.shape != (1, 1, N_CLASSES) or not torch.isfinite(out).all():
                raise WeightsError(
                    f"{paths[m]}: {seconds} s clip gave {tuple(out.shape)} logits, finite: "
                    f"{bool(torch.isfinite(out).all())}"
                )
        log(
            f"{m}: {paths[m]} loads (stride {MEMBERS[m][0]}, built for {trained_frames_of(model)} frames); "
            f"1 s and 10 s clips give finite logits"
        )


def trained_frames_of(model: nn.Module) -> int:
    return model.patch_embed.img_size[1]


class Ensemble(nn.Module):
    """Mel once, then every member; returns per-member logits [B, M, 527], and with `embeddings=True` also the
    members' pre-head features [B, M, D] (hear21passt's second output: the mean of the class and distillation
    tokens), from the same forward pass."""

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        self.mel = build_mel()
        self.members = nn.ModuleList(members)

    @torch.no_grad()
    def forward(self, wav: torch.Tensor, autocast_dtype: torch.dtype | None = None, embeddings: bool = False):
        spec = self.mel(wav).unsqueeze(1)  # [B, 1, 128, frames], float32
        longest = min(getattr(m, "max_frames", spec.shape[-1]) for m in self.members)
        spec = spec[..., :longest]  # clips longer than the teachers were trained on: their start
        outs, feats = [], []
        with warnings.catch_warnings():
            # hear21passt's warning for clips other than the members' 10 s; not every warning (CUDA's sync
            # debug mode reports through warnings: benchmarks/teacher_shard.py counts them)
            warnings.filterwarnings("ignore", message="Input image size")
            for m in self.members:
                x = spec.to(next(m.parameters()).dtype)  # fp16 weights (teachers.precision fp16_weights): fp16 in
                if autocast_dtype is not None:
                    with torch.autocast(device_type=wav.device.type, dtype=autocast_dtype):
                        logits, features = m(x)
                else:
                    logits, features = m(x)
                outs.append(logits.float())
                if embeddings:
                    feats.append(features.float())
        if embeddings:
            return torch.stack(outs, dim=1), torch.stack(feats, dim=1)
        return torch.stack(outs, dim=1)


def n_frames(seconds: float, sample_rate: int = 32000, hop: int = 320) -> int:
    """Mel frames PaSST sees for a clip (center=True STFT); 998 for the pretrained 10 s models."""
    return min(998, int(seconds * sample_rate) // hop + 1) if seconds < 10 else 998


def train_demo_member(
    member: str,
    stride: int,
    arch: dict,
    wav: torch.Tensor,
    labels: torch.Tensor,
    steps: int,
    seed: int,
    out_path,
    log=print,
    lr: float = 3e-3,
) -> None:
    """Demo only: train a shrunk PaSST briefly on the pool's labels and save it like a release checkpoint."""
    torch.manual_seed(seed)
    mel = build_mel()
    with torch.no_grad():
        spec = torch.cat([mel(wav[i : i + 64]) for i in range(0, len(wav), 64)]).unsqueeze(1)
    # Release-shaped (built for 998 frames) like the real checkpoints, so the demo loads them the real way.
    model = build_member(stride, arch, RELEASE_FRAMES).train()
    # Start the head's biases at the label prior: with 527 mostly absent classes, Adam would otherwise spend
    # thousands of steps walking the biases down and the brief demo run would learn only the prior.
    prior = labels.float().mean(0).clamp(1e-3, 1 - 1e-3)
    with torch.no_grad():
        model.head[-1].bias.copy_(torch.log(prior / (1 - prior)))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    warm = max(1, steps // 10)  # linear warm-up, then cosine to zero

    def schedule(s):
        return (s + 1) / warm if s < warm else 0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, steps - warm)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
    gen = torch.Generator().manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for step in range(steps):
            idx = torch.randint(0, len(spec), (min(32, len(spec)),), generator=gen)
            logits, _ = model(spec[idx])
            loss = nn.functional.binary_cross_entropy_with_logits(logits, labels[idx].float())
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            if step % max(1, steps // 5) == 0 or step == steps - 1:
                log(f"{member} step {step + 1}/{steps} loss {loss.item():.4f}")
    from prunekd.atomic import atomic_path

    with atomic_path(out_path) as tmp:
        torch.save(model.state_dict(), tmp)


def demo_teacher_step(member: str, manifest, out, settings: dict, log=print) -> None:
    """`prunekd demo-teacher`: each member its own seed (its initialisation and batches) and its stride."""
    seed = settings["seed"] + list(MEMBERS).index(member)
    train_demo_teacher(member, MEMBERS[member][0], seed, settings, manifest, out, log)


def train_demo_teacher(member: str, stride: int, seed: int, cfg: dict, manifest_path, out_path, log=print) -> None:
    """Demo only: train one member on the usable AudioSet training clips of a manifest and save its checkpoint."""
    import numpy as np
    import pandas as pd

    from prunekd.data.audio import AudioError, load_clip
    from prunekd.data.tables import labels_multi_hot
    from prunekd.teachers.logit_store import TRAIN_SUBSETS

    man = pd.read_csv(manifest_path, sep="\t", dtype={"labels": str}, keep_default_na=False)
    man = man[(man["status"] == "ok") & man["subset"].isin(TRAIN_SUBSETS)]
    n = int(cfg["audioset_clip_seconds"] * 32000)
    clips, usable = [], []
    for p in man["path"]:
        try:
            clips.append(load_clip(p, 32000, n))
            usable.append(True)
        except AudioError as e:  # the teacher pass lists these; here they are only left out
            log(f"skipped {e}")
            usable.append(False)
    wav = torch.from_numpy(np.stack(clips))
    labels = torch.from_numpy(labels_multi_hot(man["labels"][usable], N_CLASSES))
    train_demo_member(
        member,
        stride,
        cfg["architecture"],
        wav,
        labels,
        cfg["demo_train_steps"],
        seed,
        out_path,
        log,
        lr=cfg["demo_train_lr"],
    )


def download_step(members, weights_dir, log=print) -> None:
    """`prunekd download-teachers`."""
    for p in download_weights(members, weights_dir):
        log(f"have {p}")


def check_step(members, weights_dir, architecture: str, log=print) -> None:
    """`prunekd check-teachers` (`architecture`: JSON, teachers.architecture)."""
    import json

    check_weights(members, weights_dir, json.loads(architecture), log)
