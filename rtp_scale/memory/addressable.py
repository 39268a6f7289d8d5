"""Addressable memory (Deng & Russakovsky, "Remember the Past", NeurIPS 2022).

K shared bases ``B`` and, per recalled slot, a linear map from a query vector ``y`` to base coefficients:
``x_j(y) = sum_c y_c * addressing[c, j] @ B``. Because recall is linear in ``y``, soft or mixed labels recall
meaningful images and the storage does not grow with the number of recalled images per class beyond the
``C*r*K`` coefficients (see :mod:`rtp_scale.memory.budget`).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rtp_scale.errors import UserError
from rtp_scale.memory.budget import StorageReport, storage_report

# Relative noise on the one-hot addressing rows when bases are initialised from labelled real images:
# enough to break the symmetry between rows that start on the same base, small enough that every recalled
# image starts visibly as a real image of its class.
_ONE_HOT_NOISE = 0.1


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if int(value) != value or value < 1:
            raise UserError(f"{name} must be a positive integer, got {value!r}")


def _check_downsample(ds: int, height: int, width: int) -> None:
    if height // ds < 1 or width // ds < 1:
        raise UserError(f"downsample {ds} is larger than the image ({height}x{width})")


def upsample_to(x_NCHW: Tensor, size: tuple[int, int]) -> Tensor:
    """Stored low-resolution images to ``size`` (bilinear, align_corners=False): linear, so it commutes with
    mixing; both memory kinds recall through it."""
    return F.interpolate(x_NCHW, size=size, mode="bilinear", align_corners=False)


def _default_generator(generator: torch.Generator | None) -> torch.Generator:
    # No global RNG: without a generator the init is still deterministic (seed 0).
    return generator if generator is not None else torch.Generator().manual_seed(0)


def check_queries(queries_QC: Tensor, num_classes: int) -> None:
    if queries_QC.dim() != 2 or queries_QC.shape[1] != num_classes:
        raise ValueError(f"queries must be [Q, {num_classes}], got {list(queries_QC.shape)}")


class AddressableMemory(nn.Module):
    """K shared bases mixed by learned addressing. x = A(y) @ B. Linear in the query y.

    Initialisation (drawn only from ``generator``):

    * bases: ``init_images_NCHW`` ([K, C, H, W] real images) average-pooled by ``downsample``; else N(0, 1).
    * addressing: with ``init_labels`` ([K] class ids of those images), row j of class c is one-hot on the
      (j mod n_c)-th base of class c plus N(0, (0.1/sqrt(K))^2) noise, so every recalled image starts as a
      real image of its own class. Otherwise (or for a class with no base) N(0, 1/K): a recalled image then
      has per-pixel variance about that of the bases, i.e. starts at the scale of real (normalised) images.
    """

    def __init__(self, *, num_classes: int, image_shape: tuple[int, int, int], num_bases: int,
                 images_per_class: int, downsample: int = 1, generator: torch.Generator | None = None,
                 init_images_NCHW: Tensor | None = None, init_labels: Tensor | None = None) -> None:
        super().__init__()
        if len(image_shape) != 3:
            raise UserError(f"image_shape must be (C, H, W), got {tuple(image_shape)}")
        channels, height, width = (int(s) for s in image_shape)
        _check_positive(num_classes=num_classes, channels=channels, height=height, width=width,
                        num_bases=num_bases, images_per_class=images_per_class, downsample=downsample)
        K, R, ds = int(num_bases), int(images_per_class), int(downsample)
        _check_downsample(ds, height, width)
        self.num_classes, self.image_shape = int(num_classes), (channels, height, width)
        self.num_bases, self.images_per_class, self.downsample = K, R, ds
        self.base_shape = (channels, height // ds, width // ds)
        gen = _default_generator(generator)

        if init_images_NCHW is not None:
            if tuple(init_images_NCHW.shape) != (K, channels, height, width):
                raise UserError(f"init images must be [K={K}, {channels}, {height}, {width}], "
                                f"got {list(init_images_NCHW.shape)}")
            imgs = init_images_NCHW.detach().float() if not init_images_NCHW.is_floating_point() \
                else init_images_NCHW.detach()
            bases_KCHW = F.avg_pool2d(imgs, ds) if ds > 1 else imgs.clone()
            dtype, device = bases_KCHW.dtype, bases_KCHW.device
        else:
            dtype, device = torch.get_default_dtype(), torch.device("cpu")
            bases_KCHW = torch.randn((K, *self.base_shape), generator=gen, dtype=dtype,
                                     device=gen.device).to(device)
        addressing_CRK = torch.randn((self.num_classes, R, K), generator=gen, dtype=dtype,
                                     device=gen.device).to(device) / math.sqrt(K)
        if init_labels is not None:
            addressing_CRK = self._one_hot_addressing(
                addressing_CRK, init_labels, has_images=init_images_NCHW is not None)
        self.bases = nn.Parameter(bases_KCHW.contiguous())
        self.addressing = nn.Parameter(addressing_CRK.contiguous())

    def _one_hot_addressing(self, noise_CRK: Tensor, labels_K: Tensor, *, has_images: bool) -> Tensor:
        if not has_images:
            raise UserError("init_labels only makes sense together with init_images_NCHW")
        labels_K = labels_K.detach().to("cpu", torch.int64).reshape(-1)
        if labels_K.numel() != self.num_bases:
            raise UserError(f"init_labels must have K={self.num_bases} entries, got {labels_K.numel()}")
        if labels_K.numel() and (labels_K.min() < 0 or labels_K.max() >= self.num_classes):
            raise UserError(f"init_labels must lie in [0, {self.num_classes}), got {labels_K.tolist()}")
        out_CRK = noise_CRK.clone()
        for c in range(self.num_classes):
            own = torch.nonzero(labels_K == c).flatten()
            if own.numel() == 0:
                continue  # no base of this class: keep the N(0, 1/K) rows
            rows = own[torch.arange(self.images_per_class) % own.numel()]
            one_hot_RK = F.one_hot(rows, self.num_bases).to(out_CRK)
            out_CRK[c] = one_hot_RK + _ONE_HOT_NOISE * noise_CRK[c]
        return out_CRK

    @property
    def meta(self) -> dict:
        """Everything needed to rebuild an empty memory of the same shape (used by the artifact)."""
        return {"kind": "addressable", "num_classes": self.num_classes, "image_shape": list(self.image_shape),
                "num_bases": self.num_bases, "images_per_class": self.images_per_class,
                "downsample": self.downsample}

    def full_resolution_bases(self) -> Tensor:
        """[K, C, H, W] bases upsampled to image size (bilinear, align_corners=False) — linear in the bases."""
        if self.downsample == 1:
            return self.bases
        return upsample_to(self.bases, self.image_shape[1:])

    def recall(self, queries_QC: Tensor) -> Tensor:
        """[Q, r, C, H, W] images for any real-valued query rows (one-hot, soft, mixed); linear in the query.

        Upsampling the K bases once before mixing is cheaper than upsampling Q*r images and, both maps being
        linear, gives the same result.
        """
        check_queries(queries_QC, self.num_classes)
        coeff_QRK = torch.einsum("qc,crk->qrk", queries_QC.to(self.addressing), self.addressing)
        return torch.einsum("qrk,kchw->qrchw", coeff_QRK, self.full_resolution_bases())

    def class_images(self) -> tuple[Tensor, Tensor]:
        """(x [C*r, C, H, W], y [C*r] int64), class-major: recall of every one-hot class query."""
        eye_CC = torch.eye(self.num_classes, dtype=self.addressing.dtype, device=self.addressing.device)
        x_NCHW = self.recall(eye_CC).reshape(-1, *self.image_shape)
        return x_NCHW, self._labels()

    def targets(self) -> Tensor:
        """[C*r, C] one-hot targets of :meth:`class_images` (labels are fixed in RtP)."""
        return F.one_hot(self._labels(), self.num_classes).to(self.addressing.dtype)

    def _labels(self) -> Tensor:
        """[C*r] int64 class of each slot, class-major."""
        return torch.arange(self.num_classes, device=self.addressing.device).repeat_interleave(
            self.images_per_class)

    def coefficient_l2(self) -> Tensor:
        """Mean squared addressing coefficient: the RtP regulariser's term (weight 1e-4 in the reference)."""
        return self.addressing.pow(2).mean()

    def storage(self, budget_ipc: float | None = None, *, stored_classes: int | None = None) -> StorageReport:
        """Bases plus the addressing of ``stored_classes`` classes (default: all), in images per class of all
        ``num_classes`` classes. Continual learning stores only the rows of the classes seen so far."""
        channels, height, width = self.image_shape
        rows = self.num_classes if stored_classes is None else int(stored_classes)
        if not 0 <= rows <= self.num_classes:
            raise ValueError(f"stored_classes must lie in [0, {self.num_classes}], got {stored_classes}")
        floats = self.num_bases * math.prod(self.base_shape) + rows * self.images_per_class * self.num_bases
        return storage_report(floats, num_classes=self.num_classes, pixels_per_image=channels * height * width,
                              budget_ipc=budget_ipc)

    # ---------------------------------------------------------------- continual learning (additive API)

    @torch.no_grad()
    def extend_bases(self, images_NCHW: Tensor) -> None:
        """Append N bases made from full-resolution images (average-pooled by ``downsample``, like the init).

        Every existing addressing row gets coefficient 0 on the new bases, so every recall is unchanged.
        The parameters are replaced by larger ones: build optimisers after calling this.
        """
        if images_NCHW.dim() != 4 or tuple(images_NCHW.shape[1:]) != self.image_shape:
            raise UserError(f"new bases must be [N, {', '.join(map(str, self.image_shape))}] images, "
                            f"got {list(images_NCHW.shape)}")
        imgs = images_NCHW.detach().to(self.bases)
        new_NCHW = F.avg_pool2d(imgs, self.downsample) if self.downsample > 1 else imgs.clone()
        n = new_NCHW.shape[0]
        zeros_CRN = self.addressing.new_zeros(self.num_classes, self.images_per_class, n)
        self.bases = nn.Parameter(torch.cat([self.bases.detach(), new_NCHW]).contiguous(),
                                  requires_grad=self.bases.requires_grad)
        self.addressing = nn.Parameter(torch.cat([self.addressing.detach(), zeros_CRN], dim=2).contiguous(),
                                       requires_grad=self.addressing.requires_grad)
        self.num_bases += n

    @torch.no_grad()
    def fit_rows(self, classes: list[int], images_CRCHW: Tensor) -> None:
        """Set the addressing rows of ``classes`` to the least-squares coefficients of real images on the
        current bases: recall of class c, slot j starts as the projection of ``images_CRCHW[i, j]`` onto the
        span of the bases (its best approximation the memory can express). Other rows are untouched.
        """
        R = self.images_per_class
        if images_CRCHW.shape[:2] != (len(classes), R) or tuple(images_CRCHW.shape[2:]) != self.image_shape:
            raise UserError(f"fit_rows needs [{len(classes)}, {R}, {', '.join(map(str, self.image_shape))}] "
                            f"images, got {list(images_CRCHW.shape)}")
        basis_DK = self.full_resolution_bases().detach().reshape(self.num_bases, -1).T.double()
        target_DN = images_CRCHW.detach().to(basis_DK).reshape(len(classes) * R, -1).T
        # lstsq on the CPU in float64: K is small, and gelsd handles rank-deficient bases (duplicate images)
        coeff_NK = torch.linalg.lstsq(basis_DK.cpu(), target_DN.cpu(), driver="gelsd").solution.T
        self.addressing[torch.as_tensor(classes, device=self.addressing.device)] = \
            coeff_NK.reshape(len(classes), R, self.num_bases).to(self.addressing)
