"""Image-folder datasets (ImageNet subsets such as ImageNette/ImageWoof, Tiny-ImageNet) held in memory.

Layouts accepted under ``data.root``:

* ``train/<class>/**/*.{jpg,jpeg,png,bmp,webp}`` and ``val/<class>/...`` (or ``test/<class>/...`` when
  there is no ``val/``) — the ImageNet / ImageFolder layout; images may sit in sub-folders of a class.
* Tiny-ImageNet: ``train/<wnid>/images/*.JPEG`` (found by the recursive search above) and
  ``val/images/*.JPEG`` labelled by ``val/val_annotations.txt`` (``file<TAB>wnid<TAB>box...``); its
  unlabelled ``test/`` is ignored.

Class order is the sorted train folder names. Every image is converted to RGB, resized so its shorter
side is ``resolution`` (default 64; PIL bilinear, which antialiases like torchvision's ``Resize``) and
centre-cropped to ``resolution x resolution``. Mean/std come from the training pixels.

Decoding runs on a thread pool (PIL releases the GIL while decoding and resizing); the result does not
depend on the pool size.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from rtp_scale.data.split import SplitDataset, build_split
from rtp_scale.errors import UserError

DEFAULT_RESOLUTION = 64
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})


def _images_under(folder: Path) -> list[Path]:
    """All image files below ``folder``, sorted by path so the order is the same on every machine."""
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def _class_folders(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name)


def _train_files(train_dir: Path) -> tuple[list[str], list[tuple[Path, int]]]:
    classes = _class_folders(train_dir)
    if not classes:
        raise UserError(f"imagefolder: {train_dir} has no class folders (expected train/<class>/*.jpg|png)")
    items: list[tuple[Path, int]] = []
    for label, folder in enumerate(classes):
        files = _images_under(folder)
        if not files:
            raise UserError(f"imagefolder: class folder {folder} has no images (.jpg/.jpeg/.png/.bmp/.webp)")
        items.extend((f, label) for f in files)
    return [c.name for c in classes], items


def _eval_files(root: Path, class_to_idx: dict[str, int]) -> list[tuple[Path, int]]:
    """Labelled evaluation images: Tiny-ImageNet's annotated ``val/``, else ``val/<class>``, else ``test/<class>``."""
    annotations = root / "val" / "val_annotations.txt"
    if annotations.is_file():
        items = []
        for line_no, line in enumerate(annotations.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            fields = line.split("\t")
            if len(fields) < 2 or fields[1] not in class_to_idx:
                raise UserError(f"imagefolder: {annotations}:{line_no}: expected 'file<TAB>class' with a known class")
            path = root / "val" / "images" / fields[0]
            if not path.is_file():
                raise UserError(f"imagefolder: {annotations}:{line_no} names missing image {path}")
            items.append((path, class_to_idx[fields[1]]))
        return sorted(items)
    for split in ("val", "test"):
        split_dir = root / split
        if split_dir.is_dir():
            break
    else:
        raise UserError(f"imagefolder: expected {root}/val/<class>/ or {root}/test/<class>/ beside {root}/train/")
    items = []
    for folder in _class_folders(split_dir):
        if folder.name not in class_to_idx:
            raise UserError(f"imagefolder: {folder} is not a class of {root}/train/")
        items.extend((f, class_to_idx[folder.name]) for f in _images_under(folder))
    if not items:
        raise UserError(f"imagefolder: no images under {split_dir}/<class>/")
    return items


def load_image(path: Path, resolution: int) -> np.ndarray:
    """One image as uint8 ``[resolution, resolution, 3]``: RGB, shorter side resized, centre crop."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img = img.convert("RGB")
            w, h = img.size
            scale = resolution / min(w, h)
            new_w, new_h = max(resolution, round(w * scale)), max(resolution, round(h * scale))
            img = img.resize((new_w, new_h), Image.Resampling.BILINEAR)
            left, top = (new_w - resolution) // 2, (new_h - resolution) // 2
            img = img.crop((left, top, left + resolution, top + resolution))
            return np.asarray(img, dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as err:
        raise UserError(f"imagefolder: cannot read image {path}: {err}") from err


def _load_images(items: list[tuple[Path, int]], resolution: int) -> tuple[torch.Tensor, torch.Tensor]:
    out_NHWC = np.empty((len(items), resolution, resolution, 3), dtype=np.uint8)
    workers = min(16, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for i, arr in enumerate(pool.map(lambda item: load_image(item[0], resolution), items)):
            out_NHWC[i] = arr
    labels = torch.tensor([label for _, label in items], dtype=torch.int64)
    return torch.from_numpy(out_NHWC).permute(0, 3, 1, 2).contiguous(), labels


def load_imagefolder(*, root: str | None, resolution: int | None = None) -> SplitDataset:
    """Read ``root/train`` and its evaluation split into memory at ``resolution`` (default 64)."""
    if root is None or str(root) == "":
        raise UserError("imagefolder: data.root is required (a folder with train/<class>/ and val/<class>/)")
    base = Path(os.path.expanduser(str(root)))
    if not (base / "train").is_dir():
        raise UserError(f"imagefolder: expected {base}/train/<class>/*.jpg|png (folder not found)")
    res = DEFAULT_RESOLUTION if resolution is None else resolution
    class_names, train_items = _train_files(base / "train")
    eval_items = _eval_files(base, {name: i for i, name in enumerate(class_names)})
    train_x, train_y = _load_images(train_items, res)
    test_x, test_y = _load_images(eval_items, res)
    return build_split(
        name="imagefolder", class_names=tuple(class_names),
        train_x_NCHW=train_x, train_y=train_y, test_x_NCHW=test_x, test_y=test_y,
    )
