"""Tiny PyTorch models the torch tests share (imported by the torch tests only; conftest's
`tiny_torch` fixture exports them once per session)."""

import torch
from torch import nn


class TinyLSTM(nn.Module):
    """LSTM + attention over 6 steps of 3 features -> 2 values (a miniature forecaster)."""

    def __init__(self, hidden=8):
        super().__init__()
        self.lstm = nn.LSTM(3, hidden, batch_first=True)
        self.score = nn.Linear(hidden, 1)
        self.out = nn.Linear(hidden, 2)

    def forward(self, window):
        states, _ = self.lstm(window)
        w = torch.softmax(self.score(states), dim=1)
        return self.out((w * states).sum(dim=1))


class CumMax(nn.Module):
    """Uses aten.cummax, which no mobile target converts."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(16, 4)

    def forward(self, x):
        return self.fc(torch.cummax(x, 1)[0])
