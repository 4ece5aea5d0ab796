"""The ``secagg audit`` engine: run the attacks that apply to an experiment config, map
each outcome to guarantee ids of the selected threat models and write the report folder
(``report.md``, ``summary.json``, ``reconstructions.png``).

A check *passes* when the attack fails against the configured system (or, for the
teeth checks, when it succeeds against the deliberately weak view). Guarantee ids of the
selected threat models that no check covers are listed as ``not audited``; they never
fail the audit.
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
    if cfg.backend.name == "paillier":
        checks.append(
            Check(
                "gradient inversion of the server's view",
                ("HBC-7",),
                True,
                {},
                "not run: Paillier ciphertexts are not covered by this attack yet",
            )
        )
        return checks
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


def _distinguishers(cfg: ExperimentConfig) -> list[Check]:
    """Uniformity and low-entropy seed search on a masked vector of a real round."""
    from protocols.attacks.distinguishers import seed_search, uniformity_pvalue
    from secagg import SecAggConfig
    from secagg.encoding import FixedPointEncoder
    from secagg.messages import Expect, MaskedInput, MsgType, decode
    from secagg.simulate import InProcessRound

    if cfg.backend.name == "paillier":
        return [
            Check(
                "server-view distinguishers",
                ("HBC-2", "HBC-8"),
                True,
                {},
                "not run: Paillier ciphertexts are not covered yet",
            )
        ]
    n, d, bits = 3, 4096, 32
    scfg = SecAggConfig.default(n, setting="honest_but_curious", rounding="nearest")
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
            "uniformity of the victim's message (chi-square)", ("HBC-2",), p > 1e-4, {"p_value": p}
        ),
        Check(
            "low-entropy seed search (2^10 seeds) on the victim's message",
            ("HBC-8",),
            found == [] and p > 1e-4,
            {"seeds_found": found},
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


def _protocol_attacks(cfg: ExperimentConfig) -> list[Check]:
    """Differencing, Sybil and dropout-lie attacks by a malicious server."""
    from protocols.attacks import server_attacks as sa

    rng = np.random.default_rng(0)
    ups = [rng.uniform(-1, 1, 16) for _ in range(5)]
    diff = sa.differencing_attack(ups, 2, guarded=cfg.backend.name != "plaintext")
    checks = [
        Check(
            "multi-round differencing (So et al. 2023)",
            ("HBC-9", "ACT-9"),
            not diff.succeeded,
            {"recovered": diff.succeeded, "refused_by": diff.refused_by},
            "same model hash, survivor sets differing by one client, no fresh DP noise"
            + (
                "; with DP-SGD a repeat is allowed, each release noised and accounted"
                if cfg.dp.mechanism == "dp_sgd"
                else ""
            ),
        )
    ]
    if cfg.backend.name != "masking" or cfg.backend.setting != "active":
        return checks
    x = rng.uniform(-1, 1, 8)
    syb = sa.sybil_attack(x, trusted_registry=True)
    checks.append(
        Check(
            "Sybil server with a trusted identity registry",
            ("ACT-10",),
            not syb.succeeded,
            {"recovered": syb.succeeded, "refused_by": syb.refused_by},
        )
    )
    for split, twice, ids in (
        (True, False, ("ACT-11", "ACT-2")),
        (False, True, ("ACT-11", "ACT-3")),
        (False, False, ("ACT-11",)),
    ):
        lie = sa.dropout_lie(split=split, ask_twice=twice)
        how = "split survivor lists" if split else ("ask again" if twice else "consistent lie")
        checks.append(
            Check(
                f"dropout lie ({how})",
                ids,
                not lie.succeeded,
                {
                    "recovered": lie.succeeded,
                    "refused_by": lie.refused_by,
                    **{k: v for k, v in lie.details.items() if k != "client_errors"},
                },
            )
        )
    return checks


CheckFn = Callable[[ExperimentConfig, bool, dict[str, Any]], list[Check]]


def default_checks() -> list[CheckFn]:
    """The attack suites the audit runs, in order."""
    return [
        _inversion,
        lambda cfg, quick, _: _distinguishers(cfg),
        lambda cfg, quick, _: _dp_audit(cfg, quick),
        lambda cfg, quick, _: _protocol_attacks(cfg),
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
        mine = [c for c in done if gid in c.guarantees]
        verdicts[gid] = (
            ("pass" if all(c.passed for c in mine) else "fail") if mine else ("not audited")
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
            "checks": [c.__dict__ | {"guarantees": list(c.guarantees)} for c in result.checks],
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
            f"{'pass' if c.passed else 'FAIL'} | {ms} | {c.note} |"
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
