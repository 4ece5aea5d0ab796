"""The privacy ledger's on-disk format: records, strict validation, canonical JSON, hashes.

A ledger is a JSON Lines file. Line 1 is a header (delta, budget, accountant settings);
each further line records one round. Every line carries ``prev`` (the previous line's
hash; 64 zeros for the header) and ``hash`` = SHA-256 of the line's canonical JSON
without ``hash`` (sorted keys, no spaces, ASCII), so editing, removing, inserting or
reordering a line breaks the chain. Lines are parsed with :func:`json.loads` only (no
pickle, no eval), with NaN/Infinity literals and duplicate keys refused, and every field
is checked for type and range; an error names the file and line.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

FORMAT_VERSION = 1
GENESIS = "0" * 64
MAX_LINE_BYTES = 1 << 16

Status = Literal["committed", "aborted_unreleased", "aborted_released"]
STATUSES: tuple[Status, ...] = ("committed", "aborted_unreleased", "aborted_released")
NoiseLocationName = Literal["local", "central", "distributed"]
NOISE_LOCATIONS: tuple[NoiseLocationName, ...] = ("local", "central", "distributed")
GuardView = Literal["sampled", "unsampled", "both"]
GUARD_VIEWS: tuple[GuardView, ...] = ("sampled", "unsampled", "both")
GuardAccountant = Literal["rdp", "pld"]

ExtraValue = int | float | str
_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}\Z")
_HEX64 = re.compile(r"[0-9a-f]{64}\Z")
_MAX_STR = 200


class FieldError(ValueError):
    """A field of one record is invalid (turned into LedgerFormatError with the line)."""


@dataclass(frozen=True)
class EpsilonPair:
    """Epsilon at the ledger's delta under the RDP and the PLD accountant."""

    rdp: float
    pld: float

    def get(self, accountant: str) -> float:
        """The value for ``rdp`` or ``pld``."""
        return self.rdp if accountant == "rdp" else self.pld


ZERO = EpsilonPair(0.0, 0.0)


@dataclass(frozen=True)
class RoundParams:
    """What a round spent: q, sigma (noise std / sensitivity), steps, the clipping norm C,
    the sensitivity accounted (>= C when quantisation inflates it), and
    mechanism-specific numbers in ``extra`` (e.g. expected clients, adaptive-clip noise)."""

    sample_rate: float
    noise_multiplier: float
    steps: int
    clip_norm: float
    sensitivity: float
    extra: Mapping[str, ExtraValue] = field(default_factory=dict)


@dataclass(frozen=True)
class LedgerHeader:
    """Line 1: the settings every round is accounted under."""

    ledger_id: str
    created: float
    delta: float
    target_epsilon: float | None
    guard_accountant: GuardAccountant
    guard_view: GuardView
    population: int | None
    pld_discretization: float
    rdp_orders: tuple[float, ...]
    meta: Mapping[str, ExtraValue]
    hash: str


@dataclass(frozen=True)
class LedgerEntry:
    """One round: its parameters, status and epsilons (that round alone, and cumulative),
    with client sampling (what users of the model face) and without it (q = 1: the view
    of a server that chose the participants)."""

    line: int
    round: int
    status: Status
    mechanism: str
    noise_location: NoiseLocationName
    params: RoundParams
    epsilon_round: EpsilonPair
    epsilon_cumulative: EpsilonPair
    epsilon_round_unsampled: EpsilonPair
    epsilon_cumulative_unsampled: EpsilonPair
    time: float
    prev: str
    hash: str

    @property
    def counted(self) -> bool:
        """Whether this round's cost is in the cumulative totals."""
        return self.status != "aborted_unreleased"


# --- canonical JSON and hashing ---------------------------------------------------------


def canonical(obj: Mapping[str, Any]) -> str:
    """The one serialisation that is hashed and written."""
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    )


