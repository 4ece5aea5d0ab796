"""``secagg budget show|plot|verify`` (also ``verify --expect-head|--expect-prefix``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

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
    assert len(out.strip().splitlines()) == 2 + 4 + 1  # title, columns, rounds, head


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


def _head(path: Path) -> str:
    from dp.ledger import read_ledger

    return read_ledger(path).head_hash


def test_show_prints_the_head(ledger_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["budget", "show", str(ledger_path)]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith(f"head: {_head(ledger_path)}")


def test_verify_with_the_anchor(ledger_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    head = _head(ledger_path)
    assert main(["budget", "verify", str(ledger_path), "--expect-head", head]) == 0
    assert "anchor: the head is the expected head" in capsys.readouterr().out
    assert main(["budget", "verify", str(ledger_path)]) == 0
    assert "no --expect-head" in capsys.readouterr().out  # says what is not checked
    ledger = PrivacyLedger.open(ledger_path)
    ledger.commit(ledger.begin_round(9, _cost()))
    ledger.close()
    assert main(["budget", "verify", str(ledger_path), "--expect-prefix", head]) == 0
    assert "1 later entries are not covered" in capsys.readouterr().out
    assert main(["budget", "verify", str(ledger_path), "--expect-head", head]) == 1
    assert "FAILED (entries_after_anchor)" in capsys.readouterr().err
    assert main(["budget", "verify", str(ledger_path), "--expect-head", "xyz"]) == 1
    assert "64 hexadecimal digits" in capsys.readouterr().err


def _cost() -> Any:
    return round_cost(
        mechanism="dp_fedavg",
        noise_location="central",
        sample_rate=0.02,
        noise_multiplier=1.0,
        steps=1,
        clip_norm=0.5,
    )


@pytest.mark.parametrize("kind", ["rollback", "truncate", "replace"])
def test_verify_catches_attacks_on_both_files_only_with_the_anchor(
    tmp_path: Path, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "server.jsonl"
    head_file = Path(str(path) + ".head")
    ledger = PrivacyLedger.create(path, delta=1e-5)
    ledger.commit(ledger.begin_round(0, _cost()))
    saved = path.read_bytes(), head_file.read_bytes()
    ledger.commit(ledger.begin_round(1, _cost()))
    head = ledger.head
    ledger.close()
    if kind == "rollback":
        path.write_bytes(saved[0])
        head_file.write_bytes(saved[1])
    elif kind == "truncate":
        path.write_text(path.read_text().splitlines()[0] + "\n")
        head_file.unlink()
    else:
        path.unlink()
        head_file.unlink()
        PrivacyLedger.create(path, delta=1e-5).close()
    assert main(["budget", "verify", str(path)]) == 0  # documented: plain verify passes
    capsys.readouterr()
    assert main(["budget", "verify", str(path), "--expect-head", head]) == 1
    assert "FAILED (anchor_not_in_chain)" in capsys.readouterr().err
    assert main(["budget", "verify", str(path), "--expect-prefix", head]) == 1


def test_the_round_table_and_results_json_carry_the_head(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``secagg run --out``: every table row ends with the ledger's head after that
    round, results.json holds it per round, and the last one anchors the ledger."""
    import re

    from dp.ledger import read_ledger, verify_ledger

    config = tmp_path / "tiny.toml"
    config.write_text(
        "[experiment]\nrounds = 2\n[model]\nkind = 'mlp'\nhidden = [8]\n"
        "[clients]\nnum_clients = 6\n[data]\nmin_client_size = 30\n"
        "[backend]\nname = 'masking'\nsetting = 'honest_but_curious'\n"
        "[dp]\nmechanism = 'dp_sgd'\nnoise_multiplier = 1.0\ndelta = 1e-4\n"
    )
    out = tmp_path / "out"
    assert main(["run", str(config), "--out", str(out)]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert "ledger head" in printed[0]
    heads = [m.group(1) for line in printed if (m := re.search(r" ([0-9a-f]{64})$", line))]
    ledger = out / "ledger.jsonl"
    assert heads == [e.hash for e in read_ledger(ledger).entries]
    rounds = json.loads((out / "results.json").read_text())["rounds"]
    assert [r["ledger_head"] for r in rounds] == heads
    assert verify_ledger(ledger, expect_head=heads[-1]).anchor_line == 3


def test_the_demo_report_carries_the_head(tmp_path: Path) -> None:
    import io

    from dp.ledger import verify_ledger
    from protocols.demo import run_demo
    from tests.protocols.conftest import tiny_config

    cfg = tiny_config(
        experiment={"rounds": 1},
        dp={"mechanism": "dp_sgd", "noise_multiplier": 1.0, "delta": 1e-4},
    )
    table = io.StringIO()
    results = run_demo(tmp_path / "report", config=cfg, progress=False, table=table)
    head = results["ledger_head"]
    assert results["rounds"][-1]["ledger_head"] == head
    assert f"ledger head: {head}" in table.getvalue()
    assert f"--expect-head {head}" in table.getvalue()
    verify_ledger(tmp_path / "report" / "ledger.jsonl", expect_head=head)
