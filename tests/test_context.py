"""Domain separation: the canonical encoding is injective and validates its fields."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from secagg.context import RoundContext, canonical, check_party, check_round, check_session_id
from secagg.errors import ContextError

field = st.one_of(st.binary(max_size=20), st.integers(0, 2**64 - 1), st.text(max_size=10))


@given(st.lists(field, max_size=5), st.lists(field, max_size=5))
def test_canonical_is_injective(a: list[bytes | int | str], b: list[bytes | int | str]) -> None:
    if a != b or [type(x) for x in a] != [type(x) for x in b]:
        assert canonical("x", *a) != canonical("x", *b)


def test_field_boundaries_matter() -> None:
    assert canonical("l", "ab", "c") != canonical("l", "a", "bc")
    assert canonical("l", b"ab", b"c") != canonical("l", b"a", b"bc")
    assert canonical("l", 1) != canonical("l", b"\x00" * 7 + b"\x01")
    assert canonical("l1") != canonical("l2")


@pytest.mark.parametrize("bad", [True, -1, 2**64, 1.5, None])
def test_canonical_rejects_bad_fields(bad: object) -> None:
    with pytest.raises(ContextError):
        canonical("l", bad)  # type: ignore[arg-type]


def test_canonical_rejects_empty_label() -> None:
    with pytest.raises(ContextError):
        canonical("")


@pytest.mark.parametrize("sid", [b"", b"short", b"x" * 65, "string-session-id", 12345678])
def test_session_id_validation(sid: object) -> None:
    with pytest.raises(ContextError):
        check_session_id(sid)


def test_round_and_party_validation() -> None:
    assert check_round(0) == 0 and check_party(2**32 - 1) == 2**32 - 1
    for bad in (-1, 2**64, True, "1"):
        with pytest.raises(ContextError):
            check_round(bad)
    for bad in (-1, 2**32, False, 1.0):
        with pytest.raises(ContextError):
            check_party(bad)
    with pytest.raises(ContextError):
        RoundContext(b"x" * 16, -1)
    ctx = RoundContext(b"x" * 16, 3)
    assert ctx.encode("a", 1) != RoundContext(b"x" * 16, 4).encode("a", 1)
    assert ctx.encode("a", 1) != RoundContext(b"y" * 16, 3).encode("a", 1)
