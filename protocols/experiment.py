"""The experiment config (TOML): model, data split, clients, rounds, backend, DP, seeds.

``ExperimentConfig.from_toml(path)`` parses and validates a file; every unknown key and
every invalid value raises :class:`ExperimentConfigError` whose ``key`` names it as
``section.key`` (e.g. ``dp.noise_multiplier``). Every key and its default is listed in
docs/training.md; :func:`ExperimentConfig.to_dict` gives the resolved config back.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from protocols.errors import ExperimentConfigError

Check = Callable[[Any], str | None]  # returns an error message, or None when valid


def _choice(*options: str) -> Check:
    return lambda v: None if v in options else f"must be one of {', '.join(options)}, got {v!r}"


def _int(lo: int, hi: int | None = None) -> Check:
    def check(v: Any) -> str | None:
        if isinstance(v, bool) or not isinstance(v, int):
            return f"must be an integer, got {type(v).__name__}"
        if v < lo or (hi is not None and v > hi):
            return f"must be in [{lo}, {hi if hi is not None else 'inf'}], got {v}"
        return None

    return check


def _num(lo: float, hi: float = math.inf, *, lo_open: bool = False, hi_open: bool = False) -> Check:
    def check(v: Any) -> str | None:
        if isinstance(v, bool) or not isinstance(v, int | float):
            return f"must be a number, got {type(v).__name__}"
        bad = (
            not math.isfinite(v)
            or (v <= lo if lo_open else v < lo)
            or (v >= hi if hi_open else v > hi)
        )
        if bad:
            left, right = "(" if lo_open else "[", ")" if hi_open else "]"
            return f"must be finite and in {left}{lo}, {hi}{right}, got {v!r}"
        return None

    return check


def _optional(inner: Check) -> Check:
    return lambda v: None if v is None else inner(v)


def _int_list(v: Any) -> str | None:
    if not isinstance(v, list) or any(
        isinstance(x, bool) or not isinstance(x, int) or x < 1 for x in v
    ):
        return "must be a list of positive integers"
    return None


def _bool(v: Any) -> str | None:
    return None if isinstance(v, bool) else f"must be true or false, got {v!r}"


def _str(v: Any) -> str | None:
    return None if isinstance(v, str) and v else "must be a non-empty string"


def _f(default: Any, check: Check) -> Any:
    return field(default=default, metadata={"check": check})


@dataclass(frozen=True)
class ExperimentSection:
    """[experiment]: a name, the master seed, the number of rounds."""

    name: str = _f("experiment", _str)
    seed: int = _f(0, _int(0))
    rounds: int = _f(30, _int(1, 100_000))


@dataclass(frozen=True)
class ModelSection:
    """[model]: ``mlp`` (hidden widths, default [64]), ``logistic`` or ``linear``
    (regression)."""

    kind: str = _f("mlp", _choice("mlp", "logistic", "linear"))
    hidden: list[int] | None = _f(None, _optional(_int_list))  # noqa: RUF009 - a field()


@dataclass(frozen=True)
class DataSection:
    """[data]: the dataset and how it is split across clients."""

    dataset: str = _f("digits", _choice("digits", "synthetic_linear"))
    split: str = _f("dirichlet", _choice("iid", "dirichlet", "label_sorted"))
    alpha: float = _f(0.5, _num(0.0, lo_open=True))
    test_fraction: float = _f(0.2, _num(0.0, 1.0, lo_open=True, hi_open=True))
    min_client_size: int = _f(20, _int(1))
    samples_per_client: int = _f(10, _int(1))
    dim: int = _f(5, _int(1))
    noise: float = _f(0.1, _num(0.0))


@dataclass(frozen=True)
class ClientsSection:
    """[clients]: population, sampling per round, dropouts, weighting."""

    num_clients: int = _f(20, _int(3, 1 << 20))
    per_round: int | None = _f(None, _optional(_int(3)))
    sampling: str = _f("uniform", _choice("uniform", "poisson"))
    dropout_fraction: float = _f(0.0, _num(0.0, 1.0, hi_open=True))
    dropout_step: str = _f(
        "share_keys",
        _choice("start", "advertise_keys", "share_keys", "masked_input", "consistency_check"),
    )
    weighting: str = _f("examples", _choice("uniform", "examples"))
    max_examples: int | None = _f(None, _optional(_int(1)))


@dataclass(frozen=True)
class TrainingSection:
    """[training]: local SGD and the server step."""

    local_epochs: int = _f(1, _int(1, 1000))
    batch_size: int = _f(16, _int(0))  # 0: full batch
    lr: float = _f(0.1, _num(0.0, lo_open=True))
    server_lr: float = _f(1.0, _num(0.0, lo_open=True))
    loss: str = _f("cross_entropy", _choice("cross_entropy", "mse", "half_mse"))


@dataclass(frozen=True)
class BackendSection:
    """[backend]: which aggregation runs and its parameters."""

    name: str = _f("masking", _choice("masking", "paillier", "plaintext"))
    clip: float = _f(1.0, _num(0.0, lo_open=True))
    setting: str = _f("active", _choice("active", "honest_but_curious"))
    graph: str = _f("auto", _choice("auto", "secagg+", "complete"))
    bits: int = _f(32, _int(16, 62))
    design_dropout_fraction: float = _f(0.2, _num(0.0, 1.0, hi_open=True))
    key_bits: int = _f(2048, _int(512, 8192))
    value_bits: int = _f(24, _int(8, 32))
    insecure_test_key: bool = _f(False, _bool)


@dataclass(frozen=True)
class DPSection:
    """[dp]: ``none``, ``dp_sgd`` (sample-level, Opacus on every client) or ``dp_fedavg``
    (user-level, central noise after secure aggregation)."""

    mechanism: str = _f("none", _choice("none", "dp_sgd", "dp_fedavg"))
    noise_multiplier: float = _f(1.0, _num(0.0, lo_open=True))
    max_grad_norm: float = _f(1.0, _num(0.0, lo_open=True))
    clip_norm: float = _f(1.0, _num(0.0, lo_open=True))
    delta: float = _f(1e-5, _num(0.0, 1.0, lo_open=True, hi_open=True))
    target_epsilon: float | None = _f(None, _optional(_num(0.0, lo_open=True)))
    accountant: str = _f("rdp", _choice("rdp", "pld"))


_SECTIONS: dict[str, type[Any]] = {
    "experiment": ExperimentSection,
    "model": ModelSection,
    "data": DataSection,
    "clients": ClientsSection,
    "training": TrainingSection,
    "backend": BackendSection,
    "dp": DPSection,
}


@dataclass(frozen=True)
class ExperimentConfig:
    """A whole experiment; build with :meth:`from_toml` or :meth:`from_dict`."""

    experiment: ExperimentSection = field(default_factory=ExperimentSection)
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    clients: ClientsSection = field(default_factory=ClientsSection)
    training: TrainingSection = field(default_factory=TrainingSection)
    backend: BackendSection = field(default_factory=BackendSection)
    dp: DPSection = field(default_factory=DPSection)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> ExperimentConfig:
        """Validate a parsed TOML document; errors name ``section.key``."""
        sections: dict[str, Any] = {}
        for name, value in raw.items():
            if name not in _SECTIONS:
                raise ExperimentConfigError(
                    name, f"unknown section; use {', '.join(sorted(_SECTIONS))}"
                )
            if not isinstance(value, Mapping):
                raise ExperimentConfigError(name, "must be a table ([section])")
            sections[name] = _section(name, _SECTIONS[name], value)
        cfg = cls(**sections)
        cfg.check()
        return cfg

    @classmethod
    def from_toml(cls, path: str | Path) -> ExperimentConfig:
        """Read and validate a TOML file."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ExperimentConfigError("<file>", f"cannot read {path}: {exc}") from None
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ExperimentConfigError("<toml>", f"{path}: not valid TOML: {exc}") from None
        return cls.from_dict(raw)

    def replace(self, **sections: Mapping[str, Any]) -> ExperimentConfig:
        """A copy with some keys changed, e.g. ``replace(dp={"mechanism": "none"})``;
        validated like a file."""
        raw = self.to_dict()
        for name, changes in sections.items():
            raw.setdefault(name, {}).update(changes)
        return ExperimentConfig.from_dict(raw)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """The resolved config (every key), JSON/TOML friendly (``None`` keys omitted)."""
        return {
            name: {
                k: v for k, v in dataclasses.asdict(getattr(self, name)).items() if v is not None
            }
            for name in _SECTIONS
        }

    def check(self) -> None:
        """Rules across keys (each error names the key to change)."""
        c, d, b, dp, m = self.clients, self.data, self.backend, self.dp, self.model
        if c.per_round is not None and c.per_round > c.num_clients:
            raise ExperimentConfigError(
                "clients.per_round", f"{c.per_round} exceeds clients.num_clients={c.num_clients}"
            )
        if dp.mechanism == "dp_fedavg":
            if c.weighting != "uniform":
                raise ExperimentConfigError(
                    "clients.weighting",
                    "dp_fedavg needs 'uniform' (fixed public denominator; weights change the "
                    "sensitivity)",
                )
            if c.sampling != "poisson":
                raise ExperimentConfigError(
                    "clients.sampling", "dp_fedavg is accounted for Poisson client sampling"
                )
            if dp.delta >= 1.0 / c.num_clients:
                raise ExperimentConfigError(
                    "dp.delta", f"must be below 1/num_clients = {1.0 / c.num_clients:.3g}"
                )
        if dp.mechanism == "dp_sgd" and d.dataset != "digits":
            raise ExperimentConfigError("dp.mechanism", "dp_sgd is wired for classification data")
        if (d.dataset == "synthetic_linear") != (m.kind == "linear"):
            raise ExperimentConfigError(
                "model.kind", "use 'linear' with synthetic_linear data, and only there"
            )
        if m.kind == "mlp" and m.hidden is not None and not m.hidden:
            raise ExperimentConfigError("model.hidden", "an mlp needs at least one hidden width")
        if b.name == "paillier" and b.key_bits < 2048 and not b.insecure_test_key:
            raise ExperimentConfigError(
                "backend.key_bits", "below 2048 needs backend.insecure_test_key = true (tests only)"
            )
        if d.dataset == "synthetic_linear" and self.training.loss == "cross_entropy":
            raise ExperimentConfigError("training.loss", "regression needs 'mse' or 'half_mse'")
        if d.dataset == "digits" and self.training.loss != "cross_entropy":
            raise ExperimentConfigError("training.loss", "classification needs 'cross_entropy'")


def _section(name: str, cls: type[Any], values: Mapping[str, Any]) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key, value in values.items():
        if key not in fields:
            raise ExperimentConfigError(
                f"{name}.{key}", f"unknown key; [{name}] takes {', '.join(fields)}"
            )
        error = fields[key].metadata["check"](value)
        if error is not None:
            raise ExperimentConfigError(f"{name}.{key}", error)
    kwargs = {
        k: (float(v) if isinstance(fields[k].default, float) and isinstance(v, int) else v)
        for k, v in values.items()
    }
    return cls(**kwargs)
