"""The demo, at a reduced size, end to end: its outputs exist and parse."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import dp
from protocols.cli import main


def test_demo_end_to_end_writes_a_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report"
    assert main(["demo", "--rounds", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "final accuracy" in printed and "round" in printed  # the per-round table
    results = json.loads((out / "results.json").read_text())
    assert len(results["rounds"]) == 2
    for row in results["rounds"]:
        assert 0.0 <= row["accuracy"] <= 1.0
        assert row["epsilon"] > 0.0
        assert 0 < row["survivors"] <= row["participants"] == 20
    assert results["rounds"][1]["epsilon"] > results["rounds"][0]["epsilon"]
    assert 0.0 <= results["final_accuracy"] <= 1.0
    assert 0.0 <= results["baseline"]["final_accuracy"] <= 1.0
    assert all(r["epsilon"] is None for r in results["baseline"]["rounds"])
    report = dp.verify_ledger(out / "ledger.jsonl")
    assert report.rounds_counted == 2
    assert len(list((out / "client_ledgers").glob("*.jsonl"))) == 20
    for png in ("accuracy.png", "epsilon.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "config.toml").exists()
    assert main(["demo", "--rounds", "1", "--out", str(out)]) == 2  # never overwrites a report
