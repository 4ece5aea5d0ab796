"""The privacy ledger: round trip, tamper and truncation detection, the budget guard,
aborted rounds (also of rounds never begun), torn writes, strict parsing, and the
external anchor (a head hash kept outside the two files)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from dp.errors import (
    BudgetExceededError,
    DeltaError,
    LedgerAnchorFormatError,
    LedgerAnchorNotInChainError,
    LedgerBeyondAnchorError,
    LedgerFormatError,
    LedgerLockedError,
    LedgerMismatchError,
    LedgerStateError,
    LedgerTamperedError,
    LedgerTruncatedError,
)
from dp.ledger import PrivacyLedger, RoundCost, read_ledger, round_cost, verify_ledger
from dp.ledger_format import record_hash


def _cost(q: float = 0.01, sigma: float = 1.0, steps: int = 1) -> RoundCost:
    return round_cost(
        mechanism="dp_fedavg",
        noise_location="central",
        sample_rate=q,
        noise_multiplier=sigma,
        steps=steps,
        clip_norm=1.0,
        extra={"expected_clients": 100},
    )


def _ledger(path: Path, rounds: int = 5, **kw: object) -> PrivacyLedger:
    ledger = PrivacyLedger.create(path, delta=1e-5, **kw)  # type: ignore[arg-type]
    for r in range(rounds):
        ledger.commit(ledger.begin_round(r, _cost(0.01 + 0.001 * r, 1.0 + 0.05 * r)))
    return ledger


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def _write(path: Path, lines: list[str]) -> None:
    path.write_text("".join(line + "\n" for line in lines))


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "l.jsonl"
    ledger = _ledger(path)
    before = ledger.entries
    eps = ledger.epsilon()
    ledger.close()
    contents = read_ledger(path)
    assert contents.entries == before
    again = PrivacyLedger.open(path)
    assert again.epsilon() == eps
    again.commit(again.begin_round(9, _cost()))
    assert again.epsilon() > eps
    again.close()
    report = verify_ledger(path)
    assert report.entries == 6
    assert report.epsilon_cumulative.pld == pytest.approx(again.epsilon())


def test_epsilons_are_cumulative_and_views_differ(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path / "l.jsonl")
    e = ledger.entries
    assert all(
        a.epsilon_cumulative.pld < b.epsilon_cumulative.pld for a, b in itertools.pairwise(e)
    )
    last = e[-1]
    assert last.epsilon_cumulative.pld < last.epsilon_cumulative.rdp
    assert last.epsilon_cumulative_unsampled.pld > last.epsilon_cumulative.pld
    assert e[0].epsilon_round == e[0].epsilon_cumulative


@pytest.mark.parametrize("kind", ["edit", "delete", "reorder", "insert", "truncate"])
def test_tampering_is_detected(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "l.jsonl"
    _ledger(path).close()
    lines = _lines(path)
    if kind == "edit":
        obj = json.loads(lines[3])
        obj["params"]["noise_multiplier"] = 5.0
        lines[3] = json.dumps(obj, sort_keys=True, separators=(",", ":"))
        error: type[Exception] = LedgerTamperedError
    elif kind == "delete":
        del lines[2]
        error = LedgerTamperedError
    elif kind == "reorder":
        lines[2], lines[3] = lines[3], lines[2]
        error = LedgerTamperedError
    elif kind == "insert":
        lines.insert(3, lines[3])
        error = LedgerTamperedError
    else:
        lines = lines[:-2]
        error = LedgerTruncatedError
    _write(path, lines)
    with pytest.raises(error, match=r"line|entries"):
        read_ledger(path)
    with pytest.raises(error):
        PrivacyLedger.open(path)


def test_edit_with_rehash_is_caught_by_chain(tmp_path: Path) -> None:
    path = tmp_path / "l.jsonl"
    _ledger(path).close()
    lines = _lines(path)
    obj = json.loads(lines[2])
    obj["params"]["noise_multiplier"] = 50.0
    obj["hash"] = record_hash(obj)  # a forger who re-hashes one line
    lines[2] = json.dumps(obj, sort_keys=True, separators=(",", ":"))
    _write(path, lines)
    with pytest.raises(LedgerTamperedError, match="line 4: chain broken"):
        read_ledger(path)


def test_rewritten_chain_with_wrong_epsilon_fails_verify(tmp_path: Path) -> None:
    path = tmp_path / "l.jsonl"
    _ledger(path).close()
    lines = _lines(path)
    prev = json.loads(lines[0])["hash"]
    out = [lines[0]]
    for i, line in enumerate(lines[1:]):
        obj = json.loads(line)
        obj["prev"] = prev
        if i == 2:
            obj["epsilon"]["cumulative"]["pld"] = 0.001
        obj["hash"] = record_hash(obj)
        prev = obj["hash"]
        out.append(json.dumps(obj, sort_keys=True, separators=(",", ":")))
    _write(path, out)
    head = json.loads(Path(str(path) + ".head").read_text())
    head["hash"] = prev
    Path(str(path) + ".head").write_text(json.dumps(head))
    read_ledger(path)  # the chain itself is consistent
    with pytest.raises(LedgerMismatchError, match="line 4"):
        verify_ledger(path)


def test_guard_refuses_and_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "l.jsonl"
    ledger = PrivacyLedger.create(path, delta=1e-5, target_epsilon=3.0)
    r = 0
    while True:
        try:
            pending = ledger.begin_round(r, _cost(0.05, 1.0))
        except BudgetExceededError as exc:
            assert exc.round_id == r
            assert exc.epsilon_after > 3.0
            break
        ledger.commit(pending)
        r += 1
    assert r > 0
    size = path.stat().st_size
    assert ledger.pending is None
    assert ledger.epsilon() <= 3.0
    with pytest.raises(BudgetExceededError):
        ledger.begin_round(r, _cost(0.05, 1.0))
    assert path.stat().st_size == size
    ledger.close()
    assert len(read_ledger(path).entries) == r


def test_guard_views_and_accountants(tmp_path: Path) -> None:
    ledger = PrivacyLedger.in_memory(
        delta=1e-5, target_epsilon=5.0, guard_accountant="rdp", guard_view="unsampled"
    )
    with pytest.raises(BudgetExceededError, match="rdp, unsampled"):
        ledger.begin_round(0, _cost(0.01, 0.5))  # fine when sampled, not at q = 1


def test_aborted_rounds(tmp_path: Path) -> None:
    path = tmp_path / "l.jsonl"
    ledger = _ledger(path, rounds=2)
    eps = ledger.epsilon()
    ledger.begin_round(2, _cost())
    zero = ledger.record_aborted(2, released_shares=False)
    assert zero.status == "aborted_unreleased" and not zero.counted
    assert zero.epsilon_round.pld == 0.0 and ledger.epsilon() == eps
    ledger.begin_round(3, _cost())
    counted = ledger.record_aborted(3, released_shares=True)
    assert counted.status == "aborted_released" and counted.counted
    assert ledger.epsilon() > eps
    with pytest.raises(LedgerStateError):
        ledger.record_aborted(4, released_shares=False)
    ledger.close()
    verify_ledger(path)


def test_lifecycle_order(tmp_path: Path) -> None:
    ledger = PrivacyLedger.in_memory(delta=1e-5)
    p = ledger.begin_round(3, _cost())
    with pytest.raises(LedgerStateError, match="pending"):
        ledger.begin_round(4, _cost())
    ledger.commit(p)
    with pytest.raises(LedgerStateError, match="follow"):
        ledger.begin_round(3, _cost())
    with pytest.raises(LedgerStateError):
        ledger.commit(p)


def test_torn_last_line_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / "l.jsonl"
    _ledger(path, rounds=3).close()
    with path.open("a") as fh:
        fh.write('{"type":"round","round":3,"sta')
    contents = read_ledger(path)
    assert contents.torn_tail and len(contents.entries) == 3
    ledger = PrivacyLedger.open(path)
    ledger.commit(ledger.begin_round(3, _cost()))
    ledger.close()
    assert not read_ledger(path).torn_tail
    assert len(verify_ledger(path).__dict__) > 0


def test_head_one_behind_is_repaired(tmp_path: Path) -> None:
    path = tmp_path / "l.jsonl"
    _ledger(path, rounds=3).close()
    head = Path(str(path) + ".head")
    obj = json.loads(head.read_text())
    lines = _lines(path)
    obj["entries"] -= 1
    obj["hash"] = json.loads(lines[-2])["hash"]
    head.write_text(json.dumps(obj))
    assert read_ledger(path).unanchored == 1
    PrivacyLedger.open(path).close()
    assert read_ledger(path).unanchored == 0


def test_missing_head_is_tampering(tmp_path: Path) -> None:
    path = tmp_path / "l.jsonl"
    _ledger(path, rounds=2).close()
    Path(str(path) + ".head").unlink()
    with pytest.raises(LedgerTamperedError, match="head anchor missing"):
        read_ledger(path)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda o: o.update(round=-1), "round"),
        (lambda o: o["params"].update(sample_rate=1.5), "sample_rate"),
        (lambda o: o["params"].update(steps="3"), "steps"),
        (lambda o: o.update(status="maybe"), "status"),
        (lambda o: o.update(extra=1), "unknown"),
        (lambda o: o["epsilon"]["round"].update(pld=-1.0), "epsilon.round.pld"),
    ],
)
def test_bad_fields_name_the_line(tmp_path: Path, mutate: object, message: str) -> None:
    path = tmp_path / "l.jsonl"
    _ledger(path, rounds=3).close()
    lines = _lines(path)
    obj = json.loads(lines[2])
    mutate(obj)  # type: ignore[operator]
    obj["hash"] = record_hash(obj)
    lines[2] = json.dumps(obj, sort_keys=True, separators=(",", ":"))
    _write(path, lines)
    with pytest.raises(LedgerFormatError, match=f"line 3: .*{message}"):
        read_ledger(path)


@pytest.mark.parametrize("raw", ["not json", "[1,2]", '{"a":NaN}', '{"a":1,"a":2}', "\u00e9"])
def test_garbage_lines(tmp_path: Path, raw: str) -> None:
    path = tmp_path / "l.jsonl"
    _ledger(path, rounds=1).close()
    lines = _lines(path)
    lines[1] = raw
    path.write_bytes(("\n".join(lines) + "\n").encode("utf-8"))
    with pytest.raises(LedgerFormatError, match="line 2"):
        read_ledger(path)


def test_one_writer_at_a_time(tmp_path: Path) -> None:
    path = tmp_path / "l.jsonl"
    ledger = _ledger(path, rounds=1)
    with pytest.raises(LedgerLockedError):
        PrivacyLedger.open(path)
    ledger.close()
    PrivacyLedger.open(path).close()


def test_create_refuses_existing_and_bad_delta(tmp_path: Path) -> None:
    path = tmp_path / "l.jsonl"
    _ledger(path, rounds=0).close()
    with pytest.raises(LedgerStateError):
        PrivacyLedger.create(path, delta=1e-5)
    with pytest.raises(DeltaError):
        PrivacyLedger.in_memory(delta=1e-3, population=1000)
    with pytest.raises(LedgerStateError):
        PrivacyLedger.open_or_create(path, delta=1e-6)


# -- aborts of rounds that were never begun --------------------------------------------


def test_abort_of_a_round_never_begun_is_recorded_with_its_cost(tmp_path: Path) -> None:
    """A pipelined round can abort before it is begun: with its cost it lands at zero
    (counted in full if shares went out); without a cost, or while another round is
    pending, it is refused and nothing already accounted changes."""
    path = tmp_path / "l.jsonl"
    ledger = _ledger(path, rounds=2)
    eps, size = ledger.epsilon(), path.stat().st_size
    with pytest.raises(LedgerStateError, match="never begun"):
        ledger.record_aborted(2, released_shares=False)
    zero = ledger.record_aborted(2, released_shares=False, cost=_cost())
    assert zero.status == "aborted_unreleased" and zero.epsilon_round.pld == 0.0
    assert ledger.epsilon() == eps and path.stat().st_size > size
    counted = ledger.record_aborted(3, released_shares=True, cost=_cost())
    assert counted.status == "aborted_released" and ledger.epsilon() > eps
    with pytest.raises(LedgerStateError, match="follow"):
        ledger.record_aborted(3, released_shares=False, cost=_cost())
    # round 4 is pending (reserved): an abort of round 5 must not touch it
    pending = ledger.begin_round(4, _cost(0.02))
    eps4 = ledger.epsilon()
    with pytest.raises(LedgerStateError, match="not the pending round 4"):
        ledger.record_aborted(5, released_shares=False, cost=_cost())
    with pytest.raises(LedgerStateError, match="another cost"):
        ledger.record_aborted(4, released_shares=True, cost=_cost(0.5))
    assert ledger.pending is pending and ledger.epsilon() == eps4
    ledger.record_aborted(4, released_shares=True)  # still counted in full
    assert ledger.epsilon() > eps4
    ledger.close()
    report = verify_ledger(path)
    assert [e.round for e in read_ledger(path).entries] == [0, 1, 2, 3, 4]
    assert report.rounds_counted == 4


def test_abort_of_a_round_never_begun_skips_the_guard() -> None:
    """Nothing is reserved for it, so the guard is not asked; a release that already
    happened is counted even above the target (the next round is then refused)."""
    ledger = PrivacyLedger.in_memory(delta=1e-5, target_epsilon=1.0)
    with pytest.raises(BudgetExceededError):
        ledger.begin_round(0, _cost(1.0, 0.5))
    ledger.record_aborted(0, released_shares=False, cost=_cost(1.0, 0.5))
    assert ledger.epsilon() == 0.0
    ledger.record_aborted(1, released_shares=True, cost=_cost(1.0, 0.5))
    assert ledger.epsilon() > 1.0
    with pytest.raises(BudgetExceededError):
        ledger.begin_round(2, _cost())


# -- the external anchor ------------------------------------------------------------------


def _copy(path: Path) -> tuple[bytes, bytes]:
    return path.read_bytes(), Path(str(path) + ".head").read_bytes()


def _restore(path: Path, saved: tuple[bytes, bytes]) -> None:
    path.write_bytes(saved[0])
    Path(str(path) + ".head").write_bytes(saved[1])


def _attack(kind: str, path: Path) -> str:
    """Build a ledger, keep its head, then attack both files; returns the kept head."""
    ledger = _ledger(path, rounds=3)
    saved = _copy(path)
    for r in range(3, 6):
        ledger.commit(ledger.begin_round(r, _cost(0.05, 0.8)))
    head = ledger.head
    ledger.close()
    if kind == "rollback":  # both files back to their state after round 2
        _restore(path, saved)
    elif kind == "truncate":  # only the header line is left, the head file deleted
        path.write_text(_lines(path)[0] + "\n")
        Path(str(path) + ".head").unlink()
    else:  # replaced by a freshly made ledger with one cheap round
        path.unlink()
        Path(str(path) + ".head").unlink()
        _ledger(path, rounds=1).close()
    return head


@pytest.mark.parametrize("kind", ["rollback", "truncate", "replace"])
def test_attacks_on_both_files_pass_plain_verify_and_fail_with_the_anchor(
    tmp_path: Path, kind: str
) -> None:
    path = tmp_path / "l.jsonl"
    head = _attack(kind, path)
    report = verify_ledger(path)  # nothing in the two files shows the attack ...
    assert report.rounds_counted < 6 and report.head_hash != head
    assert report.anchor_line is None
    with pytest.raises(LedgerAnchorNotInChainError, match="rolled back") as exc:
        verify_ledger(path, expect_head=head)  # ... the kept head does
    assert exc.value.verdict == "anchor_not_in_chain" and exc.value.expected == head
    assert isinstance(exc.value, LedgerTamperedError)
    with pytest.raises(LedgerAnchorNotInChainError):
        verify_ledger(path, expect_prefix=head)


def test_an_honest_ledger_passes_with_its_anchor(tmp_path: Path) -> None:
    path = tmp_path / "l.jsonl"
    ledger = PrivacyLedger.create(path, delta=1e-5)
    empty_head = ledger.head
    assert empty_head == read_ledger(path).header.hash
    entry = ledger.commit(ledger.begin_round(0, _cost()))
    assert ledger.head == entry.hash
    for r in range(1, 3):
        ledger.commit(ledger.begin_round(r, _cost()))
    head = ledger.head
    ledger.close()
    report = verify_ledger(path, expect_head=head.upper())  # case and spaces do not matter
    assert report.head_hash == head and report.anchor_line == 4
    assert report.entries_after_anchor == 0
    assert verify_ledger(path, expect_prefix=empty_head).anchor_line == 1
    # the ledger grows: the old head is still a prefix, no longer the head
    again = PrivacyLedger.open(path)
    again.commit(again.begin_round(3, _cost()))
    again.close()
    grown = verify_ledger(path, expect_prefix=head)
    assert grown.anchor_line == 4 and grown.entries_after_anchor == 1
    with pytest.raises(LedgerBeyondAnchorError, match="1 entries after it") as exc:
        verify_ledger(path, expect_head=head)
    assert exc.value.verdict == "entries_after_anchor"
    # an edited line after the anchor is still caught by the chain
    lines = _lines(path)
    lines[-1] = lines[-1].replace('"steps":1', '"steps":2')
    _write(path, lines)
    with pytest.raises(LedgerTamperedError):
        verify_ledger(path, expect_prefix=head)


@pytest.mark.parametrize("bad", ["", "abc", "g" * 64, "0" * 63, 7])
def test_a_malformed_anchor_is_a_named_error(tmp_path: Path, bad: object) -> None:
    path = tmp_path / "l.jsonl"
    _ledger(path, rounds=1).close()
    with pytest.raises(LedgerAnchorFormatError):
        verify_ledger(path, expect_head=bad)  # type: ignore[arg-type]
    assert issubclass(LedgerAnchorFormatError, ValueError)
