"""The ``secagg audit`` engine: run the attacks that apply to an experiment config, map
each outcome to guarantee ids of the selected threat models and write the report folder
(``report.md``, ``summary.json``, ``reconstructions.png``).

A check *passes* when the attack fails against the configured system (or, for the
teeth checks, when it succeeds against the deliberately weak view). The attacks run on
the configuration given: its round size n (the cohort, ``clients.per_round`` or the
population; ``--quick`` caps it at :data:`QUICK_MAX_N` and says so), its graph, setting,
backend, DP mechanism and sampling. A check that cannot run there is ``not audited``
with its reason, never a pass. Guarantee ids of the selected threat models that no
check audits are listed as ``not audited``; they never fail the audit.
"""

from __future__ import annotations

import time
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from protocols.experiment import ExperimentConfig

THREAT_MODELS = Path(__file__).resolve().parents[2] / "threat_models"
#: the largest round ``--quick`` simulates (the full audit runs the config's own n)
QUICK_MAX_N = 100
#: PSNR above which a reconstruction is the image; uniform noise scores about 6 dB
LEAK_PSNR = 25.0
NO_LEAK_PSNR = 12.0


@dataclass
class Check:
    """One attack run: the guarantee ids it verifies, pass/fail and its measurements."""

    name: str
    guarantees: tuple[str, ...]
    passed: bool
    metrics: dict[str, Any] = field(default_factory=dict)
    note: str = ""
    audited: bool = True  # False: could not run on this config (``note`` says why)

    @property
    def status(self) -> str:
        """``pass``, ``fail`` or ``not audited``."""
        return "not audited" if not self.audited else ("pass" if self.passed else "fail")


def not_audited(name: str, guarantees: tuple[str, ...], reason: str) -> Check:
    """A check that does not apply to the config: reported with its reason, never a pass."""
    return Check(name, guarantees, False, {}, reason, audited=False)


@dataclass(frozen=True)
class Scope:
    """What the attacks simulate: the config's round size, graph and setting."""

    n: int
    graph: str | None
    setting: str
    capped_from: int | None = None

    @classmethod
    def of(cls, cfg: ExperimentConfig, quick: bool) -> Scope:
        """The round the config runs (its cohort size), capped at QUICK_MAX_N in quick."""
        c = cfg.clients
        n = int(c.per_round if c.per_round is not None else c.num_clients)
        graph = None if cfg.backend.graph == "auto" else str(cfg.backend.graph)
        capped = n if quick and n > QUICK_MAX_N else None
        return cls(min(n, QUICK_MAX_N) if quick else n, graph, str(cfg.backend.setting), capped)

    def note(self) -> str:
        """Where the scope differs from the config, say so."""
        base = f"n = {self.n}, graph {self.graph or 'auto'}, {self.setting}"
        return base + (
            f" (--quick: capped from n = {self.capped_from})" if self.capped_from else ""
        )


@dataclass
class AuditResult:
    """Every check, the per-guarantee verdicts and the images for the figure."""

    checks: list[Check]
    verdicts: dict[str, str]
    models: list[str]
    seconds: float
    images: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """True when no guarantee of the selected threat models failed."""
        return all(v != "fail" for v in self.verdicts.values())


def default_threat_models(cfg: ExperimentConfig) -> list[Path]:
    """Threat models that apply to ``cfg``: the backend's setting, plus DP when it is on."""
    names = ["honest_but_curious"]
    if cfg.backend.name == "masking" and cfg.backend.setting == "active":
        names.append("active_server")
    if cfg.dp.mechanism != "none":
        names.append("central_dp")
    return [THREAT_MODELS / f"{n}.toml" for n in names]


def _guarantee_ids(paths: Sequence[Path]) -> list[str]:
    ids: list[str] = []
    for p in paths:
        for g in tomllib.loads(Path(p).read_text()).get("guarantees", []):
            ids.append(str(g["id"]))
    return ids


# --- the checks ---------------------------------------------------------------------------


