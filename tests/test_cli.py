"""The ``secagg`` command line: help, version, selfcheck, and the bench entry point."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import secagg
from protocols import cli
from protocols.bench import BENCHMARKS, run_benchmark


def test_help_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 0
    assert "secagg" in capsys.readouterr().out
    with pytest.raises(SystemExit) as info:
        cli.main(["--version"])
    assert info.value.code == 0
    assert secagg.__version__ in capsys.readouterr().out


def test_selfcheck(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["selfcheck"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("selfcheck ok") and "\n" not in line


def test_unknown_bench_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["bench", "no-such-bench"])
    assert info.value.code == 2
    with pytest.raises(KeyError):
        run_benchmark("no-such-bench")


def test_bench_primitives_quick_json_via_console_script() -> None:
    assert "primitives" in BENCHMARKS
    proc = subprocess.run(
        [sys.executable, "-m", "protocols.cli", "bench", "primitives", "--quick", "--json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    figures = json.loads(proc.stdout)
    for key in (
        "mask_vs_keystream",
        "keystream_gbps",
        "mask_gbps",
        "encode_mask_sum_ms",
        "shamir_split_ms",
        "shamir_combine_ms",
    ):
        assert isinstance(figures[key], float) and figures[key] > 0, key
    assert figures["shamir_n"] == 100 and figures["shamir_t"] == 51


def test_bench_table_output(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import protocols.bench as bench

    monkeypatch.setitem(bench.BENCHMARKS, "fake", "tests.fake_bench")
    assert cli.main(["bench", "fake"]) == 0
    out = capsys.readouterr().out
    assert "ratio" in out and "0.5" in out
