"""Run a sweep: expand a sweep recipe into members and submit them as ONE Slurm job array.

A sweep recipe (``configs/sweeps/*.py``) is a small Python file with upper-case names:

    NAME = "budget"                       # default sweep directory: runs/sweeps/<NAME>
    BASE = "configs/rtp/mnist_ipc1.toml"  # base recipe of every member (optional)
    GRID = {"memory.ipc": [1, 10, 50],    # cartesian product over any config keys;
            "recipe": [...],              # "recipe": the base recipe file itself varies;
            ("model.width", "model.depth"): [(64, 3), (128, 4)],  # keys varied together
            "variant": {"memories": [], "pixels": ["memory.kind=pixel", "inner.batch_per_class=10"]}}
                                          # "variant": named sets of overrides (e.g. one per method)
    SEEDS = [0, 1, 2]                     # innermost axis, sets run.seed
    OVERRIDES = ["eval.num_nets=10"]      # applied to every member (section.key=value)
    RESOURCES = {"timeout_min": 1440, "gpus_per_node": 1, "cpus_per_task": 8, "mem_gb": 64,
                 "partition": "gpu", "array_parallelism": 8}

Every member's config is built and validated (unknown keys, bad values) BEFORE anything is submitted.
Member ``<name>`` runs in ``<sweep dir>/<name>`` (stable: a requeued or resubmitted member resumes from its
``checkpoint.pt``); submitit's pickles and logs go to ``<sweep dir>/submitit/<job id>``; ``sweep.json`` records
the members, their configs and job ids for ``launch.collect`` and ``--resubmit``.

    python -m launch.sweep configs/sweeps/budget.py --dry-run            # print the jobs, submit nothing
    python -m launch.sweep configs/sweeps/budget.py --partition gpu --time 1440 --gpus 1 --cpus 8 --mem 64 \\
        --array-parallelism 8                                              # one job array on Slurm
    python -m launch.sweep configs/sweeps/smoke.py --cluster local --array-parallelism 2   # no Slurm needed
    python -m launch.sweep configs/sweeps/smoke.py --cluster debug       # in this process, one by one
    python -m launch.collect runs/sweeps/budget                          # the results table
    python -m launch.sweep --resubmit runs/sweeps/budget                 # only the failed or missing members

Slurm: returns once the array is queued (``--wait`` polls until every member ended). ``--cluster local`` runs
members as local processes (``--array-parallelism`` at a time, default 1) and ``--cluster debug`` in this
process; both wait, print the table and exit 1 if a member did not complete. More processes per job:
``--gpus N`` starts one process per GPU (``--tasks-per-node`` to override), ``--nodes M`` spans nodes; the
task exports the torch.distributed rendezvous for Accelerate. Jobs preempted or out of time are
checkpointed and requeued by submitit (``--signal-delay`` seconds before the limit).
"""
from __future__ import annotations

import argparse
import difflib
import itertools
import json
import re
import runpy
import shlex
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from launch.collect import MANIFEST, collect, load_manifest, scheduler_states, submitit_folder, sweep_status
from launch.task import ERROR_FILE, DistillTask
from rtp_scale.cli import OneLineParser
from rtp_scale.config import build_config, parse_override, read_recipe
from rtp_scale.errors import UserError, run_cli

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CLUSTERS = ("slurm", "local", "debug")
RECIPE_NAMES = ("NAME", "DESCRIPTION", "BASE", "GRID", "SEEDS", "OVERRIDES", "RESOURCES")
RESOURCE_TYPES: dict[str, type | tuple[type, ...]] = {
    "timeout_min": int, "partition": str, "gpus_per_node": int, "cpus_per_task": int, "mem_gb": (int, float),
    "nodes": int, "tasks_per_node": int, "array_parallelism": int, "signal_delay_s": int, "account": str,
    "qos": str, "constraint": str, "exclude": str, "slurm_extra": dict,
}
DEFAULT_RESOURCES: dict[str, Any] = {"timeout_min": 60, "cpus_per_task": 1, "nodes": 1, "gpus_per_node": 0}
SCALAR = (str, int, float, bool)


