"""Recurrent detectors of the ConvBiGRU study, on one shared loop (`training.py`).

All four read sliding windows of ``window`` steps. The autoencoders score a step by the mean,
over the windows that cover it, of its reconstruction error (``score_stride`` > 1 scores
fewer, overlapping less, windows: faster, each step still covered); the forecaster by the
error of predicting it from the ``window`` steps before it (the first steps see an
edge-padded past). Every step gets a score, aligned with the input; nothing is shifted.
"""

from __future__ import annotations

import threading
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import numpy as np

from .base import Detector, NotFittedError, is_int, is_number, normalise_rows, require

if TYPE_CHECKING:  # torch is imported where a model is built, fitted, scored or loaded, not here,
    import torch  # so that the registry and parameter checks load fast
    from torch import nn

    from .torch_loop import EpochCallback, TrainResult

# torch's RNG is process-global: seeded sections hold this lock, so detectors fitted in
# parallel threads (Prefect's task runner) stay reproducible.
_SEEDED = threading.RLock()


class TorchDetector(Detector):
    """Shared plumbing: seeding, device, the training loop, scoring, save/load."""

    span_extra = 0  # steps a window holds beyond ``window`` (1 for the forecaster's target)

    def __init__(
        self,
        window: int = 20,
        hidden: int = 64,
        num_layers: int = 1,
        dropout: float = 0.0,
        lr: float = 1e-3,
        batch_size: int = 64,
        epochs: int = 50,
        patience: int = 5,
        val_fraction: float = 0.1,
        seed: int = 0,
        device: str = "auto",
        amp: bool = True,
        score_batch_size: int = 2048,
        score_stride: int = 1,
    ):
        self.window = window
        self.hidden = hidden
        self.num_layers = num_layers
        self.dropout = dropout
        self.lr = lr
        self.batch_size = batch_size
        self.epochs = epochs
        self.patience = patience
        self.val_fraction = val_fraction
        self.seed = seed
        self.device = device
        self.amp = amp
        self.score_batch_size = score_batch_size
        self.score_stride = score_stride

    def validate_params(self) -> None:
        def at_least(param: str, low: int) -> None:
            v = getattr(self, param)
            require(is_int(v) and v >= low, self.name, param, f"an integer >= {low}", v)

        at_least("window", 2)
        for param in ("hidden", "num_layers", "batch_size", "epochs", "patience", "score_batch_size", "score_stride"):
            at_least(param, 1)
        require(is_int(self.seed), self.name, "seed", "an integer", self.seed)
        require(
            is_number(self.dropout) and 0 <= self.dropout < 1, self.name, "dropout", "a number in [0, 1)", self.dropout
        )
        require(is_number(self.lr) and self.lr > 0, self.name, "lr", "a positive number", self.lr)
        require(
            is_number(self.val_fraction) and 0 <= self.val_fraction < 1,
            self.name,
            "val_fraction",
            "a number in [0, 1)",
            self.val_fraction,
        )
        require(isinstance(self.amp, bool), self.name, "amp", "true or false", self.amp)
        require(
            isinstance(self.device, str) and (self.device in ("auto", "cpu") or self.device.startswith("cuda")),
            self.name,
            "device",
            "'auto', 'cpu' or 'cuda[:N]'",
            self.device,
        )

    # --- to implement ------------------------------------------------------------------
    def _after_training(self, x: np.ndarray, holdout: int) -> None:
        """Learn what scoring needs besides the weights, from train ``x`` whose steps from
        ``holdout`` on the network did not learn from (before the calibration scores)."""

    def _build(self, n_features: int) -> nn.Module:
        raise NotImplementedError

    def _loss(self, model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _errors(self, model: nn.Module, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(score part, contribution part), each [B, k, F] for the window's last k steps."""
        raise NotImplementedError

    @property
    def _span(self) -> int:
        return self.window + self.span_extra

    def context_steps(self) -> tuple[int, int]:
        # A step is scored by every window that covers it: the forecaster's windows end at it
        # (its ``window`` inputs before it); an autoencoder's windows start up to window - 1
        # steps before it and end up to window - 1 after. Exact across batches with
        # score_stride 1; a larger stride places windows from the batch's own start.
        if self.span_extra:
            return self.window, 0
        return self.window - 1, self.window - 1

    # --- the contract ----------------------------------------------------------------
    def fit(
        self, train: np.ndarray, *, verbose: bool = False, epoch_callback: EpochCallback | None = None
    ) -> TorchDetector:
        import torch

        from .torch_loop import holdout_start, resolve_device, train_windows

        self.validate_params()
        x = self._check(train, fitting=True, min_length=self._span + 1)
        self.device_ = resolve_device(self.device)
        devices = [self.device_] if self.device_.type == "cuda" else []
        with _SEEDED, torch.random.fork_rng(devices=devices):  # seed locally; leave the caller's RNG alone
            torch.manual_seed(self.seed)
            self.model_ = self._build(x.shape[1]).to(self.device_)
            self.history_: TrainResult = train_windows(
                self.model_,
                self._loss,
                torch.from_numpy(x).to(self.device_),
                self._span,
                lr=self.lr,
                batch_size=self.batch_size,
                epochs=self.epochs,
                patience=self.patience,
                val_fraction=self.val_fraction,
                seed=self.seed,
                amp=self.amp,
                verbose=verbose,
                callback=epoch_callback,
                desc=self.name,
            )
        # the tail held out for early stopping, scored: the model did not learn from it
        cut = holdout_start(len(x), self._span, self.val_fraction)
        self._after_training(x, cut)
        self.calibration_scores_ = self.score(x[cut:]) if len(x) - cut >= self.window else np.empty(0)
        return self

    def score_and_contributions(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        parts, contrib = self._step_parts(x)
        return self._combine(parts), normalise_rows(contrib)

    def _step_parts(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each step's per-metric score parts and contribution parts, [T, F] each."""
        import torch

        from .torch_loop import score_windows

        x = self._check(x, min_length=self.window)
        if not hasattr(self, "model_"):
            raise NotFittedError(f"{self.name}: call fit before score")
        self.model_.eval()
        k = self.window if self.span_extra == 0 else 1  # steps each window scores
        with _SEEDED, torch.random.fork_rng(devices=[self.device_] if self.device_.type == "cuda" else []):
            torch.manual_seed(self.seed)  # the VAE samples while scoring: same input, same scores
            return score_windows(
                lambda b: self._errors(self.model_, b),
                torch.from_numpy(x).to(self.device_),
                self._span,
                k,
                self._score_windows_per_batch(),
                self.amp,
                min(self.score_stride, k),
            )

    def _combine(self, parts: np.ndarray) -> np.ndarray:
        """One score per step from its per-metric parts [T, F]: their sum."""
        return parts.sum(axis=1)

    def _score_windows_per_batch(self) -> int:
        # score_batch_size counts model rows, so the VAE's n_samples draws per window do not
        # multiply the memory a scoring batch takes.
        return max(1, self.score_batch_size // self._rows_per_window)

    _rows_per_window = 1  # model rows one scored window costs (the VAE decodes n_samples per window)

    def score(self, x: np.ndarray) -> np.ndarray:
        return self.score_and_contributions(x)[0]

    def contributions(self, x: np.ndarray) -> np.ndarray:
        return self.score_and_contributions(x)[1]

    # --- persistence: weights as plain arrays (no pickle), placed on this machine's device ---
    def _state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        weights = {f"weights.{k}": v.detach().cpu().numpy() for k, v in self.model_.state_dict().items()}
        return {**weights, "calibration_scores_": self.calibration_scores_}, {
            "n_features_": self.n_features_,
            "history_": asdict(self.history_),
        }

    def _set_state(self, arrays: dict[str, np.ndarray], values: dict[str, Any]) -> None:
        import torch

        from .torch_loop import TrainResult, resolve_device

        self.n_features_ = int(values["n_features_"])
        self.history_ = TrainResult(**values["history_"])
        self.calibration_scores_ = arrays["calibration_scores_"]
        try:
            self.device_ = resolve_device(self.device)
        except ValueError:  # trained with device="cuda", loaded where there is none: serve on the CPU
            self.device_ = torch.device("cpu")
        weights = {k.removeprefix("weights."): torch.from_numpy(v) for k, v in arrays.items() if k[:8] == "weights."}
        with _SEEDED, torch.random.fork_rng(devices=[]):
            self.model_ = self._build(self.n_features_)
        self.model_.load_state_dict(weights)
        self.model_.to(self.device_).eval()


class _ReconstructionAE(TorchDetector):
    """Autoencoders trained on MSE; a step's error is its squared reconstruction error, which
    is both its score part and its contribution part."""

    def _loss(self, model, batch):
        from torch import nn

        return nn.functional.mse_loss(model(batch).float(), batch.float())

    def _errors(self, model, batch):
        e = (model(batch).float() - batch.float()) ** 2
        return e, e


class ConvBiGRUAE(_ReconstructionAE):
    """Conv1d x2 (2 x metrics channels, kernel 3, ReLU, BatchNorm) -> bidirectional GRU
    encoder -> GRU decoder -> linear back to the metrics; MSE reconstruction."""

    name = "conv_bigru_ae"

    def __init__(
        self,
        window: int = 20,
        hidden: int = 64,
        num_layers: int = 2,
        dropout: float = 0.2,
        lr: float = 1e-3,
        batch_size: int = 64,
        epochs: int = 50,
        patience: int = 5,
        val_fraction: float = 0.1,
        seed: int = 0,
        device: str = "auto",
        amp: bool = True,
        score_batch_size: int = 2048,
        score_stride: int = 1,
    ):
        super().__init__(
            window=window,
            hidden=hidden,
            num_layers=num_layers,
            dropout=dropout,
            lr=lr,
            batch_size=batch_size,
            epochs=epochs,
            patience=patience,
            val_fraction=val_fraction,
            seed=seed,
            device=device,
            amp=amp,
            score_batch_size=score_batch_size,
            score_stride=score_stride,
        )

    def _build(self, f):
        from .nets import ConvBiGRUNet

        return ConvBiGRUNet(f, self.hidden, self.num_layers, self.dropout)


class LSTMAE(_ReconstructionAE):
    """LSTM encoder to one code per window, LSTM decoder back to the window; MSE reconstruction."""

    name = "lstm_ae"

    def _build(self, f):
        from .nets import LSTMAENet

        return LSTMAENet(f, self.hidden, self.num_layers, self.dropout)


class LSTMVAE(TorchDetector):
    """LSTM variational autoencoder with a Gaussian decoder, trained on the ELBO.

    Score: the reconstruction negative log-likelihood, averaged over ``n_samples`` latent
    draws (seeded, so scoring is repeatable). Contributions: each metric's squared
    standardised error (x - mu)^2 / sigma^2, the part of the NLL that the data drive.
    """

    name = "lstm_vae"

    def __init__(
        self,
        window: int = 20,
        hidden: int = 64,
        num_layers: int = 1,
        dropout: float = 0.0,
        lr: float = 1e-3,
        batch_size: int = 64,
        epochs: int = 50,
        patience: int = 5,
        val_fraction: float = 0.1,
        seed: int = 0,
        device: str = "auto",
        amp: bool = True,
        score_batch_size: int = 2048,
        score_stride: int = 1,
        latent: int = 16,
        n_samples: int = 10,
        kl_weight: float = 1.0,
    ):
        super().__init__(
            window=window,
            hidden=hidden,
            num_layers=num_layers,
            dropout=dropout,
            lr=lr,
            batch_size=batch_size,
            epochs=epochs,
            patience=patience,
            val_fraction=val_fraction,
            seed=seed,
            device=device,
            amp=amp,
            score_batch_size=score_batch_size,
            score_stride=score_stride,
        )
        self.latent = latent
        self.n_samples = n_samples
        self.kl_weight = kl_weight

    def validate_params(self) -> None:
        super().validate_params()
        for param in ("latent", "n_samples"):
            v = getattr(self, param)
            require(is_int(v) and v >= 1, self.name, param, "an integer >= 1", v)
        require(
            is_number(self.kl_weight) and self.kl_weight >= 0, self.name, "kl_weight", "a number >= 0", self.kl_weight
        )

    @property
    def _rows_per_window(self) -> int:
        return max(1, self.n_samples)

    def _build(self, f):
        from .nets import LSTMVAENet

        return LSTMVAENet(f, self.hidden, self.latent, self.num_layers, self.dropout)

    def _loss(self, model, batch):
        from .nets import gaussian_nll

        x = batch.float()
        mu_x, logvar_x, mu, logvar = (t.float() for t in model(batch))
        nll = gaussian_nll(x, mu_x, logvar_x).sum(dim=(1, 2)).mean()
        kl = (-0.5 * (1 + logvar - mu**2 - logvar.exp()).sum(dim=1)).mean()
        return (nll + self.kl_weight * kl) / (x.shape[1] * x.shape[2])

    def _errors(self, model, batch):
        import torch

        from .nets import gaussian_nll

        # Encode once, then decode all latent draws in one batched call: the encoder does not
        # depend on the draw, and one large decoder call beats n_samples small ones (~1.3x on CPU).
        x = batch.float()
        b, length, f = x.shape
        mu, logvar = model.encode(batch)
        # The same n_samples draws for every window (seeded, drawn on the CPU): a window's
        # score then depends on the window alone, not on which other windows share its batch,
        # so a stream scored in batches gets the scores of one pass.
        draws = torch.Generator().manual_seed(self.seed)
        eps = torch.randn((self.n_samples, 1, mu.shape[1]), generator=draws).to(mu.device, mu.dtype)
        z = (mu + eps * torch.exp(0.5 * logvar)).reshape(self.n_samples * b, -1)
        mu_x, logvar_x = (t.float().reshape(self.n_samples, b, length, f) for t in model.decode(z, length))
        nll = gaussian_nll(x, mu_x, logvar_x).mean(dim=0)
        std_err = ((x - mu_x) ** 2 / logvar_x.exp()).mean(dim=0)
        return nll, std_err


class LSTMForecaster(TorchDetector):
    """Stacked LSTM predicting the next step from the last ``window``; score = squared error."""

    name = "lstm_forecaster"
    span_extra = 1

    def __init__(
        self,
        window: int = 20,
        hidden: int = 64,
        num_layers: int = 2,
        dropout: float = 0.2,
        lr: float = 1e-3,
        batch_size: int = 64,
        epochs: int = 50,
        patience: int = 5,
        val_fraction: float = 0.1,
        seed: int = 0,
        device: str = "auto",
        amp: bool = True,
        score_batch_size: int = 2048,
        score_stride: int = 1,
    ):
        super().__init__(
            window=window,
            hidden=hidden,
            num_layers=num_layers,
            dropout=dropout,
            lr=lr,
            batch_size=batch_size,
            epochs=epochs,
            patience=patience,
            val_fraction=val_fraction,
            seed=seed,
            device=device,
            amp=amp,
            score_batch_size=score_batch_size,
            score_stride=score_stride,
        )

    def _build(self, f):
        from .nets import ForecasterNet

        return ForecasterNet(f, self.hidden, self.num_layers, self.dropout)

    def _loss(self, model, batch):
        from torch import nn

        return nn.functional.mse_loss(model(batch[:, :-1]).float(), batch[:, -1].float())

    def _errors(self, model, batch):
        e = ((model(batch[:, :-1]).float() - batch[:, -1].float()) ** 2).unsqueeze(1)
        return e, e


class UnivariateAE(_ReconstructionAE):
    """One small fully connected autoencoder per metric (Garg et al., TNNLS 2021: "UAE", the
    best family of their evaluation), all trained at once as one network whose layers hold one
    weight matrix per metric, so 55 metrics cost one batched product, not 55 models.

    Each metric's window of ``window`` steps goes through ``num_layers`` layers of ``hidden``
    units down to ``latent`` and back. A step's per-metric error is its squared reconstruction
    error (mean over the windows covering it). ``combine`` makes one score of them: ``mean``,
    ``max``, or ``gauss``: each metric's error standardised by the mean and spread of its
    errors on the tail of train held out from training (Garg's static Gaussian scoring), then
    the standardised errors' negative log tail probabilities summed (independent metrics), so
    a metric that is always noisy does not drown one that is always quiet; or
    ``gauss_dynamic``: that static part plus a dynamic one, each metric's error standardised
    by the mean and spread of its own ``recent`` errors before it (Garg's dynamic Gaussian
    scoring, its sum over metrics smoothed by a trailing mean of `DYNAMIC_SMOOTHING` steps,
    their kernel), the two negative log tail probabilities added (Fisher's combination). The
    static part alone misses a fault whose errors sit high on a machine whose errors have all
    drifted since train; the dynamic part alone forgets a fault that lasts longer than its
    window. The first steps scored follow on from the held-out tail's last ``recent`` errors.
    """

    name = "uae"

    def __init__(
        self,
        window: int = 30,
        hidden: int = 32,
        num_layers: int = 1,
        dropout: float = 0.0,
        lr: float = 1e-3,
        batch_size: int = 64,
        epochs: int = 10,
        patience: int = 5,
        val_fraction: float = 0.1,
        seed: int = 0,
        device: str = "auto",
        amp: bool = True,
        score_batch_size: int = 2048,
        score_stride: int = 1,
        latent: int = 8,
        combine: str = "gauss",
        recent: int = 2000,
    ):
        super().__init__(
            window=window,
            hidden=hidden,
            num_layers=num_layers,
            dropout=dropout,
            lr=lr,
            batch_size=batch_size,
            epochs=epochs,
            patience=patience,
            val_fraction=val_fraction,
            seed=seed,
            device=device,
            amp=amp,
            score_batch_size=score_batch_size,
            score_stride=score_stride,
        )
        self.latent = latent
        self.combine = combine
        self.recent = recent

    def validate_params(self) -> None:
        super().validate_params()
        require(is_int(self.latent) and self.latent >= 1, self.name, "latent", "an integer >= 1", self.latent)
        require(self.combine in COMBINE, self.name, "combine", f"one of {COMBINE}", self.combine)
        require(is_int(self.recent) and self.recent >= 2, self.name, "recent", "an integer >= 2", self.recent)

    def context_steps(self) -> tuple[int, int]:
        past, future = super().context_steps()
        if self.combine == "gauss_dynamic":  # the errors of the last `recent` steps before each smoothed one
            past += self.recent + DYNAMIC_SMOOTHING - 1
        return past, future

    def _build(self, f):
        from .nets import PerMetricAENet

        return PerMetricAENet(f, self.window, self.hidden, self.latent, self.num_layers, self.dropout)

    def _after_training(self, x, holdout):
        # Gaussian scoring's per-metric error statistics: from the held-out tail where there is
        # one (errors on steps the network learnt from are too small), else from all of train.
        tail = x[holdout:] if len(x) - holdout >= self.window else x
        parts = self._step_parts(tail)[0]
        self.error_mean_ = parts.mean(axis=0)
        self.error_std_ = np.maximum(parts.std(axis=0), 1e-6 + 1e-3 * np.abs(self.error_mean_))
        # what the dynamic part's first windows read (the calibration scores, computed next from
        # this very tail, read their own errors there: normal data either way)
        self.recent_errors_ = parts[-self.recent :] if self.combine == "gauss_dynamic" else parts[:0]

    def _combine(self, parts):
        if self.combine == "mean":
            return parts.mean(axis=1)
        if self.combine == "max":
            return parts.max(axis=1)
        score = _tail_log_p(parts, self.error_mean_, self.error_std_)
        if self.combine == "gauss_dynamic":
            return score + _dynamic_tail_log_p(parts, self.recent_errors_, self.recent)
        return score

    def _state(self):
        arrays, values = super()._state()
        fitted = {"error_mean_": self.error_mean_, "error_std_": self.error_std_, "recent_errors_": self.recent_errors_}
        return {**arrays, **fitted}, values

    def _set_state(self, arrays, values):
        super()._set_state(arrays, values)
        self.error_mean_, self.error_std_ = arrays["error_mean_"], arrays["error_std_"]
        # a model saved before the dynamic part existed holds none (it never combined with one)
        none = np.empty((0, len(self.error_mean_)), dtype=self.error_mean_.dtype)
        self.recent_errors_ = arrays.get("recent_errors_", none)


COMBINE = ("mean", "max", "gauss", "gauss_dynamic")
DYNAMIC_SMOOTHING = 10  # steps of the dynamic part's trailing mean (Garg's kernel smoothing)


def _tail_log_p(parts: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """-log P(Z > z) of each metric's standardised error, summed over metrics."""
    from scipy.special import log_ndtr

    return -log_ndtr(-(parts - mean) / std).sum(axis=1)


def _dynamic_tail_log_p(parts: np.ndarray, history: np.ndarray, recent: int) -> np.ndarray:
    """`_tail_log_p` of each step's errors against the mean and spread of each metric's
    ``recent`` errors before it (``history``: the errors before ``parts``), smoothed over the
    last `DYNAMIC_SMOOTHING` steps. A step with fewer than min(recent, 50) errors before it
    counts as unremarkable (z = 0)."""
    import pandas as pd

    full = np.vstack([history[-recent:], parts]).astype(np.float64)
    rolling = pd.DataFrame(full).rolling(recent, min_periods=min(recent, 50))
    mean = rolling.mean().shift(1).to_numpy()
    std = rolling.std().shift(1).to_numpy()
    z = (full - mean) / np.maximum(std, 1e-6 + 1e-3 * np.abs(mean))
    z = np.nan_to_num(z[len(full) - len(parts) :], nan=0.0)
    dynamic = _tail_log_p(z, 0.0, 1.0)
    return pd.Series(dynamic).rolling(DYNAMIC_SMOOTHING, min_periods=1).mean().to_numpy()


class CNNForecaster(LSTMForecaster):
    """A 1-D convolutional next-step forecaster (TSB-AD's CNN, after Munir et al.'s DeepAnT):
    ``num_layers`` blocks of convolution (``hidden`` channels, kernel 3), ReLU and max-pooling
    over the last ``window`` steps, average and max pooled over time, then two linear layers to
    the next step. Score: squared error of the forecast, summed over metrics; each metric's
    error is its contribution."""

    name = "cnn"

    def __init__(
        self,
        window: int = 50,
        hidden: int = 32,
        num_layers: int = 2,
        dropout: float = 0.25,
        lr: float = 1e-3,
        batch_size: int = 128,
        epochs: int = 10,
        patience: int = 3,
        val_fraction: float = 0.1,
        seed: int = 0,
        device: str = "auto",
        amp: bool = True,
        score_batch_size: int = 2048,
        score_stride: int = 1,
    ):
        super().__init__(
            window=window,
            hidden=hidden,
            num_layers=num_layers,
            dropout=dropout,
            lr=lr,
            batch_size=batch_size,
            epochs=epochs,
            patience=patience,
            val_fraction=val_fraction,
            seed=seed,
            device=device,
            amp=amp,
            score_batch_size=score_batch_size,
            score_stride=score_stride,
        )

    def validate_params(self) -> None:
        super().validate_params()
        from .nets import cnn_min_window

        low = cnn_min_window(self.num_layers) if is_int(self.num_layers) and self.num_layers >= 1 else 2
        require(
            is_int(self.window) and self.window >= low,
            self.name,
            "window",
            f"an integer >= {low} (what {self.num_layers} convolution and pooling blocks need)",
            self.window,
        )

    def _build(self, f):
        from .nets import CNNForecasterNet

        return CNNForecasterNet(f, self.hidden, self.num_layers, self.dropout)
