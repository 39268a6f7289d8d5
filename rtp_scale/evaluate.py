"""Evaluate a distilled artifact, or a baseline, with the field's protocol; writes ``eval.json``.

    python -m rtp_scale.evaluate --artifact runs/default/memory.safetensors
    python -m rtp_scale.evaluate --dataset mnist5k --baseline random --ipc 10
    python -m rtp_scale.evaluate --dataset mnist5k --baseline full
    python -m rtp_scale.evaluate --config configs/mnist5k_rtp_ipc1.toml --baseline random --ipc 1
    python -m rtp_scale.evaluate --artifact runs/default/memory.safetensors --model resnet18_bn
    python -m rtp_scale.evaluate --artifact runs/default/memory.safetensors --models "convnet,lenet,vgg11[width=16]"

``--model NAME`` evaluates with another network; ``--models a,b,c`` writes a cross-architecture table
(rtp_scale.eval.cross_arch: cross_arch.md and cross_arch.json, no eval.json). The recorded ``model.*`` options
apply only to the artifact's own network; ``--set model.*`` applies to each network that takes the option, and
``name[key=value,...]`` in the list to that network alone.

N fresh networks (``eval.num_nets``) are trained from scratch on the set with ``eval.*`` (epochs, lr,
schedule, augmentation) and tested on the dataset's test split; accuracy is reported as mean ± std.
The random-real baseline draws a new class-balanced subset for every network.

An artifact is evaluated with the settings its run recorded in it (``data.zca`` with the run's own whitening
matrix, ``data.zca_reg``, ``data.resolution``, ``data.augment``, ``model.*``, ``eval.*``, ``run.seed``), so
the same seed gives the run's own accuracies; ``--config``, ``--set`` and the shorthands still win, and each
recorded key they change is printed ("overriding artifact's model.width=32 with 64"). Beside the accuracy,
an artifact's eval.json holds the scores of rtp_scale.eval.scores (gain over random real images of the same
storage, with and without augmentation, hard-label accuracy of learned labels); ``--no-scores`` skips them
(they cost 1-3 more evaluations).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from rtp_scale.cli import config_from_args, config_parser
from rtp_scale.data.sources import make_real_source
from rtp_scale.errors import UserError, run_cli
from rtp_scale.eval import full_data, random_real
from rtp_scale.eval.cross_arch import (evaluate_architectures, markdown, model_config_for, parse_model_list,
                                       split_model_overrides, write_table)
from rtp_scale.eval.protocol import EvalResult, evaluate_synthetic, memory_training_set
from rtp_scale.eval.scores import score_distilled
from rtp_scale.memory.artifact import (check_normalisation, check_zca_refit, config_for_artifact, load_artifact,
                                       load_artifact_zca, recorded_settings)
from rtp_scale.runtime import augment_ops, prepare_data, prepare_data_and_zca, resolve_device

_ZCA_KEYS = ("name", "resolution", "zca", "zca_reg")  # the data.* keys the whitening matrix depends on


def _parser():
    parser = config_parser("python -m rtp_scale.evaluate", __doc__)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--artifact", metavar="PATH", help="a memory.safetensors written by rtp_scale.distill")
    source.add_argument("--baseline", choices=("random", "full"), help="random real subset or the full train set")
    parser.add_argument("--dataset", help="dataset name (shorthand for --set data.name=...)")
    parser.add_argument("--ipc", type=int, help="images per class of the random baseline")
    parser.add_argument("--seed", type=int, help="shorthand for --set run.seed=...")
    nets = parser.add_mutually_exclusive_group()
    nets.add_argument("--model", metavar="NAME", help="the evaluation network (model.name; see "
                                                      "rtp_scale.models.catalog, or package.module:Builder)")
    nets.add_argument("--models", metavar="A,B[width=16],C", help="cross-architecture table of an --artifact under "
                      "each network (bracketed options for that network only), beside random real images: "
                      "cross_arch.md/.json")
    parser.add_argument("--out", metavar="DIR", help="where eval.json goes (default: next to the artifact, or "
                                                     "runs/eval/<dataset>-<baseline>)")
    parser.add_argument("--no-scores", action="store_true",
                        help="skip the artifact's scores against random real images (saves 1-3 evaluations)")
    return parser


def _show(value) -> str:
    """A config value as --set spells it."""
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _artifact_config(args, shorthands: list[str], meta: dict):
    """The artifact's recorded settings <- --config <- shorthands <- --set; prints each recorded key changed."""
    cfg, overridden, complete = config_for_artifact(args.artifact, meta, recipe=args.config,
                                                    overrides=[*shorthands, *args.overrides])
    artifact_dataset = meta.get("dataset_name")
    if artifact_dataset and cfg.data.name != artifact_dataset:
        raise UserError(f"artifact {args.artifact} was distilled on {artifact_dataset!r}, not {cfg.data.name!r}")
    if not complete:
        print(f"note: {args.artifact} records no evaluation settings (an older or continual-learning artifact): "
              f"only data.name and data.zca are known; model.*, eval.* and the rest of data.* come from the "
              f"defaults, --config and --set")
    for key, old, new in overridden:
        print(f"overriding artifact's {key}={_show(old)} with {_show(new)}")
    return cfg, {key: [old, new] for key, old, new in overridden}, complete


