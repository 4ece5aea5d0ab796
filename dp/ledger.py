"""The per-round privacy ledger: append-only, fsync'd, hash-chained, with a budget guard.

Lifecycle the protocol layer follows each round::

    pending = ledger.begin_round(r, cost)   # guard check; refuses (BudgetExceededError)
                                            # and writes nothing if the budget would burst
    ... run the round ...
    ledger.commit(pending)                  # append + fsync; returns only once on disk
    release(aggregate)                      # only after commit returned

    # or, if the round fails:
    ledger.record_aborted(r, released_shares=False)  # nothing left the server: zero cost
    ledger.record_aborted(r, released_shares=True)   # unmasking shares / a decryption
                                                     # went out: the round stays counted

A crash between commit and release leaves the round counted (conservative); a crash
before commit returns leaves at most a torn last line, dropped on reopen, and nothing
was released. Next to ``LEDGER`` the file ``LEDGER.head`` anchors the last entry's hash
and the entry count (replaced atomically after each append), so removing trailing lines
is detected as truncation; a head one entry behind is a crash between the two writes
and is repaired on open. Anyone who can rewrite both files can rewrite history (roll
both back, truncate to the header and delete the head file, replace them wholesale):
keep :attr:`PrivacyLedger.head` outside them after each commit and check it with
``verify_ledger(path, expect_head=...)`` (``secagg budget verify --expect-head``).

Reading needs no torch; opening for writing replays every round through the RDP and PLD
accountants (checking each stored epsilon), so the running totals are those of the file.
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import os
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from types import TracebackType
from typing import Any, Required, TypedDict, Unpack

from dp.accountants import PLD_DISCRETIZATION, MechanismStep, PLDAccountant, RDPAccountant
from dp.budget import BudgetGuard
from dp.errors import (
    LedgerAnchorFormatError,
    LedgerAnchorNotInChainError,
    LedgerBeyondAnchorError,
    LedgerError,
    LedgerFormatError,
    LedgerLockedError,
    LedgerMismatchError,
    LedgerStateError,
    LedgerTamperedError,
    LedgerTruncatedError,
)
from dp.ledger_format import (
    GENESIS,
    ZERO,
    EpsilonPair,
    ExtraValue,
    FieldError,
    GuardAccountant,
    GuardView,
    LedgerEntry,
    LedgerHeader,
    NoiseLocationName,
    RoundParams,
    Status,
    canonical,
    check_extra,
    check_name,
    entry_from_json,
    header_from_json,
    header_record,
    parse_line,
    record_hash,
    round_record,
    seal,
)
from dp.rdp import DEFAULT_ORDERS
from dp.validation import (
    check_clip_norm,
    check_count,
    check_delta,
    check_noise_multiplier,
    check_sample_rate,
)


class LedgerSettings(TypedDict, total=False):
    """Settings of a new ledger: ``delta`` (required); a ``target_epsilon`` budget and
    which ``guard_accountant`` (pld) and ``guard_view`` (sampled) enforce it; the
    ``population`` size (delta must be below 1/population); free-form ``meta``; the PLD
    grid and RDP orders (defaults recorded in the header)."""

    delta: Required[float]
    target_epsilon: float | None
    guard_accountant: GuardAccountant
    guard_view: GuardView
    population: int | None
    meta: Mapping[str, ExtraValue] | None
    pld_discretization: float
    rdp_orders: tuple[float, ...]


# Stored and recomputed epsilons must agree to this relative precision.
_REL_TOL = 1e-6


@dataclass(frozen=True)
class RoundCost:
    """What a mechanism will spend in one round, as the ledger records it."""

    mechanism: str
    noise_location: NoiseLocationName
    params: RoundParams

    def step(self) -> MechanismStep:
        """The (q, sigma, steps) block the accountants compose."""
        return MechanismStep(
            self.params.sample_rate, self.params.noise_multiplier, self.params.steps
        )


def round_cost(
    *,
    mechanism: str,
    noise_location: NoiseLocationName,
    sample_rate: float,
    noise_multiplier: float,
    steps: int,
    clip_norm: float,
    sensitivity: float | None = None,
    extra: Mapping[str, ExtraValue] | None = None,
) -> RoundCost:
    """A validated :class:`RoundCost` (``sensitivity`` defaults to ``clip_norm``)."""
    try:
        name = check_name(mechanism, "mechanism")
        extras = check_extra(dict(extra or {}), "extra")
    except FieldError as exc:
        raise LedgerFormatError(str(exc)) from None
    if noise_location not in ("local", "central", "distributed"):
        raise LedgerFormatError(f"noise_location {noise_location!r} unknown")
    clip = check_clip_norm(clip_norm)
    sens = clip if sensitivity is None else check_clip_norm(sensitivity, "sensitivity")
    params = RoundParams(
        sample_rate=check_sample_rate(sample_rate),
        noise_multiplier=check_noise_multiplier(noise_multiplier),
        steps=check_count(steps, "steps"),
        clip_norm=clip,
        sensitivity=sens,
        extra=extras,
    )
    return RoundCost(name, noise_location, params)


class _Totals:
    """The four running accountants of a ledger: RDP and PLD, with and without sampling."""

    def __init__(self, orders: tuple[float, ...], discretization: float) -> None:
        self.orders = orders
        self.discretization = discretization
        self.rdp = RDPAccountant(orders=orders)
        self.pld = PLDAccountant(discretization=discretization)
        self.rdp_unsampled = RDPAccountant(orders=orders)
        self.pld_unsampled = PLDAccountant(discretization=discretization)

    def copy(self) -> _Totals:
        other = _Totals.__new__(_Totals)
        other.orders, other.discretization = self.orders, self.discretization
        other.rdp, other.pld = self.rdp.copy(), self.pld.copy()
        other.rdp_unsampled, other.pld_unsampled = (
            self.rdp_unsampled.copy(),
            self.pld_unsampled.copy(),
        )
        return other

    def compose(self, step: MechanismStep) -> None:
        self.rdp.compose(step)
        self.pld.compose(step)
        self.rdp_unsampled.compose(step.unsampled())
        self.pld_unsampled.compose(step.unsampled())

    def cumulative(self, delta: float) -> tuple[EpsilonPair, EpsilonPair]:
        return (
            EpsilonPair(self.rdp.get_epsilon(delta), self.pld.get_epsilon(delta)),
            EpsilonPair(
                self.rdp_unsampled.get_epsilon(delta), self.pld_unsampled.get_epsilon(delta)
            ),
        )

    def alone(self, step: MechanismStep, delta: float) -> tuple[EpsilonPair, EpsilonPair]:
        """Epsilons of ``step`` on its own (sampled, unsampled); cached, rounds repeat."""
        return _alone(step, delta, self.orders, self.discretization)


@lru_cache(maxsize=512)
def _alone(
    step: MechanismStep, delta: float, orders: tuple[float, ...], discretization: float
) -> tuple[EpsilonPair, EpsilonPair]:
    one = _Totals(orders, discretization)
    one.compose(step)
    return one.cumulative(delta)


@dataclass(frozen=True)
class PendingRound:
    """A round the guard let start; pass it to :meth:`PrivacyLedger.commit`."""

    round: int
    cost: RoundCost
    epsilon_round: EpsilonPair
    epsilon_cumulative: EpsilonPair
    epsilon_round_unsampled: EpsilonPair
    epsilon_cumulative_unsampled: EpsilonPair
    _totals: _Totals = field(repr=False, compare=False)


@dataclass(frozen=True)
class LedgerContents:
    """A ledger file as read and chain-checked (epsilons not recomputed)."""

    path: Path
    header: LedgerHeader
    entries: tuple[LedgerEntry, ...]
    head_hash: str
    torn_tail: bool
    unanchored: int

    @property
    def last_hash(self) -> str:
        """Hash of the last complete line."""
        return self.entries[-1].hash if self.entries else self.header.hash


def head_path(path: Path) -> Path:
    """Where the head anchor of ``path`` lives."""
    return path.with_name(path.name + ".head")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_head(path: Path) -> tuple[int, str, str] | None:
    hp = head_path(path)
    try:
        text = hp.read_text(encoding="ascii")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise LedgerFormatError(f"{hp}: unreadable head anchor ({exc})") from None
    try:
        obj = parse_line(text.strip())
        if set(obj) != {"entries", "hash", "ledger_id"}:
            raise FieldError("head must hold exactly entries, hash, ledger_id")
        entries, digest, lid = obj["entries"], obj["hash"], obj["ledger_id"]
        if isinstance(entries, bool) or not isinstance(entries, int) or entries < 1:
            raise FieldError("head entries must be an integer >= 1")
        if not isinstance(digest, str) or not isinstance(lid, str):
            raise FieldError("head hash and ledger_id must be strings")
    except FieldError as exc:
        raise LedgerFormatError(f"{hp}: {exc}") from None
    return entries, digest, lid


def _write_head(path: Path, entries: int, digest: str, ledger_id: str) -> None:
    hp = head_path(path)
    tmp = hp.with_name(hp.name + ".tmp")
    data = canonical({"entries": entries, "hash": digest, "ledger_id": ledger_id}) + "\n"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data.encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, hp)
    # No directory fsync: a rename lost in a crash leaves the head one entry behind,
    # which open() accepts and repairs (the ledger line itself was fsync'd first).


def read_ledger(path: str | os.PathLike[str]) -> LedgerContents:
    """Parse, validate and chain-check a ledger file.

    Raises :class:`LedgerFormatError` naming the line for a malformed record,
    :class:`LedgerTamperedError` when the hash chain or the head anchor does not match,
    :class:`LedgerTruncatedError` when entries the head anchors are missing.
    """
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise LedgerError(f"{p}: no such ledger") from None
    chunks = data.split(b"\n")
    tail = chunks.pop()  # b"" when the file ends with a newline
    torn = tail != b""
    if not chunks:
        raise LedgerFormatError(f"{p}: line 1: missing header")
    header: LedgerHeader | None = None
    entries: list[LedgerEntry] = []
    prev = GENESIS
    for number, raw in enumerate(chunks, start=1):
        try:
            obj = parse_line(raw.decode("ascii"))
            record = header_from_json(obj) if number == 1 else entry_from_json(obj, number)
        except UnicodeDecodeError:
            raise LedgerFormatError(f"{p}: line {number}: not ASCII") from None
        except FieldError as exc:
            raise LedgerFormatError(f"{p}: line {number}: {exc}") from None
        if record_hash(obj) != obj["hash"]:
            raise LedgerTamperedError(f"{p}: line {number}: hash mismatch (line edited)")
        if obj["prev"] != prev:
            raise LedgerTamperedError(
                f"{p}: line {number}: chain broken (a line before it was removed, "
                "inserted or reordered)"
            )
        prev = obj["hash"]
        if isinstance(record, LedgerHeader):
            header = record
        else:
            if entries and record.round <= entries[-1].round:
                raise LedgerTamperedError(
                    f"{p}: line {number}: round {record.round} does not follow "
                    f"round {entries[-1].round}"
                )
            entries.append(record)
    if header is None:  # pragma: no cover - an empty file was refused above
        raise LedgerFormatError(f"{p}: no header line")
    head = _read_head(p)
    complete = len(chunks)
    if head is None:
        if complete > 1:
            raise LedgerTamperedError(f"{head_path(p)}: head anchor missing")
        anchored, head_hash = complete, prev
    else:
        anchored, head_hash, head_id = head
        if head_id != header.ledger_id:
            raise LedgerTamperedError(f"{head_path(p)}: anchor belongs to another ledger")
        if complete < anchored:
            raise LedgerTruncatedError(
                f"{p}: {complete} lines but the head anchors {anchored}: entries removed"
            )
        hashes = [header.hash] + [e.hash for e in entries]
        if hashes[anchored - 1] != head_hash:
            raise LedgerTamperedError(f"{p}: line {anchored}: does not match the head anchor")
    unanchored = complete - anchored
    if unanchored > 1 or (unanchored and torn):
        raise LedgerTamperedError(
            f"{p}: {unanchored} complete line(s) beyond the head anchor"
            + (" and a torn line" if torn else "")
        )
    return LedgerContents(p, header, tuple(entries), prev, torn, unanchored)


def _close(a: float, b: float) -> bool:
    if math.isinf(a) or math.isinf(b):
        return a == b
    return abs(a - b) <= _REL_TOL * max(1.0, abs(a), abs(b))


def _check_pair(p: Path, line: int, what: str, stored: EpsilonPair, got: EpsilonPair) -> None:
    if not (_close(stored.rdp, got.rdp) and _close(stored.pld, got.pld)):
        raise LedgerMismatchError(
            f"{p}: line {line}: stored {what} epsilon (rdp={stored.rdp}, pld={stored.pld}) "
            f"differs from recomputed (rdp={got.rdp}, pld={got.pld})"
        )


def replay(contents: LedgerContents) -> _Totals:
    """Recompute every entry's epsilons from its parameters; raise on any difference."""
    header = contents.header
    totals = _Totals(header.rdp_orders, header.pld_discretization)
    delta = header.delta
    for entry in contents.entries:
        step = MechanismStep(
            entry.params.sample_rate, entry.params.noise_multiplier, entry.params.steps
        )
        if entry.counted:
            alone, alone_u = totals.alone(step, delta)
            totals.compose(step)
        else:
            alone, alone_u = ZERO, ZERO
        cum, cum_u = totals.cumulative(delta)
        p, line = contents.path, entry.line
        _check_pair(p, line, "round", entry.epsilon_round, alone)
        _check_pair(p, line, "round (unsampled)", entry.epsilon_round_unsampled, alone_u)
        _check_pair(p, line, "cumulative", entry.epsilon_cumulative, cum)
        _check_pair(p, line, "cumulative (unsampled)", entry.epsilon_cumulative_unsampled, cum_u)
    return totals


