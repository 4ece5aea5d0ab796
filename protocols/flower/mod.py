"""The Flower client mod: this project's pipelined SecAgg/SecAgg+ inside a ClientApp.

Add it to the train function (``@app.train(mods=[secagg_mod])`` or
``ClientApp(mods=[secagg_mod])``). A message without our ``"secagg"`` record passes
through untouched. A message with it carries one pipeline bundle; when it also carries
the model, the mod calls the wrapped train function, turns its result into the clipped,
weighted update vector, and masks it; the reply holds only the reply bundle, never the
update. The client's pipeline state (keys, held shares, answered rounds) lives in the
node's ``context.state`` between the ClientApp processes Flower starts per message.

What the node accepts comes from its provisioning, never from the server: with
``--node-config 'secagg-identity=FILE secagg-registry=FILE'`` (see
:func:`protocols.flower.records.provision_identities`) it runs the registry's policy
(the active setting by default) on the registry's graph; without an identity, the
honest-but-curious policy of ``secagg-policy=FILE`` or the default one. Its durable
records (the session counter that refuses a replayed bootstrap) live in
``secagg-state-dir=DIR`` when given (one file per registered index, surviving restarts
and new runs), else in ``context.state`` for the run.

Before it trains, the node applies its own differencing rule
(:class:`protocols.client_guard.ClientGuard`, policy from
``secagg-contribution-policy=FILE`` or the defaults): a round counter above its last
contribution's (the session counter and the round), a cap per window, and no second
contribution for (nearly) the same model unless the policy allows it with fresh noise,
charged to ``secagg-client-ledger=FILE``. Honest-but-curious nodes allow unnoised
repeats by default (their server re-runs a model only after an abort). A refused round
gets no input from this node (it drops out of that round only); the guard's state lives
beside the durable records, or beside the identity file of an active node.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import ConfigRecord, Context, Error, Message, RecordDict
from flwr.clientapp.typing import ClientAppCallable

from protocols.client_guard import (
    Admission,
    ClientGuard,
    ContributionPolicy,
    ContributionRefusedError,
    load_policy,
)
from protocols.flower.records import (
    ARRAYS_KEY,
    CLIENT_LEDGER_FILE,
    CONTRIBUTION_POLICY_FILE,
    IDENTITY_FILE,
    SECAGG_KEY,
    STATE_DIR,
    STATE_KEY,
    model_hash,
    node_policy,
    node_trust,
    prepare_input,
)
from secagg.client_records import ClientRecords
from secagg.errors import MessageFormatError, SecAggError
from secagg.pipeline import PipelineClient
from secagg.policy import SecurityPolicy
from secagg.registry import Trust

log = logging.getLogger(__name__)
ERROR_CODE = 0x5EC  # Flower Error code of a message this mod refuses


def _refuse(msg: Message, reason: str) -> Message:
    log.warning("secagg_mod refused a message: %s", reason)
    return Message(Error(code=ERROR_CODE, reason=reason[:500]), reply_to=msg)


def secagg_mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """Run this project's secure aggregation around the wrapped train function."""
    if SECAGG_KEY not in msg.content.config_records:
        return call_next(msg, context)
    rec = msg.content.config_records[SECAGG_KEY]
    try:
        trust = node_trust(context.node_config)
        policy = node_policy(context.node_config) if trust is None else trust.registry.policy
    except (OSError, ValueError) as exc:
        return _refuse(msg, f"provisioning: {exc}")
    if rec.get("hello"):
        if trust is None:
            return _refuse(msg, "the active setting needs this node's identity and registry")
        reply = ConfigRecord(
            {"index": trust.index, "public-key": trust.identity.signing.public_bytes}
        )
        return Message(RecordDict({SECAGG_KEY: reply}), reply_to=msg)
    bundle = rec.get("bundle")
    if not isinstance(bundle, bytes):
        return _refuse(msg, "the secagg record carries no bundle")
    store = _RecordStore(context, trust)
    try:
        client = _load_client(context, trust, policy, store.load())
    except SecAggError as exc:
        return _refuse(msg, f"saved pipeline state does not load: {exc}")
    inputs: dict[int, Any] = {}
    contexts: dict[int, bytes] = {}
    round_ = rec.get("train-round")
    if ARRAYS_KEY in msg.content.array_records and isinstance(round_, int):
        arrays = msg.content.array_records[ARRAYS_KEY]
        old = arrays.to_numpy_ndarrays()
        try:
            if not 0 <= round_ < 1 << 32:
                raise ContributionRefusedError(f"train-round {round_} out of range")
            if round_ not in {r for r, _ in client.peek(bundle).parts}:
                raise ContributionRefusedError(f"the bundle asks no input for round {round_}")
            guard = store.guard()
            counter = (client.records.session_counter << 32) | round_
            # by name: a reordered or zero-padded record is the same model to the sketch
            named = {k: a.numpy() for k, a in arrays.items()}
            admission: Admission | None = guard.admit(counter, named)
        except (ContributionRefusedError, SecAggError) as exc:
            log.warning("round %d: no contribution: %s", round_, exc)
            admission = None  # no input: this node drops out of this round only
        finally:
            store.save_guard()
        if admission is not None:
            out = call_next(msg, context)
            if out.has_error():
                return out  # training failed: this client drops out of the round
            try:
                inputs[round_] = _prepared(rec, old, out, guard, admission)
            except ValueError as exc:
                return _refuse(msg, f"update: {exc}")
            contexts[round_] = model_hash(old)
    try:
        answer = client.handle(bundle, inputs=inputs, contexts=contexts)
    except SecAggError as exc:
        return _refuse(msg, f"{type(exc).__name__}: {exc}")
    finally:
        context.state[STATE_KEY] = ConfigRecord({"pipeline": client.save()})
        store.save(client.records)
    report = client.last_report
    if report is not None:
        for r, err in report.refused.items():
            log.warning("round %d refused: %s: %s", r, type(err).__name__, err)
    return Message(RecordDict({SECAGG_KEY: ConfigRecord({"bundle": answer})}), reply_to=msg)


