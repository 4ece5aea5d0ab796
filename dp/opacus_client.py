"""Client-side DP-SGD (sample-level DP) through Opacus, round after round.

:class:`DPSGDClient` is one client identity: it owns one ledger (hence one set of
running accountants) and one budget guard for all of that client's rounds. Each call to
:meth:`DPSGDClient.train_round` validates the model and the data loader, asks the guard,
attaches Opacus (``PrivacyEngine.make_private`` with Poisson sampling), trains the local
epochs, detaches every hook and per-sample attribute (so the same model and optimizer
can be passed again next round without "Trying to add hooks twice"), commits the round
to the ledger and returns the model update with the privacy spent.

The epsilon reported is *sample-level* and about this client's own data: what the
client can state about itself (any one of its examples changes the released update by
little). It is not a user-level guarantee; DP-FedAvg (:mod:`dp.mechanisms`) gives that.

Torch and Opacus are imported here only; ``import dp`` does not load them.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn
from torch.utils.data import DataLoader

from dp.accounting import noise_multiplier as calibrate_noise
from dp.errors import ClientStateError, UnsupportedModuleError, UnsupportedSamplerError
from dp.ledger import PrivacyLedger, round_cost
from dp.validation import (
    check_clip_norm,
    check_count,
    check_delta,
    check_epsilon,
    check_noise_multiplier,
)

_FIX_HINT = (
    "Fix: model = opacus.validators.ModuleValidator.fix(model) replaces unsupported "
    "layers with DP-compatible ones (e.g. BatchNorm -> GroupNorm); rebuild the optimizer "
    "on the fixed model's parameters."
)


@dataclass(frozen=True)
class PrivacySpent:
    """Sample-level privacy of this client after a round (at ``delta``)."""

    epsilon: float
    delta: float
    accountant: str
    epsilon_round: float
    epsilon_rdp: float
    epsilon_pld: float
    rounds: int


@dataclass(frozen=True)
class ClientRoundResult:
    """What a round returns: the update (trained minus initial parameters) and the cost."""

    round: int
    update: dict[str, torch.Tensor]
    steps: int
    sample_rate: float
    noise_multiplier: float
    mean_loss: float
    privacy: PrivacySpent

    def flat_update(self) -> NDArray[np.float64]:
        """The update as one float64 vector (parameter order of the model)."""
        if not self.update:
            return np.zeros(0)
        return torch.cat([t.reshape(-1) for t in self.update.values()]).double().numpy()


def check_module(model: nn.Module) -> None:
    """Raise :class:`UnsupportedModuleError` with Opacus's validator messages and the fix."""
    from opacus.validators import ModuleValidator

    errors = ModuleValidator.validate(model, strict=False)
    if errors:
        listed = "; ".join(str(e) for e in errors)
        raise UnsupportedModuleError(
            f"Opacus cannot train this model privately: {listed}. {_FIX_HINT}"
        )


def check_data_loader(loader: DataLoader[Any]) -> int:
    """Refuse loaders whose sampling is not what Poisson sampling accounts; return n.

    Opacus replaces the loader's sampler with Poisson sampling at q = 1/len(loader);
    a weighted, subset, distributed or replacement sampler would be silently dropped (or,
    if kept, sample at a rate different from the accounted one).
    """
    from opacus.utils.uniform_sampler import UniformWithReplacementSampler
    from torch.utils.data import BatchSampler, IterableDataset, RandomSampler, SequentialSampler

    dataset = loader.dataset
    if isinstance(dataset, IterableDataset):
        raise UnsupportedSamplerError("an IterableDataset cannot be Poisson-sampled")
    n = len(dataset)  # type: ignore[arg-type]
    if n < 1:
        raise UnsupportedSamplerError("the data loader's dataset is empty")
    batch_sampler = loader.batch_sampler
    if isinstance(batch_sampler, UniformWithReplacementSampler):
        return n
    if type(batch_sampler) is not BatchSampler or loader.batch_size is None:
        raise UnsupportedSamplerError(
            f"custom batch sampler {type(batch_sampler).__name__}: its sampling rate is not "
            "the one accounted; pass a plain DataLoader(dataset, batch_size=B, shuffle=...)"
        )
    sampler = loader.sampler
    if isinstance(sampler, RandomSampler):
        if sampler.replacement or sampler.num_samples != n:
            raise UnsupportedSamplerError(
                "a RandomSampler with replacement or num_samples != len(dataset) samples at "
                "a rate different from the accounted Poisson rate"
            )
    elif type(sampler) is not SequentialSampler:
        raise UnsupportedSamplerError(
            f"{type(sampler).__name__} makes the real per-example sample rate differ from the "
            f"accounted q = batch_size / n (e.g. weights favour some examples); use "
            "shuffle=True or a plain loader and let Poisson sampling choose batches"
        )
    return n


