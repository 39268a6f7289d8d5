"""Cross-architecture evaluation: one distilled set trained under several networks, each beside a random real
subset of the same storage trained under that same network; the table as markdown and JSON.

    python -m rtp_scale.evaluate --artifact runs/default/memory.safetensors \
        --models "convnet,mlp,lenet,alexnet,vgg11,resnet18_bn[width=16]"

Which options each network is built with: the network the set was configured with (the artifact's recorded
``model.*``, or ``--config``) keeps its options; every other network starts from its own defaults. Options given
on the command line (``--set model.width=16``) then apply to every network that takes them and are left out,
and listed under ``not_applied``, for those that do not (lenet takes no width). Options in an entry's brackets
(``resnet18[width=16]``) apply to that network alone, last. Each row records the options its network was built
with.

Same storage: the random subset has :func:`~rtp_scale.eval.scores.random_baseline_ipc` images per class; network
i of the set and of the baseline starts from the same initialisation, so the gain's std is that of the
per-network differences (as in :mod:`rtp_scale.eval.scores`). Cost: two evaluations per network.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch

from rtp_scale.config import EvalConfig, ModelConfig, build_config, parse_override
from rtp_scale.data.sources import RealSource
from rtp_scale.errors import UserError
from rtp_scale.eval.baselines import random_real
from rtp_scale.eval.protocol import evaluate_synthetic
from rtp_scale.eval.scores import paired_gain, random_baseline_ipc
from rtp_scale.models.catalog import CATALOG, OPTION_FIELDS, options_taken
from rtp_scale.models.registry import resolved_options

TABLE_MD, TABLE_JSON = "cross_arch.md", "cross_arch.json"


def split_model_overrides(overrides: list[str]) -> tuple[list[str], list[str]]:
    """(the other ``--set`` overrides, the ``model.*`` ones); ``model.name`` there is refused (use --model/--models)."""
    others, model = [], []
    for text in overrides:
        section, key, _ = parse_override(text)
        if section != "model":
            others.append(text)
        elif key == "name":
            raise UserError(f"--set {text} together with --model/--models: name the network(s) with the flag only")
        else:
            model.append(text)
    return others, model


def parse_model_list(text: str) -> list[tuple[str, list[str]]]:
    """``a,b[width=16],c`` -> [(name, its own ``model.*`` overrides)]; specs ``package.module:Builder`` allowed.

    Options in brackets belong to that network alone (``resnet18[width=16]``; several: ``convnet[width=64,depth=4]``).
    Empty entries, unbalanced brackets and repeats are errors.
    """
    entries, depth, current = [], 0, ""
    for char in text + ",":
        depth += (char == "[") - (char == "]")
        if depth < 0 or depth > 1:
            raise UserError(f"--models {text!r}: unbalanced brackets; write e.g. convnet,resnet18[width=16]")
        if char == "," and depth == 0:
            entries.append(current.strip())
            current = ""
        else:
            current += char
    if depth:
        raise UserError(f"--models {text!r}: unbalanced brackets; write e.g. convnet,resnet18[width=16]")
    parsed = []
    for entry in entries:
        name, _, options = entry.partition("[")
        name = name.strip()
        if not name or (options and not options.endswith("]")):
            raise UserError(f"--models {text!r} has an empty or malformed entry {entry!r}; "
                            f"write e.g. convnet,resnet18[width=16]")
        own = [f"model.{part.strip()}" for part in options[:-1].split(",") if part.strip()] if options else []
        for override in own:
            if parse_override(override)[1] == "name":
                raise UserError(f"--models entry {entry!r}: the name goes before the brackets")
        parsed.append((name, own))
    names = [name for name, _ in parsed]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise UserError(f"--models names {', '.join(repeated)} more than once")
    return parsed


def model_config_for(name: str, *, configured: ModelConfig, model_overrides: list[str], strict: bool,
                     own_overrides: list[str] = ()) -> tuple[ModelConfig, list[str]]:
    """(the [model] section for network ``name``, the overrides not applied to it).

    ``configured`` (the artifact's or recipe's network) keeps its options when ``name`` is that network; another
    network starts from its defaults. Then ``model_overrides`` (``--set model.*``): with ``strict`` an option the
    network does not take is an error (``--model``), otherwise it is left out for that network and returned
    (``--models``). ``own_overrides`` (a ``--models`` entry's brackets) come last and are always strict.
    """
    fields = dataclasses.asdict(configured) if name == configured.name else {"name": name}
    taken = options_taken(name)
    applied, skipped = [], []
    for text in model_overrides:
        _, key, _ = parse_override(text)
        (skipped if key in OPTION_FIELDS and key not in taken and not strict else applied).append(text)
    return build_config({"model": fields}, [*applied, *own_overrides], origin=f"model.name={name}").model, skipped


def evaluate_architectures(x_NCHW: torch.Tensor, targets: torch.Tensor, *, source: RealSource, storage: dict,
                           models: list[tuple[ModelConfig, list[str]]], eval_cfg: EvalConfig, augment_ops: str,
                           seed: int, progress: bool = False) -> dict:
    """For each (model config, overrides not applied): the set's evaluation and the same-storage random baseline."""
    test_x, test_y = source.eval_tensors("test")
    info = source.info
    ipc = random_baseline_ipc(float(storage["ipc_equivalent"]))
    random_floats = ipc * info.num_classes * info.channels * info.height * info.width
    common = dict(eval_cfg=eval_cfg, augment_ops=augment_ops, seed=seed, progress=progress)
    rows = []
    for model_cfg, not_applied in models:
        distilled = evaluate_synthetic(x_NCHW, targets, test_x=test_x, test_y=test_y, num_classes=info.num_classes,
                                       model_cfg=model_cfg, desc=f"distilled, {model_cfg.name}", **common)
        random = random_real(source, ipc=ipc, model_cfg=model_cfg, **common)
        entry, options = CATALOG.get(model_cfg.name), resolved_options(model_cfg)
        rows.append({"model": model_cfg.name, "options": options,
                     "norm": options.get("norm", entry.norm if entry else "see its builder"),
                     "not_applied": not_applied,
                     "distilled": distilled.as_dict(), "random": random.as_dict(),
                     "gain_over_random": paired_gain(distilled, random),
                     "seconds": distilled.seconds + random.seconds})
    return {"storage": storage,
            "random_baseline": {"ipc": ipc, "floats": random_floats, "labels": "hard",
                                "storage_ratio": random_floats / float(storage["floats"])},
            "protocol": {"num_nets": eval_cfg.num_nets, "epochs": eval_cfg.epochs, "lr": eval_cfg.lr,
                         "batch_size": eval_cfg.batch_size, "augment": augment_ops or "none"},
            "rows": rows}


def _options_text(options: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in options.items()) or "-"


def markdown(record: dict) -> str:
    """The table: one row per network, accuracies mean ± std over the protocol's networks (in %)."""
    base, protocol = record["random_baseline"], record["protocol"]
    lines = [f"Cross-architecture evaluation of {record.get('source', 'the set')} ({record.get('dataset', '')}, "
             f"{record['storage']['ipc_equivalent']:.3f} IPC of storage); {protocol['num_nets']} nets x "
             f"{protocol['epochs']} epochs, lr {protocol['lr']}, batch {protocol['batch_size']}, augment "
             f"{protocol['augment']}; random real = {base['ipc']} image(s) per class, a new subset per net.",
             "",
             f"| network | options | norm | distilled (%) | random real ipc={base['ipc']} (%) | gain (pp) | s |",
             "|---|---|---|---|---|---|---|"]
    for row in record["rows"]:
        d, r, g = row["distilled"], row["random"], row["gain_over_random"]
        options = _options_text(row["options"])
        if row["not_applied"]:
            options += f" (not applied: {', '.join(row['not_applied'])})"
        lines.append(f"| {row['model']} | {options} | {row['norm']} | {d['mean']:.2f} ± {d['std']:.2f} | "
                     f"{r['mean']:.2f} ± {r['std']:.2f} | {g['mean']:+.2f} ± {g['std']:.2f} | {row['seconds']:.0f} |")
    return "\n".join(lines) + "\n"


def write_table(record: dict, out_dir: Path) -> tuple[Path, Path]:
    """Write ``cross_arch.md`` and ``cross_arch.json`` into ``out_dir``; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    md_path, json_path = out_dir / TABLE_MD, out_dir / TABLE_JSON
    md_path.write_text(markdown(record))
    json_path.write_text(json.dumps(record, indent=2) + "\n")
    return md_path, json_path
