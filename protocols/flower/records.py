"""What the client mod and the server workflow put into Flower messages, and helpers
both sides must compute identically (the model hash, the prepared input vector).

Server -> client, every exchange: a ConfigRecord ``"secagg"`` holding the pipeline
bundle (bytes) and the public round parameters; in a TRAIN exchange, for the clients
that train, also the model as an ArrayRecord ``"arrays"`` (float32) and a ConfigRecord
``"config"`` with ``server-round``. Client -> server: a ConfigRecord ``"secagg"`` holding
the reply bundle, nothing else: no plaintext update, no example count, no metrics.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from secagg import crypto
from secagg.errors import ConfigError, RegistryError
from secagg.policy import SecurityPolicy
from secagg.registry import Identity, Registry, Trust, provision_files

SECAGG_KEY = "secagg"  # the ConfigRecord our messages carry
STATE_KEY = "secagg-state"  # the ConfigRecord in the node's context.state
ARRAYS_KEY = "arrays"
CONFIG_KEY = "config"
WEIGHTINGS = ("uniform", "examples")

# node_config keys (provisioning of the active setting)
IDENTITY_FILE = "secagg-identity"
REGISTRY_FILE = "secagg-registry"


def model_hash(arrays: Sequence[npt.NDArray[Any]]) -> bytes:
    """SHA-256 over every array's shape and float32 bytes: what clients sign as the
    model they received (active setting), so different models are detected."""
    h = hashlib.sha256(b"secagg/flower-model/v1")
    for a in arrays:
        a32 = np.ascontiguousarray(a, dtype=np.float32)
        h.update(repr(tuple(a32.shape)).encode() + b"\0" + a32.tobytes())
    return h.digest()


def flatten(arrays: Sequence[npt.NDArray[Any]]) -> npt.NDArray[np.float64]:
    """All arrays as one float64 vector."""
    if not arrays:
        return np.zeros(0)
    return np.concatenate([np.asarray(a, dtype=np.float64).ravel() for a in arrays])


def unflatten(
    vector: npt.NDArray[Any], like: Sequence[npt.NDArray[Any]]
) -> list[npt.NDArray[np.float32]]:
    """Split a flat vector back into float32 arrays shaped like ``like``."""
    out, i = [], 0
    for a in like:
        n = int(np.prod(a.shape))
        out.append(np.asarray(vector[i : i + n], dtype=np.float32).reshape(a.shape))
        i += n
    if i != vector.shape[0]:
        raise ValueError(f"vector has {vector.shape[0]} elements, the model {i}")
    return out


def input_dimension(arrays: Sequence[npt.NDArray[Any]], *, weighted: bool = True) -> int:
    """Length of the securely summed vector: every parameter, plus the weight element
    unless DP-FedAvg (fixed denominator) is on."""
    return int(sum(int(np.prod(a.shape)) for a in arrays)) + (1 if weighted else 0)


def prepare_input(
    new: Sequence[npt.NDArray[Any]],
    old: Sequence[npt.NDArray[Any]],
    *,
    clip: float,
    weighting: str,
    max_weight: float,
    num_examples: float | None,
    l2_clip: float | None = None,
) -> npt.NDArray[np.float64]:
    """The vector a client masks: (w * clip(new - old), w), with w in (0, 1].

    With ``l2_clip`` (DP-FedAvg) the update is scaled to L2 norm at most ``l2_clip`` and
    sent without a weight: the server divides by a fixed public denominator.

    ``weighting="examples"`` uses w = min(num_examples, max_weight) / max_weight (a
    public cap); the server divides the sum by its last element, the survivors' total
    weight, and never sees a single client's count.
    """
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting {weighting!r}; use one of {WEIGHTINGS}")
    update = flatten(new) - flatten(old)
    if not np.all(np.isfinite(update)):
        raise ValueError("the local update is not finite")
    if l2_clip is not None:
        if not l2_clip > 0:
            raise ValueError("l2_clip must be > 0")
        norm = float(np.linalg.norm(update))
        return update * (l2_clip / norm) if norm > l2_clip else update
    w = 1.0
    if weighting == "examples":
        if num_examples is None or not num_examples > 0 or not max_weight > 0:
            raise ValueError("weighting='examples' needs num-examples > 0 and max-weight > 0")
        w = min(float(num_examples), float(max_weight)) / float(max_weight)
    return np.append(w * np.clip(update, -clip, clip), w)


# -- provisioning of the active setting -----------------------------------------------

POLICY_FILE = "secagg-policy"  # honest-but-curious nodes: a policy file (optional)
STATE_DIR = "secagg-state-dir"  # where a node keeps its durable records (optional)
CONTRIBUTION_POLICY_FILE = "secagg-contribution-policy"  # the differencing rule (optional)
CLIENT_LEDGER_FILE = "secagg-client-ledger"  # charges for repeats with fresh noise


def provision_identities(
    directory: str | Path, num_clients: int, policy: SecurityPolicy | None = None
) -> tuple[list[Path], Path]:
    """Write one identity file per client and the sealed registry (with ``policy``,
    default the active one, and a freshly drawn graph seed).

    Returns (identity file of each client index, registry file). The identity files are
    secret (mode 0600) and belong on the client's machine; the registry is public and
    must reach every client and the server out of band: it fixes the parameters every
    client accepts and the graph, and is what stops a server from simulating clients.
    """
    return provision_files(directory, num_clients, policy)


def load_registry(path: str | Path) -> dict[int, bytes]:
    """Client index -> Ed25519 identity key, from a sealed registry file."""
    try:
        return Registry.load(path).identities()
    except RegistryError as exc:
        raise ValueError(str(exc)) from exc


def load_identity(path: str | Path) -> tuple[int, crypto.SigningKey]:
    """(client index, signing key) from an identity file."""
    try:
        ident = Identity.load(path)
    except RegistryError as exc:
        raise ValueError(str(exc)) from exc
    return ident.index, ident.signing


def node_trust(node_config: Mapping[str, Any]) -> Trust | None:
    """The :class:`~secagg.registry.Trust` a SuperNode was provisioned with, or None when
    it has no identity (honest-but-curious)."""
    ident = node_config.get(IDENTITY_FILE)
    reg = node_config.get(REGISTRY_FILE)
    if not ident or not reg:
        return None
    try:
        return Trust.of(Identity.load(str(ident)), Registry.load(str(reg)))
    except RegistryError as exc:
        raise ValueError(str(exc)) from exc


def node_policy(node_config: Mapping[str, Any]) -> SecurityPolicy:
    """An honest-but-curious node's policy: its policy file, or the default one."""
    path = node_config.get(POLICY_FILE)
    if not path:
        return SecurityPolicy.honest_but_curious()
    try:
        return SecurityPolicy.from_json(Path(str(path)).read_text())
    except (OSError, ConfigError) as exc:
        raise ValueError(f"policy file {path}: {exc}") from exc


def node_identity(
    node_config: Mapping[str, Any],
) -> tuple[int | None, crypto.SigningKey | None, dict[int, bytes] | None]:
    """(index, signing key, registry identities) from a SuperNode's node_config, or Nones."""
    trust = node_trust(node_config)
    if trust is None:
        return None, None, None
    return trust.index, trust.identity.signing, trust.registry.identities()
