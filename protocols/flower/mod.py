"""The Flower client mod: this project's pipelined SecAgg/SecAgg+ inside a ClientApp.

Add it to the train function (``@app.train(mods=[secagg_mod])`` or
``ClientApp(mods=[secagg_mod])``). A message without our ``"secagg"`` record passes
through untouched. A message with it carries one pipeline bundle; when it also carries
the model, the mod calls the wrapped train function, turns its result into the clipped,
weighted update vector, and masks it; the reply holds only the reply bundle, never the
update. The client's pipeline state (keys, held shares, answered rounds) lives in the
node's ``context.state`` between the ClientApp processes Flower starts per message.

Active setting: the SuperNode is provisioned with ``--node-config
'secagg-identity=FILE secagg-registry=FILE'`` (see
:func:`protocols.flower.records.provision_identities`).
"""

from __future__ import annotations

import logging
from typing import Any

from flwr.app import ConfigRecord, Context, Error, Message, RecordDict
from flwr.clientapp.typing import ClientAppCallable

from protocols.flower.records import (
    ARRAYS_KEY,
    SECAGG_KEY,
    STATE_KEY,
    model_hash,
    node_identity,
    prepare_input,
)
from secagg.errors import SecAggError
from secagg.pipeline import PipelineClient

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
        index, identity, registry = node_identity(context.node_config)
    except (OSError, ValueError) as exc:
        return _refuse(msg, f"identity provisioning: {exc}")
    if rec.get("hello"):
        if index is None or identity is None:
            return _refuse(msg, "the active setting needs this node's identity and registry")
        reply = ConfigRecord({"index": index, "public-key": identity.public_bytes})
        return Message(RecordDict({SECAGG_KEY: reply}), reply_to=msg)
    bundle = rec.get("bundle")
    if not isinstance(bundle, bytes):
        return _refuse(msg, "the secagg record carries no bundle")
    saved = context.state.config_records.get(STATE_KEY)
    blob = saved.get("pipeline") if saved is not None else None
    try:
        if isinstance(blob, bytes):
            client = PipelineClient.load(blob, identity=identity, registry=registry)
        else:
            client = PipelineClient(identity=identity, registry=registry)
    except SecAggError as exc:
        return _refuse(msg, f"saved pipeline state does not load: {exc}")
    inputs: dict[int, Any] = {}
    contexts: dict[int, bytes] = {}
    round_ = rec.get("train-round")
    if ARRAYS_KEY in msg.content.array_records and isinstance(round_, int):
        old = msg.content.array_records[ARRAYS_KEY].to_numpy_ndarrays()
        out = call_next(msg, context)
        if out.has_error():
            return out  # training failed: this client drops out of the round
        new_rec = next(iter(out.content.array_records.values()), None)
        if new_rec is None:
            return _refuse(msg, "the train function returned no ArrayRecord")
        metrics = next(iter(out.content.metric_records.values()), None)
        n_ex = metrics.get("num-examples") if metrics is not None else None
        try:
            inputs[round_] = prepare_input(
                new_rec.to_numpy_ndarrays(),
                old,
                clip=float(rec.get("clip", 1.0)),  # type: ignore[arg-type]
                weighting=str(rec.get("weighting", "uniform")),
                max_weight=float(rec.get("max-weight", 1.0)),  # type: ignore[arg-type]
                num_examples=None if n_ex is None else float(n_ex),  # type: ignore[arg-type]
                l2_clip=float(rec["l2-clip"]) if "l2-clip" in rec else None,  # type: ignore[arg-type]
            )
        except ValueError as exc:
            return _refuse(msg, f"update: {exc}")
        contexts[round_] = model_hash(old)
    try:
        answer = client.handle(bundle, inputs=inputs, contexts=contexts)
    except SecAggError as exc:
        return _refuse(msg, f"{type(exc).__name__}: {exc}")
    finally:
        context.state[STATE_KEY] = ConfigRecord({"pipeline": client.save()})
    report = client.last_report
    if report is not None:
        for r, err in report.refused.items():
            log.warning("round %d refused: %s: %s", r, type(err).__name__, err)
    return Message(RecordDict({SECAGG_KEY: ConfigRecord({"bundle": answer})}), reply_to=msg)
