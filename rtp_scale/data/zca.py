"""ZCA whitening as used by KIP / FRePo / RtP for CIFAR-scale distillation.

Whitening removes the strong pixel correlations that let a distilled image "spend" its storage on
low-frequency content; the same transform must be applied to real data at evaluation, and
:meth:`ZCA.invert` maps distilled images back to viewable pixels.

Regularisation follows KIP/FRePo: ``reg * trace(cov) / D`` (``reg`` times the mean eigenvalue) is added
to every eigenvalue before the inverse square root, so near-null directions are damped rather than
amplified. Unlike KIP's notebook we do not layer-normalise each image first: the input is the
dataset's normalised images, and keeping the transform linear keeps ``invert`` exact.

Cost: covariance O(N*D^2) plus an O(D^3) float64 eigendecomposition (D = C*H*W). For 32x32x3
(D = 3072) and N = 10k this took ~25 s on a 2-core CPU; 64x64x3 (D = 12288) needs ~64x the eigh time
and 1.2 GB per matrix, so fit once per dataset (on a GPU if there is one) and reuse it.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class ZCA:
    """A fitted whitening transform over flattened images (all tensors float64 on the fit device)."""

    mean_D: torch.Tensor
    transform_DD: torch.Tensor
    """``V diag((lambda + eps)^-1/2) V^T`` — symmetric, so ``x @ transform_DD`` whitens row vectors."""
    inverse_DD: torch.Tensor
    """``V diag((lambda + eps)^+1/2) V^T``, the exact inverse of ``transform_DD``."""

    @classmethod
    def fit(cls, x_NCHW: torch.Tensor, reg: float = 0.1) -> "ZCA":
        """Fit on training images. The covariance and eigendecomposition run in float64 for stability."""
        if reg < 0:
            raise ValueError(f"reg must be >= 0, got {reg}")
        x_ND = x_NCHW.detach().reshape(x_NCHW.shape[0], -1).to(torch.float64)
        mean_D = x_ND.mean(dim=0)
        centred = x_ND - mean_D
        cov_DD = centred.T @ centred / x_ND.shape[0]
        eigvals_D, eigvecs_DD = torch.linalg.eigh(cov_DD)
        eigvals_D = eigvals_D.clamp_min(0.0)  # round-off can make null directions slightly negative
        reg_eigvals_D = eigvals_D + reg * eigvals_D.mean()
        if not bool((reg_eigvals_D > 0).all()):
            raise ValueError("ZCA.fit: covariance is singular and reg is 0; use reg > 0")
        transform_DD = (eigvecs_DD * reg_eigvals_D.rsqrt()) @ eigvecs_DD.T
        inverse_DD = (eigvecs_DD * reg_eigvals_D.sqrt()) @ eigvecs_DD.T
        return cls(mean_D=mean_D, transform_DD=transform_DD, inverse_DD=inverse_DD)

    def _matmul(self, x_NCHW: torch.Tensor, matrix_DD: torch.Tensor) -> torch.Tensor:
        x_ND = x_NCHW.reshape(x_NCHW.shape[0], -1)
        return (x_ND @ matrix_DD.to(device=x_NCHW.device, dtype=x_NCHW.dtype)).reshape(x_NCHW.shape)

    def apply(self, x_NCHW: torch.Tensor) -> torch.Tensor:
        """Whiten, computed in ``x``'s dtype and device (differentiable w.r.t. ``x``)."""
        mean = self.mean_D.to(device=x_NCHW.device, dtype=x_NCHW.dtype)
        return self._matmul(x_NCHW - mean.view(1, *x_NCHW.shape[1:]), self.transform_DD)

    def invert(self, x_NCHW: torch.Tensor) -> torch.Tensor:
        """Un-whiten (for viewing / exporting distilled images)."""
        mean = self.mean_D.to(device=x_NCHW.device, dtype=x_NCHW.dtype)
        return self._matmul(x_NCHW, self.inverse_DD) + mean.view(1, *x_NCHW.shape[1:])

    @classmethod
    def from_transform(cls, mean_D: torch.Tensor, transform_DD: torch.Tensor) -> "ZCA":
        """Rebuild a fitted transform from its mean and whitening matrix (as an artifact stores them).

        Whitening uses only these two, so :meth:`apply` reproduces the fitted transform's output bit for bit
        when they are stored in the dtype the images are whitened in; the inverse (for viewing) is recomputed.
        """
        mean_D, transform_DD = mean_D.to(torch.float64), transform_DD.to(torch.float64)
        return cls(mean_D=mean_D, transform_DD=transform_DD, inverse_DD=torch.linalg.inv(transform_DD))

    def fingerprint(self) -> dict[str, float | int]:
        """Summary numbers of the fitted transform, to check that a refit on another copy of the data matches."""
        return {"dim": int(self.mean_D.numel()), "transform_trace": float(self.transform_DD.trace()),
                "mean_sum": float(self.mean_D.sum())}

    def to(self, device: torch.device | str) -> "ZCA":
        """A copy on ``device`` (keeps float64)."""
        return ZCA(mean_D=self.mean_D.to(device), transform_DD=self.transform_DD.to(device),
                   inverse_DD=self.inverse_DD.to(device))
