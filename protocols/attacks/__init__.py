"""Attacks that verify the privacy claims: gradient inversion, server-view
distinguishers and an empirical DP audit.

Reusable by the test suites (``tests/attacks/``) and the later ``secagg audit`` CLI.
Importing this package loads no torch: :mod:`protocols.attacks.gradient_inversion` and
:mod:`protocols.attacks.canaries` import it themselves.
"""

from __future__ import annotations
