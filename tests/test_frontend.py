import numpy as np
import torch

from prunekd.frontend import roll_waveform


def test_roll_moves_each_clip_by_its_own_shift_within_the_limit():
    wav = torch.arange(4 * 50, dtype=torch.float32).reshape(4, 50)
    out = roll_waveform(wav, 5, torch.Generator().manual_seed(3))
    shifts = torch.randint(-5, 6, (4,), generator=torch.Generator().manual_seed(3)).tolist()
    assert len(set(shifts)) > 1
    for row, s in enumerate(shifts):
        np.testing.assert_array_equal(out[row].numpy(), np.roll(wav[row].numpy(), s))
    assert torch.equal(roll_waveform(wav, 0), wav)