def _load_client(
    context: Context, trust: Trust | None, policy: SecurityPolicy, records: ClientRecords
) -> PipelineClient:
    saved = context.state.config_records.get(STATE_KEY)
    blob = saved.get("pipeline") if saved is not None else None
    hbc = None if trust is not None else policy
    if isinstance(blob, bytes):
        return PipelineClient.load(blob, trust=trust, policy=hbc, records=records)
    return PipelineClient(trust=trust, policy=hbc, records=records)


def _prepared(
    rec: Any, old: list[Any], out: Message, guard: ClientGuard, admission: Admission
) -> Any:
    new_rec = next(iter(out.content.array_records.values()), None)
    if new_rec is None:
        raise ValueError("the train function returned no ArrayRecord")
    metrics = next(iter(out.content.metric_records.values()), None)
    n_ex = metrics.get("num-examples") if metrics is not None else None
    vec = prepare_input(
        new_rec.to_numpy_ndarrays(),
        old,
        clip=_number(rec.get("clip", 1.0)),
        weighting=str(rec.get("weighting", "uniform")),
        max_weight=_number(rec.get("max-weight", 1.0)),
        num_examples=None if n_ex is None else _number(n_ex),
        l2_clip=_number(rec["l2-clip"]) if "l2-clip" in rec else None,
    )
    if admission.noise_std <= 0:
        return vec
    # an allowed repeat: fresh noise on the update (not the weight), already charged;
    # then back into the element range (post-processing)
    bound = _number(rec["l2-clip"]) if "l2-clip" in rec else _number(rec.get("clip", 1.0))
    weighted = "l2-clip" not in rec
    body = vec[:-1] if weighted else vec
    noised = np.clip(guard.prepare(body, admission), -bound, bound)
    return np.append(noised, vec[-1]) if weighted else noised


