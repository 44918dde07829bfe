import torch

from prunekd.student.cpmobile import CPMobile, count_macs, count_params
from prunekd.student.distill import kd_loss
from prunekd.student.frontend import MelFrontEnd

FRONTEND = {
    "sample_rate": 32000,
    "n_fft": 4096,
    "win_length": 3072,
    "hop_length": 500,
    "n_mels": 256,
    "f_min": 0,
    "f_max": None,
    "freqm": 48,
}


def test_cpmobile_size_matches_the_challenge_baseline():
    m = CPMobile(n_classes=10)
    assert count_params(m) == 61_148
    assert count_macs(m, (1, 1, 256, 65)) == 29_419_156
    assert count_params(m) * 2 <= 128_000  # the challenge: 128 kB (decimal) at fp16


def test_head_replacement_gives_new_random_10_class_layer():
    m = CPMobile(n_classes=527)
    body = {k: v.clone() for k, v in m.state_dict().items() if not k.startswith("head")}
    m.replace_head(10)
    assert all(torch.equal(v, m.state_dict()[k]) for k, v in body.items())
    assert m.eval()(torch.randn(2, 1, 256, 65)).shape == (2, 10)
    assert count_params(m) == 61_148


def test_frontend_shape_for_one_second():
    fe = MelFrontEnd(FRONTEND).eval()
    assert fe(torch.randn(3, 32000)).shape == (3, 1, 256, 65)


def test_the_banded_mel_on_the_cpu_is_torchaudios_mel_spectrogram():
    """The CPU's band-by-band filter bank against the dense MelSpectrogram the baseline uses, for the report's front
    end and one with fewer mels and a lower f_max: equal to float rounding, every mel of every frame."""
    import torchaudio

    torch.manual_seed(0)
    wav = torch.randn(4, 16000) * torch.linspace(0.01, 1.0, 16000)
    other = {**FRONTEND, "n_mels": 40, "f_max": 8000, "n_fft": 2048, "win_length": 1600}  # 40 mels: a last group of 8
    for cfg in (FRONTEND, other):
        keys = ("sample_rate", "n_fft", "win_length", "hop_length", "n_mels", "f_min", "f_max")
        dense = (torchaudio.transforms.MelSpectrogram(**{k: cfg[k] for k in keys})(wav).unsqueeze(1) + 1e-5).log()
        banded = MelFrontEnd(cfg).eval()(wav)
        assert banded.shape == dense.shape
        assert torch.allclose(banded, dense, rtol=0, atol=1e-5), (banded - dense).abs().max()


def test_kd_loss_is_the_reports_weighted_sum():
    torch.manual_seed(0)
    s, t = torch.randn(4, 527), torch.randn(4, 527)
    y = (torch.rand(4, 527) > 0.9).float()
    loss, d, c = kd_loss(s, t, y, 0.9)
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    assert torch.isclose(d, bce(s, torch.sigmoid(t)))
    assert torch.isclose(c, bce(s, y))
    assert torch.isclose(loss, 0.9 * d + 0.1 * c)
    # The student that copies the teacher has a lower distillation term than a random one.
    assert kd_loss(t, t, y, 1.0)[0] < kd_loss(s, t, y, 1.0)[0]
