"""The worked case: 100 devices x 10 samples, linear regression by federated gradient
averaging; the secure runs track the plaintext run step for step."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np

from tests.protocols.conftest import paillier_available

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "linear_regression_100_devices.py"


def _example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("linreg_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_secure_runs_track_plaintext_gradient_descent_step_for_step() -> None:
    runs = _example().run(steps=4, alpha=0.1, paillier_bits=1024)
    assert ("paillier" in runs) == paillier_available()
    plain, ref = runs["plaintext"], runs["numpy"]
    assert len(plain) == 5
    for s in range(5):
        # the FedAvg loop is exactly w <- w - alpha * (1/N) sum_i grad f_i(w)
        np.testing.assert_allclose(plain[s], ref[s], atol=1e-5)
        np.testing.assert_allclose(runs["masking"][s], plain[s], atol=1e-5)
        if "paillier" in runs:
            np.testing.assert_allclose(runs["paillier"][s], plain[s], atol=1e-4)
    assert np.linalg.norm(plain[-1]) > 0.1  # the model moved downhill from w = 0
