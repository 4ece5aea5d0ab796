"""Gradient inversion by a curious server: DLG / iDLG and Inverting Gradients.

* DLG (Zhu, Liu & Han, NeurIPS 2019): optimise dummy images (and soft labels) with
  L-BFGS so that their gradient matches the observed one in squared L2 distance.
* iDLG (Zhao, Mopuri & Bilen 2020): with cross-entropy the last layer's bias gradient is
  ``mean_b(softmax_b - onehot_b)``, negative exactly at the labels present, so labels
  come out of the gradient before the images are searched; :func:`recover_labels`
  extends this to batches by estimating label counts.
* Inverting Gradients (Geiping et al., NeurIPS 2020): cosine distance between gradients
  plus a total-variation prior, Adam on signed gradients, images boxed to [0, 1].

The observed "gradient" is whatever flat vector the server holds (a plaintext update, a
masked vector decoded as if it were one, or an aggregate), so the same code measures
what each secure configuration leaves to invert. Everything runs in float64 on CPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from protocols.attacks.metrics import Images, batch_scores, label_accuracy
from secagg.config import SecAggConfig
from secagg.messages import Expect, MaskedInput, MsgType, decode
from secagg.simulate import InProcessRound

NUM_CLASSES = 10
IMAGE_SHAPE = (1, 8, 8)


def load_digits(n: int, seed: int = 0) -> tuple[Images, npt.NDArray[np.int64]]:
    """``n`` 8x8 handwritten digits in [0, 1] with labels (scikit-learn's bundled set)."""
    from sklearn.datasets import load_digits as _load

    data = _load()
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(data.images), size=n, replace=False)
    return (data.images[idx] / 16.0).astype(np.float64), data.target[idx].astype(np.int64)


def distinct_label_batches(
    num_batches: int, batch: int, seed: int = 0
) -> list[tuple[Images, npt.NDArray[np.int64]]]:
    """Client batches of digits with distinct labels inside each batch (batch <= 10)."""
    imgs, labels = load_digits(400, seed)
    out = []
    used: set[int] = set()
    for _ in range(num_batches):
        seen: dict[int, int] = {}
        for i, lab in enumerate(labels):
            if i not in used and int(lab) not in seen:
                seen[int(lab)] = i
                if len(seen) == batch:
                    break
        idx = list(seen.values())
        used.update(idx)
        out.append((imgs[idx], labels[idx]))
    return out


def tiny_convnet(seed: int = 0) -> nn.Module:
    """LeNet-style net with sigmoid activations (as in DLG): twice differentiable."""
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(1, 6, 3, padding=1),
        nn.Sigmoid(),
        nn.Conv2d(6, 6, 3, padding=1, stride=2),
        nn.Sigmoid(),
        nn.Flatten(),
        nn.Linear(6 * 4 * 4, NUM_CLASSES),
    ).double()
    for p in model.parameters():  # DLG's init: uniform, wide enough to keep signal
        nn.init.uniform_(p, -0.5, 0.5)
    return model


def _grads(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, create_graph: bool
) -> list[torch.Tensor]:
    """Per-parameter gradients of the mean cross-entropy; ``y`` is labels or soft targets."""
    logits = model(x)
    if y.dtype == torch.int64:
        loss = nn.functional.cross_entropy(logits, y)
    else:
        loss = torch.mean(torch.sum(-y * torch.log_softmax(logits, dim=-1), dim=-1))
    return list(torch.autograd.grad(loss, list(model.parameters()), create_graph=create_graph))


def flat_gradient(
    model: nn.Module, images: Images, labels: npt.ArrayLike
) -> npt.NDArray[np.float64]:
    """The update a client would send: the flat gradient of its batch."""
    x = torch.as_tensor(np.asarray(images), dtype=torch.float64).reshape(-1, *IMAGE_SHAPE)
    y = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
    g = _grads(model, x, y, create_graph=False)
    return torch.cat([t.reshape(-1) for t in g]).numpy().astype(np.float64)


def _split(model: nn.Module, flat: npt.NDArray[np.float64]) -> list[torch.Tensor]:
    out, i = [], 0
    for p in model.parameters():
        n = p.numel()
        out.append(torch.as_tensor(flat[i : i + n], dtype=torch.float64).reshape(p.shape))
        i += n
    if i != flat.shape[0]:
        raise ValueError(f"gradient has {flat.shape[0]} entries, model has {i} parameters")
    return out


