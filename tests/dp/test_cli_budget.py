"""``secagg budget show|plot|verify``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dp.ledger import PrivacyLedger, round_cost
from protocols.cli import main


@pytest.fixture
def ledger_path(tmp_path: Path) -> Path:
    path = tmp_path / "server.jsonl"
    ledger = PrivacyLedger.create(path, delta=1e-5, target_epsilon=8.0)
    for r in range(4):
        cost = round_cost(
            mechanism="dp_fedavg",
            noise_location="central",
            sample_rate=0.02,
            noise_multiplier=1.0 + 0.1 * r,
            steps=1,
            clip_norm=0.5,
        )
        pending = ledger.begin_round(r, cost)
        if r == 2:
            ledger.record_aborted(r, released_shares=False)
        else:
            ledger.commit(pending)
    ledger.close()
    return path


def test_show(ledger_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["budget", "show", str(ledger_path)]) == 0
    out = capsys.readouterr().out
    assert "aborted_unreleased" in out and "cum_pld" in out
    assert len(out.strip().splitlines()) == 2 + 4


def test_verify(ledger_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["budget", "verify", str(ledger_path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("OK: 4 entries (3 counted)") and "head hash" in out


def test_plot(ledger_path: Path, tmp_path: Path) -> None:
    png = tmp_path / "eps.png"
    assert main(["budget", "plot", str(ledger_path), "-o", str(png), "--unsampled"]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_tampered_ledger_fails(ledger_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = ledger_path.read_text().splitlines()
    obj = json.loads(lines[1])
    obj["params"]["noise_multiplier"] = 9.0
    lines[1] = json.dumps(obj)
    ledger_path.write_text("\n".join(lines) + "\n")
    for action in ("show", "verify"):
        assert main(["budget", action, str(ledger_path)]) == 1
    assert "line 2" in capsys.readouterr().err