def _inversion(cfg: ExperimentConfig, quick: bool, images: dict[str, Any]) -> list[Check]:
    """DLG on the plaintext update (teeth), on the server's view, on an aggregate of 4."""
    from protocols.attacks import gradient_inversion as gi

    if cfg.backend.name == "paillier":
        return [
            not_audited(
                "gradient inversion of the server's view",
                ("HBC-7",),
                "Paillier: the server's view is ciphertexts; this attack reads vectors of "
                "the masking ring (the Paillier backend's audit is its test suite)",
            )
        ]
    iters = 10 if quick else 30
    model = gi.tiny_convnet(0)
    batches = gi.distinct_label_batches(4, 1, seed=1)
    updates = [gi.flat_gradient(model, x, y) for x, y in batches]
    imgs, labels = batches[0]
    images["original"] = imgs

    def attack(view: np.ndarray) -> gi.Reconstruction:
        lab = gi.recover_labels(model, view, 1)
        return gi.score(*gi.dlg(model, view, 1, labels=lab, iters=iters), imgs, labels)

    plain = attack(updates[0])
    images["plaintext update"] = plain.images
    checks = [
        Check(
            "gradient inversion of a plaintext update (the attack has teeth)",
            ("HBC-7",),
            plain.psnr > LEAK_PSNR,
            {"psnr_db": plain.psnr, "ssim": plain.ssim, "label_acc": plain.label_acc},
        )
    ]
    masked = cfg.backend.name == "masking"
    view = gi.masked_view(updates, victim=0) if masked else updates[0]
    rec = attack(view)
    images["server's view" if masked else "server's view (plaintext backend)"] = rec.images
    checks.append(
        Check(
            "gradient inversion of the victim's message as the server receives it",
            ("HBC-7",),
            rec.psnr < NO_LEAK_PSNR,
            {"psnr_db": rec.psnr, "ssim": rec.ssim, "label_acc": rec.label_acc},
            "masked vector from a real transcript"
            if masked
            else "plaintext backend: the server receives the update itself",
        )
    )
    agg = gi.attack_aggregate(model, batches, iters=iters)
    images["aggregate of 4"] = agg.images[:1]
    checks.append(
        Check(
            "gradient inversion of an aggregate of 4 clients (measured, not a guarantee)",
            (),
            True,
            {"psnr_db": agg.psnr, "ssim": agg.ssim},
        )
    )
    return checks


def _distinguishers(cfg: ExperimentConfig, scope: Scope) -> list[Check]:
    """Uniformity and low-entropy seed search on a masked vector of a real round at the
    config's n, graph and setting."""
    from protocols.attacks.distinguishers import seed_search, uniformity_pvalue
    from secagg import SecAggConfig
    from secagg.encoding import FixedPointEncoder
    from secagg.messages import Expect, MaskedInput, MsgType, decode
    from secagg.simulate import InProcessRound

    if cfg.backend.name == "paillier":
        return [
            not_audited(
                "server-view distinguishers",
                ("HBC-2", "HBC-8"),
                "Paillier: ciphertexts, not ring vectors (the backend's own distinguisher "
                "is in tests/paillier)",
            )
        ]
    n, d, bits = max(scope.n, 3), 4096, 32
    scfg = SecAggConfig.default(
        n,
        setting=scope.setting,  # type: ignore[arg-type]
        graph=scope.graph,  # type: ignore[arg-type]
        rounding="nearest",
    )
    enc = FixedPointEncoder(scfg.encoding, rounding="nearest")
    xs = np.full((n, d), 0.25)
    if cfg.backend.name == "masking":
        rnd = InProcessRound(xs, scfg)
        rnd.run()
        if rnd.server.transcript is None:  # pragma: no cover - recorded by default
            raise RuntimeError("the report reads the server's transcript")
        expect = Expect.reading(rnd.config, rnd.session_id, 0, d)
        rec = next(r for r in rnd.server.transcript.by_phase("masked_input") if r.sender == 0)
        msg = decode(rec.payload, expect, (MsgType.MASKED_INPUT,))
        if not isinstance(msg, MaskedInput):  # pragma: no cover - the type was asked for
            raise RuntimeError("not a masked input")
        view = msg.vector
    else:
        view = enc.encode(xs[0])
    p = uniformity_pvalue(view, bits)

    def weak(seed: int) -> np.ndarray:
        return (
            np.random.default_rng(seed).integers(0, 2**bits, d, dtype=np.uint64).astype(np.uint32)
        )

    found = seed_search(view, weak, range(2**10), bits, scfg.encoding.max_element)
    return [
        Check(
            "uniformity of the victim's message (chi-square)",
            ("HBC-2",),
            p > 1e-4,
            {"p_value": p},
            scope.note(),
        ),
        Check(
            "low-entropy seed search (2^10 seeds) on the victim's message",
            ("HBC-8",),
            found == [] and p > 1e-4,
            {"seeds_found": found},
            scope.note(),
        ),
    ]