@dataclass(frozen=True)
class VerifyReport:
    """Outcome of :func:`verify_ledger`. With an anchor, ``anchor_line`` is the line the
    kept hash names (1: the header) and ``entries_after_anchor`` how many entries follow
    it (0 with ``expect_head``); both ``None`` without an anchor."""

    entries: int
    rounds_counted: int
    epsilon_cumulative: EpsilonPair
    epsilon_cumulative_unsampled: EpsilonPair
    head_hash: str
    torn_tail: bool
    unanchored: int
    anchor_line: int | None = None
    entries_after_anchor: int | None = None


_ANCHOR = re.compile(r"[0-9a-f]{64}\Z")


def _anchor_hash(value: object, what: str) -> str:
    text = value.strip().lower() if isinstance(value, str) else ""
    if not _ANCHOR.match(text):
        raise LedgerAnchorFormatError(f"{what} must be 64 hexadecimal digits, got {value!r}")
    return text


def check_anchor(
    contents: LedgerContents,
    *,
    expect_head: str | None = None,
    expect_prefix: str | None = None,
) -> int | None:
    """Check a read ledger against head hashes kept outside its two files.

    ``expect_head``: the ledger's head (its last complete line) must be exactly this
    hash; ``expect_prefix``: this hash must be a line of the chain (the ledger may have
    grown since). Each line's hash covers every line before it, so a match pins the
    whole history up to that line. Returns the anchored line (1: the header), or None
    when neither is given. Raises :class:`LedgerAnchorNotInChainError` (rolled back,
    truncated or replaced), :class:`LedgerBeyondAnchorError` (exact head expected,
    entries appended since), :class:`LedgerAnchorFormatError` (not a hash).
    """
    hashes = [contents.header.hash] + [e.hash for e in contents.entries]
    line_of = {h: i + 1 for i, h in enumerate(hashes)}
    p, head = contents.path, contents.head_hash
    line: int | None = None
    if expect_prefix is not None:
        want = _anchor_hash(expect_prefix, "expect_prefix")
        if want not in line_of:
            raise LedgerAnchorNotInChainError(
                f"{p}: the anchored hash {want} is no line of this ledger: it was rolled "
                "back, truncated or replaced since the anchor was kept",
                expected=want,
                head=head,
            )
        line = line_of[want]
    if expect_head is not None:
        want = _anchor_hash(expect_head, "expect_head")
        if want in line_of and want != head:
            raise LedgerBeyondAnchorError(
                f"{p}: the expected head {want} is line {line_of[want]}, with "
                f"{len(hashes) - line_of[want]} entries after it (grown since the anchor? "
                "use expect_prefix)",
                expected=want,
                head=head,
            )
        if want != head:
            raise LedgerAnchorNotInChainError(
                f"{p}: head {head} is not the expected head {want}, which is no line of "
                "this ledger: it was rolled back, truncated or replaced",
                expected=want,
                head=head,
            )
        line = len(hashes)
    return line


