"""A MobileNetV2-style network at 224x224 (architecture written here, random init, fixed
seed) — the latency benchmark model. Nothing is trained or downloaded.

BatchNorm statistics are set by a few forward passes over seeded random images, so the
activations have realistic ranges (int8 calibration and parity then mean something).
Writes mobilenet_torch.pt2 (batch 1), mobilenet_torch_val.npz and mobilenet_torch_calib.npz.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn

from common import SEED, out_dir


def conv_bn(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    layers = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    if act:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """Expand (1x1) -> depthwise (3x3) -> project (1x1, linear); residual when shapes allow."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        hidden = cin * expand
        layers = [] if expand == 1 else [conv_bn(cin, hidden, 1)]
        layers += [conv_bn(hidden, hidden, 3, stride, groups=hidden), conv_bn(hidden, cout, 1, act=False)]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x) if self.residual else self.block(x)


class MobileNetV2(nn.Module):
    # (expansion, channels, repeats, first stride) as in the MobileNetV2 paper
    SETTINGS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                (6, 320, 1, 1)]

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        layers = [conv_bn(3, 32, 3, 2)]
        cin = 32
        for t, c, n, s in self.SETTINGS:
            for i in range(n):
                layers.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        layers.append(conv_bn(cin, 1280, 1))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(1280, num_classes)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(image)), 1))


def images(n: int, seed: int) -> np.ndarray:
    """Smooth seeded 'images' (low-frequency noise, ImageNet-normalised range), NCHW float32."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 14, 14, generator=g)
    x = nn.functional.interpolate(low, size=(224, 224), mode="bilinear", align_corners=False)
    return ((x - 0.45) / 0.225).numpy().astype("float32")


def main() -> None:
    t0 = time.perf_counter()
    torch.manual_seed(SEED)
    torch.set_num_threads(2)
    model = MobileNetV2()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = None  # cumulative average over the passes below
    model.train()
    with torch.no_grad():
        for i in range(4):
            model(torch.from_numpy(images(8, SEED + 100 + i)))
    model.eval()
    out = out_dir()
    ep = torch.export.export(model, (torch.from_numpy(images(1, SEED)),))
    torch.export.save(ep, out / "mobilenet_torch.pt2")
    np.savez(out / "mobilenet_torch_val.npz", image=images(16, SEED + 1))
    np.savez(out / "mobilenet_torch_calib.npz", image=images(32, SEED + 2))
    params = sum(p.numel() for p in model.parameters())
    print(f"mobilenet_torch: built in {time.perf_counter() - t0:.1f} s, {params / 1e6:.2f} M parameters")


if __name__ == "__main__":
    main()
