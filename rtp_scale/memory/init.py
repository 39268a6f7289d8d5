"""Data-driven starting points of an addressable memory, in which every recalled slot is a different real image.

With one-hot addressing on K real bases (``memory.init=real``) the C*r slots start as copies of only K
images, and a short distillation barely separates them. Here every slot starts as the least-squares
projection of its own real image onto the bases (:meth:`AddressableMemory.fit_rows`), on either

* ``pca``: the training images' mean and their K-1 leading principal components, computed at the bases'
  resolution -- the K-dimensional linear subspace that reconstructs the training images best, so the
  projections are the closest to real images that the storage allows; or
* ``real_project``: K random real images (as ``real``), a weaker span at the same storage.

These are also the *no-distillation* baselines of a memory (``meta.steps=0``): a distilled memory has to
beat its own starting point for the distillation, not the factorisation, to have done the work.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from rtp_scale.errors import UserError

PCA_IMAGES_PER_CLASS = 500
"""Training images per class the principal components are computed on (all of them in smaller classes)."""


def principal_bases(images_NCHW: Tensor, *, num_bases: int, downsample: int) -> Tensor:
    """[K, C, H/ds, W/ds]: the mean image, then the K-1 leading principal components of the images pooled to
    the bases' resolution, each scaled to a per-pixel RMS of 1 (the scale of normalised real images, so that
    the outer optimiser's steps on bases and on coefficients start comparable).

    Computed in float64 from an SVD of the centred images; components beyond the data's rank are left out and
    reported as an error (the memory would hold bases that carry nothing).
    """
    pooled = F.avg_pool2d(images_NCHW.double(), downsample) if downsample > 1 else images_NCHW.double()
    base_shape = pooled.shape[1:]
    flat_ND = pooled.reshape(pooled.shape[0], -1)
    mean_D = flat_ND.mean(0)
    _, singular, components_MD = torch.linalg.svd(flat_ND - mean_D, full_matrices=False)
    rank = int((singular > singular[0] * 1e-10).sum()) if singular.numel() else 0
    if num_bases - 1 > rank:
        raise UserError(f"memory.init=pca needs {num_bases - 1} principal components but the "
                        f"{flat_ND.shape[0]} images at {'x'.join(map(str, base_shape))} span only {rank}; "
                        f"lower memory.num_bases or use memory.init=real_project")
    bases_KD = torch.cat([mean_D[None], components_MD[: num_bases - 1]])
    rms_K1 = bases_KD.pow(2).mean(1, keepdim=True).sqrt().clamp_min(1e-12)
    return (bases_KD / rms_K1).reshape(num_bases, *base_shape).to(images_NCHW.dtype)
