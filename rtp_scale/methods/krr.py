"""Kernel ridge regression on network features, differentiable and solved stably in float64 (FRePo's meta-loss).

With synthetic features ``phi_s`` [n, F], their targets ``Y_s`` [n, C] and target features ``phi_t`` [m, F]::

    K_ss = phi_s phi_s^T              K_ts = phi_t phi_s^T
    lambda = reg * trace(K_ss) / n    (FRePo's relative ridge; reg = 1e-6 there)
    pred = K_ts (K_ss + lambda I)^{-1} Y_s

Why float64 and Cholesky: K_ss has rank at most min(n, F) and its eigenvalues span many decades, so with
reg = 1e-6 the regularised matrix has a condition number near 1e6 — float32 (eps ~1e-7) would lose every
digit of the solve, while float64 (eps ~1e-16) keeps about ten. The matrix is symmetric positive definite,
so a Cholesky factorisation is the cheapest stable solve; autograd differentiates ``cholesky`` and
``cholesky_solve`` exactly. If the factorisation still fails (all features zero, e.g. a dead network),
a jitter is added, starting at ``1e-12 * max(mean diagonal, 1)`` and growing tenfold per retry; the ridge
actually used is returned. The cost is O(n^3 + n^2 F + m n F), negligible next to the feature extraction
for n up to a few thousand.
"""
from __future__ import annotations

import torch
from torch import Tensor

_MAX_JITTER_TRIES = 8


class KrrSolveError(FloatingPointError):
    """The regularised Gram matrix could not be factorised even after raising the ridge."""


def krr_predict(feat_s_NF: Tensor, y_s_NC: Tensor, feat_t_MF: Tensor, *, reg: float) -> tuple[Tensor, float]:
    """``(pred [M, C] in float64, ridge used)``: the KRR prediction for the targets, differentiable in all inputs."""
    fs, ft, ys = feat_s_NF.to(torch.float64), feat_t_MF.to(torch.float64), y_s_NC.to(torch.float64)
    k_ss_NN = fs @ fs.T
    n = k_ss_NN.shape[0]
    eye = torch.eye(n, dtype=torch.float64, device=fs.device)
    ridge = reg * torch.diagonal(k_ss_NN).sum() / n  # in the graph, as in FRePo (jnp.trace is differentiated)
    floor = 1e-12 * max(float(torch.diagonal(k_ss_NN).detach().mean()), 1.0)
    extra = 0.0
    for _ in range(_MAX_JITTER_TRIES):
        chol_NN, info = torch.linalg.cholesky_ex(k_ss_NN + (ridge + extra) * eye)
        if int(info) == 0:
            alpha_NC = torch.cholesky_solve(ys, chol_NN)
            pred_MC = (ft @ fs.T) @ alpha_NC
            return pred_MC, float(ridge.detach()) + extra
        extra = floor if extra == 0.0 else extra * 10
    raise KrrSolveError(f"kernel ridge regression: the {n}x{n} Gram matrix is not positive definite even with "
                        f"jitter {extra:.3g} (are the network features all zero?)")


def half_mse(pred_MC: Tensor, target_MC: Tensor) -> Tensor:
    """FRePo's regression loss: mean over rows of 0.5 * sum over classes of the squared error."""
    return 0.5 * (pred_MC - target_MC.to(pred_MC.dtype)).pow(2).sum(dim=1).mean()


def label_margin_loss(labels_NC: Tensor) -> Tensor:
    """FRePo's label term on learned labels: mean of -min(top1 - top2, 1/C); rewards a clear top class."""
    top2 = labels_NC.topk(2, dim=1).values
    return -torch.clamp(top2[:, 0] - top2[:, 1], max=1.0 / labels_NC.shape[1]).mean()
