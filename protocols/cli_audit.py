"""``secagg audit``: run the attacks that apply to a configuration and write a report.

Exit status 1 when a guarantee of the selected threat models fails, 2 on a bad config.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from protocols.errors import ExperimentConfigError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``audit`` subcommand."""
    p = sub.add_parser(
        "audit",
        help="attack a configuration and check its threat-model guarantees",
        description="Gradient inversion, server-view distinguishers, the one-run DP audit "
        "and malicious-server attacks (differencing, Sybil, dropout lie) against CONFIG "
        "(default: the demo's); writes report.md, summary.json and reconstructions.png.",
    )
    p.add_argument("config", nargs="?", default=None, help="experiment TOML (default: demo)")
    p.add_argument(
        "--threat-model",
        action="append",
        default=None,
        metavar="FILE",
        help="threat-model TOML whose guarantees to verdict (repeatable; default: by config)",
    )
    p.add_argument("--quick", action="store_true", help="fewer iterations (about a minute)")
    p.add_argument("--out", default="audit-report", help="report folder (default: audit-report)")
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    from protocols.attacks.report import run_audit, write_report
    from protocols.demo import demo_config
    from protocols.experiment import ExperimentConfig

    try:
        cfg = ExperimentConfig.from_toml(args.config) if args.config else demo_config()
    except (ExperimentConfigError, OSError) as exc:
        print(f"audit: {exc}", file=sys.stderr)
        return 2
    models = [Path(m) for m in args.threat_model] if args.threat_model else None
    result = run_audit(cfg, models, quick=args.quick)
    out = Path(args.out)
    write_report(result, out, cfg)
    failed = sorted(g for g, v in result.verdicts.items() if v == "fail")
    print(
        f"audit {'PASSED' if result.passed else 'FAILED'}"
        + (f" (failed: {', '.join(failed)})" if failed else "")
        + f"; report: {out}/report.md"
    )
    return 0 if result.passed else 1