def record_hash(obj: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the record's canonical JSON without its ``hash`` field."""
    body = {k: v for k, v in obj.items() if k != "hash"}
    return hashlib.sha256(canonical(body).encode("ascii")).hexdigest()


def seal(obj: dict[str, Any]) -> str:
    """Add ``hash`` to ``obj`` and return its line (canonical JSON, no newline)."""
    obj["hash"] = record_hash(obj)
    return canonical(obj)


def encode_epsilon(value: float) -> float | str:
    """Finite epsilons as numbers, an infinite one as the string ``"inf"``."""
    return "inf" if math.isinf(value) else float(value)


def _pair_json(pair: EpsilonPair) -> dict[str, float | str]:
    return {"rdp": encode_epsilon(pair.rdp), "pld": encode_epsilon(pair.pld)}


def header_record(
    *,
    ledger_id: str,
    created: float,
    delta: float,
    target_epsilon: float | None,
    guard_accountant: GuardAccountant,
    guard_view: GuardView,
    population: int | None,
    pld_discretization: float,
    rdp_orders: tuple[float, ...],
    meta: Mapping[str, ExtraValue],
) -> dict[str, Any]:
    """The header as a JSON object (without ``hash``)."""
    return {
        "type": "header",
        "version": FORMAT_VERSION,
        "ledger_id": ledger_id,
        "created": created,
        "delta": delta,
        "target_epsilon": target_epsilon,
        "guard": {"accountant": guard_accountant, "view": guard_view},
        "population": population,
        "pld_discretization": pld_discretization,
        "rdp_orders": list(rdp_orders),
        "meta": dict(meta),
        "prev": GENESIS,
    }


def round_record(
    *,
    round_id: int,
    status: Status,
    mechanism: str,
    noise_location: NoiseLocationName,
    params: RoundParams,
    epsilon_round: EpsilonPair,
    epsilon_cumulative: EpsilonPair,
    epsilon_round_unsampled: EpsilonPair,
    epsilon_cumulative_unsampled: EpsilonPair,
    time: float,
    prev: str,
) -> dict[str, Any]:
    """A round as a JSON object (without ``hash``)."""
    return {
        "type": "round",
        "round": round_id,
        "status": status,
        "mechanism": mechanism,
        "noise_location": noise_location,
        "params": {
            "sample_rate": params.sample_rate,
            "noise_multiplier": params.noise_multiplier,
            "steps": params.steps,
            "clip_norm": params.clip_norm,
            "sensitivity": params.sensitivity,
            "extra": dict(params.extra),
        },
        "epsilon": {
            "round": _pair_json(epsilon_round),
            "cumulative": _pair_json(epsilon_cumulative),
            "round_unsampled": _pair_json(epsilon_round_unsampled),
            "cumulative_unsampled": _pair_json(epsilon_cumulative_unsampled),
        },
        "time": time,
        "prev": prev,
    }


# --- parsing and validation -------------------------------------------------------------


def _refuse_constant(name: str) -> float:
    raise FieldError(f"non-standard JSON constant {name}")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise FieldError(f"duplicate key {key!r}")
        out[key] = value
    return out


def parse_line(text: str) -> dict[str, Any]:
    """One line as a JSON object, refusing NaN/Infinity and duplicate keys."""
    if len(text) > MAX_LINE_BYTES:
        raise FieldError(f"line longer than {MAX_LINE_BYTES} characters")
    try:
        obj = json.loads(text, parse_constant=_refuse_constant, object_pairs_hook=_no_duplicates)
    except json.JSONDecodeError as exc:
        raise FieldError(f"not JSON: {exc.msg}") from None
    if not isinstance(obj, dict):
        raise FieldError("a record must be a JSON object")
    return obj


def _keys(obj: Mapping[str, Any], expected: set[str], where: str) -> None:
    got = set(obj)
    if got != expected:
        missing, unknown = sorted(expected - got), sorted(got - expected)
        raise FieldError(f"{where}: missing {missing}, unknown {unknown}")


def _num(value: Any, where: str, *, lo: float = -math.inf, lo_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FieldError(f"{where} must be a number")
    x = float(value)
    if not math.isfinite(x) or x < lo or (lo_open and x == lo):
        raise FieldError(f"{where}={value!r} out of range")
    return x


def _int(value: Any, where: str, *, lo: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise FieldError(f"{where} must be an integer")
    if value < lo:
        raise FieldError(f"{where}={value} must be >= {lo}")
    return value


def _str(value: Any, where: str) -> str:
    if not isinstance(value, str) or len(value) > _MAX_STR:
        raise FieldError(f"{where} must be a string of at most {_MAX_STR} characters")
    return value


def _choice(value: Any, choices: tuple[str, ...], where: str) -> str:
    if value not in choices:
        raise FieldError(f"{where} must be one of {choices}, got {value!r}")
    return str(value)


def _eps(value: Any, where: str) -> float:
    if value == "inf":
        return math.inf
    return _num(value, where, lo=0.0)


def _pair(value: Any, where: str) -> EpsilonPair:
    if not isinstance(value, dict):
        raise FieldError(f"{where} must be an object")
    _keys(value, {"rdp", "pld"}, where)
    return EpsilonPair(_eps(value["rdp"], f"{where}.rdp"), _eps(value["pld"], f"{where}.pld"))


def check_name(value: Any, where: str) -> str:
    """A lower-case identifier (mechanism names, extra and meta keys)."""
    if not isinstance(value, str) or not _NAME.match(value):
        raise FieldError(f"{where} must match [a-z][a-z0-9_]{{0,63}}, got {value!r}")
    return value


def check_extra(value: Any, where: str) -> dict[str, ExtraValue]:
    """A flat mapping of names to finite numbers or short strings."""
    if not isinstance(value, dict):
        raise FieldError(f"{where} must be an object")
    if len(value) > 64:
        raise FieldError(f"{where} has more than 64 keys")
    out: dict[str, ExtraValue] = {}
    for key, item in value.items():
        check_name(key, f"{where} key")
        if isinstance(item, str):
            out[key] = _str(item, f"{where}.{key}")
        elif isinstance(item, int) and not isinstance(item, bool):
            out[key] = item
        else:
            out[key] = _num(item, f"{where}.{key}")
    return out


def _hash_fields(obj: Mapping[str, Any]) -> tuple[str, str]:
    prev, digest = obj.get("prev"), obj.get("hash")
    if not isinstance(prev, str) or not _HEX64.match(prev):
        raise FieldError("prev must be 64 lower-case hex digits")
    if not isinstance(digest, str) or not _HEX64.match(digest):
        raise FieldError("hash must be 64 lower-case hex digits")
    return prev, digest


def header_from_json(obj: Mapping[str, Any]) -> LedgerHeader:
    """Validate and convert the header record."""
    _keys(
        obj,
        {
            "type",
            "version",
            "ledger_id",
            "created",
            "delta",
            "target_epsilon",
            "guard",
            "population",
            "pld_discretization",
            "rdp_orders",
            "meta",
            "prev",
            "hash",
        },
        "header",
    )
    if obj["type"] != "header":
        raise FieldError("line 1 must be the header (type 'header')")
    if obj["version"] != FORMAT_VERSION:
        raise FieldError(f"unsupported ledger version {obj['version']!r}")
    prev, digest = _hash_fields(obj)
    if prev != GENESIS:
        raise FieldError("header prev must be 64 zeros")
    delta = _num(obj["delta"], "delta", lo=0.0, lo_open=True)
    if delta >= 1.0:
        raise FieldError("delta must be < 1")
    target = obj["target_epsilon"]
    target_eps = None if target is None else _num(target, "target_epsilon", lo=0.0, lo_open=True)
    guard = obj["guard"]
    if not isinstance(guard, dict):
        raise FieldError("guard must be an object")
    _keys(guard, {"accountant", "view"}, "guard")
    population = obj["population"]
    orders = obj["rdp_orders"]
    if not isinstance(orders, list) or not (1 <= len(orders) <= 1024):
        raise FieldError("rdp_orders must be a list of 1..1024 numbers")
    return LedgerHeader(
        ledger_id=_str(obj["ledger_id"], "ledger_id"),
        created=_num(obj["created"], "created", lo=0.0),
        delta=delta,
        target_epsilon=target_eps,
        guard_accountant="rdp"
        if _choice(guard["accountant"], ("rdp", "pld"), "guard.accountant") == "rdp"
        else "pld",
        guard_view=_view(guard["view"]),
        population=None if population is None else _int(population, "population", lo=1),
        pld_discretization=_num(
            obj["pld_discretization"], "pld_discretization", lo=0.0, lo_open=True
        ),
        rdp_orders=tuple(_num(a, "rdp_orders[]", lo=1.0, lo_open=True) for a in orders),
        meta=check_extra(obj["meta"], "meta"),
        hash=digest,
    )


def _view(value: Any) -> GuardView:
    for view in GUARD_VIEWS:
        if value == view:
            return view
    raise FieldError(f"guard.view must be one of {GUARD_VIEWS}, got {value!r}")


def _status(value: Any) -> Status:
    for status in STATUSES:
        if value == status:
            return status
    raise FieldError(f"status must be one of {STATUSES}, got {value!r}")


def _location(value: Any) -> NoiseLocationName:
    for location in NOISE_LOCATIONS:
        if value == location:
            return location
    raise FieldError(f"noise_location must be one of {NOISE_LOCATIONS}, got {value!r}")


def entry_from_json(obj: Mapping[str, Any], line: int) -> LedgerEntry:
    """Validate and convert one round record (``line`` is its 1-based line number)."""
    _keys(
        obj,
        {
            "type",
            "round",
            "status",
            "mechanism",
            "noise_location",
            "params",
            "epsilon",
            "time",
            "prev",
            "hash",
        },
        "round record",
    )
    if obj["type"] != "round":
        raise FieldError(f"type must be 'round', got {obj['type']!r}")
    prev, digest = _hash_fields(obj)
    params = obj["params"]
    if not isinstance(params, dict):
        raise FieldError("params must be an object")
    _keys(
        params,
        {"sample_rate", "noise_multiplier", "steps", "clip_norm", "sensitivity", "extra"},
        "params",
    )
    q = _num(params["sample_rate"], "params.sample_rate", lo=0.0, lo_open=True)
    if q > 1.0:
        raise FieldError(f"params.sample_rate={q} must be <= 1")
    eps = obj["epsilon"]
    if not isinstance(eps, dict):
        raise FieldError("epsilon must be an object")
    _keys(eps, {"round", "cumulative", "round_unsampled", "cumulative_unsampled"}, "epsilon")
    return LedgerEntry(
        line=line,
        round=_int(obj["round"], "round"),
        status=_status(obj["status"]),
        mechanism=check_name(obj["mechanism"], "mechanism"),
        noise_location=_location(obj["noise_location"]),
        params=RoundParams(
            sample_rate=q,
            noise_multiplier=_num(
                params["noise_multiplier"], "params.noise_multiplier", lo=0.0, lo_open=True
            ),
            steps=_int(params["steps"], "params.steps"),
            clip_norm=_num(params["clip_norm"], "params.clip_norm", lo=0.0, lo_open=True),
            sensitivity=_num(params["sensitivity"], "params.sensitivity", lo=0.0, lo_open=True),
            extra=check_extra(params["extra"], "params.extra"),
        ),
        epsilon_round=_pair(eps["round"], "epsilon.round"),
        epsilon_cumulative=_pair(eps["cumulative"], "epsilon.cumulative"),
        epsilon_round_unsampled=_pair(eps["round_unsampled"], "epsilon.round_unsampled"),
        epsilon_cumulative_unsampled=_pair(
            eps["cumulative_unsampled"], "epsilon.cumulative_unsampled"
        ),
        time=_num(obj["time"], "time", lo=0.0),
        prev=prev,
        hash=digest,
    )