def verify_ledger(
    path: str | os.PathLike[str],
    *,
    expect_head: str | None = None,
    expect_prefix: str | None = None,
) -> VerifyReport:
    """Check the hash chain and head anchor, and recompute every epsilon.

    Without ``expect_head``/``expect_prefix`` (see :func:`check_anchor`) nothing outside
    the two files pins the head: a rollback of both files, a truncation to the header
    with the head file deleted, or a freshly made replacement all verify.
    """
    contents = read_ledger(path)
    line = check_anchor(contents, expect_head=expect_head, expect_prefix=expect_prefix)
    totals = replay(contents)
    cum, cum_u = totals.cumulative(contents.header.delta)
    return VerifyReport(
        entries=len(contents.entries),
        rounds_counted=sum(1 for e in contents.entries if e.counted),
        epsilon_cumulative=cum,
        epsilon_cumulative_unsampled=cum_u,
        head_hash=contents.head_hash,
        torn_tail=contents.torn_tail,
        unanchored=contents.unanchored,
        anchor_line=line,
        entries_after_anchor=None if line is None else 1 + len(contents.entries) - line,
    )


class PrivacyLedger:
    """One privacy ledger (one per server session, or per client identity) and its guard.

    Build with :meth:`create`, :meth:`open`, :meth:`open_or_create` or :meth:`in_memory`.
    The writer holds an exclusive ``flock`` on the file, so two writers cannot interleave.
    """

    def __init__(
        self,
        *,
        path: Path | None,
        fd: int | None,
        header: LedgerHeader,
        entries: list[LedgerEntry],
        totals: _Totals,
    ) -> None:
        self._path = path
        self._fd = fd
        self._header = header
        self._entries = entries
        self._totals = totals
        self._pending: PendingRound | None = None
        self.guard = (
            None
            if header.target_epsilon is None
            else BudgetGuard(header.target_epsilon, header.guard_accountant, header.guard_view)
        )

    # --- construction ----------------------------------------------------------------

    @staticmethod
    def _new_header(settings: LedgerSettings) -> dict[str, Any]:
        population = settings.get("population")
        delta = check_delta(settings["delta"], population=population)
        target_epsilon = settings.get("target_epsilon")
        guard_accountant = settings.get("guard_accountant", "pld")
        guard_view = settings.get("guard_view", "sampled")
        if target_epsilon is not None:
            BudgetGuard(target_epsilon, guard_accountant, guard_view)  # validates
        try:
            extras = check_extra(dict(settings.get("meta") or {}), "meta")
        except FieldError as exc:
            raise LedgerFormatError(str(exc)) from None
        record = header_record(
            ledger_id=secrets.token_hex(16),
            created=time.time(),
            delta=delta,
            target_epsilon=None if target_epsilon is None else float(target_epsilon),
            guard_accountant=guard_accountant,
            guard_view=guard_view,
            population=population,
            pld_discretization=float(settings.get("pld_discretization", PLD_DISCRETIZATION)),
            rdp_orders=tuple(float(a) for a in settings.get("rdp_orders", DEFAULT_ORDERS)),
            meta=extras,
        )
        record["hash"] = record_hash(record)
        return record

    @classmethod
    def in_memory(cls, **settings: Unpack[LedgerSettings]) -> PrivacyLedger:
        """A ledger that keeps its entries in memory only (simulations, tests)."""
        header = header_from_json(cls._new_header(settings))
        totals = _Totals(header.rdp_orders, header.pld_discretization)
        return cls(path=None, fd=None, header=header, entries=[], totals=totals)

    @classmethod
    def create(
        cls, path: str | os.PathLike[str], **settings: Unpack[LedgerSettings]
    ) -> PrivacyLedger:
        """Create a new ledger file (refuses to overwrite an existing one)."""
        p = Path(path)
        record = cls._new_header(settings)
        try:
            fd = os.open(p, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        except FileExistsError:
            raise LedgerStateError(f"{p}: ledger exists; open it instead") from None
        try:
            _lock(fd, p)
            _append(fd, canonical(record))
            _fsync_dir(p)
            _write_head(p, 1, record["hash"], record["ledger_id"])
        except BaseException:
            os.close(fd)
            raise
        header = header_from_json(record)
        totals = _Totals(header.rdp_orders, header.pld_discretization)
        return cls(path=p, fd=fd, header=header, entries=[], totals=totals)

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> PrivacyLedger:
        """Open an existing ledger for appending: lock it, verify it, replay its rounds.

        A torn last line (a commit that never returned) is dropped; a head anchor one
        entry behind (a crash between the ledger's and the head's fsync) is repaired.
        """
        p = Path(path)
        try:
            fd = os.open(p, os.O_RDWR | os.O_APPEND)
        except FileNotFoundError:
            raise LedgerError(f"{p}: no such ledger") from None
        try:
            _lock(fd, p)
            contents = read_ledger(p)
            totals = replay(contents)
            if contents.torn_tail:
                size = os.fstat(fd).st_size
                data_end = p.read_bytes().rfind(b"\n") + 1
                if data_end < size:
                    os.ftruncate(fd, data_end)
                    os.fsync(fd)
            if contents.unanchored or contents.torn_tail:
                _write_head(
                    p, 1 + len(contents.entries), contents.last_hash, contents.header.ledger_id
                )
        except BaseException:
            os.close(fd)
            raise
        return cls(
            path=p,
            fd=fd,
            header=contents.header,
            entries=list(contents.entries),
            totals=totals,
        )

    @classmethod
    def open_or_create(
        cls, path: str | os.PathLike[str], **settings: Unpack[LedgerSettings]
    ) -> PrivacyLedger:
        """Open ``path`` if it exists (its delta and budget must match), else create it."""
        if not Path(path).exists():
            return cls.create(path, **settings)
        ledger = cls.open(path)
        h = ledger.header
        target = settings.get("target_epsilon")
        if h.delta != float(settings["delta"]) or h.target_epsilon != (
            None if target is None else float(target)
        ):
            ledger.close()
            raise LedgerStateError(
                f"{path}: existing ledger has delta={h.delta}, target={h.target_epsilon}; "
                f"asked for delta={settings['delta']}, target={target}"
            )
        return ledger

    # --- state -------------------------------------------------------------------------

    @property
    def path(self) -> Path | None:
        """The ledger file (None for an in-memory ledger)."""
        return self._path

    @property
    def header(self) -> LedgerHeader:
        """Settings: delta, budget, accountant parameters."""
        return self._header

    @property
    def delta(self) -> float:
        """The delta every epsilon in this ledger is reported at."""
        return self._header.delta

    @property
    def entries(self) -> tuple[LedgerEntry, ...]:
        """Every recorded round, in order."""
        return tuple(self._entries)

    @property
    def head(self) -> str:
        """Hash of the last line (the header's while empty): keep it outside the ledger
        and check it with ``verify_ledger(path, expect_head=...)``."""
        return self._entries[-1].hash if self._entries else self._header.hash

    @property
    def last_round(self) -> int | None:
        """The last recorded round number."""
        return self._entries[-1].round if self._entries else None

    @property
    def pending(self) -> PendingRound | None:
        """The round begun and not yet committed or aborted."""
        return self._pending

    def epsilon(self, *, accountant: str = "pld", view: str = "sampled") -> float:
        """Cumulative epsilon so far (``rdp``/``pld``, ``sampled``/``unsampled``)."""
        cum, cum_u = self._cumulative()
        pair = cum_u if view == "unsampled" else cum
        return pair.get(accountant)

    def _cumulative(self) -> tuple[EpsilonPair, EpsilonPair]:
        if self._entries:
            last = self._entries[-1]
            return last.epsilon_cumulative, last.epsilon_cumulative_unsampled
        return ZERO, ZERO

    # --- lifecycle -----------------------------------------------------------------------

    def begin_round(self, round_id: int, cost: RoundCost) -> PendingRound:
        """Check the guard for round ``round_id`` at ``cost``; write nothing.

        Raises :class:`~dp.errors.BudgetExceededError` if completing the round would
        exceed the target, :class:`LedgerStateError` if a round is pending or
        ``round_id`` does not follow the last recorded round.
        """
        pending = self._reserve(round_id, cost)
        if self.guard is not None:
            self.guard.check(
                round_id=pending.round,
                cumulative=pending.epsilon_cumulative,
                cumulative_unsampled=pending.epsilon_cumulative_unsampled,
            )
        self._pending = pending
        return pending

    def _reserve(self, round_id: int, cost: RoundCost) -> PendingRound:
        """What round ``round_id`` at ``cost`` would add (no guard check, nothing kept)."""
        self._check_open()
        rid = check_count(round_id, "round")
        if self._pending is not None:
            raise LedgerStateError(
                f"round {self._pending.round} is pending: commit or record_aborted it first"
            )
        if self._entries and rid <= self._entries[-1].round:
            raise LedgerStateError(
                f"round {rid} does not follow the last recorded round {self._entries[-1].round}"
            )
        step = cost.step()
        delta = self._header.delta
        alone, alone_u = self._totals.alone(step, delta)
        totals = self._totals.copy()
        totals.compose(step)
        cum, cum_u = totals.cumulative(delta)
        return PendingRound(rid, cost, alone, cum, alone_u, cum_u, totals)

    def commit(self, pending: PendingRound) -> LedgerEntry:
        """Append the round and fsync; release the round's output only after this returns."""
        self._check_open()
        if pending is not self._pending:
            raise LedgerStateError("commit() takes the PendingRound that begin_round returned")
        entry = self._write(
            pending,
            "committed",
            pending.epsilon_round,
            pending.epsilon_cumulative,
            pending.epsilon_round_unsampled,
            pending.epsilon_cumulative_unsampled,
        )
        self._totals = pending._totals
        self._pending = None
        return entry

    def record_aborted(
        self, round_id: int, *, released_shares: bool, cost: RoundCost | None = None
    ) -> LedgerEntry:
        """Record that round ``round_id`` aborted.

        ``released_shares=False``: no unmasking share, decryption or output left the
        server, so the round costs nothing (recorded at zero). ``True``: something that
        can reveal the sum went out, so the round is counted in full.

        Normally ``round_id`` is the pending round. A round that aborted before it was
        begun (e.g. a pipelined round whose key exchange failed before its training
        exchange) is recorded when no round is pending, ``round_id`` follows the last
        recorded round and ``cost`` says what it would have spent; the guard is not
        consulted (nothing is reserved; a released round is counted even above the
        target, since the release already happened). Otherwise :class:`LedgerStateError`,
        and nothing changes: a pending round stays pending.
        """
        self._check_open()
        pending = self._pending
        if pending is None:
            if cost is None:
                raise LedgerStateError(
                    f"round {round_id} was never begun: pass its cost to record its abort"
                )
            pending = self._reserve(round_id, cost)
        elif pending.round != round_id:
            raise LedgerStateError(
                f"round {round_id} is not the pending round {pending.round}: record that "
                "one first (rounds are recorded in order)"
            )
        elif cost is not None and cost != pending.cost:
            raise LedgerStateError(f"round {round_id} was begun at another cost")
        if released_shares:
            entry = self._write(
                pending,
                "aborted_released",
                pending.epsilon_round,
                pending.epsilon_cumulative,
                pending.epsilon_round_unsampled,
                pending.epsilon_cumulative_unsampled,
            )
            self._totals = pending._totals
        else:
            cum, cum_u = self._cumulative()
            entry = self._write(pending, "aborted_unreleased", ZERO, cum, ZERO, cum_u)
        self._pending = None
        return entry

    def _write(
        self,
        pending: PendingRound,
        status: Status,
        alone: EpsilonPair,
        cum: EpsilonPair,
        alone_u: EpsilonPair,
        cum_u: EpsilonPair,
    ) -> LedgerEntry:
        prev = self._entries[-1].hash if self._entries else self._header.hash
        record = round_record(
            round_id=pending.round,
            status=status,
            mechanism=pending.cost.mechanism,
            noise_location=pending.cost.noise_location,
            params=pending.cost.params,
            epsilon_round=alone,
            epsilon_cumulative=cum,
            epsilon_round_unsampled=alone_u,
            epsilon_cumulative_unsampled=cum_u,
            time=time.time(),
            prev=prev,
        )
        line = seal(record)
        entry = entry_from_json(record, 2 + len(self._entries))
        if self._path is not None and self._fd is not None:
            _append(self._fd, line)
            _write_head(self._path, 2 + len(self._entries), entry.hash, self._header.ledger_id)
        self._entries.append(entry)
        return entry

    def _check_open(self) -> None:
        if self._path is not None and self._fd is None:
            raise LedgerStateError(f"{self._path}: ledger is closed")

    def close(self) -> None:
        """Release the file lock. A pending round is left unrecorded (it was not released)."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> PrivacyLedger:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        fd = getattr(self, "_fd", None)
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)


def _lock(fd: int, path: Path) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise LedgerLockedError(f"{path}: another writer holds this ledger") from None


def _append(fd: int, line: str) -> None:
    data = (line + "\n").encode("ascii")
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
    os.fsync(fd)
