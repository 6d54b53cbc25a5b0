"""A small PyTorch CNN trained on scikit-learn's digits with a fixed seed (a few seconds).

Writes into samples/build (or $EDGEKIT_SAMPLES_DIR):
  digits_torch.pt2          torch.export program, dynamic batch (the preferred source)
  digits_torch.ts.pt        TorchScript (torch.jit.trace + save; no signature inside)
  digits_torch.state.pt     state_dict, for --model-class digits_torch:DigitsCNN
  digits_torch_val.npz      validation images (NCHW, key 'image') with '_labels'
  digits_torch_calib.npz    200 training images for int8 calibration
"""

from __future__ import annotations

import time

import torch
from torch import nn

from common import SEED, digits_split, out_dir, save_data


class DigitsCNN(nn.Module):
    """1x8x8 grey digit -> 10 logits."""

    def __init__(self, num_classes: int = 10, width: int = 16):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(2 * width, 32), nn.ReLU(), nn.Linear(32, num_classes))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(image))


def train(epochs: int = 12) -> tuple[DigitsCNN, tuple]:
    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)
    x_tr, x_va, y_tr, y_va = digits_split("NCHW")
    model = DigitsCNN()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    xt, yt = torch.from_numpy(x_tr), torch.from_numpy(y_tr)
    g = torch.Generator().manual_seed(SEED)
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(xt), generator=g).split(64):
            opt.zero_grad()
            nn.functional.cross_entropy(model(xt[idx]), yt[idx]).backward()
            opt.step()
    model.eval()
    return model, (x_tr, x_va, y_tr, y_va)


def main() -> None:
    t0 = time.perf_counter()
    torch.set_num_threads(2)
    model, (x_tr, x_va, y_tr, y_va) = train()
    with torch.no_grad():
        acc = (model(torch.from_numpy(x_va)).argmax(1).numpy() == y_va).mean()
    out = out_dir()
    example = (torch.from_numpy(x_tr[:2]),)
    batch = torch.export.Dim("batch", min=1, max=1024)
    ep = torch.export.export(model, example, dynamic_shapes=({0: batch},))
    torch.export.save(ep, out / "digits_torch.pt2")
    torch.jit.save(torch.jit.trace(model, example), out / "digits_torch.ts.pt")
    torch.save(model.state_dict(), out / "digits_torch.state.pt")
    save_data("digits_torch", "image", x_va, y_va, x_tr[:200])
    print(f"digits_torch: trained in {time.perf_counter() - t0:.1f} s, validation accuracy {acc * 100:.1f}%")


if __name__ == "__main__":
    main()