def _dp_audit(cfg: ExperimentConfig, quick: bool) -> list[Check]:
    """One-run canary audit of DP-SGD at the config's noise multiplier."""
    if cfg.dp.mechanism != "dp_sgd":
        return []
    from protocols.attacks.audit import one_run_audit
    from protocols.attacks.canaries import dpsgd_with_canaries

    m = 500 if quick else 1000
    run = dpsgd_with_canaries(
        noise_multiplier=cfg.dp.noise_multiplier, steps=4, canaries=m, delta=cfg.dp.delta
    )
    res = one_run_audit(run.scores, run.included, k_pos=m // 4, k_neg=m // 4, delta=run.delta)
    return [
        Check(
            "one-run DP audit (Steinke et al. 2023), 4 full-batch DP-SGD steps",
            ("D6",),
            res.epsilon_lower_bound <= run.accounted_epsilon,
            {
                "empirical_epsilon_lower_bound": res.epsilon_lower_bound,
                "accounted_epsilon": run.accounted_epsilon,
                "correct_guesses": res.correct,
                "guesses": res.guesses,
                "canaries": m,
                "noise_multiplier": run.noise_multiplier,
            },
        )
    ]


def _outcome_metrics(out: Any) -> dict[str, Any]:
    keep = ("self_mask_shares", "mask_key_shares", "threshold", "refusals")
    return {
        "recovered": out.recovered is not None,
        "error": out.error,
        "chance_error": out.chance_error,
        "refused_by": out.refused_by,
        **{k: v for k, v in out.details.items() if k in keep},
    }


def _differencing(cfg: ExperimentConfig, scope: Scope) -> list[Check]:
    """Multi-round differencing against the config's backend and setting: the server-side
    layer guard (honest-but-curious: the server follows the protocol) or the rule each
    client enforces (active), each next to the control that recovers the victim."""
    from protocols.attacks import server_attacks as sa

    n = max(scope.n, 3)
    if cfg.backend.name == "masking" and scope.setting == "active":
        checks = []
        for second, what in (("nudge", "M + 1e-9"), ("near_zero", "1e-6 w, then 1.5e-6 w")):
            fixed = sa.client_differencing_attack("client", n=n, second=second, graph=scope.graph)
            control = sa.client_differencing_attack("hash", n=n, second=second, graph=scope.graph)
            checks.append(
                Check(
                    f"multi-round differencing against the clients' own rule ({what})",
                    ("HBC-9", "ACT-9"),
                    fixed.recovered is None and control.recovered is not None,
                    {**_outcome_metrics(fixed), "control_error": control.error},
                    f"{scope.note()}; round 1 without the victim; control: a "
                    "per-model-hash rule, which the near repeat bypasses",
                )
            )
        limit = sa.client_differencing_attack(
            "client", n=n, second="dead_feature", graph=scope.graph
        )
        checks.append(
            Check(
                "differencing with a functionally equivalent model (the stated limit)",
                (),
                True,
                _outcome_metrics(limit),
                "measured, not a guarantee: no parameter-space rule sees a model moved "
                "along a feature no client uses; only DP noise on every contribution does",
            )
        )
        return checks
    rng = np.random.default_rng(0)
    ups = [rng.uniform(-1, 1, 16) for _ in range(n)]
    out = sa.differencing_attack(
        ups, n // 2, guarded=True, backend=cfg.backend.name, setting=scope.setting
    )
    control = sa.differencing_attack(ups, n // 2, guarded=False)
    return [
        Check(
            "multi-round differencing through the privacy layer (So et al. 2023)",
            ("HBC-9",) if scope.setting != "active" else ("HBC-9", "ACT-9"),
            out.recovered is None and control.recovered is not None,
            {**_outcome_metrics(out), "control_error": control.error},
            f"{scope.note()}, backend {cfg.backend.name}; same model hash, survivor sets "
            "differing by one client; control: two bare rounds"
            + (
                "; with DP-SGD a repeat is allowed, each release noised and accounted"
                if cfg.dp.mechanism == "dp_sgd"
                else ""
            ),
        )
    ]


def _accounting(cfg: ExperimentConfig, scope: Scope) -> list[Check]:
    """DP-FedAvg's accounting assumptions against the sampling the config runs."""
    if cfg.dp.mechanism != "dp_fedavg":
        return []
    from dp import DPFedAvg
    from protocols.participation import (
        AccountingAssumptionError,
        Participation,
        check_dp_fedavg,
    )

    c = cfg.clients
    per_round = c.per_round if c.per_round is not None else c.num_clients
    q = per_round / c.num_clients
    mech = DPFedAvg(
        clip_norm=cfg.dp.clip_norm,
        noise_multiplier=cfg.dp.noise_multiplier,
        expected_clients=q * c.num_clients,
        sample_rate=q,
    )
    runs = (
        Participation.poisson(q, c.num_clients)
        if c.sampling == "poisson"
        else Participation.fixed_size(per_round, c.num_clients)
    )
    try:
        check_dp_fedavg(mech, runs, where="audit")
        ok, why = True, f"{c.sampling} sampling at q = {q:.3g} over N = {c.num_clients}"
    except AccountingAssumptionError as exc:
        ok, why = False, str(exc)
    teeth = q == 1.0
    if not teeth:  # the control: the same mechanism with every client every round
        try:
            check_dp_fedavg(mech, Participation.everyone(c.num_clients), where="audit")
        except AccountingAssumptionError:
            teeth = True
    return [
        Check(
            "DP-FedAvg accounting assumptions vs the sampling run (config level)",
            ("D8",),
            ok and teeth,
            {"sample_rate": q, "control_refused": teeth},
            why + "; the drivers run the same check on what they really do, every round "
            "(tests/protocols/test_participation.py)",
        )
    ]


def _protocol_attacks(cfg: ExperimentConfig, scope: Scope) -> list[Check]:
    """Sybil, dropout-lie, isolation, downgrade and forced-neighbourhood attacks by a
    malicious server on the real clients at the config's n and graph (active only)."""
    from protocols.attacks import server_attacks as sa

    if cfg.backend.name != "masking" or scope.setting != "active":
        return []
    n = max(scope.n, 7)
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, 8)
    syb = sa.sybil_attack(x, n=n, trusted_registry=True, graph=scope.graph)
    checks = [
        Check(
            "Sybil server with a trusted identity registry",
            ("ACT-10",),
            syb.recovered is None,
            _outcome_metrics(syb),
            scope.note(),
        )
    ]
    for split, twice, ids in (
        (True, False, ("ACT-11", "ACT-2")),
        (False, True, ("ACT-11", "ACT-3")),
        (False, False, ("ACT-11",)),
    ):
        lie = sa.dropout_lie(split=split, ask_twice=twice, n=n, graph=scope.graph)
        how = "split stories" if split else ("ask again" if twice else "consistent lie")
        checks.append(
            Check(
                f"dropout lie ({how})",
                ids,
                lie.recovered is None,
                _outcome_metrics(lie),
                scope.note(),
            )
        )
    iso = sa.isolation_attack(weakened=False, n=n)
    down = sa.policy_downgrade(weakened=False, n=n)
    forced = sa.forced_neighbourhood(weakened=False, n=max(n, 12))
    for name, ids, out in (
        ("isolation by equivocation", ("ACT-7", "ACT-14"), iso),
        ("parameters weaker than the policy", ("ACT-1",), down),
        ("a neighbourhood the server picks", ("ACT-13",), forced),
    ):
        checks.append(Check(name, ids, out.recovered is None, _outcome_metrics(out), scope.note()))
    return checks


CheckFn = Callable[[ExperimentConfig, bool, dict[str, Any]], list[Check]]


def default_checks() -> list[CheckFn]:
    """The attack suites the audit runs, in order."""
    return [
        _inversion,
        lambda cfg, quick, _: _distinguishers(cfg, Scope.of(cfg, quick)),
        lambda cfg, quick, _: _dp_audit(cfg, quick),
        lambda cfg, quick, _: _accounting(cfg, Scope.of(cfg, quick)),
        lambda cfg, quick, _: _differencing(cfg, Scope.of(cfg, quick)),
        lambda cfg, quick, _: _protocol_attacks(cfg, Scope.of(cfg, quick)),
    ]


def run_audit(
    cfg: ExperimentConfig,
    threat_models: Sequence[Path] | None = None,
    *,
    quick: bool = False,
    checks: Sequence[CheckFn] | None = None,
) -> AuditResult:
    """Run every applicable check and give each guarantee id a verdict."""
    import torch

    torch.set_num_threads(1)
    models = list(threat_models) if threat_models else default_threat_models(cfg)
    t0 = time.perf_counter()
    images: dict[str, Any] = {}
    done: list[Check] = []
    for fn in checks if checks is not None else default_checks():
        done.extend(fn(cfg, quick, images))
    verdicts: dict[str, str] = {}
    for gid in _guarantee_ids(models):
        mine = [c for c in done if gid in c.guarantees and c.audited]
        verdicts[gid] = (
            ("pass" if all(c.passed for c in mine) else "fail") if mine else "not audited"
        )
    return AuditResult(
        done, verdicts, [Path(m).stem for m in models], time.perf_counter() - t0, images
    )


# --- the report folder --------------------------------------------------------------------


def _fmt(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def _plot(images: dict[str, Any], path: Path) -> None:
    from protocols.report import _pyplot

    plt = _pyplot()
    fig, axes = plt.subplots(1, len(images), figsize=(2.2 * len(images), 2.6))
    for ax, (title, img) in zip(np.atleast_1d(axes), images.items(), strict=True):
        ax.imshow(np.asarray(img).reshape(-1, 8, 8)[0], cmap="gray", vmin=0, vmax=1)
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(result: AuditResult, out: Path, config: ExperimentConfig) -> None:
    """Write ``report.md``, ``summary.json`` and ``reconstructions.png`` under ``out``."""
    from protocols.report import write_json

    out.mkdir(parents=True, exist_ok=True)
    if result.images:
        _plot(result.images, out / "reconstructions.png")
    write_json(
        out / "summary.json",
        {
            "passed": result.passed,
            "threat_models": result.models,
            "verdicts": result.verdicts,
            "checks": [
                c.__dict__ | {"guarantees": list(c.guarantees), "status": c.status}
                for c in result.checks
            ],
            "config": config.to_dict(),
            "seconds": result.seconds,
        },
    )
    lines = [
        "# secagg audit report",
        "",
        f"Overall: **{'PASS' if result.passed else 'FAIL'}** ({result.seconds:.0f} s); "
        f"threat models: {', '.join(result.models)}; backend `{config.backend.name}`"
        f" ({config.backend.setting}), DP `{config.dp.mechanism}`.",
        "",
        "## Guarantees",
        "",
        "| id | verdict |",
        "|---|---|",
        *(f"| {g} | {v} |" for g, v in result.verdicts.items()),
        "",
        "## Attacks",
        "",
        "| attack | guarantees | result | measurements | note |",
        "|---|---|---|---|---|",
    ]
    for c in result.checks:
        ms = ", ".join(f"{k} = {_fmt(v)}" for k, v in c.metrics.items())
        lines.append(
            f"| {c.name} | {', '.join(c.guarantees) or '-'} | "
            f"{c.status if c.status != 'fail' else 'FAIL'} | {ms} | {c.note} |"
        )
    dp_checks = [c for c in result.checks if "D6" in c.guarantees]
    if dp_checks:
        m = dp_checks[0].metrics
        lines += [
            "",
            "## Empirical vs accounted epsilon",
            "",
            "| empirical lower bound (95%) | accounted |",
            "|---|---|",
            f"| {_fmt(m['empirical_epsilon_lower_bound'])} | {_fmt(m['accounted_epsilon'])} |",
        ]
    if result.images:
        lines += [
            "",
            "## Reconstructions (victim's original first)",
            "",
            "![reconstructions](reconstructions.png)",
        ]
    (out / "report.md").write_text("\n".join(lines) + "\n")
