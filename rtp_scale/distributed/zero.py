"""The outer (meta) optimiser under DeepSpeed ZeRO through Accelerate: its state is sharded over ranks.

Launch with an Accelerate DeepSpeed config (``configs/accelerate/deepspeed_zero2.yaml``). What ZeRO
shards here is the outer optimiser of the memory: with ZeRO-1/2 every rank keeps the optimiser state
(SGD momentum, Adam moments) of only its ``1 / world`` slice of the memory's parameters and updates only
that slice, and DeepSpeed all-gathers the updated parameters. For a memory of P floats that is ``P/world``
(SGD) or ``2P/world`` (Adam) floats of state per rank instead of P or 2P.

Why the gradients are not DeepSpeed's: a meta-gradient is computed by hand (an unroll, then one backward
through the memory's recall) and every rank needs the full, reduced and clipped meta-gradient anyway
(the clip and the divergence check use its global norm). So ``distill`` reduces and clips exactly as in a
plain run, and :meth:`ZeroOuterOptimizer.step` hands the result to DeepSpeed as the gradient of the
surrogate ``sum(p * g)`` of a shadow copy of the memory that DeepSpeed owns: its reduce-scatter averages
``world`` identical copies (exact for a power-of-two world), then the ZeRO step updates each slice and
all-gathers. The run's ``memory`` shares its parameters' storage with the shadow, so it sees every update.
The result equals the plain run's to float rounding (tests/test_distributed.py).

Checkpoints stay in the plain format: :meth:`state_dict` gathers the full optimiser state with
DeepSpeed's ``safe_get_full_optimizer_state`` (a collective: every rank must call it), so a ZeRO run can
resume a plain run's checkpoint and vice versa.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from rtp_scale.errors import UserError


class ZeroOuterOptimizer:
    """A ``torch.optim.Optimizer``-like facade over a DeepSpeed ZeRO-1/2 engine owning a shadow memory.

    ``param_groups`` (the ``lr`` the run's schedule sets), ``step()``, ``zero_grad()``, ``state_dict()``
    and ``load_state_dict()`` behave as the wrapped optimiser's would in a plain run.
    """

    def __init__(self, accelerator, memory: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        plugin = accelerator.state.deepspeed_plugin
        config = plugin.deepspeed_config
        stage = int(config.get("zero_optimization", {}).get("stage", 0))
        if stage not in (1, 2):
            raise UserError(f"the DeepSpeed config asks for ZeRO stage {stage}; rtp_scale shards the outer optimiser "
                            f"with stage 1 or 2 (configs/accelerate/deepspeed_zero2.yaml)")
        if "optimizer" in config:
            raise UserError("remove the 'optimizer' section from the DeepSpeed config: the outer optimiser is "
                            "rtp_scale's (meta.optimizer, meta.lr)")
        # one surrogate backward per outer step; the clip is rtp_scale's (meta.grad_clip)
        for key, value in (("train_micro_batch_size_per_gpu", 1), ("gradient_accumulation_steps", 1),
                           ("gradient_clipping", 0.0)):
            if plugin.is_auto(key) or key not in config:
                config[key] = value
        if int(config["gradient_accumulation_steps"]) != 1:
            raise UserError("set gradient_accumulation_steps to 1 in the DeepSpeed config (use dist.meta_batch for "
                            "more unrolls per outer step)")
        if float(config.get("gradient_clipping") or 0.0) != 0.0:
            raise UserError("set gradient_clipping to 0 in the DeepSpeed config: the meta-gradient is clipped by "
                            "rtp_scale (meta.grad_clip) before DeepSpeed sees it")
        config.setdefault("zero_allow_untested_optimizer", True)  # SGD / Lamb are fine for ZeRO-1/2

        self.accelerator = accelerator
        self.stage = stage
        self._reported = False
        self.memory_params = [p for p in memory.parameters() if p.requires_grad]
        shadow = copy.deepcopy(memory)
        self.shadow_params = [p for p in shadow.parameters() if p.requires_grad]
        if len(optimizer.param_groups) != 1:
            raise UserError("the outer optimiser must have one parameter group to be sharded with ZeRO")
        group = {k: v for k, v in optimizer.param_groups[0].items() if k != "params"}
        resumed = optimizer.state_dict() if optimizer.state else None
        shadow_optimizer = type(optimizer)(self.shadow_params, **group)
        # DeepSpeed copies the parameters' current values into its fp32 master slices here, so the facade is
        # made after a resumed memory has been loaded; a resumed optimiser state is moved in below
        self.engine, self.optimizer = accelerator.prepare(shadow, shadow_optimizer)
        # Accelerate's wrapper -> DeepSpeed's ZeRO optimiser -> the torch optimiser over this rank's fp32 slice
        self._base = self.optimizer.optimizer.optimizer
        self._alias()
        if resumed is not None:
            self.load_state_dict(resumed)

    # ------------------------------------------------------------------ torch.optim.Optimizer surface
    @property
    def param_groups(self) -> list[dict]:
        return self.optimizer.param_groups

    def zero_grad(self, set_to_none: bool = False) -> None:
        for p in self.memory_params:
            if p.grad is None or set_to_none:
                p.grad = None if set_to_none else torch.zeros_like(p)
            else:
                p.grad.zero_()

    def step(self) -> None:
        """Apply the (already reduced and clipped) gradients in ``memory``'s ``.grad`` through ZeRO."""
        grads = [torch.zeros_like(p) if p.grad is None else p.grad.detach() for p in self.memory_params]
        surrogate = sum((q * g).sum() for q, g in zip(self.shadow_params, grads))
        self.accelerator.backward(surrogate)  # engine.backward (reduce-scatter) + engine.step (ZeRO update)
        self._alias()
        if not self._reported:  # the state exists after the first step: say once how it is sharded
            self._reported = True
            local = sum(v.numel() for state in self._base.state.values() for v in state.values()
                        if torch.is_tensor(v) and v.dim() > 0)
            full = sum(p.numel() for p in self.memory_params) * len(self._state_keys())
            print(f"[rank {self.accelerator.process_index}] ZeRO-{self.stage}: this rank keeps {local} of the outer "
                  f"optimiser's {full} state values", flush=True)

    def _alias(self) -> None:
        # the run's memory reads DeepSpeed's parameters in place (no copy; DeepSpeed owns their storage)
        for p, q in zip(self.memory_params, self.shadow_params):
            p.data = q.data

    # ------------------------------------------------------------------ checkpoints (collective)
    def _state_keys(self) -> list[str]:
        keys: set[str] = set()
        for state in self._base.state.values():
            keys |= {k for k, v in state.items() if torch.is_tensor(v) and v.dim() > 0}
        return sorted(keys)

    def state_dict(self) -> dict:
        """The full optimiser state in the plain ``torch.optim`` format. Collective: call on every rank."""
        from deepspeed.utils import safe_get_full_optimizer_state

        base = self._base
        scalars = {}
        for state in base.state.values():
            scalars = {k: (v.clone() if torch.is_tensor(v) else v) for k, v in state.items()
                       if not (torch.is_tensor(v) and v.dim() > 0)}
        keys = self._state_keys()
        state = {}
        if keys or scalars:
            for i, q in enumerate(self.shadow_params):
                state[i] = {}
                for k in keys:
                    full = safe_get_full_optimizer_state(q, k)
                    if full is None:
                        raise RuntimeError(f"DeepSpeed holds no optimiser state {k!r} for a memory parameter")
                    state[i][k] = full.detach().cpu().clone()
                state[i].update(copy.deepcopy(scalars))
        group = {k: v for k, v in base.param_groups[0].items() if k != "params"}
        group["params"] = list(range(len(self.shadow_params)))
        return {"state": state, "param_groups": [group]}

    def load_state_dict(self, state_dict: dict) -> None:
        """Load a plain-format optimiser state (from a ZeRO or a plain run). Collective: call on every rank."""
        from deepspeed.utils import safe_set_full_optimizer_state

        groups = state_dict["param_groups"]
        if len(groups) != 1 or len(groups[0]["params"]) != len(self.shadow_params):
            raise UserError("the checkpoint's outer optimiser does not match this memory's parameters")
        for k, v in groups[0].items():
            if k != "params":
                for g in self.optimizer.param_groups:
                    g[k] = v
        saved = state_dict["state"]
        if not saved:
            return
        base = self._base
        if not base.state:
            # lazily created state (SGD momentum, Adam moments): create it with one zero-gradient step at lr 0
            lrs = [g["lr"] for g in base.param_groups]
            for g in base.param_groups:
                g["lr"] = 0.0
                for p in g["params"]:
                    p.grad = torch.zeros_like(p)
            base.step()
            for g, lr in zip(base.param_groups, lrs):
                g["lr"] = lr
                for p in g["params"]:
                    p.grad = None
            # DeepSpeed links each parameter to its slice of the optimiser state after its first step
            self.optimizer.optimizer._lazy_init_hp_params_optimizer_state()
        first = saved[min(saved)]
        for i, q in enumerate(self.shadow_params):
            for k, v in saved[i].items():
                if torch.is_tensor(v) and v.dim() > 0:
                    safe_set_full_optimizer_state(q, v.to(q.device, q.dtype), k)
        for state in base.state.values():
            for k, v in first.items():
                if not (torch.is_tensor(v) and v.dim() > 0):
                    state[k] = v.clone() if torch.is_tensor(v) else v


def prepare_outer_optimizer(ctx, memory: nn.Module, optimizer: torch.optim.Optimizer):
    """The run's outer optimiser: ``optimizer`` itself, or its ZeRO-sharded facade under DeepSpeed."""
    if not ctx.deepspeed:
        return optimizer
    return ZeroOuterOptimizer(ctx.accelerator, memory, optimizer)
