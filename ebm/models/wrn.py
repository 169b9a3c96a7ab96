"""Wide-ResNet as in the JEM code (Grathwohl et al. 2020, https://arxiv.org/abs/1912.03263).

Stem 3×3 conv 3→16; three stages of pre-activation blocks with widths 16k/32k/64k and strides 1/2/2;
head: norm → LeakyReLU → global average pool → linear → logits f(x). All convs carry a bias, as in the
authors' code. The JEM reinterpretation gives, from the same network:

    E(x, y) = -f(x)[y]                    (joint energy)
    E(x)    = -logsumexp_y f(x)[y]        (marginal energy; log p~(x) = -E(x))
"""
from __future__ import annotations

import torch
from torch import nn

from ebm.config import ModelConfig


def _norm(kind: str, ch: int) -> nn.Module:
    if kind == "none":
        return nn.Identity()
    if kind == "batch":
        return nn.BatchNorm2d(ch, momentum=0.9)  # JEM++/SADA-JEM convention: running ≈ latest batch
    if kind == "group":
        return nn.GroupNorm(1, ch)
    if kind == "instance":
        return nn.InstanceNorm2d(ch, affine=True)
    raise ValueError(f"unknown norm {kind!r}")


class Block(nn.Module):
    """norm → act → conv3×3 → dropout → norm → act → conv3×3(stride), plus shortcut."""

    def __init__(self, cin: int, cout: int, stride: int, norm: str, dropout: float, leak: float):
        super().__init__()
        self.n1, self.n2 = _norm(norm, cin), _norm(norm, cout)
        self.act = nn.LeakyReLU(leak)
        self.c1 = nn.Conv2d(cin, cout, 3, 1, 1)
        self.c2 = nn.Conv2d(cout, cout, 3, stride, 1)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.short = nn.Conv2d(cin, cout, 1, stride) if (stride != 1 or cin != cout) else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.c1(self.act(self.n1(x)))
        h = self.c2(self.act(self.n2(self.drop(h))))
        return h + self.short(x)


class WideResNet(nn.Module):
    def __init__(self, *, depth: int, width: int, n_classes: int, norm: str = "none",
                 dropout: float = 0.0, leak: float = 0.2, init: str = "pytorch"):
        super().__init__()
        n = (depth - 4) // 6  # blocks per stage
        widths = [16, 16 * width, 32 * width, 64 * width]
        self.stem = nn.Conv2d(3, widths[0], 3, 1, 1)
        layers, cin = [], widths[0]
        for stage, stride in zip(range(3), (1, 2, 2)):
            for i in range(n):
                layers.append(Block(cin, widths[stage + 1], stride if i == 0 else 1, norm, dropout, leak))
                cin = widths[stage + 1]
        self.blocks = nn.Sequential(*layers)
        self.head_norm = _norm(norm, cin)
        self.act = nn.LeakyReLU(leak)
        self.fc = nn.Linear(cin, n_classes)
        if init == "kaiming":
            # Without normalisation, PyTorch's default conv init shrinks the signal at every layer, and a
            # small WRN sits on a loss plateau for hundreds of steps; fan-in Kaiming keeps it at scale.
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, a=leak, nonlinearity="leaky_relu")
                    nn.init.zeros_(m.bias)
        elif init != "pytorch":
            raise ValueError(f"unknown init {init!r}")

    def features(self, x: torch.Tensor) -> torch.Tensor:
        h = self.blocks(self.stem(x))  # (B, 64k, 8, 8)
        return self.act(self.head_norm(h)).mean(dim=(2, 3))  # (B, 64k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))  # (B, C) logits


def build_model(cfg: ModelConfig, n_classes: int) -> nn.Module:
    if cfg.arch != "wrn":
        raise ValueError(f"unknown model.arch {cfg.arch!r}")
    return WideResNet(depth=cfg.depth, width=cfg.width, n_classes=n_classes, norm=cfg.norm,
                      dropout=cfg.dropout, leak=cfg.leak, init=cfg.init)


def log_px(logits: torch.Tensor) -> torch.Tensor:
    """Unnormalised log p(x) = logsumexp_y f(x)[y], (B, C) → (B,)."""
    return torch.logsumexp(logits, dim=1)


def energy(logits: torch.Tensor) -> torch.Tensor:
    """E(x) = -logsumexp_y f(x)[y], (B, C) → (B,)."""
    return -log_px(logits)
