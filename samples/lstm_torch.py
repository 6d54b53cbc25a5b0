"""An LSTM with attention over a synthetic multivariate time series — the shape of a small
financial forecaster — trained briefly with a fixed seed (a few seconds).

Input: the last 32 steps of 4 features (returns, volume, two moving-average gaps); output:
the next step's return. Writes lstm_torch.pt2 (dynamic batch), lstm_torch_val.npz and
lstm_torch_calib.npz (key 'window').
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn

from common import SEED, out_dir

WINDOW, FEATURES = 32, 4


class LSTMAttention(nn.Module):
    def __init__(self, features: int = FEATURES, hidden: int = 32):
        super().__init__()
        self.lstm = nn.LSTM(features, hidden, batch_first=True)
        self.score = nn.Linear(hidden, 1)
        self.head = nn.Sequential(nn.Linear(hidden, 16), nn.Tanh(), nn.Linear(16, 1))

    def forward(self, window: torch.Tensor) -> torch.Tensor:
        states, _ = self.lstm(window)                     # [B, T, H]
        weights = torch.softmax(self.score(states), dim=1)  # attention over time
        context = (weights * states).sum(dim=1)          # [B, H]
        return self.head(context)


def series(n: int, rng: np.random.Generator) -> np.ndarray:
    """A regime-switching, mean-reverting return series with volume and trend features."""
    t = np.arange(n)
    drift = 0.002 * np.sin(2 * np.pi * t / 250) + 0.001 * np.sin(2 * np.pi * t / 40)
    vol = 0.01 * (1 + 0.5 * (np.sin(2 * np.pi * t / 120) > 0))
    r = np.zeros(n)
    for i in range(1, n):
        r[i] = drift[i] - 0.3 * r[i - 1] + vol[i] * rng.standard_normal()
    price = np.cumsum(r)
    volume = np.abs(r) / vol + 0.1 * rng.standard_normal(n)
    ma_fast = np.convolve(price, np.ones(5) / 5, mode="same") - price
    ma_slow = np.convolve(price, np.ones(20) / 20, mode="same") - price
    feats = np.stack([r * 100, volume, ma_fast * 100, ma_slow * 100], axis=1)
    return feats.astype("float32")


def windows(feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    idx = np.arange(WINDOW, len(feats) - 1)
    x = np.stack([feats[i - WINDOW:i] for i in idx])
    y = feats[idx, 0:1]  # next step's return (x100)
    return x, y


def main() -> None:
    t0 = time.perf_counter()
    torch.manual_seed(SEED)
    torch.set_num_threads(2)
    rng = np.random.default_rng(SEED)
    x, y = windows(series(3000, rng))
    split = int(len(x) * 0.8)
    x_tr, y_tr, x_va, y_va = x[:split], y[:split], x[split:], y[split:]
    model = LSTMAttention()
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    xt, yt = torch.from_numpy(x_tr), torch.from_numpy(y_tr)
    g = torch.Generator().manual_seed(SEED)
    for _ in range(2):
        model.train()
        for idx in torch.randperm(len(xt), generator=g).split(64):
            opt.zero_grad()
            nn.functional.mse_loss(model(xt[idx]), yt[idx]).backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        mse = nn.functional.mse_loss(model(torch.from_numpy(x_va)), torch.from_numpy(y_va)).item()
    base = float(np.mean((y_va - y_tr.mean()) ** 2))
    out = out_dir()
    batch = torch.export.Dim("batch", min=1, max=1024)
    ep = torch.export.export(model, (torch.from_numpy(x_tr[:2]),), dynamic_shapes=({0: batch},))
    torch.export.save(ep, out / "lstm_torch.pt2")
    np.savez(out / "lstm_torch_val.npz", window=x_va[:256])
    np.savez(out / "lstm_torch_calib.npz", window=x_tr[:200])
    print(f"lstm_torch: trained in {time.perf_counter() - t0:.1f} s, validation MSE {mse:.3f} "
          f"(predicting the mean: {base:.3f})")


if __name__ == "__main__":
    main()
