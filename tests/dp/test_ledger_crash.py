"""Crash consistency: a process killed between the ledger write and the release."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from dp.ledger import PrivacyLedger, read_ledger, verify_ledger

_CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from dp.ledger import PrivacyLedger, round_cost
    path, released, stage = sys.argv[1], sys.argv[2], sys.argv[3]
    ledger = PrivacyLedger.open_or_create(path, delta=1e-5, target_epsilon=10.0)
    start = 0 if ledger.last_round is None else ledger.last_round + 1
    cost = round_cost(mechanism="dp_fedavg", noise_location="central", sample_rate=0.02,
                      noise_multiplier=1.0, steps=1, clip_norm=1.0)
    for r in range(start, start + 3):
        pending = ledger.begin_round(r, cost)
        if stage == "before_commit" and r == start + 2:
            os.kill(os.getpid(), signal.SIGKILL)
        ledger.commit(pending)
        if stage == "before_release" and r == start + 2:
            os.kill(os.getpid(), signal.SIGKILL)
        with open(released, "a") as fh:   # the release happens only after commit
            fh.write(f"{r}\\n")
    """
)


def _run(path: Path, released: Path, stage: str) -> int:
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path), str(released), stage],
        capture_output=True,
        timeout=120,
        check=False,
    )
    return proc.returncode


def test_kill_between_write_and_release_leaves_round_counted(tmp_path: Path) -> None:
    path, released = tmp_path / "l.jsonl", tmp_path / "released.txt"
    assert _run(path, released, "before_release") == -9
    assert released.read_text().split() == ["0", "1"]  # round 2 never released
    contents = read_ledger(path)
    assert [e.round for e in contents.entries] == [0, 1, 2]  # ... but counted
    assert all(e.counted for e in contents.entries)
    verify_ledger(path)
    ledger = PrivacyLedger.open(path)  # and the next session continues after it
    assert ledger.last_round == 2
    ledger.close()


def test_kill_before_commit_records_nothing_and_released_nothing(tmp_path: Path) -> None:
    path, released = tmp_path / "l.jsonl", tmp_path / "released.txt"
    assert _run(path, released, "before_commit") == -9
    assert released.read_text().split() == ["0", "1"]
    assert [e.round for e in read_ledger(path).entries] == [0, 1]
    assert _run(path, released, "none") == 0  # the lock died with the process
    assert [e.round for e in read_ledger(path).entries] == [0, 1, 2, 3, 4]
