"""FRePo (Zhou, Nezhadarya & Ba, "Dataset Distillation using Neural Feature Regression", NeurIPS 2022).

No unroll. One meta-gradient:

1. take the step's model from the pool and its last-hidden-layer features (``net.features``) of the
   synthetic images ``phi_s`` and of the real batch ``phi_t``;
2. predict the real labels by kernel ridge regression from the synthetic set,
   ``pred = K_ts (K_ss + lambda I)^{-1} Y_s`` with ``lambda = reg * trace(K_ss) / n``, solved in float64
   by Cholesky (:mod:`rtp_scale.methods.krr`);
3. meta-loss = 0.5 * squared error to the real labels, summed over classes, averaged over the batch
   (+ FRePo's label-margin term on learned labels, + the coefficient L2 of addressable memories), and one
   plain ``backward`` pushes ``scale * d(meta-loss)`` into the memory's ``.grad`` — through the recall of an
   :class:`~rtp_scale.memory.AddressableMemory` (FRePo on RtP memories) or into a pixel memory's images and
   learned labels.

Labels, as in FRePo: the regression targets are centred one-hot vectors (``onehot - 1/C``) for the real
batch, and ``memory.targets() - 1/C`` for the synthetic set. A pixel memory's learned labels therefore start
one-hot (FRePo starts them centred: the same thing shifted by a constant) and stay un-centred in the
artifact, so the evaluation protocol can train on them as soft targets. FRePo's extra ``sqrt(C/10)``
label scaling is left out (it is 1 for the 10-class sets here).

The model pool (state kept in :meth:`FrepoMethod.state_dict`, so a resumed run is bit-exact):

- ``pool_size`` models, slot ``i`` initialised from ``(seed, 'pool', i, resets_i)`` (no global RNG); ages
  start staggered at ``(max_age // pool_size) * i`` as in FRePo's code, so resets are spread out in time;
- the model of outer step ``s`` is drawn from ``(seed, 'pool-pick', s)``;
- after the outer update (:meth:`FrepoMethod.end_step`, called by ``rtp_scale.distill`` on every process),
  that model is trained ``train_steps`` steps on the updated synthetic set (Adam, 0.5 * MSE to the centred
  learned labels, minibatches of ``train_batch`` drawn from ``(seed, 'pool-batch', s, slot)``), or, when its
  age (training steps taken) has reached ``max_age``, re-initialised instead.

Sharding: FRePo has no inner loop, so the inner-shard axis does not split its work: every shard of an unroll
computes the same meta-gradient (what ``rtp_scale.distributed`` expects of inner shards). All processes
hold the same pool — model choice and pool training depend only on (seed, step) and on the memory, which is
identical everywhere after the all-reduce — so the meta-batch axis averages the meta-gradients of several
real batches on the step's model (FRePo's multi-GPU code instead gives every device its own pool).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from rtp_scale.config import Config
from rtp_scale.data.augment import Augmenter
from rtp_scale.errors import UserError
from rtp_scale.methods.krr import half_mse, krr_predict, label_margin_loss
from rtp_scale.models import init_params
from rtp_scale.seeding import make_generator
from rtp_scale.unroll.engine import GradReducer

_ADAM_BETAS, _ADAM_EPS, _SGD_MOMENTUM = (0.9, 0.999), 1e-8, 0.9


class _Features(nn.Module):
    """``net.features`` as a module's forward, so ``functional_call`` can run it with pool parameters."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x_NCHW: Tensor) -> Tensor:
        return self.net.features(x_NCHW)


