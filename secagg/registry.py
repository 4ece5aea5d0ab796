"""The sealed registry and each client's identity: trust fixed before any session.

In the active setting a client trusts nothing the server says about who exists. What it
trusts is provisioned out of band, once:

* a :class:`Registry`, public: every client's index, its Ed25519 identity key (signs
  what must convince third parties: advertisements and share commitments) and its static
  X25519 attestation key (pairwise MAC keys for the O(k) evidence of
  :mod:`secagg.attestation`), the :class:`~secagg.policy.SecurityPolicy` all clients
  share, and the **graph seed**, drawn by the provisioner *after* the list is sealed.
  Its :attr:`Registry.digest` goes into every signed and MAC'd payload;
* an :class:`Identity`, secret, on the client's device: its index and private keys.

The SecAgg+ graph is built from the registered population and the provisioned seed
(:meth:`Registry.ring`), so neither which clients advertise nor any session id or round
index the server picks can re-draw it. The seed is fixed after the registry is sealed,
so a corrupt client cannot grind its keys to choose its place (it could, were the seed a
hash of the keys); and it is drawn before the adversary corrupts anyone (static
corruption: the threat model's assumption).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from secagg import crypto
from secagg.context import canonical
from secagg.errors import KeyFormatError, RegistryError
from secagg.graph import Graph
from secagg.policy import SecurityPolicy
from secagg.validation import check_bytes, check_int

REGISTRY_VERSION = 1
SEED_BYTES = 32
MAX_REGISTERED = 1 << 20
_KEY_LABEL = "attestation-key"


@dataclass(frozen=True)
class Member:
    """One registered client: its index and its two public keys."""

    index: int
    identity: bytes  # Ed25519 verification key
    attestation: bytes  # static X25519 public key

    def __post_init__(self) -> None:
        check_int("member index", self.index, 0, MAX_REGISTERED - 1, RegistryError)
        check_bytes("identity key", self.identity, crypto.PUBLIC_KEY_BYTES, error=RegistryError)
        check_bytes(
            "attestation key", self.attestation, crypto.PUBLIC_KEY_BYTES, error=RegistryError
        )


@dataclass(frozen=True)
class Registry:
    """The sealed list of clients, their shared policy and the graph seed."""

    policy: SecurityPolicy
    graph_seed: bytes
    members: tuple[Member, ...]
    digest: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.policy, SecurityPolicy):
            raise RegistryError("a registry needs a SecurityPolicy")
        check_bytes("graph seed", self.graph_seed, SEED_BYTES, error=RegistryError)
        if not 3 <= len(self.members) <= MAX_REGISTERED:
            raise RegistryError(f"a registry lists 3..{MAX_REGISTERED} clients")
        if [m.index for m in self.members] != list(range(len(self.members))):
            raise RegistryError("registered indices must be 0..n-1, in order")
        keys = [m.identity for m in self.members] + [m.attestation for m in self.members]
        if len(set(keys)) != len(keys):
            raise RegistryError("two registered keys are equal")
        object.__setattr__(self, "digest", self._digest())

    def _digest(self) -> bytes:
        fields_: list[bytes | int | str] = [REGISTRY_VERSION, self.policy.digest, self.graph_seed]
        fields_.append(len(self.members))
        for m in self.members:
            fields_ += [m.index, m.identity, m.attestation]
        return hashlib.sha256(canonical("registry", *fields_)).digest()

    @classmethod
    def seal(
        cls, policy: SecurityPolicy, members: Iterable[Member], *, seed: bytes | None = None
    ) -> Registry:
        """Seal ``members``: the graph seed is drawn now, after the list is fixed."""
        return cls(policy, os.urandom(SEED_BYTES) if seed is None else seed, tuple(members))

    @property
    def size(self) -> int:
        """n, the registered population."""
        return len(self.members)

    def identity_key(self, index: int) -> bytes:
        """Client ``index``'s Ed25519 verification key."""
        return self.members[
            check_int("client index", index, 0, self.size - 1, RegistryError)
        ].identity

    def attestation_key(self, index: int) -> bytes:
        """Client ``index``'s static X25519 public key."""
        return self.members[
            check_int("client index", index, 0, self.size - 1, RegistryError)
        ].attestation

    def identities(self) -> dict[int, bytes]:
        """Index -> Ed25519 verification key, for every client."""
        return {m.index: m.identity for m in self.members}

    def ring(self, k: int | None) -> Graph:
        """The neighbour graph of degree ``k`` over the registered population."""
        return Graph.build(self.size, k, self.graph_seed)

    # -- files ---------------------------------------------------------------------------

    def to_json(self) -> str:
        """The public registry file (canonical JSON)."""
        body = {
            "version": REGISTRY_VERSION,
            "policy": self.policy.to_dict(),
            "graph_seed": self.graph_seed.hex(),
            "members": [
                {"index": m.index, "identity": m.identity.hex(), "attestation": m.attestation.hex()}
                for m in self.members
            ],
        }
        return json.dumps(body, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Registry:
        """Parse and validate a registry file; :class:`RegistryError` if it is bad."""
        try:
            raw = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise RegistryError(f"registry is not JSON: {exc}") from exc
        if not isinstance(raw, dict) or set(raw) != {"version", "policy", "graph_seed", "members"}:
            raise RegistryError("registry must hold version, policy, graph_seed and members")
        if raw["version"] != REGISTRY_VERSION:
            raise RegistryError(f"unsupported registry version {raw['version']!r}")
        members = raw["members"]
        if not isinstance(members, list) or len(members) > MAX_REGISTERED:
            raise RegistryError("registry members must be a list")
        try:
            return cls(
                SecurityPolicy.from_dict(raw["policy"]),
                _hex(raw["graph_seed"], "graph seed"),
                tuple(_member(m) for m in members),
            )
        except RegistryError:
            raise
        except (ValueError, TypeError) as exc:
            raise RegistryError(f"registry does not load: {exc}") from exc

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the registry file."""
        p = Path(path)
        p.write_text(self.to_json())
        return p

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Registry:
        """Read a registry file."""
        try:
            return cls.from_json(Path(path).read_text())
        except OSError as exc:
            raise RegistryError(f"cannot read registry {path}: {exc}") from exc


def _hex(v: object, what: str) -> bytes:
    if not isinstance(v, str):
        raise RegistryError(f"{what} must be a hex string")
    try:
        return bytes.fromhex(v)
    except ValueError as exc:
        raise RegistryError(f"{what} is not hex") from exc


def _member(raw: object) -> Member:
    if not isinstance(raw, dict) or set(raw) != {"index", "identity", "attestation"}:
        raise RegistryError("a registry member holds index, identity and attestation")
    return Member(
        raw["index"], _hex(raw["identity"], "identity"), _hex(raw["attestation"], "attestation")
    )


# --- identities ------------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class Identity:
    """A client's secret provisioning: its index and its two private keys."""

    index: int
    signing: crypto.SigningKey
    attestation: crypto.AgreementKeyPair

    @classmethod
    def generate(cls, index: int) -> Identity:
        """Fresh keys from the OS CSPRNG."""
        return cls(index, crypto.SigningKey.generate(), crypto.AgreementKeyPair.generate())

    @property
    def member(self) -> Member:
        """The public half, as the registry lists it."""
        return Member(self.index, self.signing.public_bytes, self.attestation.public_bytes)

    def check(self, registry: Registry) -> None:
        """Refuse a registry that does not list exactly this identity at its index."""
        if not 0 <= self.index < registry.size or registry.members[self.index] != self.member:
            raise RegistryError(f"the registry does not list this identity as client {self.index}")

    def __repr__(self) -> str:
        return f"Identity(index={self.index})"

    def to_json(self) -> str:
        """The secret identity file."""
        return json.dumps(
            {
                "index": self.index,
                "signing": self.signing.private_bytes().hex(),
                "attestation": self.attestation.private_bytes().hex(),
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> Identity:
        """Parse an identity file; :class:`RegistryError` if it is bad."""
        try:
            raw = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise RegistryError(f"identity file is not JSON: {exc}") from exc
        if not isinstance(raw, dict) or set(raw) != {"index", "signing", "attestation"}:
            raise RegistryError("an identity file holds index, signing and attestation")
        try:
            return cls(
                check_int("identity index", raw["index"], 0, MAX_REGISTERED - 1, RegistryError),
                crypto.SigningKey.from_private_bytes(_hex(raw["signing"], "signing key")),
                crypto.AgreementKeyPair.from_private_bytes(
                    _hex(raw["attestation"], "attestation key")
                ),
            )
        except KeyFormatError as exc:
            raise RegistryError(f"identity file holds a bad key: {exc}") from exc

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the identity file with mode 0600 (it is secret)."""
        p = Path(path)
        p.touch(mode=0o600)
        p.chmod(0o600)
        p.write_text(self.to_json())
        return p

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Identity:
        """Read an identity file."""
        try:
            return cls.from_json(Path(path).read_text())
        except OSError as exc:
            raise RegistryError(f"cannot read identity {path}: {exc}") from exc


def provision(
    num_clients: int, policy: SecurityPolicy | None = None, *, seed: bytes | None = None
) -> tuple[list[Identity], Registry]:
    """Make ``num_clients`` identities and seal their registry (a trusted provisioner:
    it generates the keys here; a deployment would collect public keys instead)."""
    ids = [Identity.generate(i) for i in range(num_clients)]
    return ids, Registry.seal(policy or SecurityPolicy(), [i.member for i in ids], seed=seed)


def provision_files(
    directory: str | os.PathLike[str], num_clients: int, policy: SecurityPolicy | None = None
) -> tuple[list[Path], Path]:
    """:func:`provision` into ``directory``: ``identity-<i>.json`` (secret, 0600, for
    client i's device) and ``registry.json`` (public, for every client and the server)."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    ids, registry = provision(num_clients, policy)
    files = [i.save(d / f"identity-{i.index}.json") for i in ids]
    return files, registry.save(d / "registry.json")


# --- pairwise attestation keys -----------------------------------------------------------


class Keyring:
    """Pairwise MAC keys between this client and its peers, bound to the registry.

    ``key(peer)`` = HKDF(X25519(my static key, peer's registered static key), registry,
    both indices): symmetric, so both ends derive it. Derived on first use and cached;
    a client needs those of the O(k) peers within ring distance k (2k agreements once
    per registry, about 40 us each).
    """

    def __init__(self, identity: Identity, registry: Registry) -> None:
        identity.check(registry)
        self.index = identity.index
        self.registry = registry
        self._static = identity.attestation
        self._cache: dict[int, bytes] = {}

    def key(self, peer: int) -> bytes:
        """The MAC key shared with ``peer``."""
        k = self._cache.get(peer)
        if k is None:
            if peer == self.index:
                raise KeyFormatError("no MAC key with oneself")
            secret = self._static.exchange(self.registry.attestation_key(peer))
            k = self._cache[peer] = pairwise_mac_key(secret, self.registry.digest, self.index, peer)
        return k


class DealtKeyring:
    """Simulation only: the same pairwise keys dealt from one master secret.

    Simulating n clients in one process would pay n * 2k static agreements up front
    (150 s at n = 10^4); a dealer that derives every pair's key from one secret gives the
    protocol the same symmetric keys at HMAC cost. Whoever holds the master secret can
    forge every attestation, so this never leaves a simulation.
    """

    def __init__(self, master: bytes, registry: Registry, index: int) -> None:
        self.index = index
        self.registry = registry
        self._master = check_bytes("dealer master secret", master, 32)
        self._label = canonical(_KEY_LABEL, registry.digest)
        self._cache: dict[int, bytes] = {}

    def key(self, peer: int) -> bytes:
        """The MAC key shared with ``peer``."""
        k = self._cache.get(peer)
        if k is None:
            if peer == self.index:
                raise KeyFormatError("no MAC key with oneself")
            a, b = sorted((self.index, peer))
            # one HMAC per pair, bound to the registry (the real keyring's HKDF binding)
            k = self._cache[peer] = hmac.digest(
                self._master,
                self._label + a.to_bytes(4, "big") + b.to_bytes(4, "big"),
                "sha256",
            )
        return k


def pairwise_mac_key(secret: bytes, registry_digest: bytes, u: int, v: int) -> bytes:
    """HKDF of a pairwise secret, bound to the registry and the (unordered) pair."""
    a, b = sorted((u, v))
    return crypto.hkdf(secret, canonical(_KEY_LABEL, registry_digest, a, b))


def keyrings(
    identities: Mapping[int, Identity], registry: Registry, *, dealt: bytes | None = None
) -> dict[int, Any]:
    """A keyring per identity: real (X25519) ones, or dealt ones from ``dealt``."""
    if dealt is None:
        return {i: Keyring(ident, registry) for i, ident in identities.items()}
    return {i: DealtKeyring(dealt, registry, i) for i in identities}


@dataclass(frozen=True, repr=False)
class Trust:
    """Everything a client of the active setting holds out of band: its identity, the
    sealed registry (with the policy and graph seed) and its pairwise MAC keys."""

    identity: Identity
    registry: Registry
    keyring: Keyring | DealtKeyring

    @classmethod
    def of(
        cls, identity: Identity, registry: Registry, keyring: Keyring | DealtKeyring | None = None
    ) -> Trust:
        """Check that ``registry`` lists ``identity``; derive a real keyring by default."""
        identity.check(registry)
        return cls(
            identity, registry, keyring if keyring is not None else Keyring(identity, registry)
        )

    @property
    def index(self) -> int:
        """This client's registered index."""
        return self.identity.index

    def __repr__(self) -> str:
        return f"Trust(index={self.index}, registry={self.registry.digest.hex()[:16]}...)"
