"""Inputs that used to escape the named errors: a deeply nested descriptor, a dimension
that does not fit the saved-state format, an inconsistent saved state, the packing
range check; and no ``assert`` guarding anything in product code (they vanish under
``python -O``)."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest

from secagg import SecAggConfig
from secagg.client import SecAggClient
from secagg.client_state import MAX_DIMENSION, ClientPhase, ClientStateError, RoundState
from secagg.errors import ConfigError, EncodingError, MessageFormatError
from secagg.paillier.packing import PackedEncoder, PackingConfig
from secagg.pipeline import PipelineClient, SessionDescriptor
from secagg.pipeline.envelope import VERSION
from secagg.policy import SecurityPolicy
from secagg.wire import Writer

GUARANTEES = ("ACT-17",)
ROOT = Path(__file__).resolve().parents[2]
CFG = SecAggConfig.default(7, setting="honest_but_curious")


def _descriptor(**changes: object) -> bytes:
    body = json.loads(SessionDescriptor(b"s" * 16, CFG, 3, 8).to_bytes())
    body.update(changes)
    return json.dumps(body).encode()


def test_a_deeply_nested_descriptor_is_a_named_error() -> None:
    nested = b'{"session_id": ' + b"[" * 3000 + b"]" * 3000 + b"}"
    with pytest.raises(MessageFormatError):
        SessionDescriptor.from_bytes(nested[:4096])
    deep = "[" * 2000 + "]" * 2000
    with pytest.raises(MessageFormatError):
        SessionDescriptor.from_bytes(deep.encode())


def test_a_dimension_beyond_the_state_format_is_refused() -> None:
    with pytest.raises(MessageFormatError):
        SessionDescriptor.from_bytes(_descriptor(dimension=MAX_DIMENSION + 1))
    with pytest.raises(ConfigError):
        SecAggClient(CFG, 0, session_id=b"s" * 16, round_index=0, dimension=2**32)
    with pytest.raises(MessageFormatError):
        SessionDescriptor.from_bytes(_descriptor(counter=2**64))
    with pytest.raises(MessageFormatError):
        SessionDescriptor.from_bytes(_descriptor(config={"num_clients": [7]}))


def test_an_inconsistent_saved_pipeline_state_is_a_named_error() -> None:
    pol = SecurityPolicy.fixed(CFG)
    # rounds saved without a session descriptor
    w = Writer().raw(b"SAPS").u8(VERSION).blob(b"").u32(0).u32(1).u32(1).blob(b"").blob(b"")
    w.u32(1).u32(1).blob(b"SAGS")
    with pytest.raises(ClientStateError):
        PipelineClient.load(w.getvalue(), policy=pol)
    for junk in (b"", b"SAPS", b"SAPS\x02" + b"\xff" * 40):
        with pytest.raises(ClientStateError):
            PipelineClient.load(junk, policy=pol)


def test_a_round_state_whose_fields_contradict_is_refused() -> None:
    st = RoundState(0, b"s" * 16, 1, 8, phase=ClientPhase.SHARED)  # no key pairs
    with pytest.raises(ClientStateError):
        RoundState.from_bytes(st.to_bytes(), 7, 4)
    cl = SecAggClient(CFG, 0, session_id=b"s" * 16, round_index=1, dimension=8)
    cl.advertise()
    cl.st.held[5] = (bytes(40), bytes(40))  # a share of a client that is no peer
    with pytest.raises(ClientStateError):
        RoundState.from_bytes(cl.export_state(), 7, 4)


def test_the_packing_range_check_is_a_named_error(monkeypatch: pytest.MonkeyPatch) -> None:
    enc = PackedEncoder(PackingConfig(value_bits=16, max_clients=10))
    # a quantiser gone wrong: the check after it stays a named error under python -O
    monkeypatch.setattr(enc._fixed, "quantize", lambda x, rng=None: np.full(4, 2**40))
    with pytest.raises(EncodingError):
        enc.quantize(np.zeros(4))


def test_no_assert_guards_anything_in_product_code() -> None:
    found = []
    for pkg in ("secagg", "dp", "protocols"):
        for path in sorted((ROOT / pkg).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Assert):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not found, found