# ---------------------------------------------------------------------------------------------- recipes
@dataclass
class SweepRecipe:
    path: Path
    name: str
    description: str = ""
    base: Path | None = None
    grid: dict[tuple[str, ...], list[tuple[Any, ...]]] = field(default_factory=dict)
    """Axis (one key, or keys varied together) -> values (one tuple per point)."""
    variants: dict[str, list[str]] = field(default_factory=dict)
    """The 'variant' axis: label -> overrides."""
    seeds: list[int] = field(default_factory=lambda: [0])
    overrides: list[str] = field(default_factory=list)
    resources: dict[str, Any] = field(default_factory=dict)


def _resolve_path(raw: Any, origin: str) -> Path:
    """A recipe path as written: relative to the working directory, else to the project root."""
    if not isinstance(raw, (str, Path)) or not str(raw):
        raise UserError(f"{origin}: expected a recipe file path, got {raw!r}")
    path = Path(raw).expanduser()
    for candidate in ([path] if path.is_absolute() else [Path.cwd() / path, PROJECT_ROOT / path]):
        if candidate.is_file():
            return candidate.resolve()
    raise UserError(f"{origin}: recipe file not found: {raw}")


def _config_keys() -> dict[str, set[str]]:
    return {section: set(values) for section, values in build_config().to_dict().items()}


def _check_key(key: Any, origin: str, keys: dict[str, set[str]]) -> str:
    if key in ("recipe", "variant"):
        return key
    if not isinstance(key, str):
        raise UserError(f"{origin}: grid key {key!r} must be a 'section.key' string")
    section, dot, name = key.partition(".")
    if not dot or section not in keys:
        raise UserError(f"{origin}: unknown grid key {key!r}; keys look like section.key with sections "
                        f"{', '.join(keys)} (or 'recipe' for the base recipe file, 'variant' for named override sets)")
    if name not in keys[section]:
        raise UserError(f"{origin}: unknown grid key {key!r}; {section} has: {', '.join(sorted(keys[section]))}")
    if key == "run.out_dir":
        raise UserError(f"{origin}: run.out_dir cannot be swept: every member runs in <sweep dir>/<member name>")
    return key


def _check_overrides(items: Any, origin: str) -> list[str]:
    if not isinstance(items, (list, tuple)) or not all(isinstance(o, str) for o in items):
        raise UserError(f"{origin}: overrides must be a list of 'section.key=value' strings")
    for text in items:
        section, key, _ = parse_override(text)
        if (section, key) == ("run", "out_dir"):
            raise UserError(f"{origin}: run.out_dir is set by the sweep (<sweep dir>/<member name>); use --out")
    return list(items)


