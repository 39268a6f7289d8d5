"""Recall images from a distilled memory for any queries and write them as a PNG grid.

    python -m rtp_scale.recall --artifact runs/default/memory.safetensors --out runs/recall
    python -m rtp_scale.recall --artifact A.safetensors --query 3 --query "3:0.5,5:0.5" --query "1:0.7,7:0.3"
    python -m rtp_scale.recall --artifact A.safetensors --coarse parity              # one row per superclass
    python -m rtp_scale.recall --artifact A.safetensors --coarse cifar100 --query vehicles_1 --query "fish:0.5,trees:0.5"
    python -m rtp_scale.recall --artifact A.safetensors --coarse mapping.json --query 0

A query is a label vector: ``3`` (one class), ``3:0.5,5:0.5`` (weights as given, over classes or class
names). With ``--coarse`` (a built-in: ``cifar100`` superclasses, ``parity`` for 10 digits; or a JSON file: a
list of coarse indices per fine class, or ``{"name": [fine classes], ...}``) queries are over the coarse
label space and become fine queries through the row-normalised mapping matrix (a superclass recalls the mean
of its members' recalls, recall being linear). Without --query: one row per class (or superclass).

Writes ``recall.png`` (one row per query, one column per recalled slot, de-normalised with the artifact's
mean/std) and ``recall.json`` (the query texts, their label vectors and the fine queries) to --out.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from rtp_scale.cli import OneLineParser
from rtp_scale.errors import UserError, run_cli
from rtp_scale.memory.artifact import load_artifact
from rtp_scale.memory.queries import coarse_to_fine, load_coarse_mapping, one_hot_queries, parse_query


def _parser() -> OneLineParser:
    parser = OneLineParser(prog="python -m rtp_scale.recall", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--artifact", required=True, metavar="PATH", help="a memory.safetensors (distill/continual)")
    parser.add_argument("--query", action="append", default=[], metavar="Q",
                        help="label vector, e.g. 3 or '3:0.5,5:0.5' (repeatable; default: every label)")
    parser.add_argument("--coarse", metavar="MAPPING", help="cifar100, parity, or a JSON mapping file")
    parser.add_argument("--slots", type=int, default=10, help="recalled images shown per query (default 10)")
    parser.add_argument("--scale", type=int, default=0, help="pixels per image pixel (default: images >= 48 px)")
    parser.add_argument("--out", metavar="DIR", default="runs/recall", help="output folder (default runs/recall)")
    return parser


def to_display(x_NCHW: torch.Tensor, mean: list[float] | None, std: list[float] | None,
               zca: bool = False) -> torch.Tensor:
    """Images in [0, 1]: undo the normalisation when it is known (and not ZCA), else min-max per image."""
    x = x_NCHW.detach().float().cpu()
    if mean is not None and std is not None and not zca and len(mean) == x.shape[1]:
        x = x * torch.tensor(std).view(1, -1, 1, 1) + torch.tensor(mean).view(1, -1, 1, 1)
        return x.clamp(0, 1)
    lo = x.amin(dim=(1, 2, 3), keepdim=True)
    hi = x.amax(dim=(1, 2, 3), keepdim=True)
    return (x - lo) / (hi - lo).clamp_min(1e-8)


def grid_image(rows_QRCHW: torch.Tensor, scale: int, pad: int = 1):
    """A PIL image: query q in row q, slot j in column j, ``pad`` white pixels between cells."""
    from PIL import Image

    Q, R, C, H, W = rows_QRCHW.shape
    canvas = torch.ones(3, pad + Q * (H + pad), pad + R * (W + pad))
    for q in range(Q):
        for j in range(R):
            img = rows_QRCHW[q, j]
            img = img.expand(3, H, W) if C == 1 else img[:3]
            top, left = pad + q * (H + pad), pad + j * (W + pad)
            canvas[:, top:top + H, left:left + W] = img
    array = (canvas.permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
    image = Image.fromarray(array)
    return image.resize((image.width * scale, image.height * scale), Image.NEAREST) if scale > 1 else image


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.slots < 1:
        raise UserError(f"--slots must be >= 1, got {args.slots}")
    if args.scale < 0:
        raise UserError(f"--scale must be >= 0, got {args.scale}")
    memory, meta = load_artifact(args.artifact)
    C = memory.num_classes
    fine_names = tuple(meta.get("class_names") or ()) or tuple(str(c) for c in range(C))
    matrix = None
    if args.coarse:
        matrix, names = load_coarse_mapping(args.coarse, C)
        labels = len(names)
    else:
        names, labels = fine_names, C
    if args.query:
        z_QL = torch.stack([parse_query(text, labels, names) for text in args.query])
        texts = list(args.query)
    else:
        z_QL = one_hot_queries(list(range(labels)), labels)
        texts = list(names)
    dtype = next(memory.parameters()).dtype
    q_QC = coarse_to_fine(z_QL, matrix) if matrix is not None else z_QL
    with torch.no_grad():
        x_QR = memory.recall(q_QC.to(dtype))[:, :args.slots]
    Q, R, channels, H, W = x_QR.shape
    shown = to_display(x_QR.reshape(Q * R, channels, H, W), meta.get("mean"), meta.get("std"),
                       bool((meta.get("dataset") or {}).get("zca"))).reshape(Q, R, channels, H, W)
    scale = args.scale or max(1, -(-48 // H))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    grid_image(shown, scale).save(out / "recall.png")
    record = {"artifact": str(args.artifact), "coarse": args.coarse, "label_names": list(names),
              "queries": [{"text": t, "label_vector": z.tolist(), "fine_query": q.tolist()}
                          for t, z, q in zip(texts, z_QL, q_QC)], "slots": R, "image_shape": [channels, H, W]}
    (out / "recall.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out / 'recall.png'}: {Q} queries x {R} recalled images")
    return 0


if __name__ == "__main__":
    run_cli(main)
