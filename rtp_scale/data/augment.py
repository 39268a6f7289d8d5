"""Differentiable siamese augmentation (DSA; Zhao & Bilen, ICML 2021), with explicit draws.

DSA's point is that the *same* random transform is applied to the synthetic images and to the real
images they are compared against, and that the transform is differentiable w.r.t. the pixels so the
meta-gradient flows through it. Here that is made explicit: :meth:`Augmenter.draw` samples one op and
its per-image parameters from a caller-owned ``torch.Generator`` into an :class:`AugmentDraw`;
:meth:`Augmenter.apply` applies a draw, any number of times (e.g. once per inner step of an unroll, and
again in the reverse pass, bit for bit).

Like DSA's single-op mode (``aug_mode='S'`` in its code; ``'M'`` there applies every op in sequence),
one op is chosen uniformly from the configured list per draw, then parameters are drawn per image with
DSA's ranges: brightness +-0.5 (ratio 1.0), saturation x[0, 2), contrast x[0.5, 1.5), crop translation
up to round(0.125 * size) pixels with zero fill, cutout of a round(0.5 * size) square, flip with
probability 0.5, scale x[1/1.2, 1.2) per axis, rotation +-15 degrees.

Implementation notes (why it looks like this):

* scale / rotate use ``affine_grid`` + ``grid_sample`` (bilinear, zero padding, ``align_corners=True``)
  exactly as DSA does.
* crop is an integer translation; it is done by ``gather`` on a 1-pixel zero-padded copy (DSA's own
  indexing scheme) rather than ``grid_sample``, so it is exact (no 1e-7 bilinear leakage) and cheaper.
* flip is ``torch.where(flip, x.flip(3), x)``: exact, and differentiable like any indexing.
* Parameters that depend on the image size (crop shifts, cutout positions) are stored as uniforms in
  [0, 1) and turned into pixels at apply time, so one draw serves any resolution.
* Parameters are always sampled in float32 on the generator's device, then cast, so float32 and
  float64 runs with the same seed see the same transforms.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from rtp_scale.errors import UserError

OPS = ("color", "crop", "cutout", "flip", "scale", "rotate")

# DSA's ParamDiffAug defaults.
PROB_FLIP = 0.5
RATIO_SCALE = 1.2
RATIO_ROTATE_DEG = 15.0
RATIO_CROP_PAD = 0.125
RATIO_CUTOUT = 0.5
BRIGHTNESS = 1.0
SATURATION = 2.0
CONTRAST = 0.5

# Names of the per-image parameters of each op, in sampling order (one uniform each).
_PARAM_NAMES: dict[str, tuple[str, ...]] = {
    "color": ("brightness", "saturation", "contrast"),
    "crop": ("u_row", "u_col"),
    "cutout": ("u_row", "u_col"),
    "flip": ("flip",),
    "scale": ("sx", "sy"),
    "rotate": ("angle",),
}


@dataclass(frozen=True)
class AugmentDraw:
    """One sampled op and its per-image parameters for ``n`` images (each tensor is ``[n]``)."""

    op: str
    """One of :data:`OPS`, or ``"none"`` (identity)."""
    n: int
    params: dict[str, torch.Tensor] = field(default_factory=dict)


def _parse_ops(ops: str) -> tuple[str, ...]:
    if ops is None or ops.strip().lower() in ("", "none"):
        return ()
    names: list[str] = []
    for name in ops.strip().split("_"):
        if name not in OPS:
            raise UserError(f"unknown augmentation op {name!r} in {ops!r}; choose from {'_'.join(OPS)} or 'none'")
        if name not in names:
            names.append(name)
    return tuple(names)


def _params_from_uniform(op: str, u_Nk: torch.Tensor) -> dict[str, torch.Tensor]:
    """Map uniforms in [0, 1) to DSA's parameter ranges."""
    cols = dict(zip(_PARAM_NAMES[op], u_Nk.unbind(1)))
    if op == "color":
        return {
            "brightness": (cols["brightness"] - 0.5) * BRIGHTNESS,
            "saturation": cols["saturation"] * SATURATION,
            "contrast": cols["contrast"] + CONTRAST,
        }
    if op == "flip":
        return {"flip": cols["flip"] < PROB_FLIP}
    if op == "scale":
        lo = 1.0 / RATIO_SCALE
        return {k: cols[k] * (RATIO_SCALE - lo) + lo for k in ("sx", "sy")}
    if op == "rotate":
        return {"angle": (cols["angle"] - 0.5) * 2.0 * math.radians(RATIO_ROTATE_DEG)}
    return cols  # crop, cutout: resolved to pixels at apply time


