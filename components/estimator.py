"""The one base of Vigil's model families (detectors, remedy rankers, SLO predictors), after
scikit-learn's estimator rules:

- hyper-parameters are the explicit keywords of ``__init__``, stored there unchanged (no logic,
  no checks: `validate_params` checks them, called where the family fits), read back by
  `get_params` and changed by `set_params`;
- fitted state ends in ``_``;
- a fitted model is one ``.npz`` file: a JSON header (format, which model, parameters, small
  state) and the state's arrays. Loading checks the format before it reads anything and runs
  no code: a pickle, or any file that is not the family's, is refused unread.

A family names its registry (`registry`), the header's format tag and the key that holds the
model's name (`FILE_FORMAT`, `FILE_KIND`: kept as each family wrote them before, so files
already written load as they did).
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

ZIP_MAGIC = b"PK\x03\x04"  # .npz files are zip archives


class FormatError(ValueError):
    """A model file Vigil does not load: not its format, a pickle, or damaged."""


class Estimator:
    name: ClassVar[str] = ""
    FILE_FORMAT: ClassVar[object]  # the header's "format"
    FILE_KIND: ClassVar[str]  # the header's key for the model's name, and the family's name in messages
    FILE_HEADER: ClassVar[str] = "__vigil__"  # the .npz entry that holds the header
    RETRAIN: ClassVar[str] = "retrain it"  # what to do with a file of another format version

    @classmethod
    def registry(cls) -> dict[str, type[Estimator]]:
        """The family's registry: name -> class."""
        raise NotImplementedError

    # --- parameters -----------------------------------------------------------------------
    @classmethod
    def param_names(cls) -> list[str]:
        params = list(inspect.signature(cls.__init__).parameters.values())[1:]  # skip self
        return [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]

    def get_params(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.param_names()}

    def set_params(self, **params: Any):
        unknown = sorted(set(params) - set(self.param_names()))
        if unknown:
            raise ValueError(f"{self.name}: unknown parameter(s) {unknown}; known: {self.param_names()}")
        for k, v in params.items():
            setattr(self, k, v)
        return self

    def validate_params(self) -> None:
        """Raise ValueError naming the first hyper-parameter of a wrong type or out of range;
        cheap, so configuration can call it before any data is read."""

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    # --- persistence: arrays and JSON, never pickle ------------------------------------------
    def _state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """The fitted state: arrays, and JSON-able values (numbers, strings, lists, dicts).
        The default takes every attribute ending in ``_``; override where that is not enough."""
        arrays, values = {}, {}
        for k, v in self.__dict__.items():
            if k.endswith("_"):
                (arrays if isinstance(v, np.ndarray) else values)[k] = v.item() if isinstance(v, np.generic) else v
        return arrays, values

    def _set_state(self, arrays: dict[str, np.ndarray], values: dict[str, Any]) -> None:
        self.__dict__.update(arrays)
        self.__dict__.update(values)

    def save(self, path: str | Path) -> None:
        """One ``.npz`` file: the JSON header and the state's arrays (`load` reads it back)."""
        arrays, values = self._state()
        header = {"format": self.FILE_FORMAT, self.FILE_KIND: self.name, "params": self.get_params(), "state": values}
        blob = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
        with Path(path).open("wb") as fh:
            np.savez(fh, **{self.FILE_HEADER: blob}, **{f"state.{k}": v for k, v in arrays.items()})

    @classmethod
    def load(cls, path: str | Path):
        """A model written by `save`, of this class or (called on the family's base) any
        member of the family. The format is checked before anything is read, and nothing in
        the file is executed."""
        path, kind = Path(path), cls.FILE_KIND
        with path.open("rb") as fh:
            magic = fh.read(4)
        if magic[:1] == b"\x80":
            raise FormatError(
                f"{path}: a pickle, which Vigil does not load (loading a pickle can run code); "
                f"if Vigil wrote it, it is a {kind} of an old format: {cls.RETRAIN}"
            )
        if magic != ZIP_MAGIC:
            raise FormatError(f"{path}: not a Vigil {kind} file (expected a .npz written by its save)")
        try:
            with np.load(path, allow_pickle=False) as z:
                header = json.loads(bytes(z[cls.FILE_HEADER]).decode()) if cls.FILE_HEADER in z.files else None
                arrays = {k.removeprefix("state."): z[k] for k in z.files if k.startswith("state.")}
        except (ValueError, OSError, UnicodeDecodeError) as exc:  # object arrays, a damaged zip, bad JSON
            raise FormatError(f"{path}: not a readable Vigil {kind} file ({exc})") from None
        if not isinstance(header, dict):
            raise FormatError(f"{path}: a .npz without Vigil's header: not a Vigil {kind} file")
        if header.get("format") != cls.FILE_FORMAT:
            raise FormatError(
                f"{path}: {kind} file format {header.get('format')!r}, this Vigil reads {cls.FILE_FORMAT!r}: "
                f"{cls.RETRAIN}"
            )
        registry = cls.registry()
        name = header.get(kind)
        if name not in registry:
            raise FormatError(f"{path}: unknown {kind} {name!r}; registered: {sorted(registry)}")
        klass = registry[name]
        if cls.name and not issubclass(klass, cls):  # called on a member, not on the family's base
            raise FormatError(f"{path}: holds a {name!r} {kind}, not {cls.name!r}")
        try:
            model = klass(**header["params"])
        except (TypeError, KeyError) as exc:
            raise FormatError(f"{path}: parameters {header.get('params')} do not fit {name} ({exc})") from None
        model._set_state(arrays, header.get("state") or {})
        return model
