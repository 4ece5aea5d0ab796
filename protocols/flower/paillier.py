"""Paillier on Flower: the client mod and the server workflow for ``secagg.paillier``.

Roles: ordinary SuperNodes are Paillier *clients* (each provisioned with an Ed25519
identity and the public registry); ONE designated SuperNode is the *key holder*,
provisioned out of band with the private key file; the ServerApp is the *aggregator* and
holds only public files. The aggregator and the key holder must not collude (see
threat_models/paillier.md). Provisioning: :func:`provision_paillier`.

Exchanges (each one ``grid.send_and_receive``; message type ``"train"``):

* once per session, *hello* to every node: the server's random session id and the key
  id; clients answer with their registry index, the key holder with an Ed25519
  signature over (session id, key id) under its provisioned key. Every node pins the
  session id in its ``context.state``;
* per round, exchange 1 (*contribute*), to the clients: the model, the round and the
  update clip / weighting. The mod calls the wrapped train function, prepares the vector
  (:func:`protocols.flower.records.prepare_input`), encrypts and signs it
  (:meth:`secagg.paillier.Client.contribute`) and answers with the signed contribution
  only. A contribution that does not validate excludes its client; the round goes on;
* per round, exchange 2 (*decrypt*), to the key holder only: the aggregator's
  decryption request. The key holder re-verifies, recomputes, decrypts once per round
  (its last decrypted round persists in ``context.state``; Flower starts a fresh
  ClientApp process per message) and answers with the decrypted sum, signed. A refusal
  aborts the round cleanly: the model is unchanged and the next round starts.

The public key, packing, ``min_contributors`` and the key holder's verification key come
from the provisioned parameters file, never from the server. A message without the
``"secagg-paillier"`` record passes through the mod untouched.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import resource
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from flwr.app import ArrayRecord, ConfigRecord, Context, Error, Message, RecordDict
from flwr.clientapp.typing import ClientAppCallable
from flwr.serverapp import Grid

from protocols.flower.records import (
    ARRAYS_KEY,
    CONFIG_KEY,
    IDENTITY_FILE,
    REGISTRY_FILE,
    WEIGHTINGS,
    flatten,
    load_registry,
    node_identity,
    prepare_input,
    provision_identities,
    unflatten,
)
from protocols.flower.sync import ExchangeHook
from protocols.flower.workflow import RoundRow, WorkflowError, WorkflowReport, wait_for_nodes
from secagg import crypto
from secagg.context import canonical
from secagg.errors import SecAggError
from secagg.paillier.codec import decode_public_key, encode_public_key
from secagg.paillier.contribution import Roster
from secagg.paillier.keys import KeyPair, PrivateKey, PublicKey, generate_keypair
from secagg.paillier.packing import PackingConfig
from secagg.paillier.roles import (
    AggregateOutcome,
    Aggregator,
    Client,
    KeyHolder,
    check_min_contributors,
)

log = logging.getLogger(__name__)
Arrays = list[npt.NDArray[np.float32]]

PAILLIER_KEY = "secagg-paillier"  # the ConfigRecord our messages carry
CLIENT_STATE_KEY = "secagg-paillier-client"  # in context.state
HOLDER_STATE_KEY = "secagg-paillier-key-holder"  # in context.state
# node_config keys
KEY_FILE = "secagg-paillier-key"  # the key holder's private key file (secret)
PARAMS_FILE = "secagg-paillier-params"  # public parameters (every node and the server)

STEP_HELLO, STEP_CONTRIBUTE, STEP_DECRYPT = "hello", "contribute", "decrypt"
ERROR_CODE = 0x5ED  # Flower Error code of a message this mod refuses
SESSION_ID_BYTES = 16
PARAMS_FORMAT = "secagg-flower-paillier-params/v1"
KEY_FORMAT = "secagg-flower-paillier-key/v1"
_HELLO_LABEL = "secagg/flower/paillier/key-holder-hello"
_SUM_LABEL = "secagg/flower/paillier/decrypted-sum"


class PaillierWorkflowError(WorkflowError):
    """The Paillier workflow cannot run (no key holder, too few clients, bad files)."""


class PaillierProvisioningError(ValueError):
    """A provisioning file is missing, malformed or inconsistent with the others."""


class KeyHolderSignatureError(SecAggError):
    """The key holder's hello or decrypted sum does not carry its provisioned signature."""


