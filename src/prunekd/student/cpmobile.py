"""CP-Mobile, the DCASE2024 Task 1 baseline student (docs/method.md).

The same module serves distillation (527 outputs) and fine-tuning (10 outputs):
`replace_head` swaps the classifier for a freshly initialised one.
"""

from __future__ import annotations

import torch
from torch import nn


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    # Rounding rule of MobileNetV2, used by the baseline for channel counts.
    min_value = min_value or divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def conv_bn(c_in, c_out, kernel, stride=1, groups=1, relu=True) -> nn.Sequential:
    layers = [
        nn.Conv2d(c_in, c_out, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(c_out),
    ]
    if relu:
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def init_weights(m: nn.Module) -> None:
    if isinstance(m, nn.Conv2d):
        nn.init.kaiming_normal_(m.weight, mode="fan_out")
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


class Block(nn.Module):
    """Inverted bottleneck: 1x1 expand, 3x3 depthwise (carries the stride), 1x1 project."""

    def __init__(self, c_in: int, c_out: int, expansion_rate: float, stride):
        super().__init__()
        c_exp = make_divisible(c_in * expansion_rate, 8)
        self.block = nn.Sequential(
            conv_bn(c_in, c_exp, 1),
            conv_bn(c_exp, c_exp, 3, stride=stride, groups=c_exp),
            conv_bn(c_exp, c_out, 1, relu=False),
        )
        self.use_shortcut = c_in == c_out
        strided = tuple(stride) != (1, 1)
        self.shortcut = nn.AvgPool2d(3, stride, padding=1) if (self.use_shortcut and strided) else nn.Identity()
        self.act = nn.ReLU()

    def forward(self, x):
        y = self.block(x)
        if self.use_shortcut:
            y = y + self.shortcut(x)
        return self.act(y)


class CPMobile(nn.Module):
    def __init__(
        self,
        n_classes: int = 10,
        in_channels: int = 1,
        base_channels: int = 32,
        channels_multiplier: float = 1.8,
        expansion_rate: float = 2.1,
        n_blocks=(3, 2, 1),
        strides: dict | None = None,
    ):
        super().__init__()
        strides = strides or {"b2": (1, 1), "b3": (1, 2), "b4": (2, 1)}
        base = make_divisible(base_channels, 8)
        chans = [base] + [make_divisible(base * channels_multiplier**s, 8) for s in range(len(n_blocks))]
        self.in_c = nn.Sequential(
            conv_bn(in_channels, chans[0] // 4, 3, stride=2), conv_bn(chans[0] // 4, chans[0], 3, stride=2)
        )
        self.stages = nn.Sequential()
        block_id = 0
        for s, n in enumerate(n_blocks):
            stage = nn.Sequential()
            c_in = chans[s]
            for _ in range(n):
                block_id += 1
                name = f"b{block_id}"
                stage.add_module(name, Block(c_in, chans[s + 1], expansion_rate, tuple(strides.get(name, (1, 1)))))
                c_in = chans[s + 1]
            self.stages.add_module(f"s{s + 1}", stage)
        self.n_features = chans[-1]
        self.head = self._make_head(n_classes)
        self.apply(init_weights)

    def _make_head(self, n_classes: int) -> nn.Sequential:
        head = nn.Sequential(
            nn.Conv2d(self.n_features, n_classes, 1, bias=False),
            nn.BatchNorm2d(n_classes),
            nn.AdaptiveAvgPool2d((1, 1)),
        )
        head.apply(init_weights)
        return head

    def replace_head(self, n_classes: int) -> None:
        """New randomly initialised last layer (fine-tuning after distillation)."""
        self.head = self._make_head(n_classes)

    @property
    def n_classes(self) -> int:
        return self.head[0].out_channels

    def forward(self, x):
        x = self.stages(self.in_c(x))
        return self.head(x).flatten(1)


def build_student(cfg: dict, n_classes: int) -> CPMobile:
    strides = {k: tuple(v) for k, v in cfg["strides"].items()}
    return CPMobile(
        n_classes=n_classes,
        base_channels=cfg["base_channels"],
        channels_multiplier=cfg["channels_multiplier"],
        expansion_rate=cfg["expansion_rate"],
        n_blocks=tuple(cfg["n_blocks"]),
        strides=strides,
    )


def count_macs(model: nn.Module, input_shape=(1, 1, 256, 65)) -> int:
    """Multiply-accumulates of one forward pass, counted with hooks on conv and linear layers."""
    macs = 0

    def conv_hook(m: nn.Conv2d, inp, out):
        nonlocal macs
        k = m.kernel_size[0] * m.kernel_size[1] * (m.in_channels // m.groups)
        macs += out.numel() // out.shape[0] * k

    def linear_hook(m: nn.Linear, inp, out):
        nonlocal macs
        macs += m.in_features * m.out_features

    def bn_hook(m: nn.BatchNorm2d, inp, out):
        # The challenge's counter (torchinfo via nessi) adds BN weight and bias once each.
        nonlocal macs
        macs += m.weight.numel() + m.bias.numel()

    hooks = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(linear_hook))
        elif isinstance(m, nn.BatchNorm2d):
            hooks.append(m.register_forward_hook(bn_hook))
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(input_shape))
    model.train(was_training)
    for h in hooks:
        h.remove()
    return macs


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
