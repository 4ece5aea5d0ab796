"""The TOML experiment config: every unknown key and invalid value is an error naming it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from protocols.cli import main
from protocols.errors import ExperimentConfigError
from protocols.experiment import ExperimentConfig

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ("[model]\nkind = 'mlp'\nhiden = [8]\n", "model.hiden"),
        ("[trainer]\nlr = 0.1\n", "trainer"),
        ("[experiment]\nrounds = 0\n", "experiment.rounds"),
        ("[experiment]\nrounds = 'ten'\n", "experiment.rounds"),
        ("[training]\nlr = -1.0\n", "training.lr"),
        ("[backend]\nname = 'homomorphic'\n", "backend.name"),
        ("[clients]\ndropout_fraction = 1.0\n", "clients.dropout_fraction"),
        ("[clients]\nnum_clients = 10\nper_round = 20\n", "clients.per_round"),
        ("[dp]\nmechanism = 'dp_fedavg'\n", "clients.weighting"),
        ("[dp]\nmechanism = 'dp_fedavg'\n[clients]\nweighting = 'uniform'\n", "clients.sampling"),
        ("[dp]\ndelta = 1.5\n", "dp.delta"),
        ("[backend]\nname = 'paillier'\nkey_bits = 1024\n", "backend.key_bits"),
        ("[backend]\ninsecure_test_key = 1\n", "backend.insecure_test_key"),
        ("model = 3\n", "model"),
        ("[data]\ndataset = 'synthetic_linear'\n", "model.kind"),
    ],
)
def test_errors_name_the_key(tmp_path: Path, toml: str, key: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(toml)
    with pytest.raises(ExperimentConfigError) as info:
        ExperimentConfig.from_toml(path)
    assert info.value.key == key
    assert key in str(info.value)


def test_invalid_toml_and_missing_file_are_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[model\n")
    with pytest.raises(ExperimentConfigError) as info:
        ExperimentConfig.from_toml(bad)
    assert info.value.key == "<toml>"
    with pytest.raises(ExperimentConfigError):
        ExperimentConfig.from_toml(tmp_path / "missing.toml")


@pytest.mark.parametrize("path", sorted((ROOT / "examples" / "configs").glob("*.toml")), ids=str)
def test_example_configs_parse_and_round_trip(path: Path) -> None:
    cfg = ExperimentConfig.from_toml(path)
    assert ExperimentConfig.from_dict(cfg.to_dict()) == cfg


def test_cli_run_reports_the_bad_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[dp]\nnoise_multiplier = 0\n")
    assert main(["run", str(path)]) == 2
    assert "dp.noise_multiplier" in capsys.readouterr().err


def test_cli_run_trains_and_writes_results(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "tiny.toml"
    path.write_text(
        "[experiment]\nrounds = 2\n[model]\nkind = 'mlp'\nhidden = [8]\n"
        "[clients]\nnum_clients = 6\n[data]\nmin_client_size = 30\n"
        "[backend]\nname = 'masking'\nsetting = 'honest_but_curious'\n"
        "[dp]\nmechanism = 'dp_sgd'\nnoise_multiplier = 1.0\ndelta = 1e-4\n"
    )
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert len(results["rounds"]) == 2 and results["rounds"][0]["epsilon"] > 0
    assert (tmp_path / "out" / "ledger.jsonl").exists()
    assert "final accuracy" in capsys.readouterr().out
