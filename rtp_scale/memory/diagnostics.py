"""How many different images a memory really holds: recall diversity, logged every outer step.

A budget of r slots per class buys nothing if the r recalls of a class are near-copies of each other (as with
one-hot addressing on a few real bases). Two numbers per step, averaged over classes:

* ``memory/within_class_cosine``: mean cosine similarity between two different recalls of the same class
  (1: all copies; about 0 for unrelated images);
* ``memory/effective_recalls``: the effective rank ``exp(H(p))`` of a class's ``[r, D]`` recall matrix, where
  ``p_i = s_i^2 / sum_j s_j^2`` from its singular values: 1 when every recall is a multiple of one image, r when
  the r recalls are orthogonal and of equal norm.
"""
from __future__ import annotations

import torch
from torch import Tensor


@torch.no_grad()
def recall_diversity(images_NCHW: Tensor, labels_N: Tensor, num_classes: int) -> dict[str, float]:
    """The two diversity numbers of a class-labelled image set (classes with fewer than 2 images are skipped)."""
    flat_ND = images_NCHW.detach().reshape(len(images_NCHW), -1).double()
    cosines, ranks = [], []
    for c in range(num_classes):
        x_RD = flat_ND[labels_N == c]
        r = len(x_RD)
        if r < 2:
            continue
        unit_RD = x_RD / x_RD.norm(dim=1, keepdim=True).clamp_min(1e-12)
        gram_RR = unit_RD @ unit_RD.T
        cosines.append(float((gram_RR.sum() - gram_RR.diagonal().sum()) / (r * (r - 1))))
        energy = torch.linalg.svdvals(x_RD).pow(2)
        p = energy / energy.sum().clamp_min(1e-300)
        p = p[p > 0]
        ranks.append(float(torch.exp(-(p * p.log()).sum())))
    if not cosines:
        return {}
    return {"memory/within_class_cosine": sum(cosines) / len(cosines),
            "memory/effective_recalls": sum(ranks) / len(ranks)}
