"""Do independent unrolls agree on the meta-gradient? ``python -m rtp_scale.bench agreement``.

An outer step follows one unroll's meta-gradient (or the mean of ``dist.meta_batch`` of them): one network drawn
at random, one plan of synthetic minibatches, one real batch. Whether distillation moves a memory by signal or
by noise shows in how much such draws agree. This computes N meta-gradients of one outer step exactly as
``distill`` does with ``dist.meta_batch=N`` (unroll j from generator (seed, 'unroll', step, j): its own network,
plan and real batch) at the run's starting memory, or at a distilled one (``--artifact``), and reports, per
learned tensor and for all of them together:

- ``norm``: the mean norm of one unroll's meta-gradient;
- ``cosine``: mean and std of the cosine between two unrolls' meta-gradients, over all pairs;
- ``kept``: ||mean of the N|| / mean of the norms -- 1 when the unrolls agree, about 1/sqrt(N) when they are
  independent noise, so it also says how much a meta_batch of N would average away.

Prints a table and writes OUT/bench_agreement.json.

    python -m rtp_scale.bench agreement --out bench-results                       # the default job's start
    python -m rtp_scale.bench agreement --config configs/mnist5k_rtp_ipc10.toml --out bench-results
    python -m rtp_scale.bench agreement --artifact runs/default/memory.safetensors --out bench-results
"""
from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from pathlib import Path
from typing import Sequence

from rtp_scale.bench.__main__ import _int_at_least, _non_negative_int, write_result
from rtp_scale.errors import UserError, run_cli


def unroll_gradients(cfg, method, memory, params: list, sample_real, *, lrs, step: int, unrolls: int) -> list[list]:
    """[unroll][tensor]: each unroll's own meta-gradient of ``params`` (flattened, float64), for unrolls
    0..unrolls-1 of outer step ``step``, drawn as distill draws them with ``dist.meta_batch=unrolls``."""
    import torch

    from rtp_scale.meta_step import unroll_inputs

    grads = []
    for j in range(unrolls):
        for p in params:
            p.grad = torch.zeros_like(p)
        real_x, real_y, generator = unroll_inputs(cfg, sample_real, step, j)
        method.meta_gradient(memory, real_x, real_y, lrs=lrs.detach(), generator=generator)
        grads.append([p.grad.detach().flatten().double().clone() for p in params])
    return grads


def agreement(vectors: list) -> dict:
    """Mean norm, pairwise cosine (mean and std over pairs) and ``kept`` (norm of the mean / mean norm) of two or
    more same-shaped vectors."""
    import torch

    norms = [float(v.norm()) for v in vectors]
    cosines = [float(torch.nn.functional.cosine_similarity(a, b, dim=0)) for a, b in itertools.combinations(vectors, 2)]
    mean_norm = statistics.fmean(norms)
    return {"numel": vectors[0].numel(), "norm": mean_norm, "cosine_mean": statistics.fmean(cosines),
            "cosine_std": statistics.pstdev(cosines),
            "kept": float(torch.stack(vectors).mean(0).norm()) / mean_norm if mean_norm > 0 else float("nan")}


def measure(*, recipe: str | None, overrides: list[str], unrolls: int, step: int,
            artifact: str | None = None) -> dict:
    import torch

    from rtp_scale.bench.machine import load_average, machine_info
    from rtp_scale.bench.scaling import _build_on
    from rtp_scale.config import load_config
    from rtp_scale.distributed import RankContext
    from rtp_scale.memory.artifact import load_artifact
    from rtp_scale.runtime import prepare_data, resolve_device

    cfg = load_config(recipe, overrides)
    where = resolve_device(cfg.run.device)
    data = prepare_data(cfg.data, where)
    alone = RankContext(rank=0, world_size=1, device=where, inner_shards=1)
    source, memory, params, _, lrs, method = _build_on(cfg, alone, data)
    if artifact is not None:
        saved, _ = load_artifact(artifact)
        if saved.meta != memory.meta:
            raise UserError(f"{artifact} holds a memory {saved.meta}, the config builds {memory.meta}: pass the "
                            f"config it was distilled with (--config / --set)")
        with torch.no_grad():
            for mine, theirs in zip(memory.parameters(), saved.parameters()):
                mine.copy_(theirs)
    names = [name for name, p in memory.named_parameters() if p.requires_grad]
    started = time.perf_counter()
    grads = unroll_gradients(cfg, method, memory, params, source.sample, lrs=lrs, step=step, unrolls=unrolls)
    seconds = time.perf_counter() - started
    rows = {name: agreement([g[i] for g in grads]) for i, name in enumerate(names)}
    rows["all"] = agreement([torch.cat(g) for g in grads])
    return {"machine": machine_info(where), "load_average": load_average(), "recipe": recipe, "overrides": overrides,
            "artifact": artifact, "unrolls": unrolls, "step": step, "seconds": seconds,
            "memory_meta": memory.meta, "tensors": rows}


def table(result: dict) -> str:
    lines = [f"{result['unrolls']} unrolls of outer step {result['step']} "
             f"({result['artifact'] or 'the starting memory'}; {result['seconds']:.0f} s)",
             "| tensor | entries | mean norm | pairwise cosine | kept by the mean |", "|---|---|---|---|---|"]
    for name, row in result["tensors"].items():
        lines.append(f"| {name} | {row['numel']:,} | {row['norm']:.4g} | {row['cosine_mean']:.3f} ± "
                     f"{row['cosine_std']:.3f} | {row['kept']:.3f} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    from rtp_scale.cli import OneLineParser

    parser = OneLineParser(prog="python -m rtp_scale.bench agreement", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="bench-results", help="writes OUT/bench_agreement.json (default bench-results)")
    parser.add_argument("--config", default=None, metavar="RECIPE", help="a recipe (default: the default job's)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides, as distill's --set")
    parser.add_argument("--artifact", default=None, metavar="PATH",
                        help="measure at this distilled memory (memory.safetensors of a run of the same config) "
                             "instead of the starting one")
    parser.add_argument("--unrolls", type=_int_at_least(2), default=8, help="independent unrolls, at least 2 (default 8)")
    parser.add_argument("--step", type=_non_negative_int, default=0,
                        help="the outer step whose unrolls are drawn (default 0)")
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    result = measure(recipe=args.config, overrides=["log.tensorboard=false", *args.set], unrolls=args.unrolls,
                     step=args.step, artifact=args.artifact)
    write_result(Path(args.out), "bench_agreement.json", result, table(result))
    return 0


if __name__ == "__main__":
    run_cli(main)