def load_sweep(path: str | Path) -> SweepRecipe:
    """Read and check a sweep recipe file (no config is built yet: see :func:`expand`)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"sweep recipe not found: {path}")
    if path.suffix != ".py":
        raise UserError(f"sweep recipe {path} must be a Python file (configs/sweeps/*.py)")
    try:
        names = runpy.run_path(str(path))
    except Exception as err:  # any error while executing the recipe is the recipe's: one line, no traceback
        raise UserError(f"cannot load sweep recipe {path}: {type(err).__name__}: {err}") from None
    for name in names:  # helper names are fine; a misspelt recipe name (GIRD, SEED) is an error
        close = difflib.get_close_matches(name, RECIPE_NAMES, n=1, cutoff=0.75)
        if name.isupper() and name not in RECIPE_NAMES and close:
            raise UserError(f"{path}: unknown name {name} (did you mean {close[0]}?); a sweep recipe sets "
                            f"{', '.join(RECIPE_NAMES)}")
    origin = str(path)
    recipe = SweepRecipe(path=path.resolve(), name=str(names.get("NAME") or path.stem),
                         description=str(names.get("DESCRIPTION", "")))
    if re.search(r"[^A-Za-z0-9._-]", recipe.name):
        raise UserError(f"{origin}: NAME={recipe.name!r} may only use letters, digits, '.', '_' and '-'")
    if names.get("BASE"):
        recipe.base = _resolve_path(names["BASE"], f"{origin}: BASE")

    grid = names.get("GRID", {})
    if not isinstance(grid, dict):
        raise UserError(f"{origin}: GRID must be a dict of config key -> list of values")
    keys = _config_keys()
    seen: set[str] = set()
    for axis, values in grid.items():
        axis_keys = tuple(axis) if isinstance(axis, tuple) else (axis,)
        for key in axis_keys:
            _check_key(key, origin, keys)
            if key in seen:
                raise UserError(f"{origin}: grid key {key!r} appears twice")
            seen.add(key)
        if axis_keys == ("variant",):
            recipe.variants = _check_variants(values, origin)
            recipe.grid[axis_keys] = [(label,) for label in recipe.variants]
            continue
        if "variant" in axis_keys:
            raise UserError(f"{origin}: 'variant' must be a grid axis of its own: {{label: [overrides]}}")
        if not isinstance(values, (list, tuple)):
            raise UserError(f"{origin}: GRID[{axis!r}] must be a list of values, got {type(values).__name__}")
        if not values:
            raise UserError(f"{origin}: GRID[{axis!r}] is empty: the sweep would have no members")
        points = []
        for value in values:
            point = tuple(value) if len(axis_keys) > 1 and isinstance(value, (list, tuple)) else (value,)
            if len(point) != len(axis_keys):
                raise UserError(f"{origin}: GRID[{axis!r}] value {value!r} must give one value per key "
                                f"({len(axis_keys)})")
            for key, v in zip(axis_keys, point):
                if not isinstance(v, SCALAR):
                    raise UserError(f"{origin}: GRID value {key}={v!r} must be a string, number or bool")
            points.append(tuple(_resolve_path(v, f"{origin}: GRID recipe") if k == "recipe" else v
                                for k, v in zip(axis_keys, point)))
        recipe.grid[axis_keys] = points
    if "recipe" in seen and recipe.base is not None:
        raise UserError(f"{origin}: set either BASE or a 'recipe' grid axis, not both")

    seeds = names.get("SEEDS", None)
    if "run.seed" in seen:
        if seeds is not None:
            raise UserError(f"{origin}: run.seed is a grid key, so SEEDS must not be set")
        recipe.seeds = []
    else:
        seeds = [0] if seeds is None else seeds
        if not isinstance(seeds, (list, tuple, range)) or not all(isinstance(s, int) and s >= 0 for s in seeds):
            raise UserError(f"{origin}: SEEDS must be a list of non-negative integers")
        if not seeds:
            raise UserError(f"{origin}: SEEDS is empty: the sweep would have no members")
        if len(set(seeds)) != len(seeds):
            raise UserError(f"{origin}: SEEDS has duplicates")
        recipe.seeds = list(seeds)
    recipe.overrides = _check_overrides(names.get("OVERRIDES", []), f"{origin}: OVERRIDES")
    checked = [("OVERRIDES", text) for text in recipe.overrides]
    checked += [(f"variant {label!r}", text) for label, texts in recipe.variants.items() for text in texts]
    for where, text in checked:
        section, key, _ = parse_override(text)
        if f"{section}.{key}" in seen or (f"{section}.{key}" == "run.seed" and recipe.seeds):
            raise UserError(f"{origin}: {where} sets {section}.{key}, which the grid/SEEDS already sweep")
    resources = names.get("RESOURCES", {})
    if not isinstance(resources, dict):
        raise UserError(f"{origin}: RESOURCES must be a dict")
    recipe.resources = check_resources(resources, origin)
    return recipe


def _check_variants(values: Any, origin: str) -> dict[str, list[str]]:
    if not isinstance(values, dict):
        raise UserError(f"{origin}: GRID['variant'] must be a dict of label -> list of overrides")
    if not values:
        raise UserError(f"{origin}: GRID['variant'] is empty: the sweep would have no members")
    variants = {}
    for label, overrides in values.items():
        if not isinstance(label, str) or not re.fullmatch(r"[A-Za-z0-9._-]+", label):
            raise UserError(f"{origin}: variant label {label!r} may only use letters, digits, '.', '_' and '-'")
        variants[label] = _check_overrides(overrides, f"{origin}: variant {label!r}")
    return variants


def check_resources(resources: dict[str, Any], origin: str) -> dict[str, Any]:
    for key, value in resources.items():
        if key not in RESOURCE_TYPES:
            raise UserError(f"{origin}: unknown resource {key!r}; known: {', '.join(RESOURCE_TYPES)}")
        if value is not None and (not isinstance(value, RESOURCE_TYPES[key]) or isinstance(value, bool)):
            raise UserError(f"{origin}: resource {key}={value!r} has the wrong type")
        if isinstance(value, (int, float)) and value < 0:
            raise UserError(f"{origin}: resource {key}={value!r} must be >= 0")
    return {k: v for k, v in resources.items() if v is not None}


# ---------------------------------------------------------------------------------------------- members
def _override_value(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _label(key: str, value: Any, verbose: bool) -> str:
    if key == "recipe":
        return Path(value).stem
    if key == "variant":
        return str(value)
    last = key.rsplit(".", 1)[-1]
    if verbose:
        return f"{key.replace('.', '-')}-{value}"
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return f"{last}-{str(value).lower()}"
    return f"{last}{value:g}" if isinstance(value, float) else f"{last}{value}"


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=+-]+", "-", name).strip("-.") or "member"


def expand(recipe: SweepRecipe, sweep_dir: str | Path,
           extra_overrides: list[str] | None = None) -> list[dict[str, Any]]:
    """Every member of the sweep, its config built and validated; raises UserError naming the member."""
    sweep_dir = Path(sweep_dir).resolve()
    extra = _check_overrides(list(extra_overrides or []), "--set")
    grid_keys = {k for axis in recipe.grid for k in axis}
    for text in extra:
        section, key, _ = parse_override(text)
        variant_keys = {".".join(parse_override(t)[:2]) for texts in recipe.variants.values() for t in texts}
        if f"{section}.{key}" in grid_keys | variant_keys or (f"{section}.{key}" == "run.seed" and recipe.seeds):
            raise UserError(f"--set {section}.{key}: that key is swept by {recipe.path.name} (grid, variants or SEEDS)")
    axes = list(recipe.grid.items())
    points = list(itertools.product(*[values for _, values in axes])) if axes else [()]
    seeds: list[int | None] = list(recipe.seeds) or [None]
    combos = [(point, seed) for point in points for seed in seeds]

    def names(verbose: bool) -> list[str]:
        out = []
        for point, seed in combos:
            labels = [_label(k, v, verbose) for (axis, _), values in zip(axes, point) for k, v in zip(axis, values)]
            out.append(_safe("_".join(labels + ([f"s{seed}"] if seed is not None else []))))
        return out

    member_names = names(False)
    if len(set(member_names)) != len(member_names):
        member_names = names(True)
    if len(set(member_names)) != len(member_names):
        member_names = [f"{i:03d}_{n}" for i, n in enumerate(member_names)]

    members = []
    base_cache: dict[Path, dict] = {}
    for index, ((point, seed), name) in enumerate(zip(combos, member_names)):
        grid = {k: v for (axis, _), values in zip(axes, point) for k, v in zip(axis, values)}
        base = grid.pop("recipe", None) or recipe.base
        variant = grid.pop("variant", None)
        grid_overrides = [f"{k}={_override_value(v)}" for k, v in grid.items()]
        variant_overrides = recipe.variants[variant] if variant is not None else []
        overrides = [*recipe.overrides, *extra, *variant_overrides, *grid_overrides]
        if seed is not None:
            overrides.append(f"run.seed={seed}")
        run_dir = sweep_dir / name
        if base is not None and base not in base_cache:
            base_cache[base] = read_recipe(base)
        try:
            cfg = build_config(base_cache.get(base) if base else None, [*overrides, f"run.out_dir={run_dir}"],
                               origin=str(base) if base else "recipe")
        except UserError as err:
            raise UserError(f"sweep member {name} ({', '.join(variant_overrides + grid_overrides) or 'no grid'}): "
                            f"{err}") from None
        shown_grid = {**({"recipe": str(base)} if "recipe" in grid_keys else {}),
                      **({"variant": variant} if variant is not None else {}), **grid}
        if seed is not None:
            shown_grid["run.seed"] = seed
        members.append({"name": name, "index": index, "grid": shown_grid, "recipe": str(base) if base else None,
                        "overrides": overrides, "config": cfg.to_dict(), "jobs": []})
    return members


# ---------------------------------------------------------------------------------------------- executors
def merged_resources(recipe_resources: dict[str, Any], cli: dict[str, Any]) -> dict[str, Any]:
    resources = {**DEFAULT_RESOURCES, **recipe_resources, **{k: v for k, v in cli.items() if v is not None}}
    return check_resources(resources, "resources")


def executor_parameters(cluster: str, resources: dict[str, Any], job_name: str) -> dict[str, Any]:
    """submitit AutoExecutor parameters for the cluster (generic ones plus slurm_*)."""
    gpus = int(resources.get("gpus_per_node", 0))
    tasks = int(resources.get("tasks_per_node") or (gpus if gpus > 1 else 1))  # one process per GPU
    # the job imports launch/ and rtp_scale/ from this checkout even when the package is not installed
    setup = [f"export PYTHONPATH={shlex.quote(str(PROJECT_ROOT))}${{PYTHONPATH:+:$PYTHONPATH}}"]
    params: dict[str, Any] = {"name": job_name, "timeout_min": int(resources["timeout_min"]),
                              "tasks_per_node": tasks, "nodes": int(resources.get("nodes", 1))}
    if gpus:
        params["gpus_per_node"] = gpus
    if cluster == "slurm":
        params["cpus_per_task"] = int(resources.get("cpus_per_task", 1))
        if resources.get("mem_gb"):
            params["mem_gb"] = float(resources["mem_gb"])
        for key in ("partition", "array_parallelism", "signal_delay_s", "account", "qos", "constraint", "exclude"):
            if resources.get(key) is not None:
                params[f"slurm_{key}"] = resources[key]
        if resources.get("slurm_extra"):
            params["slurm_additional_parameters"] = dict(resources["slurm_extra"])
        params["slurm_setup"] = setup
    elif cluster == "local":
        if params["nodes"] != 1:
            raise UserError("--cluster local runs on this machine only: use --nodes 1")
        if resources.get("signal_delay_s") is not None:
            params["local_signal_delay_s"] = resources["signal_delay_s"]
        params["local_setup"] = setup
    return params


def make_executor(cluster: str, sweep_dir: Path, params: dict[str, Any]) -> Any:
    import submitit

    if cluster == "slurm" and (shutil.which("sbatch") is None or shutil.which("srun") is None):
        raise UserError("--cluster slurm: sbatch/srun not found on PATH (not a Slurm node?); use --cluster local to "
                        "run the members on this machine, or --dry-run to only print them")
    executor = submitit.AutoExecutor(folder=str(submitit_folder(sweep_dir)), cluster=cluster)
    executor.update_parameters(**params)
    return executor


# ---------------------------------------------------------------------------------------------- submission
def write_manifest(sweep_dir: Path, manifest: dict[str, Any]) -> None:
    sweep_dir.mkdir(parents=True, exist_ok=True)
    tmp = sweep_dir / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    tmp.replace(sweep_dir / MANIFEST)


def _record(member: dict[str, Any], job_id: str) -> None:
    member.setdefault("jobs", []).append(str(job_id))


def submit_members(manifest: dict[str, Any], members: list[dict[str, Any]], *, cluster: str,
                   params: dict[str, Any], sweep_dir: Path, kind: str, parallelism: int = 1,
                   log=print) -> list[Any]:
    """Submit members (one job array on Slurm); record their job ids in the manifest as they get them.

    ``local`` keeps at most ``parallelism`` members running and returns when all ended; ``debug`` runs
    them one after the other in this process.
    """
    executor = make_executor(cluster, sweep_dir, params)
    tasks = [DistillTask(m["config"], name=m["name"]) for m in members]
    entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "kind": kind, "cluster": cluster,
             "members": [m["name"] for m in members], "job_ids": []}
    manifest.setdefault("submissions", []).append(entry)
    jobs: list[Any] = []
    if cluster == "local":
        pending, running = list(zip(members, tasks)), []
        try:
            while pending or running:
                running = [(m, j) for m, j in running if not j.done()]
                while pending and len(running) < max(1, parallelism):
                    member, task = pending.pop(0)
                    job = executor.submit(task)
                    _record(member, job.job_id)
                    entry["job_ids"].append(str(job.job_id))
                    write_manifest(sweep_dir, manifest)
                    log(f"started {member['name']} (local job {job.job_id})")
                    running.append((member, job))
                    jobs.append(job)
                time.sleep(0.5)
        except KeyboardInterrupt:  # do not leave local jobs running behind the user's back
            for _, job in running:
                job.cancel()
            raise
        return jobs
    with executor.batch():
        for task in tasks:
            jobs.append(executor.submit(task))
    for member, job in zip(members, jobs):
        _record(member, job.job_id)
        entry["job_ids"].append(str(job.job_id))
    if cluster == "slurm":
        entry["array_job_id"] = str(jobs[0].job_id).split("_")[0]
        log(f"submitted {len(jobs)} members as Slurm job array {entry['array_job_id']} "
            f"(at most {params.get('slurm_array_parallelism', 256)} running at once)")
    write_manifest(sweep_dir, manifest)
    if cluster == "debug":
        for member, job in zip(members, jobs):
            error = job.exception()  # runs the task here; exception() rather than result(): no pdb on failure
            log(f"{member['name']}: {'failed: ' + str(error).splitlines()[-1] if error else 'completed'}")
    return jobs


def wait_for(sweep_dir: Path, *, poll_s: float = 10.0, timeout_s: float | None = None, log=print) -> list[Any]:
    """Poll until no member is pending or running (or ``timeout_s`` passed); return the statuses."""
    start, last = time.monotonic(), None
    while True:
        statuses = sweep_status(sweep_dir)
        counts: dict[str, int] = {}
        for s in statuses:
            counts[s.state] = counts.get(s.state, 0) + 1
        line = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
        if line != last:
            log(f"[{time.monotonic() - start:6.0f} s] {line}")
            last = line
        if not counts.get("pending") and not counts.get("running"):
            return statuses
        if timeout_s is not None and time.monotonic() - start > timeout_s:
            raise TimeoutError(f"sweep {sweep_dir} still has members running after {timeout_s:.0f} s: {line}")
        time.sleep(poll_s)


def _print_plan(manifest: dict[str, Any], members: list[dict[str, Any]], params: dict[str, Any], log=print) -> None:
    cluster = manifest["cluster"]
    how = {"slurm": "ONE Slurm job array", "local": "local processes", "debug": "this process, one by one"}[cluster]
    log(f"sweep {manifest['name']}: {len(members)} member(s) -> {how}; sweep directory {manifest['sweep_dir']}")
    log("executor: " + " ".join(f"{k}={v}" for k, v in params.items() if k not in ("slurm_setup", "local_setup")))
    for m in members:
        grid = " ".join(f"{k}={Path(v).name if k == 'recipe' else v}" for k, v in m["grid"].items())
        log(f"  [{m['index']}] {m['name']}: {grid or '(base recipe)'}")


def start_sweep(recipe_path: str | Path, *, cluster: str = "slurm", sweep_dir: str | Path | None = None,
                overrides: list[str] | None = None, resources: dict[str, Any] | None = None,
                dry_run: bool = False, log=print) -> dict[str, Any]:
    """Expand, validate and submit a sweep; returns the manifest (with ``jobs`` when submitted)."""
    if cluster not in CLUSTERS:
        raise UserError(f"unknown cluster {cluster!r}; choose one of {', '.join(CLUSTERS)}")
    recipe = load_sweep(recipe_path)
    sweep_dir = Path(sweep_dir or Path("runs") / "sweeps" / recipe.name).resolve()
    members = expand(recipe, sweep_dir, overrides)  # every config validated before anything is written
    res = merged_resources(recipe.resources, resources or {})
    params = executor_parameters(cluster, res, f"rtp-{recipe.name}")
    manifest = {"format": 1, "name": recipe.name, "description": recipe.description, "recipe": str(recipe.path),
                "sweep_dir": str(sweep_dir), "cluster": cluster, "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "cli_overrides": list(overrides or []), "resources": res, "members": members, "submissions": []}
    _print_plan(manifest, members, params, log)
    if dry_run:
        log("dry run: nothing submitted, nothing written")
        return {**manifest, "jobs": []}
    if (sweep_dir / MANIFEST).exists():
        raise UserError(f"{sweep_dir} already holds a sweep ({MANIFEST}); use `python -m launch.sweep --resubmit "
                        f"{sweep_dir}` to rerun its failed or missing members, or --out for a new sweep")
    write_manifest(sweep_dir, manifest)  # before submitting: a member whose submission fails shows as missing
    jobs = submit_members(manifest, members, cluster=cluster, params=params, sweep_dir=sweep_dir, kind="initial",
                          parallelism=int(res.get("array_parallelism") or 1) if cluster == "local" else 1, log=log)
    return {**manifest, "jobs": jobs}


def resubmit(sweep_dir: str | Path, *, cluster: str | None = None, resources: dict[str, Any] | None = None,
             dry_run: bool = False, log=print) -> dict[str, Any]:
    """Resubmit exactly the failed and missing members (as one new array); they resume from their checkpoints."""
    sweep_dir = Path(sweep_dir).resolve()
    manifest = load_manifest(sweep_dir)
    cluster = cluster or manifest.get("cluster", "slurm")
    if cluster not in CLUSTERS:
        raise UserError(f"unknown cluster {cluster!r}; choose one of {', '.join(CLUSTERS)}")
    states = scheduler_states(manifest)
    if states is None:  # cannot tell queued members from lost ones: resubmitting could run a member twice
        raise UserError(f"cannot ask the scheduler which members of {sweep_dir} are still queued or running "
                        "(squeue/sacct failed); run --resubmit where they work")
    statuses = sweep_status(sweep_dir, manifest, states=states)
    todo = [s for s in statuses if s.state in ("failed", "missing")]
    busy = [s.name for s in statuses if s.state in ("pending", "running")]
    if busy:
        log(f"not resubmitting {len(busy)} member(s) still queued or running: {', '.join(busy)}")
    if not todo:
        log("nothing to resubmit: every member completed" + (" or is still running" if busy else ""))
        return {**manifest, "jobs": [], "resubmitted": []}
    res = merged_resources(manifest.get("resources", {}), resources or {})
    params = executor_parameters(cluster, res, f"rtp-{manifest['name']}")
    members = [s.member for s in todo]
    log(f"resubmitting {len(members)} member(s): " + ", ".join(f"{s.name} ({s.state})" for s in todo))
    if dry_run:
        _print_plan({**manifest, "cluster": cluster}, members, params, log)
        log("dry run: nothing submitted, nothing written")
        return {**manifest, "jobs": [], "resubmitted": [m["name"] for m in members]}
    for s in todo:  # keep the old error in the manifest; the run directory keeps its checkpoint
        if s.error:
            s.member.setdefault("previous_errors", []).append({"job_id": s.job_id, "error": s.error})
        (sweep_dir / s.name / ERROR_FILE).unlink(missing_ok=True)
        for stale in (sweep_dir / s.name).glob("error.rank*.json"):
            stale.unlink()
    manifest["resources"] = res
    jobs = submit_members(manifest, members, cluster=cluster, params=params, sweep_dir=sweep_dir, kind="resubmit",
                          parallelism=int(res.get("array_parallelism") or 1) if cluster == "local" else 1, log=log)
    return {**manifest, "jobs": jobs, "resubmitted": [m["name"] for m in members]}


# ---------------------------------------------------------------------------------------------- CLI
def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} must look like KEY=VALUE")
    return key, value


def build_parser() -> OneLineParser:
    parser = OneLineParser(prog="python -m launch.sweep", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("target", metavar="SWEEP",
                        help="sweep recipe (configs/sweeps/*.py); with --resubmit: a sweep directory")
    parser.add_argument("--cluster", choices=CLUSTERS, default=None,
                        help="slurm (default): one job array; local: processes on this machine; debug: in this process")
    parser.add_argument("--out", metavar="DIR", help="sweep directory (default runs/sweeps/<NAME>)")
    parser.add_argument("--set", dest="overrides", metavar="SECTION.KEY=VALUE", nargs="+", action="extend", default=[],
                        help="override config keys of every member (not the swept ones)")
    parser.add_argument("--dry-run", action="store_true", help="print the members and job parameters; submit nothing")
    parser.add_argument("--resubmit", action="store_true", help="SWEEP is a sweep directory: resubmit only its "
                        "failed or missing members")
    parser.add_argument("--wait", action="store_true",
                        help="(slurm) poll until every member ended, then print the table")
    group = parser.add_argument_group("resources (override the recipe's RESOURCES)")
    group.add_argument("--partition", help="Slurm partition")
    group.add_argument("--time", dest="timeout_min", type=int, metavar="MIN", help="time limit per job in minutes")
    group.add_argument("--gpus", dest="gpus_per_node", type=int, metavar="N", help="GPUs per node (one process each)")
    group.add_argument("--cpus", dest="cpus_per_task", type=int, metavar="N", help="CPUs per process")
    group.add_argument("--mem", dest="mem_gb", type=float, metavar="GB", help="memory per node in GB")
    group.add_argument("--nodes", type=int, metavar="N", help="nodes per job")
    group.add_argument("--tasks-per-node", dest="tasks_per_node", type=int, metavar="N",
                       help="processes per node (default: one per GPU)")
    group.add_argument("--array-parallelism", dest="array_parallelism", type=int, metavar="N",
                       help="members running at once (Slurm %%N; local default 1)")
    group.add_argument("--signal-delay", dest="signal_delay_s", type=int, metavar="S",
                       help="seconds before the time limit at which the job checkpoints and requeues")
    group.add_argument("--account", help="Slurm account")
    group.add_argument("--qos", help="Slurm QOS")
    group.add_argument("--constraint", help="Slurm node constraint")
    group.add_argument("--exclude", metavar="NODES", help="Slurm nodes to avoid")
    group.add_argument("--slurm-extra", dest="slurm_extra", metavar="KEY=VALUE", nargs="+", type=_key_value,
                       help="further sbatch options, e.g. --slurm-extra reservation=abc")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    resources = {k: getattr(args, k) for k in RESOURCE_TYPES if k != "slurm_extra"}
    if args.slurm_extra:
        resources["slurm_extra"] = dict(args.slurm_extra)
    if args.resubmit:
        if args.overrides or args.out:
            raise UserError("--resubmit reruns members as recorded in sweep.json: --set and --out do not apply")
        result = resubmit(args.target, cluster=args.cluster, resources=resources, dry_run=args.dry_run)
        sweep_dir, cluster = Path(result["sweep_dir"]), args.cluster or result["cluster"]
    else:
        result = start_sweep(args.target, cluster=args.cluster or "slurm", sweep_dir=args.out,
                             overrides=args.overrides, resources=resources, dry_run=args.dry_run)
        sweep_dir, cluster = Path(result["sweep_dir"]), result["cluster"]
    if args.dry_run or not result["jobs"]:
        return 0
    if cluster == "slurm" and not args.wait:
        print(f"follow with: squeue --me; python -m launch.collect {sweep_dir}")
        return 0
    if cluster == "slurm":
        wait_for(sweep_dir)
    report = collect(sweep_dir)
    print(report["markdown"], end="")
    counts = report["counts"]
    if counts["completed"] != sum(counts.values()):
        print(f"error: {sum(counts.values()) - counts['completed']} member(s) did not complete; resubmit them with "
              f"python -m launch.sweep --resubmit {sweep_dir}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    run_cli(main)
