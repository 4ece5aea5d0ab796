"""``secagg budget show|plot|verify LEDGER``: read a privacy ledger.

``show`` prints one row per round (parameters, epsilon of the round, cumulative epsilon
with and without client sampling, under RDP and PLD); ``plot`` draws cumulative epsilon
per round, one line per accountant; ``verify`` checks the hash chain and the head anchor
and recomputes every epsilon from the stored parameters, and with ``--expect-head HASH``
(or ``--expect-prefix HASH``) checks the ledger against a head hash kept elsewhere. Exit
status 1 when the ledger fails a check (the error names the line or the verdict).
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from dp.ledger import LedgerContents


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``budget`` subcommand and its three actions."""
    p = sub.add_parser(
        "budget",
        help="inspect a privacy ledger (per-round epsilon, plots, verification)",
        description="Read a privacy ledger written by dp.PrivacyLedger.",
    )
    actions = p.add_subparsers(dest="budget_action", metavar="ACTION", required=True)
    show = actions.add_parser("show", help="table of rounds and epsilons")
    show.add_argument("ledger", help="path of the ledger (JSON Lines)")
    show.set_defaults(func=_show)
    plot = actions.add_parser("plot", help="cumulative epsilon per round (PNG)")
    plot.add_argument("ledger", help="path of the ledger (JSON Lines)")
    plot.add_argument("-o", "--output", required=True, help="image file to write (e.g. eps.png)")
    plot.add_argument(
        "--unsampled", action="store_true", help="also draw the q = 1 (no sampling) curves"
    )
    plot.set_defaults(func=_plot)
    verify = actions.add_parser(
        "verify",
        help="check hash chain and recompute epsilons",
        description=(
            "Check the hash chain and the head file, and recompute every epsilon. Without "
            "an anchor, a rollback of both files, a truncation to the header with the head "
            "file deleted, or a wholesale replacement still verifies: pass a head hash kept "
            "elsewhere (printed after every commit) to pin the history up to it."
        ),
    )
    verify.add_argument("ledger", help="path of the ledger (JSON Lines)")
    verify.add_argument(
        "--expect-head",
        metavar="HASH",
        help="fail unless the ledger's head is exactly HASH (the last head you kept)",
    )
    verify.add_argument(
        "--expect-prefix",
        metavar="HASH",
        help="fail unless HASH is a line of this ledger's chain (an earlier head you kept; "
        "rounds after it are allowed and not covered)",
    )
    verify.set_defaults(func=_verify)


def _load(path: str) -> LedgerContents | None:
    from dp.errors import LedgerError
    from dp.ledger import read_ledger

    try:
        return read_ledger(path)
    except LedgerError as exc:
        print(f"secagg budget: {exc}", file=sys.stderr)
        return None


def _fmt(x: float) -> str:
    return "inf" if math.isinf(x) else f"{x:.4f}"


def _show(args: argparse.Namespace) -> int:
    contents = _load(args.ledger)
    if contents is None:
        return 1
    h = contents.header
    target = "none" if h.target_epsilon is None else f"{h.target_epsilon:g}"
    print(
        f"ledger {h.ledger_id}  delta={h.delta:g}  target epsilon={target} "
        f"(guard: {h.guard_accountant}, {h.guard_view})"
    )
    cols = (
        f"{'round':>6} {'status':<18} {'mechanism':<10} {'q':>9} {'sigma':>8} {'steps':>6} "
        f"{'clip':>8} {'eps_rdp':>9} {'eps_pld':>9} {'cum_rdp':>9} {'cum_pld':>9} "
        f"{'cum_rdp_q1':>10} {'cum_pld_q1':>10}"
    )
    print(cols)
    for e in contents.entries:
        pr = e.params
        print(
            f"{e.round:>6} {e.status:<18} {e.mechanism:<10} {pr.sample_rate:>9.4g} "
            f"{pr.noise_multiplier:>8.4g} {pr.steps:>6} {pr.clip_norm:>8.4g} "
            f"{_fmt(e.epsilon_round.rdp):>9} {_fmt(e.epsilon_round.pld):>9} "
            f"{_fmt(e.epsilon_cumulative.rdp):>9} {_fmt(e.epsilon_cumulative.pld):>9} "
            f"{_fmt(e.epsilon_cumulative_unsampled.rdp):>10} "
            f"{_fmt(e.epsilon_cumulative_unsampled.pld):>10}"
        )
    if contents.torn_tail:
        print("note: a torn last line (a commit that never returned) is ignored")
    print(f"head: {contents.head_hash}  (keep it; check with verify --expect-head)")
    return 0


def _plot(args: argparse.Namespace) -> int:
    contents = _load(args.ledger)
    if contents is None:
        return 1
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rounds = [e.round for e in contents.entries]
    fig, ax = plt.subplots(figsize=(7, 4))
    for name in ("rdp", "pld"):
        ax.plot(
            rounds,
            [e.epsilon_cumulative.get(name) for e in contents.entries],
            label=f"{name.upper()} (with client sampling)",
        )
        if args.unsampled:
            ax.plot(
                rounds,
                [e.epsilon_cumulative_unsampled.get(name) for e in contents.entries],
                linestyle="--",
                label=f"{name.upper()} (q = 1)",
            )
    h = contents.header
    if h.target_epsilon is not None:
        ax.axhline(h.target_epsilon, color="grey", linestyle=":", label="target")
    ax.set_xlabel("round")
    ax.set_ylabel(f"cumulative epsilon at delta={h.delta:g}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.output, dpi=120)
    plt.close(fig)
    print(f"wrote {args.output}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from dp.errors import LedgerAnchorError, LedgerError
    from dp.ledger import verify_ledger

    try:
        report = verify_ledger(
            args.ledger, expect_head=args.expect_head, expect_prefix=args.expect_prefix
        )
    except LedgerAnchorError as exc:
        print(f"secagg budget verify: FAILED ({exc.verdict}): {exc}", file=sys.stderr)
        return 1
    except LedgerError as exc:
        print(f"secagg budget verify: FAILED: {exc}", file=sys.stderr)
        return 1
    cum, cum_u = report.epsilon_cumulative, report.epsilon_cumulative_unsampled
    print(
        f"OK: {report.entries} entries ({report.rounds_counted} counted), hash chain and "
        f"head anchor verify, every epsilon recomputed"
    )
    print(f"cumulative epsilon: rdp={_fmt(cum.rdp)} pld={_fmt(cum.pld)}")
    print(f"cumulative epsilon without sampling: rdp={_fmt(cum_u.rdp)} pld={_fmt(cum_u.pld)}")
    print(f"head hash: {report.head_hash}")
    if report.anchor_line is None:
        print(
            "note: no --expect-head: nothing outside the two files pins the head (a rollback, "
            "a truncation to the header or a replacement would verify)"
        )
    elif report.entries_after_anchor:
        print(
            f"anchor: line {report.anchor_line} of the chain; {report.entries_after_anchor} "
            "later entries are not covered by it"
        )
    else:
        print("anchor: the head is the expected head")
    if report.torn_tail:
        print("note: torn last line ignored (a commit that never returned)")
    if report.unanchored:
        print("note: last entry beyond the head anchor (crash between the two writes)")
    return 0
