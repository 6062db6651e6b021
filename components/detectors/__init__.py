"""Detector registry: ``get_detector(name, **params)``; ``DETECTORS`` maps names to classes."""

from __future__ import annotations

from .base import (
    Detector,
    FormatError,
    NotFittedError,
    ParamError,
    TrainingStopped,
    request_stop,
    stop_requested,
)
from .classical import IForest, PCADetector, ZScore
from .clustering import KMeansSubsequences
from .deep import LSTMAE, LSTMVAE, CNNForecaster, ConvBiGRUAE, LSTMForecaster, TorchDetector, UnivariateAE
from .ensemble import ScoreEnsemble
from .neighbours import KNNDistance

DETECTORS: dict[str, type[Detector]] = {
    cls.name: cls
    for cls in (
        ZScore,
        PCADetector,
        IForest,
        KNNDistance,
        KMeansSubsequences,
        ConvBiGRUAE,
        LSTMAE,
        LSTMVAE,
        LSTMForecaster,
        UnivariateAE,
        CNNForecaster,
        ScoreEnsemble,
    )
}


def get_detector(name: str, **params) -> Detector:
    if name not in DETECTORS:
        raise ValueError(f"unknown detector {name!r}; registered: {sorted(DETECTORS)}")
    try:
        return DETECTORS[name](**params)
    except TypeError as exc:
        raise ValueError(f"detector {name!r}: bad parameters {params}: {exc}") from None


def load_detector(path) -> Detector:
    return Detector.load(path)


__all__ = [
    "TrainingStopped",
    "request_stop",
    "stop_requested",
    "FormatError",
    "DETECTORS",
    "Detector",
    "NotFittedError",
    "ParamError",
    "TorchDetector",
    "get_detector",
    "load_detector",
]