def _artifact_source(path: str, meta: dict, cfg, device):
    """The real data, whitened with the artifact's stored ZCA matrix when the run's whitening is asked for,
    else with a fresh fit (checked against the run's fingerprint when the settings are the run's)."""
    recorded, complete = recorded_settings(meta)
    as_recorded = complete and all(getattr(cfg.data, key) == recorded["data"].get(key) for key in _ZCA_KEYS)
    stored = load_artifact_zca(path, meta) if cfg.data.zca and as_recorded else None
    data, zca = prepare_data_and_zca(cfg.data, device, zca=stored) if cfg.data.backend == "memory" else (None, None)
    if zca is not None and stored is None and as_recorded:
        check_zca_refit(path, meta, zca)
    return make_real_source(cfg.data, data, device), ("stored" if stored is not None else
                                                      "refitted" if zca is not None else None)


def _scores_line(scores: dict) -> str:
    parts = [f"random real ipc={scores['random_baseline']['ipc']} {scores['scores']['random_acc']['mean']:.2f} %"]
    for name in ("gain_over_random", "gain_over_random_no_aug", "hard_label_acc"):
        if name in scores["scores"]:
            value = scores["scores"][name]
            parts.append(f"{name} {value['mean']:+.2f} ± {value['std']:.2f}" if "gain" in name else
                         f"{name} {value['mean']:.2f} ± {value['std']:.2f} %")
    return "scores: " + " | ".join(parts)


