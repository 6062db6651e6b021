"""The one training and scoring loop shared by every torch detector.

Windows are never materialised: the series lives once on the device and each batch gathers
its windows through ``unfold`` (a view) and an index. Training is seeded and deterministic on
the CPU; on CUDA it runs under bf16 autocast when ``amp`` is set.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from .base import check_stop as _check_stop

EpochCallback = Callable[[int, float], None]
"""Called after each epoch with (epoch, validation loss); may raise to stop training early
(a tuner can prune a trial from here)."""


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but CUDA is not available here")
    return dev


@dataclass
class TrainResult:
    epochs_run: int
    best_epoch: int
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    seconds_per_epoch: float = math.nan


def holdout_start(n_steps: int, span: int, val_fraction: float) -> int:
    """First step of the tail of train held out for early stopping (at least one window long);
    ``n_steps`` when nothing is held out."""
    return n_steps - max(int(n_steps * val_fraction), span) if val_fraction > 0 else n_steps


def _windows(x: torch.Tensor, span: int) -> torch.Tensor:
    """[T, F] -> [T - span + 1, span, F] view."""
    return x.unfold(0, span, 1).permute(0, 2, 1)


def train_windows(
    model: nn.Module,
    loss_fn: Callable[[nn.Module, torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    span: int,
    *,
    lr: float,
    batch_size: int,
    epochs: int,
    patience: int,
    val_fraction: float,
    seed: int,
    amp: bool,
    verbose: bool,
    callback: EpochCallback | None = None,
    desc: str = "train",
) -> TrainResult:
    """Adam with cosine annealing over windows of ``span`` steps of ``x`` [T, F] (on the model's
    device). The last ``val_fraction`` of train, in time, is held out for early stopping; the
    best weights by validation loss are restored."""
    import time

    n = x.shape[0] - span + 1
    if n < 2:
        raise ValueError(f"train series of {x.shape[0]} steps is too short for windows of {span} steps")
    cut = holdout_start(x.shape[0], span, val_fraction)
    n_train = cut - span + 1
    if n_train < 1:
        raise ValueError(f"train series of {x.shape[0]} steps leaves no window after holding out {val_fraction:.0%}")
    wins = _windows(x, span)
    val_starts = torch.arange(cut, n, device=x.device)  # windows wholly inside the held-out tail
    gen = torch.Generator(device="cpu").manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(epochs, 1))
    use_amp = amp and x.device.type == "cuda"
    result = TrainResult(0, 0)
    best, best_state, stale = math.inf, None, 0
    bar = None
    if verbose:
        from tqdm.auto import tqdm

        bar = tqdm(total=epochs, desc=desc, unit="epoch", leave=False)
    t_start = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(n_train, generator=gen).to(x.device)
        total, count = 0.0, 0
        for i in range(0, n_train, batch_size):
            _check_stop()  # between batches: a Ctrl-C stops training within one batch
            batch = wins[order[i : i + batch_size]]
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_amp):
                loss = loss_fn(model, batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(batch)
            count += len(batch)
        sched.step()
        result.train_loss.append(total / count)
        val = (
            _eval_loss(model, loss_fn, wins, val_starts, batch_size * 4, use_amp)
            if len(val_starts)
            else result.train_loss[-1]
        )
        result.val_loss.append(val)
        result.epochs_run = epoch + 1
        if bar is not None:
            bar.set_postfix(train=f"{result.train_loss[-1]:.4g}", val=f"{val:.4g}")
            bar.update()
        if callback is not None:
            callback(epoch, val)
        if val < best:
            best, best_state, stale, result.best_epoch = val, copy.deepcopy(model.state_dict()), 0, epoch
        else:
            stale += 1
            if stale >= patience:
                break
    if bar is not None:
        bar.close()
    result.seconds_per_epoch = (time.perf_counter() - t_start) / max(result.epochs_run, 1)
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return result


def _eval_loss(model, loss_fn, wins, starts, batch_size, use_amp) -> float:
    model.eval()
    total = 0.0
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_amp):
        for i in range(0, len(starts), batch_size):
            batch = wins[starts[i : i + batch_size]]
            total += float(loss_fn(model, batch)) * len(batch)
    model.train()
    return total / len(starts)


def score_windows(
    window_errors: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    x: torch.Tensor,
    span: int,
    k: int,
    batch_size: int,
    amp: bool,
    stride: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-step, per-metric score parts [T, F] and contribution parts [T, F] from windowed
    errors (a detector's score is its combination of the parts, most often their sum).

    ``window_errors(batch[B, span, F])`` returns (score part, contribution part), each
    [B, k, F], for the last ``k`` steps of each window. The series is edge-padded at the front
    by ``span - k`` steps, so every step, the first ones included, is covered by at least one
    window; a step's value is the mean over the windows that cover it. Windows start every
    ``stride`` steps (at most ``k``, so no step is left uncovered), the last one flush with the
    end: stride 1 averages over every covering window, stride k scores each step once and is
    k times cheaper.
    """
    if not 1 <= stride <= k:
        raise ValueError(f"score stride must be in 1..{k}, got {stride}")
    pad = span - k
    if pad:
        x = torch.cat([x[:1].expand(pad, -1), x], dim=0)
    n = x.shape[0] - span + 1
    wins = _windows(x, span)
    starts = torch.arange(0, n, stride, device=x.device)
    if int(starts[-1]) != n - 1:
        starts = torch.cat([starts, torch.tensor([n - 1], device=x.device)])
    t, f = x.shape
    acc_s = torch.zeros(t, f, device=x.device, dtype=torch.float32)
    acc_c = torch.zeros(t, f, device=x.device, dtype=torch.float32)
    cover = torch.zeros(t, device=x.device, dtype=torch.float32)
    ones = torch.ones(len(starts), device=x.device)
    use_amp = amp and x.device.type == "cuda"
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_amp):
        for b0 in range(0, len(starts), batch_size):
            _check_stop()
            idx = starts[b0 : b0 + batch_size]
            batch = wins[idx] if stride > 1 else wins[int(idx[0]) : int(idx[-1]) + 1].contiguous()
            es, ec = window_errors(batch)
            es, ec = es.float(), ec.float()
            for j in range(k):
                pos = idx + (span - k) + j
                acc_s.index_add_(0, pos, es[:, j])
                acc_c.index_add_(0, pos, ec[:, j])
                cover.index_add_(0, pos, ones[: len(idx)])
    acc_s, acc_c, cover = acc_s[pad:], acc_c[pad:], cover[pad:, None]
    return (acc_s / cover).double().cpu().numpy(), (acc_c / cover).double().cpu().numpy()
