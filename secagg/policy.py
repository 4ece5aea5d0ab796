"""A client's security policy: what it accepts, fixed out of band.

Every value a server sends is chosen against the client, the session's parameters
included. So a client does not take its setting, threshold or graph degree from the
server: it holds a :class:`SecurityPolicy`, provisioned with its identity and the
registry, derives the parameters itself (:meth:`SecurityPolicy.derive`) and accepts a
session only when the server's parameters are **exactly** those
(:meth:`SecurityPolicy.check`). "Not weaker" is not a total order (a larger k with the
same t is weaker, a smaller t with the same k too), so nothing else is accepted; a
mismatch raises :class:`PolicyViolationError` before any key or share leaves the client.

The policy names the version of the parameter search, so a client whose code derives
differently refuses instead of disagreeing silently with its peers.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields
from typing import Any

from secagg.context import canonical
from secagg.errors import ConfigError, PolicyViolationError
from secagg.parameters import GRAPHS, PARAMETER_SEARCH_VERSION, SETTINGS, Setting, choose_parameters
from secagg.validation import check_choice, check_fraction, check_int

#: The fields of :class:`~secagg.config.SecAggConfig` a policy fixes. The encoding
#: (bits, clip range, scale, rounding) is the server's choice: it changes precision,
#: never what the server can learn.
SECURITY_FIELDS = (
    "num_clients",
    "threshold",
    "neighbours",
    "setting",
    "tolerated_corrupt",
    "dropout_fraction",
    "sigma",
    "eta",
    "min_summed_fraction",
)
GRAPH_CHOICES = ("auto", *GRAPHS)
_MAX_POLICY_BYTES = 4096


@dataclass(frozen=True)
class SecurityPolicy:
    """What a client accepts. Defaults: the active setting, 10% corrupt and 20% dropout
    clients tolerated, failure bounds 2^-40 (privacy) and 2^-20 (correctness), and any
    sum the server can unmask covering at least a quarter of the population (half, when
    honest-but-curious: there the honest server refuses smaller sums).
    """

    setting: Setting = "active"
    corrupt_fraction: float = 0.1
    dropout_fraction: float = 0.2
    sigma: int = 40
    eta: int = 20
    min_summed_fraction: float | None = None
    graph: str = "auto"
    search_version: int = PARAMETER_SEARCH_VERSION
    pinned: tuple[tuple[str, Any], ...] | None = None

    def __post_init__(self) -> None:
        if self.min_summed_fraction is None:
            from secagg.config import default_min_summed

            object.__setattr__(self, "min_summed_fraction", default_min_summed(self.setting))
        if self.pinned is not None:
            items = self.pinned.items() if isinstance(self.pinned, dict) else self.pinned
            try:
                pairs = tuple(sorted((str(k), v) for k, v in items))
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"pinned parameters must be name/value pairs: {exc}") from exc
            object.__setattr__(self, "pinned", pairs)
            if {k for k, _ in self.pinned} != set(SECURITY_FIELDS):
                raise ConfigError(f"pinned parameters must name exactly {SECURITY_FIELDS}")
        check_choice("setting", self.setting, SETTINGS)
        check_fraction("corrupt_fraction", self.corrupt_fraction)
        check_fraction("dropout_fraction", self.dropout_fraction)
        check_fraction("min_summed_fraction", self.min_summed_fraction)
        check_int("sigma", self.sigma, 1, 256)
        check_int("eta", self.eta, 1, 256)
        check_choice("graph", self.graph, GRAPH_CHOICES)
        check_int("search_version", self.search_version, 1)
        if self.corrupt_fraction + self.dropout_fraction >= 1:
            raise ConfigError("corrupt_fraction + dropout_fraction must be < 1")

    @classmethod
    def fixed(cls, config: Any) -> SecurityPolicy:
        """A policy that pins ``config``'s exact security parameters (for callers that
        chose them by hand; still fixed out of band, still accepted exactly)."""
        pinned = tuple(sorted((f, getattr(config, f)) for f in SECURITY_FIELDS))
        return cls(
            setting=config.setting,
            corrupt_fraction=config.tolerated_corrupt / config.num_clients,
            dropout_fraction=config.dropout_fraction,
            sigma=config.sigma,
            eta=config.eta,
            min_summed_fraction=config.min_summed_fraction,
            graph=config.graph,
            pinned=pinned,
        )

    @classmethod
    def honest_but_curious(cls, **overrides: Any) -> SecurityPolicy:
        """The honest-but-curious policy with the same defaults otherwise."""
        return cls(setting="honest_but_curious", **overrides)

    @property
    def active(self) -> bool:
        """True for the active-server setting."""
        return self.setting == "active"

    @property
    def summed_fraction(self) -> float:
        """``min_summed_fraction`` with its per-setting default resolved."""
        return float(self.min_summed_fraction or 0.0)

    # -- deriving and checking ---------------------------------------------------------

    def derive(self, num_clients: int, **encoding: Any) -> Any:
        """The :class:`~secagg.config.SecAggConfig` this policy fixes for ``num_clients``
        (the registered population in the active setting). ``encoding`` sets the
        non-security fields (bits, clip range, scale, rounding)."""
        from secagg.config import SecAggConfig  # config imports this module

        if self.search_version != PARAMETER_SEARCH_VERSION:
            raise PolicyViolationError(
                f"the policy pins parameter search v{self.search_version}; this client "
                f"implements v{PARAMETER_SEARCH_VERSION}: upgrade or re-provision"
            )
        bad = set(encoding) & set(SECURITY_FIELDS)
        if bad:
            raise ConfigError(f"{sorted(bad)} are fixed by the policy, not by the caller")
        if self.pinned is not None:
            fixed = dict(self.pinned)
            if fixed["num_clients"] != num_clients:
                raise PolicyViolationError(
                    f"the policy pins n={fixed['num_clients']}, the session has {num_clients}"
                )
            return SecAggConfig(**fixed, **encoding)
        p = choose_parameters(
            num_clients,
            corrupt_fraction=self.corrupt_fraction,
            dropout_fraction=self.dropout_fraction,
            sigma=self.sigma,
            eta=self.eta,
            setting=self.setting,
            graph=None if self.graph == "auto" else self.graph,
            min_summed_fraction=self.summed_fraction if self.active else 0.0,
        )
        return SecAggConfig(
            num_clients=num_clients,
            threshold=p.threshold,
            neighbours=None if p.kind == "complete" else p.k,
            setting=self.setting,
            tolerated_corrupt=p.corrupt,
            dropout_fraction=self.dropout_fraction,
            sigma=self.sigma,
            eta=self.eta,
            min_summed_fraction=self.summed_fraction,
            **encoding,
        )

    def check(self, config: Any, num_clients: int | None = None) -> None:
        """Refuse ``config`` unless its security fields are exactly what this policy
        derives (for ``num_clients``, default the config's own n)."""
        n = config.num_clients if num_clients is None else num_clients
        want = self.derive(n)
        diff = [
            f"{f}={getattr(config, f)!r} (policy: {getattr(want, f)!r})"
            for f in SECURITY_FIELDS
            if getattr(config, f) != getattr(want, f)
        ]
        if diff:
            raise PolicyViolationError(
                "the session's parameters are not the ones this client's policy fixes: "
                + "; ".join(diff)
            )

    # -- serialisation -----------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The policy as a plain dict (JSON-ready)."""
        out = asdict(self)
        out["pinned"] = None if self.pinned is None else dict(self.pinned)
        return out

    @classmethod
    def from_dict(cls, raw: object) -> SecurityPolicy:
        """Parse a dict with exactly the policy's fields; :class:`ConfigError` otherwise."""
        names = {f.name for f in fields(cls)}
        if not isinstance(raw, dict) or not set(raw) <= names:
            extra = sorted(set(raw) - names) if isinstance(raw, dict) else raw
            raise ConfigError(
                f"a security policy is a JSON object of {sorted(names)}; got {extra!r}"
            )
        try:
            return cls(**raw)
        except TypeError as exc:
            raise ConfigError(f"security policy does not load: {exc}") from exc

    def to_json(self) -> str:
        """Canonical JSON (sorted keys, no spaces)."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> SecurityPolicy:
        """Parse :meth:`to_json` output (bounded, no nesting accepted)."""
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        if len(text) > _MAX_POLICY_BYTES:
            raise ConfigError("security policy text is too long")
        try:
            raw = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise ConfigError(f"security policy is not JSON: {exc}") from exc
        return cls.from_dict(raw)

    @property
    def digest(self) -> bytes:
        """SHA-256 over the canonical encoding: what registries and signatures bind."""
        return hashlib.sha256(canonical("security-policy", self.to_json())).digest()