def _cross_arch(args, cfg, x, targets, real, storage: dict, networks: list, ops: str) -> int:
    """``--models``: the set under each network beside random real images; writes cross_arch.md/.json."""
    start = time.perf_counter()
    record = evaluate_architectures(x, targets, source=real, storage=storage, models=networks, eval_cfg=cfg.eval,
                                    augment_ops=ops, seed=cfg.run.seed, progress=cfg.log.progress)
    record = {"dataset": cfg.data.name, "source": f"artifact {args.artifact}", **record,
              "wall_seconds": time.perf_counter() - start, "config": cfg.to_dict()}
    md_path, json_path = write_table(record, Path(args.out) if args.out else Path(args.artifact).parent)
    print(markdown(record), end="")
    print(f"{record['wall_seconds']:.0f} s | {md_path} | {json_path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    shorthands = []
    if args.dataset:
        shorthands.append(f"data.name={args.dataset}")
    if args.seed is not None:
        shorthands.append(f"run.seed={args.seed}")
    if args.baseline == "random" and args.ipc is None:
        raise UserError("--baseline random needs --ipc N (images per class)")
    if args.ipc is not None and args.ipc < 1:
        raise UserError(f"--ipc must be a positive number of images per class, got {args.ipc}")
    if args.ipc is not None and args.baseline != "random":
        raise UserError("--ipc is only used with --baseline random")
    if args.no_scores and not args.artifact:
        raise UserError("--no-scores is only used with --artifact (baselines have no scores)")
    if args.models and not args.artifact:
        raise UserError("--models evaluates a distilled set under several networks: it needs --artifact")
    model_overrides: list[str] = []
    if args.model or args.models:
        # model.* is resolved per network, so that one network's options never leak into another's
        args.overrides, model_overrides = split_model_overrides(args.overrides)

    memory = artifact_meta = None
    settings: dict = {}
    if args.artifact:
        memory, artifact_meta = load_artifact(args.artifact)
        cfg, overridden, complete = _artifact_config(args, shorthands, artifact_meta)
        settings = {"recorded": complete, "overridden": overridden}
    else:
        cfg = config_from_args(args, shorthands)
    if args.model:
        if args.model != cfg.model.name:
            print(f"evaluating with model.name={args.model} (configured: {cfg.model.name})")
        cfg.model, _ = model_config_for(args.model, configured=cfg.model, model_overrides=model_overrides, strict=True)
    entries = parse_model_list(args.models) if args.models else []
    networks = [model_config_for(name, configured=cfg.model, model_overrides=model_overrides, strict=False,
                                 own_overrides=own) for name, own in entries]
    device = resolve_device(cfg.run.device)
    if args.baseline and cfg.data.backend != "memory":
        raise UserError(f"--baseline {args.baseline} trains on real images held in memory; set data.backend=memory")
    ops = augment_ops(cfg.data.augment, cfg.eval.augment)
    seed = cfg.run.seed
    common = dict(model_cfg=cfg.model, eval_cfg=cfg.eval, augment_ops=ops, seed=seed, progress=cfg.log.progress)

    start = time.perf_counter()
    scores = None
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
        # in memory, or streamed from .beton files with data.backend=ffcv
        real, settings["zca"] = _artifact_source(args.artifact, artifact_meta, cfg, device)
        if tuple(memory.meta["image_shape"]) != real.info.image_shape:
            raise UserError(f"artifact images are {tuple(memory.meta['image_shape'])} but {cfg.data.name} images "
                            f"are {real.info.image_shape}")
        check_normalisation(args.artifact, artifact_meta, real.info.mean, real.info.std)
        test_x, test_y = real.eval_tensors("test")
        x, targets = (t.to(device) for t in memory_training_set(memory))
        storage = memory.storage((artifact_meta.get("storage") or {}).get("budget_ipc")).as_dict()
        if networks:
            return _cross_arch(args, cfg, x, targets, real, storage, networks, ops)
        result = evaluate_synthetic(x, targets, test_x=test_x, test_y=test_y, num_classes=real.info.num_classes,
                                    desc="distilled", **common)
        if not args.no_scores:
            scores = score_distilled(x, targets, source=real, storage=storage, distilled=result, **common)
        source = f"artifact {args.artifact}"
        default_out = Path(args.artifact).parent

    out = Path(args.out) if args.out else default_out
    out.mkdir(parents=True, exist_ok=True)
    record = {"dataset": cfg.data.name, "eval_split": cfg.data.eval_split, "source": source, "storage": storage,
              "accuracy": result.as_dict(),
              "scores": scores, "artifact_settings": settings or None,
              "wall_seconds": time.perf_counter() - start, "device": str(device), "config": cfg.to_dict()}
    (out / "eval.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"{cfg.data.name} | {source} | {cfg.data.eval_split} accuracy {result} | {record['wall_seconds']:.0f} s "
          f"| {out / 'eval.json'}")
    if scores is not None:
        print(_scores_line(scores))
    return 0


def cli() -> None:
    run_cli(main)


if __name__ == "__main__":
    cli()
