"""The torch networks behind the recurrent detectors (`deep.py`). Kept apart so that
importing the detector registry, and checking parameters, does not import torch."""

from __future__ import annotations

import math

import torch
from torch import nn


class ConvBiGRUNet(nn.Module):
    def __init__(self, f: int, hidden: int, layers: int, dropout: float):
        super().__init__()
        c = 2 * f
        self.conv = nn.Sequential(
            nn.Conv1d(f, c, 3, padding=1),
            nn.ReLU(),
            nn.BatchNorm1d(c),
            nn.Conv1d(c, c, 3, padding=1),
            nn.ReLU(),
            nn.BatchNorm1d(c),
        )
        self.encoder = nn.GRU(
            c, hidden, layers, batch_first=True, bidirectional=True, dropout=dropout if layers > 1 else 0.0
        )
        self.decoder = nn.GRU(2 * hidden, hidden, batch_first=True)
        self.out = nn.Linear(hidden, f)

    def forward(self, x):  # [B, L, F]
        h = self.conv(x.transpose(1, 2)).transpose(1, 2)
        h, _ = self.encoder(h)
        h, _ = self.decoder(h)
        return self.out(h)


class LSTMAENet(nn.Module):
    def __init__(self, f: int, hidden: int, layers: int, dropout: float):
        super().__init__()
        drop = dropout if layers > 1 else 0.0
        self.encoder = nn.LSTM(f, hidden, layers, batch_first=True, dropout=drop)
        self.decoder = nn.LSTM(hidden, hidden, layers, batch_first=True, dropout=drop)
        self.out = nn.Linear(hidden, f)

    def encode(self, x):
        _, (h, _) = self.encoder(x)
        return h[-1]  # [B, hidden]: the whole window in one code

    def decode(self, z, length):
        h, _ = self.decoder(z.unsqueeze(1).expand(-1, length, -1))
        return self.out(h)

    def forward(self, x):
        return self.decode(self.encode(x), x.shape[1])


class LSTMVAENet(nn.Module):
    def __init__(self, f: int, hidden: int, latent: int, layers: int, dropout: float):
        super().__init__()
        drop = dropout if layers > 1 else 0.0
        self.encoder = nn.LSTM(f, hidden, layers, batch_first=True, dropout=drop)
        self.to_mu, self.to_logvar = nn.Linear(hidden, latent), nn.Linear(hidden, latent)
        self.decoder = nn.LSTM(latent, hidden, layers, batch_first=True, dropout=drop)
        self.out_mu, self.out_logvar = nn.Linear(hidden, f), nn.Linear(hidden, f)

    def encode(self, x):
        _, (h, _) = self.encoder(x)
        return self.to_mu(h[-1]), self.to_logvar(h[-1]).clamp(-10, 10)

    def decode(self, z, length):
        d, _ = self.decoder(z.unsqueeze(1).expand(-1, length, -1))
        return self.out_mu(d), self.out_logvar(d).clamp(-10, 10)

    def forward(self, x):
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return (*self.decode(z, x.shape[1]), mu, logvar)


def gaussian_nll(x, mu, logvar):
    """Per-element negative log-likelihood of x under N(mu, exp(logvar))."""
    return 0.5 * (math.log(2 * math.pi) + logvar + (x - mu) ** 2 / logvar.exp())


class ForecasterNet(nn.Module):
    def __init__(self, f: int, hidden: int, layers: int, dropout: float):
        super().__init__()
        self.lstm = nn.LSTM(f, hidden, layers, batch_first=True, dropout=dropout if layers > 1 else 0.0)
        self.out = nn.Linear(hidden, f)

    def forward(self, past):  # [B, L, F] -> next step [B, F]
        h, _ = self.lstm(past)
        return self.out(h[:, -1])


class PerMetricLinear(nn.Module):
    """F independent linear layers applied at once: [B, F, d_in] -> [B, F, d_out], metric f
    through its own weight matrix (one batched product instead of F small models)."""

    def __init__(self, f: int, d_in: int, d_out: int):
        super().__init__()
        bound = 1 / math.sqrt(d_in)  # nn.Linear's initialisation, per metric
        self.weight = nn.Parameter(torch.empty(f, d_in, d_out).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(f, d_out).uniform_(-bound, bound))

    def forward(self, x):
        return torch.einsum("bfi,fio->bfo", x, self.weight) + self.bias


class PerMetricAENet(nn.Module):
    """One fully connected autoencoder per metric over its window: window -> hidden (x layers)
    -> latent -> hidden (x layers) -> window, ReLU between; no weight is shared across metrics."""

    def __init__(self, f: int, window: int, hidden: int, latent: int, layers: int, dropout: float):
        super().__init__()
        widths = [window] + [hidden] * layers + [latent] + [hidden] * layers + [window]
        blocks: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
            blocks.append(PerMetricLinear(f, a, b))
            if i < len(widths) - 2:
                blocks += [nn.ReLU(), nn.Dropout(dropout)] if dropout > 0 else [nn.ReLU()]
        self.net = nn.Sequential(*blocks)

    def forward(self, x):  # [B, L, F] -> [B, L, F]
        return self.net(x.transpose(1, 2)).transpose(1, 2)


def cnn_min_window(layers: int) -> int:
    """The shortest window that leaves at least one step after ``layers`` blocks of a kernel-3
    convolution (no padding) and pooling by 2."""
    length = 1
    for _ in range(layers):
        length = 2 * length + 2
    return length


class CNNForecasterNet(nn.Module):
    """TSB-AD's CNN forecaster: conv (kernel 3) -> ReLU -> max-pool 2, ``layers`` times, then
    average- and max-pooling over time, Linear -> ReLU -> Dropout -> Linear to the next step."""

    def __init__(self, f: int, channels: int, layers: int, dropout: float):
        super().__init__()
        blocks: list[nn.Module] = []
        c_in = f
        for _ in range(layers):
            blocks += [nn.Conv1d(c_in, channels, 3), nn.ReLU(), nn.MaxPool1d(2)]
            c_in = channels
        self.conv = nn.Sequential(*blocks)
        self.head = nn.Sequential(
            nn.Linear(2 * channels, channels), nn.ReLU(), nn.Dropout(dropout), nn.Linear(channels, f)
        )

    def forward(self, past):  # [B, L, F] -> next step [B, F]
        h = self.conv(past.transpose(1, 2))  # [B, C, L']
        return self.head(torch.cat([h.mean(dim=2), h.amax(dim=2)], dim=1))
