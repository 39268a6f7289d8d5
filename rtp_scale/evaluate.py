"""Evaluate a distilled artifact, or a baseline, with the field's protocol; writes ``eval.json``.

    python -m rtp_scale.evaluate --artifact runs/default/memory.safetensors
    python -m rtp_scale.evaluate --dataset mnist5k --baseline random --ipc 10
    python -m rtp_scale.evaluate --dataset mnist5k --baseline full
    python -m rtp_scale.evaluate --config configs/mnist5k_rtp_ipc1.toml --baseline random --ipc 1

N fresh networks (``eval.num_nets``) are trained from scratch on the set with ``eval.*`` (epochs, lr,
schedule, augmentation) and tested on the dataset's test split; accuracy is reported as mean ± std.
The random-real baseline draws a new class-balanced subset for every network.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from rtp_scale.cli import config_from_args, config_parser
from rtp_scale.data.sources import make_real_source
from rtp_scale.errors import UserError, run_cli
from rtp_scale.eval import full_data, random_real
from rtp_scale.eval.protocol import EvalResult, evaluate_synthetic
from rtp_scale.memory.artifact import load_artifact
from rtp_scale.runtime import augment_ops, prepare_data, resolve_device


def _parser():
    parser = config_parser("python -m rtp_scale.evaluate", __doc__)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--artifact", metavar="PATH", help="a memory.safetensors written by rtp_scale.distill")
    source.add_argument("--baseline", choices=("random", "full"), help="random real subset or the full train set")
    parser.add_argument("--dataset", help="dataset name (shorthand for --set data.name=...)")
    parser.add_argument("--ipc", type=int, help="images per class of the random baseline")
    parser.add_argument("--seed", type=int, help="shorthand for --set run.seed=...")
    parser.add_argument("--out", metavar="DIR", help="where eval.json goes (default: next to the artifact, or "
                                                     "runs/eval/<dataset>-<baseline>)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    shorthands = []
    if args.dataset:
        shorthands.append(f"data.name={args.dataset}")
    if args.seed is not None:
        shorthands.append(f"run.seed={args.seed}")
    cfg = config_from_args(args, shorthands)
    if args.baseline == "random" and args.ipc is None:
        raise UserError("--baseline random needs --ipc N (images per class)")
    if args.ipc is not None and args.ipc < 1:
        raise UserError(f"--ipc must be a positive number of images per class, got {args.ipc}")
    if args.ipc is not None and args.baseline != "random":
        raise UserError("--ipc is only used with --baseline random")

    device = resolve_device(cfg.run.device)
    memory = artifact_meta = None
    if args.artifact:
        memory, artifact_meta = load_artifact(args.artifact)
        artifact_dataset = artifact_meta.get("dataset_name")
        if args.dataset and artifact_dataset and args.dataset != artifact_dataset:
            raise UserError(f"artifact {args.artifact} was distilled on {artifact_dataset!r}, not {args.dataset!r}")
        if artifact_dataset and not args.dataset:
            cfg.data.name = artifact_dataset
    if args.baseline and cfg.data.backend != "memory":
        raise UserError(f"--baseline {args.baseline} trains on real images held in memory; set data.backend=memory")
    ops = augment_ops(cfg.data.augment, cfg.eval.augment)
    seed = cfg.run.seed
    common = dict(model_cfg=cfg.model, eval_cfg=cfg.eval, augment_ops=ops, seed=seed, progress=cfg.log.progress)

    start = time.perf_counter()
    if args.baseline == "random":
        data = prepare_data(cfg.data, device)
        result: EvalResult = random_real(data, ipc=args.ipc, **common)
        source, storage = f"random real, ipc={args.ipc}", {"ipc_equivalent": float(args.ipc)}
        default_out = Path("runs/eval") / f"{cfg.data.name}-random-ipc{args.ipc}"
    elif args.baseline == "full":
        data = prepare_data(cfg.data, device)
        result = full_data(data, **common)
        source, storage = "full training set", {"ipc_equivalent": len(data.train_y) / data.info.num_classes}
        default_out = Path("runs/eval") / f"{cfg.data.name}-full"
    else:
        # the test split only: in memory, or streamed from .beton files with data.backend=ffcv
        real = make_real_source(cfg.data, None, device)
        if tuple(memory.meta["image_shape"]) != real.info.image_shape:
            raise UserError(f"artifact images are {tuple(memory.meta['image_shape'])} but {cfg.data.name} images "
                            f"are {real.info.image_shape}")
        test_x, test_y = real.eval_tensors("test")
        x, y = memory.class_images()
        targets = memory.targets() if hasattr(memory, "targets") else y
        result = evaluate_synthetic(x.detach().to(device), targets.detach().to(device), test_x=test_x,
                                    test_y=test_y, num_classes=real.info.num_classes, desc="distilled", **common)
        source, storage = f"artifact {args.artifact}", memory.storage().as_dict()
        default_out = Path(args.artifact).parent

    out = Path(args.out) if args.out else default_out
    out.mkdir(parents=True, exist_ok=True)
    record = {"dataset": cfg.data.name, "source": source, "storage": storage, "accuracy": result.as_dict(),
              "wall_seconds": time.perf_counter() - start, "device": str(device), "config": cfg.to_dict()}
    (out / "eval.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"{cfg.data.name} | {source} | test accuracy {result} | {record['wall_seconds']:.0f} s | {out / 'eval.json'}")
    return 0


def cli() -> None:
    run_cli(main)


if __name__ == "__main__":
    cli()