class PaillierRefusalError(SecAggError):
    """The mod refuses a message (wrong session, replayed round, missing role)."""


# -- provisioning ------------------------------------------------------------------------


@dataclass(frozen=True)
class PaillierParams:
    """The public parameters every party loads from the provisioned parameters file."""

    public_key: PublicKey
    packing: PackingConfig
    min_contributors: int
    num_clients: int
    key_holder_verify: bytes  # the key holder's Ed25519 verification key (raw, 32 bytes)
    insecure_test_key: bool


@dataclass(frozen=True)
class PaillierProvisioning:
    """Where :func:`provision_paillier` wrote each file, and the node configs to use."""

    directory: Path
    params_file: Path  # public: every node and the server
    registry_file: Path  # public: client index -> Ed25519 verification key
    key_file: Path  # secret: the key holder's node only
    identity_files: list[Path]  # secret: one per client node

    def client_node_config(self, index: int) -> dict[str, str]:
        """``--node-config`` of client ``index``'s SuperNode."""
        return {
            IDENTITY_FILE: str(self.identity_files[index]),
            REGISTRY_FILE: str(self.registry_file),
            PARAMS_FILE: str(self.params_file),
        }

    def key_holder_node_config(self) -> dict[str, str]:
        """``--node-config`` of the key holder's SuperNode."""
        return {
            KEY_FILE: str(self.key_file),
            REGISTRY_FILE: str(self.registry_file),
            PARAMS_FILE: str(self.params_file),
        }