def recover_labels(model: nn.Module, grad: npt.NDArray[np.float64], batch: int) -> list[int]:
    """Labels from the last bias gradient (iDLG; exact for a batch of one).

    For a batch, every label with a negative entry is present; further copies go where
    count_j ~ batch * (1/classes - g_j) (softmax taken as uniform) is largest.
    """
    g = _split(model, grad)[-1].numpy()
    if batch == 1:
        return [int(np.argmin(g))]
    present = np.flatnonzero(g < 0)
    if present.size >= batch:  # more negatives than slots: keep the most negative
        return sorted(int(j) for j in present[np.argsort(g[present])][:batch])
    counts = np.zeros(NUM_CLASSES, dtype=int)
    counts[present] = 1
    est = np.clip(batch * (1.0 / NUM_CLASSES - g), 0.0, None) - counts
    for _ in range(batch - int(counts.sum())):  # extra copies where the estimate is largest
        j = int(np.argmax(est))
        counts[j] += 1
        est[j] -= 1.0
    return [j for j in range(NUM_CLASSES) for _ in range(counts[j])]


@dataclass(frozen=True)
class Reconstruction:
    """What an inversion produced, scored against the victim's true batch."""

    images: Images
    labels: list[int]
    psnr: float
    ssim: float
    label_acc: float


def score(
    recon: Images, labels: list[int], true_images: Images, true_labels: npt.ArrayLike
) -> Reconstruction:
    """Match ``recon`` to the victim's images and compute PSNR, SSIM and label accuracy."""
    p, s = batch_scores(true_images, recon)
    return Reconstruction(
        recon, labels, p, s, label_accuracy(list(np.asarray(true_labels)), labels)
    )