class DPSGDClient:
    """One client identity doing DP-SGD round after round, with its ledger and guard.

    Give either ``noise_multiplier`` or ``target_epsilon`` with ``planned_rounds``: in the
    second case sigma is calibrated once, for the whole plan (planned_rounds x epochs x
    steps per epoch), at the first round, and kept; the guard stops the client once the
    target would be exceeded. ``ledger_path`` persists the ledger (reopened on restart,
    so the spending survives the process); without it the ledger is in memory.
    """

    def __init__(
        self,
        client_id: str,
        *,
        max_grad_norm: float,
        delta: float,
        noise_multiplier: float | None = None,
        target_epsilon: float | None = None,
        planned_rounds: int | None = None,
        epochs_per_round: int = 1,
        accountant: Literal["rdp", "pld"] = "rdp",
        ledger_path: str | os.PathLike[str] | None = None,
        noise_seed: int | None = None,
    ) -> None:
        self.client_id = client_id
        self.max_grad_norm = check_clip_norm(max_grad_norm, "max_grad_norm")
        self.delta = check_delta(delta)
        self.epochs_per_round = check_count(epochs_per_round, "epochs_per_round", minimum=1)
        self.accountant: Literal["rdp", "pld"] = accountant
        if (noise_multiplier is None) == (target_epsilon is None):
            raise ClientStateError("give exactly one of noise_multiplier or target_epsilon")
        self.target_epsilon = None if target_epsilon is None else check_epsilon(target_epsilon)
        if self.target_epsilon is not None:
            if planned_rounds is None:
                raise ClientStateError("target_epsilon needs planned_rounds")
            self.planned_rounds: int | None = check_count(
                planned_rounds, "planned_rounds", minimum=1
            )
        else:
            self.planned_rounds = None
        self._sigma = None if noise_multiplier is None else check_noise_multiplier(noise_multiplier)
        meta: dict[str, int | float | str] = {
            "client_id": client_id[:200],
            "level": "sample",
            "epochs_per_round": self.epochs_per_round,
        }
        if self.planned_rounds is not None:
            meta["planned_rounds"] = self.planned_rounds
        kwargs: dict[str, Any] = {
            "delta": self.delta,
            "target_epsilon": self.target_epsilon,
            "guard_accountant": accountant,
            "meta": meta,
        }
        self.ledger = (
            PrivacyLedger.open_or_create(ledger_path, **kwargs)
            if ledger_path is not None
            else PrivacyLedger.in_memory(**kwargs)
        )
        if self._sigma is None:  # resume a calibrated plan from the ledger
            counted = [e for e in self.ledger.entries if e.mechanism == "dp_sgd"]
            if counted:
                self._sigma = counted[0].params.noise_multiplier
        self._generator = None
        if noise_seed is not None:
            self._generator = torch.Generator().manual_seed(noise_seed)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Secure RNG turned off")
            from opacus import PrivacyEngine

            self._engine = PrivacyEngine(accountant="rdp")
        self._closed = False

    @property
    def noise_multiplier(self) -> float | None:
        """Sigma in use (None until calibrated at the first round in target mode)."""
        return self._sigma

    def _sigma_for(self, sample_rate: float, steps_per_round: int, n: int) -> float:
        if self._sigma is None:
            if self.target_epsilon is None or self.planned_rounds is None:
                raise ValueError("a target epsilon needs planned_rounds (or give noise_multiplier)")
            check_delta(self.delta, population=n)
            self._sigma = calibrate_noise(
                target_epsilon=self.target_epsilon,
                delta=self.delta,
                sample_rate=sample_rate,
                steps=self.planned_rounds * steps_per_round,
                accountant=self.accountant,
            )
        return self._sigma

    def train_round(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        data_loader: DataLoader[Any],
        *,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        round_id: int | None = None,
    ) -> ClientRoundResult:
        """Train ``epochs_per_round`` epochs of DP-SGD in place and return the update.

        Raises :class:`UnsupportedModuleError`, :class:`UnsupportedSamplerError`,
        :class:`~dp.errors.DeltaError` (delta >= 1/n) before anything runs, and
        :class:`~dp.errors.BudgetExceededError` when the round would exceed the target.
        """
        if self._closed:
            raise ClientStateError(f"client {self.client_id!r} is closed")
        check_module(model)
        n = check_data_loader(data_loader)
        check_delta(self.delta, population=n)
        if not model.training:
            raise UnsupportedModuleError("put the model in training mode (model.train())")
        last = self.ledger.last_round
        rid = (0 if last is None else last + 1) if round_id is None else round_id
        steps_per_epoch = len(data_loader)
        sample_rate = 1.0 / steps_per_epoch
        steps = self.epochs_per_round * steps_per_epoch
        sigma = self._sigma_for(sample_rate, steps_per_epoch, n)
        cost = round_cost(
            mechanism="dp_sgd",
            noise_location="local",
            sample_rate=sample_rate,
            noise_multiplier=sigma,
            steps=steps,
            clip_norm=self.max_grad_norm,
            extra={"dataset_size": n, "epochs": self.epochs_per_round},
        )
        pending = self.ledger.begin_round(rid, cost)
        loss_fn = loss_fn or nn.functional.cross_entropy
        before = {k: p.detach().clone() for k, p in model.named_parameters()}
        try:
            taken, mean_loss = self._train(model, optimizer, data_loader, sigma, loss_fn)
        except BaseException:
            # Nothing left the client: the round costs nothing.
            self.ledger.record_aborted(rid, released_shares=False)
            raise
        if taken != steps:  # pragma: no cover - DPDataLoader yields len(loader) batches
            self.ledger.record_aborted(rid, released_shares=False)
            raise ClientStateError(f"trained {taken} steps, accounted {steps}")
        entry = self.ledger.commit(pending)
        update = {k: (p.detach() - before[k]).clone() for k, p in model.named_parameters()}
        cum = entry.epsilon_cumulative
        spent = PrivacySpent(
            epsilon=cum.get(self.accountant),
            delta=self.delta,
            accountant=self.accountant,
            epsilon_round=entry.epsilon_round.get(self.accountant),
            epsilon_rdp=cum.rdp,
            epsilon_pld=cum.pld,
            rounds=sum(1 for e in self.ledger.entries if e.counted),
        )
        return ClientRoundResult(rid, update, steps, sample_rate, sigma, mean_loss, spent)

    def _train(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        data_loader: DataLoader[Any],
        sigma: float,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    ) -> tuple[int, float]:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="PrivacyEngine detected new dataset")
            warnings.filterwarnings("ignore", message="Full backward hook is firing")
            gsm, dp_optimizer, dp_loader = self._engine.make_private(
                module=model,
                optimizer=optimizer,
                data_loader=data_loader,
                noise_multiplier=sigma,
                max_grad_norm=self.max_grad_norm,
                poisson_sampling=True,
                noise_generator=self._generator,
            )
            taken, total_loss = 0, 0.0
            try:
                for _ in range(self.epochs_per_round):
                    for x, y in dp_loader:
                        dp_optimizer.zero_grad(set_to_none=True)
                        loss = loss_fn(gsm(x), y)
                        loss.backward()  # type: ignore[no-untyped-call]
                        if len(x):
                            total_loss += float(loss.detach())
                        dp_optimizer.step()
                        taken += 1
            finally:
                detach(gsm, optimizer)
        return taken, total_loss / max(taken, 1)

    def epsilon(self, *, accountant: str | None = None) -> float:
        """Cumulative sample-level epsilon of this client at its delta."""
        return self.ledger.epsilon(accountant=accountant or self.accountant)

    def close(self) -> None:
        """Release the ledger file."""
        self._closed = True
        self.ledger.close()


def detach(gsm: Any, optimizer: torch.optim.Optimizer) -> None:
    """Undo ``make_private``: remove hooks, per-sample attributes on parameters and the
    activations Opacus caches on layers (left behind when a round fails mid-step),
    clear gradients."""
    gsm._close()
    for module in gsm._module.modules():
        for attr in ("activations", "max_batch_len"):
            if attr in module.__dict__:
                delattr(module, attr)
    for group in optimizer.param_groups:
        for p in group["params"]:
            p.grad = None
            for attr in ("grad_sample", "summed_grad", "_forward_counter", "_current_grad_sample"):
                if hasattr(p, attr):
                    delattr(p, attr)


__all__ = [
    "ClientRoundResult",
    "DPSGDClient",
    "PrivacySpent",
    "check_data_loader",
    "check_module",
    "detach",
]
