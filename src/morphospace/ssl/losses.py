"""Self-supervised objectives, written from their papers' definitions.

``nt_xent``
    SimCLR's normalised temperature-scaled cross entropy (Chen et al. 2020, eq. 1): for
    ``2N`` projections of ``N`` galaxies seen twice, each view must pick its twin out of the
    other ``2N - 1`` by cosine similarity over a temperature.
``vicreg``
    Variance-Invariance-Covariance regularisation (Bardes et al. 2022, eqs. 1-6): the mean
    squared distance between the two views' projections, plus a hinge that keeps every
    dimension's standard deviation above 1, plus the squared off-diagonal covariances; no
    negatives, so it suits small batches on a CPU.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F

__all__ = ["nt_xent", "vicreg", "LOSSES", "global_batch"]


class _GatherRows(torch.autograd.Function):
    """All-gather of equal row blocks whose backward hands each process the summed gradient of
    its own rows. Written here rather than taken from ``torch.distributed.nn``, whose all-gather
    left a process to abort at exit (SIGABRT) in about one run in twenty on gloo."""

    @staticmethod
    def forward(ctx, z: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(z) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, z.contiguous())
        ctx.rows = slice(dist.get_rank() * z.shape[0], (dist.get_rank() + 1) * z.shape[0])
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad)  # every process's loss depends on every row: sum their gradients
        return grad[ctx.rows]


def global_batch(z: torch.Tensor) -> torch.Tensor:
    """Every process's rows of ``z`` (N, D), in rank order, so that a loss sees the global batch.

    SimCLR and VICReg compute their losses over the batch of all devices: with each process's
    own batch alone, a view would pick its twin among that device's galaxies only. The rows of
    the other processes carry their gradients back to them (a differentiable all-gather: each
    process gets the sum over the processes' losses of its rows' gradients); as every process
    computes the same loss and DDP averages the gradients, the step is the one a single process
    would take on the whole batch. Every process must give the same number of rows. Without an
    initialised process group of two or more, ``z`` itself.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return z
    return _GatherRows.apply(z)


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.2) -> torch.Tensor:
    """SimCLR's NT-Xent loss of two batches of projections ``(N, D)`` (row i of each: one galaxy)."""
    if z1.shape != z2.shape or z1.ndim != 2:
        raise ValueError(f"expected two N x D batches of the same shape, got {tuple(z1.shape)} and {tuple(z2.shape)}")
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.T / temperature
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    twin = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return F.cross_entropy(sim, twin)


def vicreg(z1: torch.Tensor, z2: torch.Tensor, invariance: float = 25.0, variance: float = 25.0,
           covariance: float = 1.0, eps: float = 1e-4) -> torch.Tensor:
    """VICReg loss of two batches of projections ``(N, D)``, with the paper's weights (25, 25, 1)."""
    if z1.shape != z2.shape or z1.ndim != 2:
        raise ValueError(f"expected two N x D batches of the same shape, got {tuple(z1.shape)} and {tuple(z2.shape)}")
    n, d = z1.shape
    inv = F.mse_loss(z1, z2)
    var = cov = 0.0
    for z in (z1, z2):
        std = torch.sqrt(z.var(dim=0) + eps)
        var = var + torch.relu(1.0 - std).mean()
        zc = z - z.mean(0)
        c = (zc.T @ zc) / max(n - 1, 1)
        off = c - torch.diag(torch.diag(c))
        cov = cov + off.pow(2).sum() / d
    return invariance * inv + variance * var + covariance * cov


LOSSES = {"nt_xent": nt_xent, "vicreg": vicreg}
