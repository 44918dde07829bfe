import numpy as np
import torch

from prunekd.student.frontend import roll_waveform


def test_roll_moves_each_clip_by_its_own_shift_within_the_limit():
    wav = torch.arange(4 * 50, dtype=torch.float32).reshape(4, 50)
    out = roll_waveform(wav, 5, torch.Generator().manual_seed(3))
    shifts = torch.randint(-5, 6, (4,), generator=torch.Generator().manual_seed(3)).tolist()
    assert len(set(shifts)) > 1
    for row, s in enumerate(shifts):
        np.testing.assert_array_equal(out[row].numpy(), np.roll(wav[row].numpy(), s))
    assert torch.equal(roll_waveform(wav, 0), wav)


def test_distillation_mixup_decides_per_clip_and_keeps_the_first_clips_labels():
    # The authors' loader mixes each clip on its own with p 0.5 (not a whole batch at once), centres the
    # clips, mixes the teacher logits with the clip's lambda (>= 0.5) and keeps the first clip's labels.
    from prunekd.student.frontend import example_mixup

    torch.manual_seed(0)
    b = 2000
    wav = torch.randn(b, 64) + 3.0  # an offset, so that centring shows
    logits, labels = torch.randn(b, 5), (torch.rand(b, 5) > 0.5).float()
    out, lo, la = example_mixup(wav, logits, labels, p=0.5, alpha=2.0)
    mixed = ~torch.isclose(out, wav).all(dim=1)
    assert 0.45 < mixed.float().mean() < 0.55
    assert torch.equal(out[~mixed], wav[~mixed]) and torch.equal(lo[~mixed], logits[~mixed])
    assert torch.allclose(out[mixed].mean(dim=1), torch.zeros(int(mixed.sum())), atol=1e-5)
    assert torch.equal(la, labels)
    # A mixed clip's logits lie between its own and its partner's, nearer its own (lambda folded to >= 0.5).
    d_own = (lo[mixed] - logits[mixed]).norm(dim=1)
    d_all = (logits[mixed].unsqueeze(1) - logits.unsqueeze(0)).norm(dim=2)
    assert (d_own <= d_all.max(dim=1).values / 2 + 1e-5).all()
    _, _, la_mix = example_mixup(wav, logits, labels, p=1.0, alpha=2.0, mix_labels=True)
    assert not torch.equal(la_mix, labels) and ((la_mix >= 0) & (la_mix <= 1)).all()
    same, lo0, _ = example_mixup(wav, logits, labels, p=0.0, alpha=2.0)
    assert torch.equal(same, wav) and torch.equal(lo0, logits)
