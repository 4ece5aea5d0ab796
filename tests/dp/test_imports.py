"""``import dp`` (and its accounting and ledger) must not load torch or Opacus."""

from __future__ import annotations

import subprocess
import sys


def test_core_imports_without_torch() -> None:
    code = (
        "import sys, dp, dp.accounting, dp.ledger, dp.mechanisms, dp.budget;"
        "import protocols.cli_budget;"
        "bad = [m for m in ('torch', 'opacus') if m in sys.modules];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_lazy_client_export() -> None:
    import dp

    assert dp.DPSGDClient.__name__ == "DPSGDClient"
