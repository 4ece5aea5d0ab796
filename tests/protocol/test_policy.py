"""What a client accepts is fixed out of band: its security policy derives the session's
parameters, and anything else the server announces is refused before a key leaves it;
its durable records refuse a replayed bootstrap."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from secagg import SecAggConfig
from secagg.client import SecAggClient
from secagg.client_records import ClientRecords
from secagg.errors import ConfigError, PolicyViolationError, RegistryError, ReplayedSessionError
from secagg.parameters import PARAMETER_SEARCH_VERSION
from secagg.pipeline import PipelineClient, PipelineServer
from secagg.policy import SecurityPolicy
from secagg.registry import Identity, Registry, Trust, provision
from secagg.simulate import Provisioning

GUARANTEES = ("ACT-1",)
N = 30


def _derived(**kw: object) -> SecAggConfig:
    return SecurityPolicy(**kw).derive(N)  # type: ignore[arg-type]


def test_the_policy_derives_the_default_active_parameters() -> None:
    cfg = _derived()
    assert cfg == SecAggConfig.default(N)
    SecurityPolicy().check(cfg)


@pytest.mark.parametrize(
    "change",
    [
        {"threshold": -1},  # a lower threshold
        {"threshold": +1},  # a higher one: not weaker, still not what the policy fixes
        {"neighbours": +2},  # more neighbours with the same t: weaker
        {"setting": "honest_but_curious"},
        {"tolerated_corrupt": -1},
        {"dropout_fraction": 0.3},
        {"sigma": 30},
        {"min_summed_fraction": 0.0},
    ],
)
def test_any_other_parameter_is_refused(change: dict[str, object]) -> None:
    """'Not weaker' is not a total order: the client accepts exactly its parameters."""
    cfg = _derived()
    fields = {f: getattr(cfg, f) for f in ("threshold", "neighbours", "tolerated_corrupt")}
    kw: dict[str, object] = {}
    for k, v in change.items():
        kw[k] = fields[k] + v if k in fields and isinstance(v, int) else v  # type: ignore[operator]
    try:
        other = dataclasses.replace(cfg, **kw)  # type: ignore[arg-type]
    except ConfigError:
        return  # not even a valid configuration
    with pytest.raises(PolicyViolationError):
        SecurityPolicy().check(other)


def test_a_client_refuses_a_session_its_policy_does_not_fix_before_any_key() -> None:
    prov = Provisioning.make(_derived(), SecurityPolicy())
    weak = SecAggConfig(num_clients=N, threshold=2, neighbours=4, setting="honest_but_curious")
    with pytest.raises(PolicyViolationError):
        SecAggClient(
            weak, 0, session_id=b"s" * 16, round_index=0, dimension=4, policy=prov.registry.policy
        )
    other = dataclasses.replace(_derived(), threshold=_derived().threshold + 1)
    with pytest.raises(PolicyViolationError):
        SecAggClient(
            other, 0, session_id=b"s" * 16, round_index=0, dimension=4, trust=prov.trust[0]
        )


def test_another_parameter_search_version_is_refused() -> None:
    with pytest.raises(PolicyViolationError, match="parameter search"):
        SecurityPolicy(search_version=PARAMETER_SEARCH_VERSION + 1).derive(N)


def test_a_pinned_policy_accepts_exactly_its_config() -> None:
    cfg = SecAggConfig(num_clients=12, threshold=4, neighbours=4, setting="active")
    pol = SecurityPolicy.fixed(cfg)
    assert pol.derive(12) == cfg
    with pytest.raises(PolicyViolationError):
        pol.derive(13)
    assert SecurityPolicy.from_json(pol.to_json()) == pol


def test_policy_files_are_strict() -> None:
    text = SecurityPolicy().to_json()
    assert SecurityPolicy.from_json(text) == SecurityPolicy()
    for bad in (
        "[" * 5000 + "]" * 5000,
        '{"setting": "active", "extra": 1}',
        '{"sigma": "40"}',
        "x" * 9000,
    ):
        with pytest.raises(ConfigError):
            SecurityPolicy.from_json(bad)


def test_the_registry_binds_policy_keys_and_seed() -> None:
    _ids, reg = provision(5)
    back = Registry.from_json(reg.to_json())
    assert back == reg and back.digest == reg.digest
    raw = json.loads(reg.to_json())
    raw["policy"]["sigma"] = 30
    assert Registry.from_json(json.dumps(raw)).digest != reg.digest
    raw = json.loads(reg.to_json())
    raw["graph_seed"] = "00" * 32
    assert Registry.from_json(json.dumps(raw)).digest != reg.digest
    with pytest.raises(RegistryError):
        Trust.of(Identity.generate(0), reg)  # an identity the registry does not list
    raw = json.loads(reg.to_json())
    raw["members"][1]["identity"] = raw["members"][0]["identity"]
    with pytest.raises(RegistryError):
        Registry.from_json(json.dumps(raw))


def test_records_refuse_a_replayed_or_older_session() -> None:
    rec = ClientRecords()
    rec.admit(5, b"a" * 16, 0)
    rec.admit(5, b"a" * 16, 3)
    with pytest.raises(ReplayedSessionError):
        rec.admit(5, b"a" * 16, 3)  # the same exchange again
    with pytest.raises(ReplayedSessionError):
        rec.admit(5, b"b" * 16, 7)  # another session with the same counter
    with pytest.raises(ReplayedSessionError):
        rec.admit(4, b"c" * 16, 0)  # an older one
    rec.admit(6, b"d" * 16, 0)
    assert ClientRecords.from_bytes(rec.to_bytes()) == rec


def test_a_replayed_bootstrap_is_refused_after_the_round_state_is_lost() -> None:
    """The server replays a session's first exchange to a client that lost its state
    (the pipelined bootstrap would make it advertise round 1 again): its durable records
    refuse it, as they refuse an older session."""
    cfg = SecAggConfig.default(7, setting="honest_but_curious")
    pol = SecurityPolicy.fixed(cfg)
    srv = PipelineServer(cfg, rounds=2, dimension=4)
    boot = srv.outgoing()[0]
    records = ClientRecords()
    PipelineClient(policy=pol, records=records).handle(boot)
    fresh = PipelineClient(policy=pol, records=records)  # state lost, records kept
    with pytest.raises(ReplayedSessionError):
        fresh.handle(boot)
    old = PipelineServer(cfg, rounds=2, dimension=4, counter=srv.descriptor.counter - 1)
    with pytest.raises(ReplayedSessionError):
        PipelineClient(policy=pol, records=records).handle(old.outgoing()[0])


def test_a_bootstrap_relabelled_or_re_counted_is_refused() -> None:
    """The same bootstrap bundle under a later exchange number, and the same session id
    under a higher counter, would make a client that lost its state advertise rounds 1
    and 2 of the session again (two honest views under one binding)."""
    from secagg.errors import ProtocolViolationError
    from secagg.pipeline import TO_CLIENT, Bundle

    cfg = SecAggConfig.default(7, setting="honest_but_curious")
    pol = SecurityPolicy.fixed(cfg)
    srv = PipelineServer(cfg, rounds=3, dimension=4)
    boot = srv.outgoing()[0]
    records = ClientRecords()
    PipelineClient(policy=pol, records=records).handle(boot)
    b = Bundle.decode(boot, TO_CLIENT, 1 << 24)
    for g in (1, 4):
        moved = Bundle(
            b.direction, b.session_id, g, b.client, b.parts, b.starts, b.live_rounds, b.descriptor
        ).encode()
        with pytest.raises(ProtocolViolationError, match="does not start rounds"):
            PipelineClient(policy=pol, records=records).handle(moved)
    rec = ClientRecords()
    rec.admit(5, b"s" * 16, 0)
    with pytest.raises(ReplayedSessionError, match="never set up twice"):
        rec.admit(6, b"s" * 16, 0)


def test_an_active_pipeline_client_needs_its_identity() -> None:
    with pytest.raises(PolicyViolationError):
        PipelineClient(policy=SecurityPolicy())
    assert np.isfinite(SecurityPolicy().summed_fraction)