class FrepoMethod:
    """FRePo meta-gradients (kernel ridge regression on pool-model features) and the model pool."""

    def __init__(self, cfg: Config, net: nn.Module, augmenter: Augmenter):
        if not hasattr(net, "features"):
            raise UserError(f"method.name=frepo needs a model with a features() method (model.name={cfg.model.name!r})")
        self.cfg, self.fc, self.net = cfg, cfg.frepo, net
        self.features = _Features(net)
        ref = next(net.parameters())
        self.device, self.dtype = ref.device, ref.dtype
        P = self.fc.pool_size
        self.ages = [(self.fc.max_age // P) * i for i in range(P)]
        self.resets = [0] * P
        self.params = [self._fresh_params(i, 0) for i in range(P)]
        self.opt = [self._fresh_opt(p) for p in self.params]
        self.current = self._pick(0)

    # ------------------------------------------------------------------ pool
    def _fresh_params(self, slot: int, resets: int) -> dict[str, Tensor]:
        gen = make_generator(self.cfg.run.seed, "pool", slot, resets)
        return {k: v.to(device=self.device, dtype=self.dtype) for k, v in init_params(self.net, gen).items()}

    @staticmethod
    def _fresh_opt(params: dict[str, Tensor]) -> dict:
        zeros = lambda: {k: torch.zeros_like(v) for k, v in params.items()}  # noqa: E731
        return {"step": 0, "m": zeros(), "v": zeros()}

    def _pick(self, step: int) -> int:
        """The pool slot whose model gives the features of outer step ``step``."""
        gen = make_generator(self.cfg.run.seed, "pool-pick", step)
        return int(torch.randint(self.fc.pool_size, (1,), generator=gen))

    def _targets(self, memory: nn.Module) -> Tensor:
        """Centred regression targets of the synthetic set (a graph to learned labels when they are learned)."""
        targets_NC = memory.targets()
        return targets_NC - 1.0 / targets_NC.shape[1]

    def end_step(self, memory: nn.Module, *, done: int) -> None:
        """After outer step ``done - 1``: train (or reset) that step's pool model, then pick the next step's."""
        slot = self.current
        if self.ages[slot] >= self.fc.max_age:
            self.resets[slot] += 1
            self.params[slot] = self._fresh_params(slot, self.resets[slot])
            self.opt[slot] = self._fresh_opt(self.params[slot])
            self.ages[slot] = 0
        elif self.fc.train_steps:
            self._train(slot, memory, step=done - 1)
        self.current = self._pick(done)

    def _train(self, slot: int, memory: nn.Module, *, step: int) -> None:
        with torch.no_grad():
            x_NCHW = memory.class_images()[0].to(self.dtype)
            y_NC = self._targets(memory).to(self.dtype)
        n, batch = len(x_NCHW), min(self.fc.train_batch, len(x_NCHW))
        gen = make_generator(self.cfg.run.seed, "pool-batch", step, slot)
        params, state = self.params[slot], self.opt[slot]
        with torch.enable_grad():
            for _ in range(self.fc.train_steps):
                idx = torch.randperm(n, generator=gen)[:batch].to(x_NCHW.device) if batch < n else slice(None)
                leaves = {k: v.detach().requires_grad_(True) for k, v in params.items()}
                loss = half_mse(functional_call(self.net, leaves, (x_NCHW[idx],)), y_NC[idx])
                grads = dict(zip(leaves, torch.autograd.grad(loss, list(leaves.values()), allow_unused=True)))
                params = self._update(params, grads, state)
                self.ages[slot] += 1
        self.params[slot] = params

    def _update(self, params: dict[str, Tensor], grads: dict[str, Tensor | None], state: dict) -> dict[str, Tensor]:
        """One step of Adam (torch.optim.Adam's arithmetic) or SGD with momentum 0.9, on detached tensors."""
        lr, out = self.fc.train_lr, {}
        state["step"] += 1
        t = state["step"]
        with torch.no_grad():
            for k, p in params.items():
                g = grads[k] if grads[k] is not None else torch.zeros_like(p)
                m = state["m"][k]
                if self.fc.train_optimizer == "sgd":
                    m.mul_(_SGD_MOMENTUM).add_(g)
                    out[k] = p - lr * m
                    continue
                b1, b2 = _ADAM_BETAS
                v = state["v"][k]
                m.mul_(b1).add_(g, alpha=1 - b1)
                v.mul_(b2).addcmul_(g, g, value=1 - b2)
                denom = (v / (1 - b2**t)).sqrt().add_(_ADAM_EPS)
                out[k] = p - (lr / (1 - b1**t)) * m / denom
        return out

    # ------------------------------------------------------------------ checkpoint
    def state_dict(self) -> dict:
        """Pool weights, optimiser moments, ages, reset counts and the next step's slot (tensors/lists/ints only)."""
        return {"pool_size": self.fc.pool_size, "ages": list(self.ages), "resets": list(self.resets),
                "current": self.current, "params": [{k: v.detach().cpu() for k, v in p.items()} for p in self.params],
                "opt": [{"step": o["step"], "m": {k: v.cpu() for k, v in o["m"].items()},
                         "v": {k: v.cpu() for k, v in o["v"].items()}} for o in self.opt]}

    def load_state_dict(self, state: dict) -> None:
        if not state:
            return
        if state.get("pool_size") != self.fc.pool_size:
            raise UserError(f"checkpoint has a FRePo pool of {state.get('pool_size')} models but frepo.pool_size="
                            f"{self.fc.pool_size}; use the same pool size or another run.out_dir")
        move = lambda d: {k: v.to(device=self.device, dtype=self.dtype) for k, v in d.items()}  # noqa: E731
        self.ages, self.resets, self.current = list(state["ages"]), list(state["resets"]), int(state["current"])
        self.params = [move(p) for p in state["params"]]
        self.opt = [{"step": int(o["step"]), "m": move(o["m"]), "v": move(o["v"])} for o in state["opt"]]

    # ------------------------------------------------------------------ meta-gradient
    def meta_loss(self, memory: nn.Module, real_x: Tensor, real_y: Tensor) -> tuple[Tensor, dict[str, float]]:
        """The FRePo objective on the current pool model (a graph to the memory) and its metrics."""
        params = self.params[self.current]
        feature_params = {f"net.{k}": v for k, v in params.items()}
        x_NCHW, _ = memory.class_images()
        y_s_NC = self._targets(memory)
        num_classes = y_s_NC.shape[1]
        feat_s = functional_call(self.features, feature_params, (x_NCHW.to(self.dtype),))
        with torch.no_grad():
            feat_t = functional_call(self.features, feature_params, (real_x.to(self.dtype),))
            logits_s = functional_call(self.net, params, (x_NCHW.detach().to(self.dtype),))
        pred_MC, ridge = krr_predict(feat_s, y_s_NC, feat_t, reg=self.fc.reg)
        target_MC = F.one_hot(real_y, num_classes).to(pred_MC) - 1.0 / num_classes
        kernel_loss = half_mse(pred_MC, target_MC)
        total = kernel_loss
        margin = torch.zeros((), dtype=torch.float64, device=pred_MC.device)
        if y_s_NC.requires_grad and self.fc.label_margin > 0:
            margin = label_margin_loss(y_s_NC)
            total = total + self.fc.label_margin * margin
        regulariser = self.cfg.memory.coeff_l2 * memory.coefficient_l2()
        if regulariser.requires_grad:
            total = total + regulariser
        metrics = {"meta/loss": float(kernel_loss.detach()), "meta/label_margin": float(margin.detach()),
                   "meta/regulariser": float(regulariser.detach()),
                   "meta/krr_acc": 100.0 * float((pred_MC.detach().argmax(1) == real_y).double().mean()),
                   "inner/loss_last": float(half_mse(logits_s, y_s_NC.detach().to(logits_s.dtype))),
                   "pool/age": float(self.ages[self.current]), "pool/ridge": ridge}
        return total, metrics

    def meta_gradient(self, memory: nn.Module, real_x: Tensor, real_y: Tensor, *, lrs: Tensor,
                      generator: torch.Generator, scale: float = 1.0, shard: int = 0, num_shards: int = 1,
                      reduce_grad: GradReducer = None) -> tuple[dict[str, float], Tensor | None]:
        """Accumulate ``scale * d(meta-loss)/d(memory)`` into ``memory``'s ``.grad``; FRePo learns no inner lrs.

        ``generator`` is unused: the step's model is fixed by (seed, step) so every process agrees on it.
        """
        with torch.enable_grad():
            total, metrics = self.meta_loss(memory, real_x, real_y)
            (total * scale).backward()
        # inner shards all compute this same unroll and the step's metrics sum "inner/*" over shards
        metrics["inner/loss_last"] /= num_shards
        return metrics, None
