"""``secagg flower-demo``'s config handling (no Flower processes: instant)."""

from __future__ import annotations

from pathlib import Path

import pytest

from protocols import cli
from protocols.errors import ExperimentConfigError
from protocols.experiment import ExperimentConfig
from protocols.flower.example import (
    EXAMPLE_DIR,
    check_flower_config,
    example_config,
    flower_config,
    format_row,
    load_app_config,
)

CONFIGS = Path(__file__).resolve().parents[2] / "examples" / "configs"


def test_example_app_project_and_config() -> None:
    assert (EXAMPLE_DIR / "pyproject.toml").is_file()
    assert (EXAMPLE_DIR / "secagg_flower_app" / "client_app.py").is_file()
    cfg = example_config()
    check_flower_config(cfg)  # runnable as it is
    assert cfg.clients.dropout_fraction == 0.0 and cfg.dp.mechanism == "dp_sgd"


def test_overrides_and_normalisation() -> None:
    demo = ExperimentConfig.from_toml(CONFIGS / "demo_small.toml")  # 10% dropouts
    cfg, notes = flower_config(demo, nodes=4, rounds=2, setting="hbc")
    assert cfg.clients.num_clients == 4 and cfg.experiment.rounds == 2
    assert cfg.backend.setting == "honest_but_curious"
    assert cfg.clients.dropout_fraction == 0.0 and any("dropout" in n for n in notes)
    per_round = demo.replace(clients={"per_round": 5, "dropout_fraction": 0.0})
    cfg, notes = flower_config(per_round)
    assert cfg.clients.per_round is None and notes


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"backend": {"name": "plaintext"}}, "backend.name"),
        (
            {
                "dp": {"mechanism": "dp_fedavg"},
                "clients": {"weighting": "uniform", "sampling": "poisson"},
            },
            "dp.mechanism",
        ),
    ],
)
def test_refuses_what_the_app_cannot_run(changes: dict, key: str) -> None:
    cfg = example_config().replace(**changes)
    with pytest.raises(ExperimentConfigError) as info:
        flower_config(cfg)
    assert info.value.key == key


def test_refuses_a_graph_that_cannot_meet_the_bounds() -> None:
    demo = ExperimentConfig.from_toml(CONFIGS / "demo_small.toml")  # graph = "secagg+"
    flower_config(demo)  # 20 clients: fine
    with pytest.raises(ExperimentConfigError) as info:
        flower_config(demo, nodes=5)
    assert info.value.key == "backend.graph"


def test_app_reads_json_or_toml(tmp_path: Path) -> None:
    import json

    cfg = example_config()
    assert load_app_config({"experiment": json.dumps(cfg.to_dict())}, tmp_path) == cfg
    assert load_app_config({}, EXAMPLE_DIR) == cfg


def test_cli_refuses_a_bad_config_before_starting_anything(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code = cli.main(
        ["flower-demo", "--config", str(CONFIGS / "paillier_iid.toml"), "--out", str(tmp_path)]
    )
    assert code == 2
    assert "backend.name" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_row_format() -> None:
    row = {
        "round": 0,
        "status": "ok",
        "survivors": 5,
        "accuracy": 0.5,
        "loss": 1.0,
        "epsilon": None,
        "exchanges": 3,
        "bytes_up": 2e4,
        "bytes_down": 2e4,
        "seconds": 1.0,
    }
    assert format_row(row).split() == [
        "0",
        "ok",
        "5",
        "0.500",
        "1.0000",
        "-",
        "3",
        "20.0",
        "20.0",
        "1.00",
    ]