class Augmenter:
    """DSA with one op per draw. ``Augmenter("none")`` (or ``""``) is the identity and draws nothing."""

    def __init__(self, ops: str = "color_crop_cutout_flip_scale_rotate") -> None:
        self.ops: tuple[str, ...] = _parse_ops(ops)
        self.enabled: bool = bool(self.ops)

    def __repr__(self) -> str:
        return f"Augmenter({'_'.join(self.ops) or 'none'!r})"

    def draw(
        self, n: int, generator: torch.Generator, *, device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> AugmentDraw:
        """Pick one op uniformly and sample its parameters for ``n`` images (consumes ``generator`` only)."""
        if not self.enabled:
            return AugmentDraw(op="none", n=n)
        gen_device = generator.device
        choice = int(torch.randint(len(self.ops), (1,), generator=generator, device=gen_device).item())
        op = self.ops[choice]
        u_Nk = torch.rand((n, len(_PARAM_NAMES[op])), generator=generator, device=gen_device, dtype=torch.float32)
        target = gen_device if device is None else torch.device(device)
        params = {
            k: v.to(device=target) if v.dtype == torch.bool else v.to(device=target, dtype=dtype)
            for k, v in _params_from_uniform(op, u_Nk).items()
        }
        return AugmentDraw(op=op, n=n, params=params)

    def apply(self, x_NCHW: torch.Tensor, draw: AugmentDraw) -> torch.Tensor:
        """Apply ``draw``; image ``i`` of the draw transforms rows ``i, i+n, i+2n, ...`` of ``x_NCHW``."""
        if draw.op == "none":
            return x_NCHW
        if x_NCHW.ndim != 4:
            raise ValueError(f"expected x_NCHW with 4 dims, got shape {tuple(x_NCHW.shape)}")
        N = x_NCHW.shape[0]
        if draw.n <= 0 or N % draw.n:
            raise ValueError(f"draw is for {draw.n} images; x has {N} rows (need a multiple)")
        reps = N // draw.n
        p = {
            k: (v.to(x_NCHW.device) if v.dtype == torch.bool else v.to(x_NCHW.device, x_NCHW.dtype)).repeat(reps)
            for k, v in draw.params.items()
        }
        return _APPLY[draw.op](x_NCHW, p)

    def __call__(self, x_NCHW: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Fresh draw for these images, applied."""
        if not self.enabled:
            return x_NCHW
        return self.apply(x_NCHW, self.draw(x_NCHW.shape[0], generator, device=x_NCHW.device, dtype=x_NCHW.dtype))


# --------------------------------------------------------------------------- the ops (x: [N, C, H, W]; params: [N])


def _color(x: torch.Tensor, p: dict[str, torch.Tensor]) -> torch.Tensor:
    x = x + p["brightness"].view(-1, 1, 1, 1)
    mean_c = x.mean(dim=1, keepdim=True)
    x = (x - mean_c) * p["saturation"].view(-1, 1, 1, 1) + mean_c
    mean_all = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean_all) * p["contrast"].view(-1, 1, 1, 1) + mean_all


def _pixels(u: torch.Tensor, count: int) -> torch.Tensor:
    """Uniform in [0, 1) -> integer in 0..count-1 (clamped against float rounding at the top)."""
    return (u * count).floor().long().clamp_(0, count - 1)


def _crop(x: torch.Tensor, p: dict[str, torch.Tensor]) -> torch.Tensor:
    N, C, H, W = x.shape
    shift_h, shift_w = int(H * RATIO_CROP_PAD + 0.5), int(W * RATIO_CROP_PAD + 0.5)
    t_row = _pixels(p["u_row"], 2 * shift_h + 1) - shift_h
    t_col = _pixels(p["u_col"], 2 * shift_w + 1) - shift_w
    # Output (i, j) reads input (i + t_row, j + t_col); out of range reads the zero border (index 0 / H+1).
    rows_NH = (torch.arange(H, device=x.device) + 1 + t_row[:, None]).clamp_(0, H + 1)
    cols_NW = (torch.arange(W, device=x.device) + 1 + t_col[:, None]).clamp_(0, W + 1)
    x_pad = F.pad(x, (1, 1, 1, 1))
    x_rows = x_pad.gather(2, rows_NH[:, None, :, None].expand(N, C, H, W + 2))
    return x_rows.gather(3, cols_NW[:, None, None, :].expand(N, C, H, W))


def _cutout(x: torch.Tensor, p: dict[str, torch.Tensor]) -> torch.Tensor:
    N, C, H, W = x.shape
    size_h, size_w = int(H * RATIO_CUTOUT + 0.5), int(W * RATIO_CUTOUT + 0.5)
    # DSA's centre range: 0 .. H - (size odd ? 1 : 0); the square is clipped at the border.
    top = _pixels(p["u_row"], H + (1 - size_h % 2)) - size_h // 2
    left = _pixels(p["u_col"], W + (1 - size_w % 2)) - size_w // 2
    r = torch.arange(H, device=x.device)
    c = torch.arange(W, device=x.device)
    in_rows_NH = (r >= top[:, None]) & (r < top[:, None] + size_h)
    in_cols_NW = (c >= left[:, None]) & (c < left[:, None] + size_w)
    keep_NHW = ~(in_rows_NH[:, :, None] & in_cols_NW[:, None, :])
    return x * keep_NHW.to(x.dtype)[:, None]


def _flip(x: torch.Tensor, p: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.where(p["flip"].view(-1, 1, 1, 1), x.flip(3), x)


def _warp(x: torch.Tensor, theta_N23: torch.Tensor) -> torch.Tensor:
    grid = F.affine_grid(theta_N23, list(x.shape), align_corners=True)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def _scale(x: torch.Tensor, p: dict[str, torch.Tensor]) -> torch.Tensor:
    sx, sy = p["sx"], p["sy"]
    zero = torch.zeros_like(sx)
    theta = torch.stack([torch.stack([sx, zero, zero], 1), torch.stack([zero, sy, zero], 1)], 1)
    return _warp(x, theta)


def _rotate(x: torch.Tensor, p: dict[str, torch.Tensor]) -> torch.Tensor:
    a = p["angle"]
    cos, sin, zero = torch.cos(a), torch.sin(a), torch.zeros_like(a)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    return _warp(x, theta)


_APPLY = {"color": _color, "crop": _crop, "cutout": _cutout, "flip": _flip, "scale": _scale, "rotate": _rotate}
