"""The differencing rule, enforced by the honest client in state it persists.

Multi-round differencing (So et al., AAAI 2023): a server that gets two sums whose
contributor sets differ by one client learns that client's update. A guard on the server
is run by the adversary, so the rule lives on the client (:class:`ClientGuard`):

1. **A strictly increasing round counter.** Every contribution is bound to a counter
   above the last one this client accepted; the counter is persisted (atomically) before
   the update leaves the client, so a restart cannot re-open a round.
2. **A participation cap.** At most ``max_per_window`` contributions per ``window_s``
   seconds of wall-clock time, whatever the server's counters say: each contribution
   costs the server a slot, so it cannot probe without bound.
3. **Nearly the same model.** The client keeps a secret sketch of the models it
   contributed for (a count sketch under a key only it holds, so the server cannot
   hide a change from it). A model within ``repeat_distance`` (relative L2) of an earlier
   one is a repeat: it is refused, unless the policy allows repeats with fresh DP noise,
   which the client adds itself (Gaussian, std ``repeat_noise_multiplier`` x clip, from
   the OS CSPRNG) after charging it to its own ledger. A model hash alone would be
   bypassed by M + epsilon (:class:`ModelHashGuard`, the weakened control).

Also: distances are relative to max(|M|, ``scale_floor``) so near-zero pairs are
repeats; a record is sketched by array name and by position, so a reordered, renamed or
zero-padded record is the same model; non-finite models are refused; noised repeats are
capped per model and by the client ledger's budget.

What it does not protect: two models far apart still give two sums; their difference is
the victim's update plus every other client's change of update between the models, and
a model moved along a symmetry (a feature nobody uses, permuted hidden units) changes no
update at all, so the difference is the victim's update exactly. The cap bounds how often
that can be tried; only DP noise on every contribution bounds what each try reveals.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from protocols.errors import ProtocolLayerError
from secagg.validation import is_int

FloatVector = npt.NDArray[np.float64]
SKETCH_BUCKETS = 256
_STATE_VERSION = 1


class ContributionRefusedError(ProtocolLayerError):
    """The client refuses to contribute: a counter not above its last, a cap reached, or
    a model (nearly) the same as one it already contributed for, without fresh noise."""


@dataclass(frozen=True)
class ContributionPolicy:
    """What a client allows (provisioned with it, like its security policy).

    ``repeat_noise_multiplier`` 0 refuses every repeat; above 0 a repeat is allowed
    with Gaussian noise of std z * ``clip_norm`` added and charged by the client.
    ``allow_repeats`` (the honest-but-curious nodes' default, :meth:`honest_but_curious`)
    lets repeats through unnoised: a server that follows the protocol re-runs a model
    only after an abort that released nothing. The counter and the cap still hold.
    """

    max_per_window: int = 100
    window_s: float = 86_400.0
    repeat_distance: float = 1e-2
    #: absolute floor of the distance scale: near a zero model, ``repeat_distance`` times
    #: this (not times the model's own tiny norm) is what counts as the same model
    scale_floor: float = 1.0
    repeat_noise_multiplier: float = 0.0
    #: noised repeats allowed per model, and the client ledger's epsilon budget for them
    max_repeats_per_model: int = 1
    repeat_epsilon_budget: float = 10.0
    clip_norm: float = 1.0
    history: int = 1024
    allow_repeats: bool = False

    @classmethod
    def honest_but_curious(cls) -> ContributionPolicy:
        """The default where the server follows the protocol by assumption."""
        return cls(allow_repeats=True)

    def __post_init__(self) -> None:
        if not (is_int(self.max_per_window) and self.max_per_window >= 1):
            raise ContributionRefusedError("max_per_window must be an int >= 1")
        for name in (
            "window_s",
            "repeat_distance",
            "scale_floor",
            "clip_norm",
            "repeat_epsilon_budget",
        ):
            if not (_is_number(getattr(self, name)) and getattr(self, name) > 0):
                raise ContributionRefusedError(f"{name} must be a finite number > 0")
        if not (_is_number(self.repeat_noise_multiplier) and self.repeat_noise_multiplier >= 0):
            raise ContributionRefusedError("repeat_noise_multiplier must be >= 0")
        if not (is_int(self.max_repeats_per_model) and self.max_repeats_per_model >= 0):
            raise ContributionRefusedError("max_repeats_per_model must be an int >= 0")
        if not isinstance(self.allow_repeats, bool):
            raise ContributionRefusedError("allow_repeats must be true or false")
        if not (is_int(self.history) and self.history >= 1):
            raise ContributionRefusedError("history must be an int >= 1")
        if self.history < self.max_per_window:
            raise ContributionRefusedError(
                "history must be at least max_per_window: a model must not leave the "
                "history while its window is open"
            )


def _is_number(v: object) -> bool:
    """A finite int or float that is not a bool."""
    return (is_int(v) or isinstance(v, float)) and math.isfinite(v)  # type: ignore[arg-type]


def load_policy(text: str) -> ContributionPolicy:
    """A :class:`ContributionPolicy` from JSON (its field names); unknown keys refused."""
    try:
        raw = json.loads(text)
        if not isinstance(raw, dict):
            raise TypeError("not an object")
        return ContributionPolicy(**raw)
    except (ValueError, TypeError) as exc:
        raise ContributionRefusedError(f"contribution policy does not load: {exc}") from exc


@dataclass(frozen=True)
class Admission:
    """An accepted contribution: ``noise_std`` > 0 when it repeats an earlier model
    (``repeat_of``: that contribution's counter) and must carry fresh noise."""

    counter: int
    noise_std: float = 0.0
    repeat_of: int | None = None


@dataclass
class _State:
    key: bytes
    last_counter: int = -1
    times: list[float] = field(default_factory=list)
    sketches: list[tuple[int, list[float], str]] = field(default_factory=list)
    repeats: dict[int, int] = field(default_factory=dict)  # first counter -> noised repeats

    def to_json(self) -> str:
        return json.dumps(
            {
                "version": _STATE_VERSION,
                "key": self.key.hex(),
                "last_counter": self.last_counter,
                "times": self.times,
                "sketches": [[c, s, sig] for c, s, sig in self.sketches],
                "repeats": {str(c): k for c, k in self.repeats.items()},
            }
        )

    @classmethod
    def from_json(cls, text: str) -> _State:
        try:
            raw = json.loads(text)
            if raw.get("version") != _STATE_VERSION:
                raise ValueError("unknown version")
            key = bytes.fromhex(raw["key"])
            last = raw["last_counter"]
            if len(key) != 32 or not is_int(last):
                raise ValueError("bad key or counter")
            times = [float(t) for t in raw["times"]]
            sketches = [(int(c), [float(v) for v in s], str(g)) for c, s, g in raw["sketches"]]
            if any(len(s) != SKETCH_BUCKETS for _, s, _ in sketches):
                raise ValueError("bad sketch size")
            repeats = {int(c): int(k) for c, k in raw["repeats"].items()}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ContributionRefusedError(f"contribution state does not load: {exc}") from exc
        return cls(key, last, times, sketches, repeats)


def model_sketch(key: bytes, model: object) -> FloatVector:
    """A count sketch of ``model`` under ``key``: each coordinate goes to a bucket with a
    sign, both derived from the key, so ||sketch(a) - sketch(b)|| estimates ||a - b||
    (relative error about 1/sqrt(buckets)) and no one without the key can choose a
    change the sketch does not see. ``model`` is one array or a mapping of named arrays;
    each name gets its own buckets, so reordering the arrays or adding zero ones leaves
    the sketch unchanged."""
    arrays = model.items() if isinstance(model, Mapping) else [("", model)]
    out = np.zeros(SKETCH_BUCKETS)
    for name, values in arrays:
        vec = np.asarray(values, dtype=np.float64).reshape(-1)
        label = b"secagg/client-guard/sketch" + key + str(name).encode()
        rng = np.random.default_rng(int.from_bytes(hashlib.sha256(label).digest()[:16]))
        for lo in range(0, vec.size, 1 << 20):  # bounded memory for large models
            part = vec[lo : lo + (1 << 20)]
            buckets = rng.integers(0, SKETCH_BUCKETS, size=part.size, dtype=np.uint16)
            signs = rng.integers(0, 2, size=part.size, dtype=np.int8) * 2 - 1
            out += np.bincount(buckets, weights=signs * part, minlength=SKETCH_BUCKETS)
    return out


def _views(model: object) -> list[object]:
    """The ways a record can be read: by array name and, for a mapping, by position, so
    neither renaming the arrays (a loader by position) nor reordering them (a loader by
    name) makes the same model look new."""
    if not isinstance(model, Mapping):
        return [model]
    return [model, {f"#{i}": v for i, v in enumerate(model.values())}]


def model_signature(model: object) -> str:
    """The shapes a repeat must share: the sorted (name, shape) of the arrays that are
    not all zero, so a reordered record or one padded with zero arrays keeps it; of all
    arrays when every one is zero (zero-initialised models of different tasks differ).
    Stated limit: padding an all-zero model changes it."""
    arrays = sorted(model.items()) if isinstance(model, Mapping) else [("", model)]
    shapes = [(str(k), np.asarray(v).shape) for k, v in arrays]
    live = [(k, sh) for (k, sh), (_, v) in zip(shapes, arrays, strict=True) if np.any(v)]
    return hashlib.sha256(repr(live or shapes).encode()).hexdigest()


class ClientGuard:
    """One client's persisted differencing rule (see the module docs).

    ``path``: where the state lives (JSON, replaced atomically; ``None`` keeps it in
    memory, or in ``state``, a saved :meth:`to_json`, for callers that store it
    elsewhere). ``ledger``: the client's own :class:`dp.PrivacyLedger`, charged for
    every repeat's fresh noise before the noise is added.
    """

    def __init__(
        self,
        policy: ContributionPolicy | None = None,
        *,
        path: str | os.PathLike[str] | None = None,
        ledger: Any = None,
        clock: Any = time.time,
        state: str | None = None,
    ) -> None:
        self.policy = policy or ContributionPolicy()
        self.path = Path(path) if path is not None else None
        self.ledger = ledger
        self._clock = clock
        if self.path is not None and self.path.exists():
            self._state = _State.from_json(self.path.read_text())
        elif state is not None:
            self._state = _State.from_json(state)
        else:
            self._state = _State(secrets.token_bytes(32))
            self._save()

    @property
    def last_counter(self) -> int:
        """The last round counter this client contributed at (-1: none)."""
        return self._state.last_counter

    def admit(self, counter: int, model: object) -> Admission:
        """Decide on a contribution at ``counter`` for ``model`` (one array, or a mapping
        of array names to arrays as a model record holds them); records it (durably)
        when accepted. Raises :class:`ContributionRefusedError`."""
        if not is_int(counter) or counter < 0:
            raise ContributionRefusedError(f"round counter must be an int >= 0, got {counter!r}")
        parts = model.values() if isinstance(model, Mapping) else [model]
        if not all(np.all(np.isfinite(np.asarray(p, dtype=np.float64))) for p in parts):
            raise ContributionRefusedError("the model is not finite")
        st, pol = self._state, self.policy
        if counter <= st.last_counter:
            raise ContributionRefusedError(
                f"round counter {counter} is not above the last contribution's ({st.last_counter})"
            )
        now = float(self._clock())
        recent = [t for t in st.times if now - t < pol.window_s]
        if len(recent) >= pol.max_per_window:
            raise ContributionRefusedError(
                f"{pol.max_per_window} contributions in the last {pol.window_s:g} s: the cap"
            )
        seen = [(model_sketch(st.key, v), model_signature(v)) for v in _views(model)]
        repeat_of = next(
            (c for c in (self._nearest_repeat(k, g) for k, g in seen) if c is not None), None
        )
        noise_std = 0.0
        if repeat_of is not None and not pol.allow_repeats:
            if pol.repeat_noise_multiplier <= 0:
                raise ContributionRefusedError(
                    f"this model is within {pol.repeat_distance:g} of the one contributed "
                    f"for at counter {repeat_of}; a repeat needs fresh DP noise"
                )
            if st.repeats.get(repeat_of, 0) >= pol.max_repeats_per_model:
                raise ContributionRefusedError(
                    f"the model of counter {repeat_of} was repeated "
                    f"{pol.max_repeats_per_model} times already"
                )
            noise_std = pol.repeat_noise_multiplier * pol.clip_norm
            self._charge(counter)
            st.repeats[repeat_of] = st.repeats.get(repeat_of, 0) + 1
        st.last_counter = counter
        st.times = [*recent, now]
        if repeat_of is None:  # a repeat is counted against the model it repeats
            new = [(counter, k.tolist(), g) for k, g in seen]
            st.sketches = [*st.sketches, *new][-pol.history * len(new) :]
            kept = {c for c, _, _ in st.sketches}
            st.repeats = {c: k for c, k in st.repeats.items() if c in kept}
        self._save()
        return Admission(counter, noise_std, repeat_of)

    def to_json(self) -> str:
        """The state, for callers that keep it themselves (``state=`` loads it)."""
        return self._state.to_json()

    def prepare(self, update: object, admission: Admission) -> FloatVector:
        """The update to send: L2-clipped to the policy's clip, plus the fresh noise an
        admitted repeat needs (secure Gaussian, :func:`dp.secure_noise.add_secure_gaussian`,
        from the OS CSPRNG; its std is z x clip, the sensitivity the client charged)."""
        from dp.mechanisms import clip_l2
        from dp.secure_noise import add_secure_gaussian

        vec, _ = clip_l2(update, self.policy.clip_norm)
        if admission.noise_std > 0:
            return add_secure_gaussian(vec, admission.noise_std)
        return vec

    def _nearest_repeat(self, sketch: FloatVector, sig: str) -> int | None:
        scale = max(float(np.linalg.norm(sketch)), self.policy.scale_floor)
        for c, old, old_sig in reversed(self._state.sketches):
            if old_sig != sig:
                continue  # another model shape: another task
            dist = float(np.linalg.norm(sketch - np.asarray(old)))
            if dist <= self.policy.repeat_distance * max(scale, float(np.linalg.norm(old))):
                return c
        return None

    def _charge(self, counter: int) -> None:
        if self.ledger is None:
            raise ContributionRefusedError("a repeat with fresh noise needs the client's ledger")
        from dp.ledger import round_cost

        cost = round_cost(
            mechanism="client_repeat_gaussian",
            noise_location="local",
            sample_rate=1.0,
            noise_multiplier=self.policy.repeat_noise_multiplier,
            steps=1,
            clip_norm=self.policy.clip_norm,
        )
        from dp.errors import DPError

        rid = 0 if self.ledger.last_round is None else self.ledger.last_round + 1
        try:
            self.ledger.commit(self.ledger.begin_round(rid, cost))
        except DPError as exc:  # over the client's budget, or a broken ledger
            raise ContributionRefusedError(f"the client's ledger refuses: {exc}") from exc

    def _save(self) -> None:
        if self.path is None:
            return
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        tmp.write_text(self._state.to_json())
        os.replace(tmp, self.path)


class ModelHashGuard:
    """The weakened control: refuses a second contribution for the same model *hash*
    only, so the server's M + epsilon bypasses it (what a per-hash rule gives)."""

    def __init__(self) -> None:
        self._seen: set[bytes] = set()

    def admit(self, counter: int, model: object) -> Admission:
        """Refuse an exact repeat of a model's bytes; accept anything else."""
        h = hashlib.sha256(np.asarray(model, dtype=np.float64).tobytes()).digest()
        if h in self._seen:
            raise ContributionRefusedError("same model hash")
        self._seen.add(h)
        return Admission(counter)

    def prepare(self, update: object, admission: Admission) -> FloatVector:
        """The update, L2-clipped to 1 (the same clip as the guarded client's default)."""
        from dp.mechanisms import clip_l2

        return clip_l2(update, 1.0)[0]