def _dummy(batch: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand((batch, *IMAGE_SHAPE), generator=gen, dtype=torch.float64)


def dlg(
    model: nn.Module,
    grad: npt.NDArray[np.float64],
    batch: int,
    *,
    labels: list[int] | None = None,
    iters: int = 60,
    seed: int = 0,
) -> tuple[Images, list[int]]:
    """Deep Leakage from Gradients; with ``labels`` (from :func:`recover_labels`) it is iDLG.

    Without labels the dummy soft labels are optimised jointly, as in the original DLG.
    Returns images clipped to [0, 1] and the labels used (or the argmax of the soft ones).
    """
    target = _split(model, grad)
    x = _dummy(batch, seed).requires_grad_(True)
    params: list[torch.Tensor] = [x]
    if labels is None:
        gen = torch.Generator().manual_seed(seed + 1)
        y_logits = torch.randn((batch, NUM_CLASSES), generator=gen, dtype=torch.float64)
        y_logits.requires_grad_(True)
        params.append(y_logits)
    opt = torch.optim.LBFGS(
        params, lr=1.0, max_iter=20, history_size=50, line_search_fn="strong_wolfe"
    )

    def closure() -> torch.Tensor:
        opt.zero_grad()
        y = torch.as_tensor(labels) if labels is not None else torch.softmax(y_logits, dim=-1)
        g = _grads(model, x, y, create_graph=True)
        loss = sum(((a - b) ** 2).sum() for a, b in zip(g, target, strict=True))
        if not isinstance(loss, torch.Tensor):  # pragma: no cover - sum of tensors
            raise TypeError("the gradient-matching loss is not a tensor")
        loss.backward()  # type: ignore[no-untyped-call]
        return loss

    for _ in range(iters):
        opt.step(closure)  # type: ignore[no-untyped-call]
    out = x.detach().clamp(0, 1).numpy().reshape(batch, 8, 8)
    used = labels if labels is not None else [int(v) for v in y_logits.detach().argmax(-1)]
    return out, used


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Anisotropic total variation (mean absolute neighbour difference)."""
    dx = (x[..., :, 1:] - x[..., :, :-1]).abs().mean()
    dy = (x[..., 1:, :] - x[..., :-1, :]).abs().mean()
    return dx + dy


def inverting_gradients(
    model: nn.Module,
    grad: npt.NDArray[np.float64],
    batch: int,
    labels: list[int],
    *,
    iters: int = 1500,
    lr: float = 0.05,
    tv_weight: float = 1e-3,
    restarts: int = 1,
    seed: int = 0,
) -> Images:
    """Inverting Gradients: minimise 1 - cos(grad(x), g) + tv_weight * TV(x), x in [0, 1].

    Adam on the sign of the gradient with step decay, best of ``restarts`` by the objective.
    """
    target = _split(model, grad)
    tnorm = torch.sqrt(sum((t**2).sum() for t in target))  # type: ignore[arg-type]
    y = torch.as_tensor(labels)
    best: tuple[float, Images] | None = None
    for r in range(restarts):
        x = _dummy(batch, seed + 97 * r).requires_grad_(True)
        opt = torch.optim.Adam([x], lr=lr)
        sched = torch.optim.lr_scheduler.MultiStepLR(
            opt, milestones=[int(iters * f) for f in (0.375, 0.625, 0.875)], gamma=0.1
        )
        loss = torch.zeros(())
        for _ in range(iters):
            opt.zero_grad()
            g = _grads(model, x, y, create_graph=True)
            dot = sum((a * b).sum() for a, b in zip(g, target, strict=True))
            gnorm = torch.sqrt(sum((a**2).sum() for a in g))  # type: ignore[arg-type]
            loss = 1 - dot / (gnorm * tnorm + 1e-12) + tv_weight * total_variation(x)
            loss.backward()  # type: ignore[no-untyped-call]
            if x.grad is None:  # pragma: no cover - x requires grad
                raise RuntimeError("no gradient reached the reconstruction")
            x.grad.sign_()
            opt.step()
            sched.step()
            with torch.no_grad():
                x.clamp_(0, 1)
        final = float(loss.detach())
        if best is None or final < best[0]:
            best = (final, x.detach().numpy().reshape(batch, 8, 8).copy())
    if best is None:
        raise ValueError("restarts must be at least 1")
    return best[1]


# --- what the server holds in each configuration -------------------------------------------

#: Fixed-point range for gradient vectors through the masking protocol.
GRAD_CLIP = 4.0


def _config(n: int) -> SecAggConfig:
    return SecAggConfig.default(
        n,
        setting="honest_but_curious",
        clip_min=-GRAD_CLIP,
        clip_max=GRAD_CLIP,
        rounding="nearest",
    )


def masked_view(updates: list[npt.NDArray[np.float64]], victim: int = 0) -> npt.NDArray[np.float64]:
    """The victim's masked input, read from the server's transcript of a real round and
    decoded as if it were an update (the best a server can do with it)."""
    rnd = InProcessRound(updates, _config(len(updates)))
    rnd.run()
    srv = rnd.server
    if srv.transcript is None:
        raise ValueError("the attack reads the server's transcript: record it")
    expect = Expect.reading(rnd.config, rnd.session_id, rnd.round_index, rnd.dimension)
    for rec in srv.transcript.by_phase("masked_input"):
        if rec.sender == victim:
            msg = decode(rec.payload, expect, (MsgType.MASKED_INPUT,))
            if isinstance(msg, MaskedInput):
                return srv.encoder.decode(msg.vector)
    raise LookupError(f"client {victim} sent no masked input")


def secure_sum(updates: list[npt.NDArray[np.float64]]) -> npt.NDArray[np.float64]:
    """The aggregate the server learns: the protocol's decoded sum (n >= 3), else the
    plain sum (with one or two clients the sum is, or nearly is, an input anyway)."""
    if len(updates) < 3:
        return np.asarray(np.sum(updates, axis=0), dtype=np.float64)
    return InProcessRound(updates, _config(len(updates))).run().sum


def clip_updates(
    updates: list[npt.NDArray[np.float64]], clip: float
) -> list[npt.NDArray[np.float64]]:
    """Clip each client's update to L2 norm ``clip`` (the DP-FedAvg sensitivity bound)."""
    return [u * min(1.0, clip / max(float(np.linalg.norm(u)), 1e-12)) for u in updates]


def noisy_mean(
    total: npt.NDArray[np.float64], n: int, clip: float, z: float, seed: int
) -> npt.NDArray[np.float64]:
    """DP-FedAvg release: (sum + N(0, (z * clip)^2)) / n."""
    rng = np.random.default_rng(seed)
    return (total + rng.normal(0.0, z * clip, total.shape)) / n


@dataclass(frozen=True)
class SweepPoint:
    """Attack on the aggregate of ``n`` clients (victim = client 0), with DP noise ``z``."""

    n: int
    z: float
    result: Reconstruction


def attack_aggregate(
    model: nn.Module,
    batches: list[tuple[Images, npt.NDArray[np.int64]]],
    *,
    z: float = 0.0,
    clip: float | None = None,
    iters: int = 30,
    seed: int = 0,
) -> Reconstruction:
    """Invert the (optionally DP-noised) mean update of ``len(batches)`` clients.

    The server knows n and the batch size, so it searches a dummy batch of all n * B
    images (iDLG labels from the aggregate) and the victim's images are matched among them.
    """
    n = len(batches)
    updates = [flat_gradient(model, x, y) for x, y in batches]
    if z > 0:
        c = clip if clip is not None else float(np.median([np.linalg.norm(u) for u in updates]))
        updates = clip_updates(updates, c)
        view = noisy_mean(secure_sum(updates), n, c, z, seed)
    else:
        view = secure_sum(updates) / n
    total_batch = sum(len(y) for _, y in batches)
    labels = recover_labels(model, view, total_batch)
    recon, used = dlg(model, view, total_batch, labels=labels, iters=iters, seed=seed)
    vx, vy = batches[0]
    rec = score(recon, used, vx, vy)
    return rec