def _number(v: object) -> float:
    """A scalar record field as a float; a list or text is refused by name."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ValueError(f"expected a number, got {type(v).__name__}")
    return float(v)


class _RecordStore:
    """Where a node keeps its durable :class:`ClientRecords`: a file per registered
    index under ``secagg-state-dir`` (survives restarts and new runs), else the run's
    ``context.state``."""

    KEY = "secagg-records"
    GUARD_KEY = "secagg-guard"

    def __init__(self, context: Context, trust: Trust | None) -> None:
        self.context = context
        self.trust = trust
        d = context.node_config.get(STATE_DIR)
        name = f"records-{trust.index}.bin" if trust is not None else "records-hbc.bin"
        self.path = Path(str(d)) / name if d else None

    def guard(self) -> ClientGuard:
        """This node's differencing guard, its state beside the durable records."""
        cfg = self.context.node_config
        pfile = cfg.get(CONTRIBUTION_POLICY_FILE)
        from dp.errors import DPError

        try:
            policy = (
                load_policy(Path(str(pfile)).read_text())
                if pfile
                else ContributionPolicy()
                if self.trust is not None  # active: refuse repeats
                else ContributionPolicy.honest_but_curious()
            )
            lfile = cfg.get(CLIENT_LEDGER_FILE)
            ledger = None
            if lfile:
                from dp import PrivacyLedger

                lp = Path(str(lfile))
                ledger = (
                    PrivacyLedger.open(lp)
                    if lp.exists()
                    else PrivacyLedger.create(
                        lp, delta=1e-6, target_epsilon=policy.repeat_epsilon_budget
                    )
                )
        except (OSError, ValueError, DPError) as exc:
            raise ContributionRefusedError(f"contribution policy or ledger: {exc}") from exc
        gpath = self._guard_path()
        if gpath is not None:
            self._guard = ClientGuard(policy, path=gpath, ledger=ledger)
        else:
            rec = self.context.state.config_records.get(self.GUARD_KEY)
            text = rec.get("state") if rec is not None else None
            state = text if isinstance(text, str) else None
            self._guard = ClientGuard(policy, ledger=ledger, state=state)
        return self._guard

    def _guard_path(self) -> Path | None:
        """The guard's file: beside the durable records, or for a node with an identity
        beside its identity file (durable by provisioning: a new run's empty
        ``context.state`` must not reset the rule); ``None`` keeps it in the state."""
        if self.path is not None:
            return self.path.with_name(self.path.stem.replace("records", "guard") + ".json")
        ident = self.context.node_config.get(IDENTITY_FILE)
        if self.trust is not None and ident:
            return Path(str(ident)).with_suffix(".guard.json")
        return None

    def save_guard(self) -> None:
        """Keep the guard's state in ``context.state`` (a file-backed guard saved itself)
        and release the client ledger's lock for the next message."""
        g = getattr(self, "_guard", None)
        if g is None:
            return
        if self._guard_path() is None:
            self.context.state[self.GUARD_KEY] = ConfigRecord({"state": g.to_json()})
        if g.ledger is not None:
            g.ledger.close()

    def load(self) -> ClientRecords:
        try:
            if self.path is not None:
                return (
                    ClientRecords.from_bytes(self.path.read_bytes())
                    if self.path.exists()
                    else ClientRecords()
                )
            rec = self.context.state.config_records.get(self.KEY)
            blob = rec.get("records") if rec is not None else None
            return ClientRecords.from_bytes(blob) if isinstance(blob, bytes) else ClientRecords()
        except (OSError, MessageFormatError) as exc:
            raise MessageFormatError(f"durable records do not load: {exc}") from exc

    def save(self, records: ClientRecords) -> None:
        data = records.to_bytes()
        if self.path is None:
            self.context.state[self.KEY] = ConfigRecord({"records": data})
            return
        tmp = self.path.with_suffix(".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, self.path)  # atomic: never a torn record