def provision_paillier(
    directory: str | Path,
    *,
    num_clients: int,
    key_bits: int = 2048,
    value_bits: int = 16,
    clip: float = 1.0,
    guard_bits: int = 1,
    max_clients: int | None = None,
    min_contributors: int | None = None,
    insecure_test_key: bool = False,
) -> PaillierProvisioning:
    """Generate the key pair and identities and write every provisioning file.

    Writes ``paillier-key.json`` (mode 0600: private key and the key holder's Ed25519
    signing key; for the key holder's node only), ``paillier-params.json`` (public key,
    packing, ``min_contributors``, key holder's verification key), and through
    :func:`~protocols.flower.records.provision_identities` one ``identity-<i>.key`` per
    client plus ``registry.json``. ``clip`` bounds each element (at least 1, so the
    weight element fits); ``min_contributors`` defaults to ``max(2, ceil(n / 2))``.
    ``insecure_test_key`` admits 512/1024-bit keys (tests only).
    """
    if num_clients < 2:
        raise PaillierProvisioningError("Paillier on Flower needs at least 2 clients")
    if not clip > 0:
        raise PaillierProvisioningError("clip must be > 0")
    d = Path(directory)
    identity_files, registry_file = provision_identities(d, num_clients)
    keypair = generate_keypair(key_bits, insecure_test_key=insecure_test_key)
    element_clip = max(float(clip), 1.0)
    packing = PackingConfig(
        key_bits=key_bits,
        value_bits=value_bits,
        max_clients=num_clients if max_clients is None else max_clients,
        guard_bits=guard_bits,
        clip_min=-element_clip,
        clip_max=element_clip,
    )
    floor = max(2, -(-num_clients // 2)) if min_contributors is None else min_contributors
    check_min_contributors(floor, packing)
    holder = crypto.SigningKey.generate()
    phe_private = keypair.private.to_phe()
    key_file = d / "paillier-key.json"
    key_file.touch(mode=0o600)
    key_file.write_text(
        json.dumps(
            {
                "format": KEY_FORMAT,
                "n": format(keypair.public.n, "x"),
                "p": format(int(phe_private.p), "x"),
                "q": format(int(phe_private.q), "x"),
                "signing": holder.private_bytes().hex(),
            }
        )
    )
    params_file = d / "paillier-params.json"
    params_file.write_text(
        json.dumps(
            {
                "format": PARAMS_FORMAT,
                "public-key": encode_public_key(keypair.public).hex(),
                "key-id": keypair.public.key_id.hex(),
                "key-bits": key_bits,
                "value-bits": value_bits,
                "guard-bits": guard_bits,
                "max-clients": packing.max_clients,
                "clip": element_clip,
                "num-clients": num_clients,
                "min-contributors": floor,
                "key-holder-verify": holder.public_bytes.hex(),
                "insecure-test-key": insecure_test_key,
            },
            indent=1,
        )
    )
    return PaillierProvisioning(d, params_file, registry_file, key_file, identity_files)


def load_params(path: str | Path) -> PaillierParams:
    """Read and check a parameters file written by :func:`provision_paillier`."""
    try:
        raw = json.loads(Path(path).read_text())
        if raw.get("format") != PARAMS_FORMAT:
            raise PaillierProvisioningError(f"{path} is not a {PARAMS_FORMAT} file")
        insecure = bool(raw["insecure-test-key"])
        pk_bytes = bytes.fromhex(raw["public-key"])
        pk = decode_public_key(pk_bytes, insecure_test_key=insecure)
        if pk.key_id.hex() != raw["key-id"]:
            raise PaillierProvisioningError(f"{path}: key id does not match the public key")
        clip = float(raw["clip"])
        packing = PackingConfig(
            key_bits=int(raw["key-bits"]),
            value_bits=int(raw["value-bits"]),
            max_clients=int(raw["max-clients"]),
            guard_bits=int(raw["guard-bits"]),
            clip_min=-clip,
            clip_max=clip,
        )
        verify = bytes.fromhex(raw["key-holder-verify"])
        if len(verify) != crypto.PUBLIC_KEY_BYTES:
            raise PaillierProvisioningError(f"{path}: key holder key is not 32 bytes")
        return PaillierParams(
            pk,
            packing,
            check_min_contributors(int(raw["min-contributors"]), packing),
            int(raw["num-clients"]),
            verify,
            insecure,
        )
    except PaillierProvisioningError:
        raise
    except (OSError, KeyError, TypeError, ValueError, SecAggError) as exc:
        raise PaillierProvisioningError(f"parameters file {path}: {exc}") from exc


def load_key_holder(path: str | Path, params: PaillierParams) -> tuple[KeyPair, crypto.SigningKey]:
    """(key pair, signing key) from the key holder's private key file."""
    from phe.paillier import PaillierPrivateKey, PaillierPublicKey

    try:
        raw = json.loads(Path(path).read_text())
        if raw.get("format") != KEY_FORMAT:
            raise PaillierProvisioningError(f"{path} is not a {KEY_FORMAT} file")
        public = params.public_key
        n, p, q = (int(raw[k], 16) for k in ("n", "p", "q"))
        if n != public.n:
            raise PaillierProvisioningError(f"{path}: the key is not the parameters' key")
        private = PrivateKey.from_phe(public, PaillierPrivateKey(PaillierPublicKey(n), p, q))
        signing = crypto.SigningKey.from_private_bytes(bytes.fromhex(raw["signing"]))
    except PaillierProvisioningError:
        raise
    except (OSError, KeyError, TypeError, ValueError, SecAggError) as exc:
        raise PaillierProvisioningError(f"key file {path}: {exc}") from exc
    if signing.public_bytes != params.key_holder_verify:
        raise PaillierProvisioningError(f"{path}: signing key is not the parameters' key holder")
    return KeyPair(public, private), signing


def roster_of(registry: Mapping[int, bytes]) -> Roster:
    """The Paillier roster (index -> Ed25519 public key) of a registry."""
    return {i: Ed25519PublicKey.from_public_bytes(k) for i, k in registry.items()}


def hello_statement(session_id: bytes, key_id: bytes) -> bytes:
    """What the key holder signs to prove, at hello, that it holds the provisioned key."""
    return canonical(_HELLO_LABEL, session_id, key_id)


def sum_statement(session_id: bytes, round_index: int, decrypted: bytes) -> bytes:
    """What the key holder signs over its decrypted-sum message."""
    return canonical(_SUM_LABEL, session_id, round_index, hashlib.sha256(decrypted).digest())


def verify_key_holder(params: PaillierParams, signature: object, statement: bytes) -> None:
    """Raise :class:`KeyHolderSignatureError` unless ``signature`` is the key holder's."""
    if not isinstance(signature, bytes):
        raise KeyHolderSignatureError("no key holder signature")
    try:
        Ed25519PublicKey.from_public_bytes(params.key_holder_verify).verify(signature, statement)
    except InvalidSignature:
        raise KeyHolderSignatureError("the key holder's signature does not verify") from None


# -- the client mod ----------------------------------------------------------------------


def _refuse(msg: Message, reason: str) -> Message:
    log.warning("paillier_mod refused a message: %s", reason)
    return Message(Error(code=ERROR_CODE, reason=reason[:500]), reply_to=msg)


def _reply(msg: Message, values: dict[str, Any]) -> Message:
    return Message(RecordDict({PAILLIER_KEY: ConfigRecord(values)}), reply_to=msg)


def _pinned(context: Context, key: str, session_id: bytes) -> int:
    """Pin ``session_id`` in ``context.state[key]``; the last round recorded there (0)."""
    saved = context.state.config_records.get(key)
    if saved is None:
        context.state[key] = ConfigRecord({"session-id": session_id, "last-round": 0})
        return 0
    pinned = saved.get("session-id")
    if not isinstance(pinned, bytes) or not hmac.compare_digest(pinned, session_id):
        raise PaillierRefusalError("this node already serves another session in this run")
    last = saved.get("last-round")
    return last if isinstance(last, int) else 0


def _session_field(rec: Mapping[str, Any]) -> bytes:
    """The message's session id, refused by name unless it is bytes."""
    session_id = rec.get("session-id")
    if not isinstance(session_id, bytes):
        raise PaillierRefusalError("the message carries no session id")
    return session_id


def _record_round(context: Context, key: str, session_id: bytes, round_index: int) -> None:
    context.state[key] = ConfigRecord({"session-id": session_id, "last-round": round_index})


def paillier_mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """Run a Paillier client or key holder around the wrapped train function."""
    if PAILLIER_KEY not in msg.content.config_records:
        return call_next(msg, context)
    rec = msg.content.config_records[PAILLIER_KEY]
    step, session_id = rec.get("step"), rec.get("session-id")
    if not isinstance(session_id, bytes) or len(session_id) != SESSION_ID_BYTES:
        return _refuse(msg, "the paillier record carries no valid session id")
    cfg = context.node_config
    try:
        params = load_params(str(cfg[PARAMS_FILE])) if cfg.get(PARAMS_FILE) else None
        index, identity, registry = node_identity(cfg)
    except (OSError, ValueError) as exc:
        return _refuse(msg, f"provisioning: {exc}")
    if params is None:
        return _refuse(msg, f"this node is not provisioned ({PARAMS_FILE} missing)")
    holds_key = bool(cfg.get(KEY_FILE))
    try:
        if step == STEP_HELLO:
            return _hello(msg, context, rec, params, index, identity)
        if step == STEP_CONTRIBUTE:
            if index is None or identity is None or registry is None:
                raise PaillierRefusalError("a contribution needs this node's identity")
            return _contribute(msg, context, call_next, rec, params, index, identity)
        if step == STEP_DECRYPT:
            if not holds_key:
                raise PaillierRefusalError("this node does not hold the private key")
            return _decrypt(msg, context, rec, params)
    except SecAggError as exc:
        return _refuse(msg, f"{type(exc).__name__}: {exc}")
    return _refuse(msg, f"unknown paillier step {step!r}")


def _hello(
    msg: Message,
    context: Context,
    rec: ConfigRecord,
    params: PaillierParams,
    index: int | None,
    identity: crypto.SigningKey | None,
) -> Message:
    session_id = _session_field(rec)
    key_id = params.public_key.key_id
    if rec.get("key-id") != key_id:
        raise PaillierRefusalError("the server's key id is not the provisioned public key's")
    out: dict[str, Any] = {}
    if index is not None and identity is not None:
        _pinned(context, CLIENT_STATE_KEY, session_id)
        out.update({"index": index, "public-key": identity.public_bytes})
    key_file = context.node_config.get(KEY_FILE)
    if key_file:
        try:
            _, signing = load_key_holder(str(key_file), params)
        except PaillierProvisioningError as exc:
            raise PaillierRefusalError(f"key holder provisioning: {exc}") from exc
        _pinned(context, HOLDER_STATE_KEY, session_id)
        out.update(
            {"key-holder": True, "signature": signing.sign(hello_statement(session_id, key_id))}
        )
    if not out:
        raise PaillierRefusalError("this node is neither a client nor the key holder")
    return _reply(msg, out)


def _contribute(
    msg: Message,
    context: Context,
    call_next: ClientAppCallable,
    rec: ConfigRecord,
    params: PaillierParams,
    index: int,
    identity: crypto.SigningKey,
) -> Message:
    session_id, round_ = _session_field(rec), rec.get("round")
    if not isinstance(round_, int) or round_ < 1:
        raise PaillierRefusalError("the contribute step carries no round")
    last = _pinned(context, CLIENT_STATE_KEY, session_id)
    if round_ <= last:
        raise PaillierRefusalError(f"round {round_} is not after round {last}, already answered")
    if ARRAYS_KEY not in msg.content.array_records:
        raise PaillierRefusalError("the contribute step carries no model")
    old = msg.content.array_records[ARRAYS_KEY].to_numpy_ndarrays()
    out = call_next(msg, context)
    if out.has_error():
        return out  # training failed: this client drops out of the round
    new_rec = next(iter(out.content.array_records.values()), None)
    if new_rec is None:
        raise PaillierRefusalError("the train function returned no ArrayRecord")
    metrics = next(iter(out.content.metric_records.values()), None)
    n_ex = metrics.get("num-examples") if metrics is not None else None
    try:
        vector = prepare_input(
            new_rec.to_numpy_ndarrays(),
            old,
            clip=float(rec.get("clip", 1.0)),  # type: ignore[arg-type]
            weighting=str(rec.get("weighting", "uniform")),
            max_weight=float(rec.get("max-weight", 1.0)),  # type: ignore[arg-type]
            num_examples=None if n_ex is None else float(n_ex),  # type: ignore[arg-type]
        )
    except ValueError as exc:
        raise PaillierRefusalError(f"update: {exc}") from exc
    client = Client(index, params.public_key, params.packing, signing_key=identity.private)
    payload = client.contribute(vector, session_id=session_id, round_index=round_)
    _record_round(context, CLIENT_STATE_KEY, session_id, round_)
    return _reply(msg, {"contribution": payload})


def _decrypt(msg: Message, context: Context, rec: ConfigRecord, params: PaillierParams) -> Message:
    session_id, request = _session_field(rec), rec.get("request")
    if not isinstance(request, bytes):
        raise PaillierRefusalError("the decrypt step carries no request")
    try:
        keypair, signing = load_key_holder(str(context.node_config[KEY_FILE]), params)
        registry = load_registry(str(context.node_config[REGISTRY_FILE]))
    except (OSError, KeyError, ValueError) as exc:
        raise PaillierRefusalError(f"key holder provisioning: {exc}") from exc
    last = _pinned(context, HOLDER_STATE_KEY, session_id)
    holder = KeyHolder(
        keypair,
        params.packing,
        roster_of(registry),
        session_id=session_id,
        min_contributors=params.min_contributors,
    )
    holder.last_round = last or None
    answer = holder.decrypt(request)  # refusals raise DecryptionRefusedError
    round_ = holder.last_round
    if round_ is None:  # pragma: no cover - decrypt() sets it or raises
        raise PaillierRefusalError("the key holder recorded no round")
    _record_round(context, HOLDER_STATE_KEY, session_id, round_)
    signature = signing.sign(sum_statement(session_id, round_, answer))
    return _reply(msg, {"sum": answer, "round": round_, "signature": signature})


# -- the server workflow -----------------------------------------------------------------


@dataclass
class PaillierReport(WorkflowReport):
    """:class:`~protocols.flower.workflow.WorkflowReport` plus the key holder's node id."""

    key_holder_node: int = 0


@dataclass
class PaillierWorkflow:
    """Paillier-encrypted FedAvg over Flower (see the module docs).

    Args:
        rounds: training rounds.
        params_file, registry_file: the public provisioning files.
        clip: element clip of the update (at most the provisioned clip).
        weighting: ``"uniform"`` or ``"examples"`` (w = min(n_i, max_weight)/max_weight).
        timeout: seconds each exchange waits for replies.
        min_nodes: nodes (clients and key holder) to wait for before the hello.
        server_lr: global model += server_lr * weighted mean update.
        hook: lets a test harness pause before/after each exchange (fault injection).
    """

    rounds: int
    params_file: str
    registry_file: str
    clip: float = 1.0
    weighting: str = "uniform"
    max_weight: float = 1.0
    timeout: float = 120.0
    min_nodes: int = 3
    node_wait: float = 120.0
    server_lr: float = 1.0
    hook: ExchangeHook | None = None
    #: client index -> Flower node id, filled by run() after the hello
    nodes: dict[int, int] = field(default_factory=dict, init=False)
    key_holder_node: int | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.weighting not in WEIGHTINGS:
            raise PaillierWorkflowError(f"weighting {self.weighting!r}; use one of {WEIGHTINGS}")
        if not self.clip > 0:
            raise PaillierWorkflowError("clip must be > 0")
        try:
            self.params = load_params(self.params_file)
            self.registry = load_registry(self.registry_file)
        except (OSError, ValueError) as exc:
            raise PaillierWorkflowError(f"provisioning: {exc}") from exc
        if self.clip > self.params.packing.clip_max:
            raise PaillierWorkflowError(
                f"clip {self.clip} exceeds the provisioned element clip "
                f"{self.params.packing.clip_max}"
            )

    def run(
        self,
        grid: Grid,
        initial: Sequence[npt.NDArray[Any]],
        *,
        on_round: Callable[[RoundRow, Arrays, AggregateOutcome | None], None] | None = None,
    ) -> PaillierReport:
        """Run every round; ``on_round(row, model, outcome)`` sees each round's row, the
        new model and the decrypted outcome (sum, contributors; None if it aborted)."""
        model: Arrays = [np.asarray(a, dtype=np.float32) for a in initial]
        t0 = time.perf_counter()
        session_id = os.urandom(SESSION_ID_BYTES)
        exchanges: list[dict[str, Any]] = []
        index_of, holder = self._hello(grid, session_id, exchanges)
        node_of = {i: nid for nid, i in index_of.items()}
        self.nodes.clear()
        self.nodes.update(node_of)
        self.key_holder_node = holder
        bootstrap = time.perf_counter() - t0
        rows: list[RoundRow] = []
        for r in range(1, self.rounds + 1):
            row, outcome = self._round(grid, r, session_id, model, index_of, holder, exchanges)
            if outcome is not None:
                model = self._apply(model, outcome)
            rows.append(row)
            if on_round is not None:
                on_round(row, model, outcome)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        config = {
            **self.params.packing.describe(),
            "min_contributors": self.params.min_contributors,
            "num_clients": len(index_of),
            "session_id": session_id.hex(),
            "key_id": self.params.public_key.key_id.hex(),
        }
        return PaillierReport(
            rows, exchanges, model, node_of, "paillier", config, bootstrap, peak, holder
        )

    # -- pieces ----------------------------------------------------------------------------

    def _exchange(
        self,
        grid: Grid,
        msgs: list[Message],
        event: dict[str, Any],
        exchanges: list[dict[str, Any]],
        down: int,
    ) -> tuple[list[Message], dict[str, Any]]:
        """One metered ``send_and_receive``; returns the replies and its exchange row."""
        if self.hook is not None:
            self.hook.before_exchange(event)
        te = time.perf_counter()
        replies = list(grid.send_and_receive(msgs, timeout=self.timeout))
        seconds = time.perf_counter() - te
        errors = [
            f"node {m.metadata.src_node_id}: {m.error.reason}"[:300]
            for m in replies
            if m.has_error()
        ]
        if self.hook is not None:
            self.hook.after_exchange(
                event | {"replied": sorted(m.metadata.src_node_id for m in replies)}
            )
        row = event | {
            "exchange": len(exchanges),
            "seconds": seconds,
            "sent": len(msgs),
            "replied": len(replies) - len(errors),
            "errors": errors,
            "bytes_down": down,
            "bytes_up": 0,
        }
        exchanges.append(row)
        return replies, row

    def _hello(
        self, grid: Grid, session_id: bytes, exchanges: list[dict[str, Any]]
    ) -> tuple[dict[int, int], int]:
        """Client index of every client node, and the key holder's node id."""
        node_ids = wait_for_nodes(grid, self.min_nodes, self.node_wait, error=PaillierWorkflowError)
        key_id = self.params.public_key.key_id
        hello: dict[str, Any] = {"step": STEP_HELLO, "session-id": session_id, "key-id": key_id}
        msgs = [
            Message(RecordDict({PAILLIER_KEY: ConfigRecord(dict(hello))}), nid, "train")
            for nid in node_ids
        ]
        event = {"kind": STEP_HELLO, "round": 0, "nodes": node_ids}
        replies, row = self._exchange(grid, msgs, event, exchanges, 0)
        index_of: dict[int, int] = {}
        holders: list[int] = []
        statement = hello_statement(session_id, key_id)
        for m in replies:
            if m.has_error():
                continue
            reply = m.content.config_records.get(PAILLIER_KEY)
            if reply is None:
                continue
            nid = m.metadata.src_node_id
            if reply.get("key-holder"):
                try:
                    verify_key_holder(self.params, reply.get("signature"), statement)
                    holders.append(nid)
                except KeyHolderSignatureError as exc:
                    log.warning("node %d claims the key holder role: %s", nid, exc)
            idx, pk = reply.get("index"), reply.get("public-key")
            known = isinstance(idx, int) and self.registry.get(idx) == pk
            if known and isinstance(idx, int) and idx not in index_of.values():
                index_of[nid] = idx
        row["replied_clients"] = len(index_of)
        if len(holders) != 1:
            raise PaillierWorkflowError(
                f"{len(holders)} nodes proved they hold the key holder's key; need exactly 1"
            )
        if len(index_of) < self.params.min_contributors:
            raise PaillierWorkflowError(
                f"only {len(index_of)} nodes proved a registered identity, the key holder "
                f"needs {self.params.min_contributors} contributions"
            )
        return index_of, holders[0]

    def _round(
        self,
        grid: Grid,
        r: int,
        session_id: bytes,
        model: Arrays,
        index_of: dict[int, int],
        holder: int,
        exchanges: list[dict[str, Any]],
    ) -> tuple[RoundRow, AggregateOutcome | None]:
        """One round: contribute (exchange 1), decrypt (exchange 2)."""
        t0 = time.perf_counter()
        first = len(exchanges)
        params = self.params
        dim = sum(int(a.size) for a in model) + 1
        node_of = {i: nid for nid, i in index_of.items()}
        clients = sorted(node_of)
        model_bytes = sum(a.nbytes for a in model)
        msgs = []
        for c in clients:
            rec = ConfigRecord(
                {
                    "step": STEP_CONTRIBUTE,
                    "session-id": session_id,
                    "round": r,
                    "clip": float(self.clip),
                    "weighting": self.weighting,
                    "max-weight": float(self.max_weight),
                }
            )
            content = RecordDict(
                {
                    PAILLIER_KEY: rec,
                    ARRAYS_KEY: ArrayRecord(model),
                    CONFIG_KEY: ConfigRecord({"server-round": r}),
                }
            )
            msgs.append(Message(content, node_of[c], "train", group_id=str(r)))
        event = {"kind": STEP_CONTRIBUTE, "round": r, "nodes": [node_of[c] for c in clients]}
        replies, ex1 = self._exchange(grid, msgs, event, exchanges, model_bytes * len(msgs))
        ta = time.perf_counter()
        aggregator = Aggregator(
            params.public_key,
            params.packing,
            roster_of(self.registry),
            session_id=session_id,
            round_index=r,
            num_elements=dim,
            min_contributors=params.min_contributors,
        )
        up = 0
        for m in replies:
            sender = index_of.get(m.metadata.src_node_id)
            if sender is None or m.has_error():
                continue
            reply = m.content.config_records.get(PAILLIER_KEY)
            payload = reply.get("contribution") if reply is not None else None
            if not isinstance(payload, bytes):
                payload = b""  # refused like any malformed contribution
            up += len(payload)
            aggregator.receive(sender, payload)
        ex1["bytes_up"] = up
        extra: dict[str, Any] = {
            "rejected": {
                i: f"{type(e).__name__}: {e}"[:300] for i, e in sorted(aggregator.rejected.items())
            },
            "client_errors": ex1["errors"],
            "contribute_s": ex1["seconds"],
        }
        n_up = max(1, len(aggregator.accepted) + len(aggregator.rejected))

        def row(status: str, outcome: AggregateOutcome | None, error: str | None) -> RoundRow:
            survivors = list(outcome.contributors) if outcome is not None else []
            return RoundRow(
                r,
                status,
                survivors,
                [c for c in clients if c not in survivors],
                time.perf_counter() - t0,
                len(exchanges) - first,
                up / n_up,
                float(model_bytes),
                False,
                error,
                extra,
            )

        try:
            request = aggregator.request()
        except SecAggError as exc:
            extra["aggregate_s"] = time.perf_counter() - ta
            return row("aborted", None, f"{type(exc).__name__}: {exc}"), None
        extra["aggregate_s"] = time.perf_counter() - ta
        extra["request_bytes"] = len(request)
        ask: dict[str, Any] = {
            "step": STEP_DECRYPT,
            "session-id": session_id,
            "round": r,
            "request": request,
        }
        msg = Message(
            RecordDict({PAILLIER_KEY: ConfigRecord(ask)}), holder, "train", group_id=str(r)
        )
        event = {"kind": STEP_DECRYPT, "round": r, "nodes": [holder]}
        replies, ex2 = self._exchange(grid, [msg], event, exchanges, len(request))
        extra["decrypt_s"] = ex2["seconds"]
        answer = next((m for m in replies if m.metadata.src_node_id == holder), None)
        if answer is None:
            return row("aborted", None, "the key holder did not answer in time"), None
        if answer.has_error():
            return row("aborted", None, f"key holder refused: {answer.error.reason}"), None
        reply = answer.content.config_records.get(PAILLIER_KEY)
        data = reply.get("sum") if reply is not None else None
        signature = reply.get("signature") if reply is not None else None
        td = time.perf_counter()
        try:
            if not isinstance(data, bytes):
                raise KeyHolderSignatureError("the key holder's reply carries no sum")
            ex2["bytes_up"] = len(data)
            verify_key_holder(params, signature, sum_statement(session_id, r, data))
            outcome = aggregator.finish(data)
        except SecAggError as exc:
            return row("aborted", None, f"{type(exc).__name__}: {exc}"), None
        extra["decode_s"] = time.perf_counter() - td
        return row("ok", outcome, None), outcome

    def _apply(self, model: Arrays, outcome: AggregateOutcome) -> Arrays:
        total = np.asarray(outcome.sum, dtype=np.float64)
        weight = float(total[-1])
        if not weight > 0:
            return model
        new = flatten(model) + self.server_lr * total[:-1] / weight
        return unflatten(new, model)
