"""Running secure aggregation on Flower's deployment engine (optional extra ``flower``).

* :mod:`protocols.flower.deploy` -- :class:`~protocols.flower.deploy.LocalDeployment`,
  a SuperLink and N SuperNodes as real processes on loopback, for tests and benchmarks;
* :mod:`protocols.flower.sync` -- lock-step events between a ServerApp and the harness
  (deterministic failure injection);
* :mod:`protocols.flower.apps` -- the benchmark's Flower apps.

Nothing else in the project imports this package.
"""

from __future__ import annotations
