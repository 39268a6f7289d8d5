"""The typed configuration tree of a run.

Every knob lives in one keyword-only dataclass per concern; a run's config is built from the defaults,
then a recipe file (``--config configs/x.toml``, TOML tables named like the sections), then
``--set section.key=value`` overrides. Unknown keys, values of the wrong type and impossible
combinations raise :class:`~rtp_scale.errors.UserError` naming the key, before any work starts. The
resolved config is written to the run directory as ``config.json`` and can be loaded back with
:func:`load_config`.
"""
from __future__ import annotations

import dataclasses
import json
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rtp_scale.errors import UserError
from rtp_scale.methods import check_method_name, uses_learned_labels
from rtp_scale.models.catalog import check_options, model_defaults  # torch-free, so the config stays light

AUGMENT_OPS = ("color", "crop", "cutout", "flip", "scale", "rotate")


def _choice(section: str, name: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise UserError(f"{section}.{name}={value!r} is not allowed; choose one of: {', '.join(map(str, allowed))}")


def _positive(section: str, name: str, value: float, *, allow_zero: bool = False) -> None:
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise UserError(f"{section}.{name}={value!r} must be {bound}")


def _check_augment(section: str, name: str, ops: str) -> None:
    if ops in ("", "none"):
        return
    for op in ops.split("_"):
        if op not in AUGMENT_OPS:
            raise UserError(f"{section}.{name}: unknown augmentation op {op!r}; ops are {'_'.join(AUGMENT_OPS)} or 'none'")


@dataclass(kw_only=True)
class RecipeConfig:
    """What a recipe is for; written into results so a number always travels with its setting."""

    description: str = "RtP addressable memories on mnist5k at a 1-IPC storage budget (CPU, minutes)"
    """One line saying what the recipe distills."""
    hardware: str = "1 CPU core or more; about 10 minutes on a 2-core CPU"
    """The hardware the recipe was sized for."""
    expected: str = ""
    """The expected result on that hardware (accuracy mean ± std), once measured."""


@dataclass(kw_only=True)
class RunConfig:
    """Identity of a run: seed, output directory, device."""

    seed: int = 0
    """Run seed; every generator is derived from it (see rtp_scale.seeding)."""
    out_dir: str = "runs/default"
    """Run directory: config.json, checkpoints, TensorBoard events, memory.safetensors, results.json."""
    device: str = "auto"
    """'auto' (cuda when available, else cpu), 'cpu' or 'cuda'."""

    def __post_init__(self) -> None:
        _choice("run", "device", self.device, ("auto", "cpu", "cuda"))
        _positive("run", "seed", self.seed, allow_zero=True)


@dataclass(kw_only=True)
class DataConfig:
    """The real dataset and how real batches are drawn from it."""

    name: str = "mnist5k"
    """Registered dataset name (see rtp_scale.data.dataset_names()) or ``package.module:loader``, a loader of your
    own returning a rtp_scale.data.split.SplitDataset (see rtp_scale.data.registry)."""
    root: str = ""
    """Local folder for torchvision / image-folder / FFCV datasets; unused by the offline sets."""
    resolution: int = 0
    """Image side for image-folder datasets (0 = the dataset's default)."""
    download: bool = False
    """Let torchvision download a missing dataset (needs network)."""
    zca: bool = False
    """Whiten images with ZCA fitted on the training set (as KIP/FRePo/RtP do for CIFAR)."""
    zca_reg: float = 0.1
    """ZCA regularisation strength, relative to the mean eigenvalue."""
    augment: str = "none"
    """Differentiable augmentation ops joined by '_' (color_crop_cutout_flip_scale_rotate) or 'none'."""
    real_per_class: int = 64
    """Real images per class in the real batch of each outer step (RtP reference: 64)."""
    backend: str = "memory"
    """'memory' (tensors in RAM) or 'ffcv' (stream .beton files)."""
    val_per_class: int = 0
    """Hold out the last N training images of every class as a validation split that distillation never sees
    (0 = none; see rtp_scale/data/holdout.py). Recipes and defaults are chosen on it."""
    eval_split: str = "test"
    """What evaluation reports on: 'test' (the test split) or 'val' (the held-out images; needs val_per_class)."""

    def __post_init__(self) -> None:
        _check_augment("data", "augment", self.augment)
        _positive("data", "real_per_class", self.real_per_class)
        _positive("data", "resolution", self.resolution, allow_zero=True)
        _positive("data", "zca_reg", self.zca_reg)
        _choice("data", "backend", self.backend, ("memory", "ffcv"))
        _positive("data", "val_per_class", self.val_per_class, allow_zero=True)
        _choice("data", "eval_split", self.eval_split, ("test", "val"))
        if self.eval_split == "val" and self.val_per_class == 0:
            raise UserError("data.eval_split=val needs a validation split: set data.val_per_class > 0")
        if self.val_per_class and self.backend == "ffcv":
            raise UserError("data.val_per_class needs data.backend=memory (the .beton files hold no validation split)")


@dataclass(kw_only=True)
class ModelConfig:
    """The inner network trained in every unroll and in evaluation."""

    name: str = "convnet"
    """convnet, mlp, lenet, alexnet, vgg11, vgg11_bn, resnet18, resnet18_bn (rtp_scale.models.catalog), or an
    out-of-package builder 'package.module:Builder'. Unset options below (0 / 'default') take the model's own
    defaults, which the config fills in for a built-in; setting an option the model does not take is an error."""
    width: int = 0
    """0 = the model's own: convnet channels per block (32; the field's reference 128), mlp hidden units (128),
    alexnet first-conv channels (128), vgg11*/resnet18* first-stage channels (64). lenet takes no width."""
    depth: int = 0
    """convnet only: conv blocks (0 = 3; 3 for 28-32 px, 4 for 64 px)."""
    norm: str = "default"
    """convnet only: 'instance' (GroupNorm(C, C), the default), 'batch' (batch statistics) or 'none'.
    vgg11/resnet18 use instance norm, vgg11_bn/resnet18_bn batch norm."""
    pooling: str = "default"
    """convnet only: 'avg' (the default), 'max' or 'none'."""
    width_multiplier: int = 1
    """convnet only: block d has width * width_multiplier**d channels (1: the field's ConvNet; 2: FRePo's)."""
    fused: bool = True
    """convnet with instance norm and avg (or no) pooling: each block's norm -> ReLU -> pool runs as one compiled
    function with hand-written first and second derivatives (rtp_scale.models.fused_block): the same network and
    gradients up to float rounding, less than half the graph per inner step, and somewhat faster (README,
    Networks), after compiling once per machine. false: the plain modules (artifacts from before this key was
    recorded evaluate that way). No effect on other models."""

    def __post_init__(self) -> None:
        _positive("model", "width", self.width, allow_zero=True)
        _positive("model", "width_multiplier", self.width_multiplier)
        _positive("model", "depth", self.depth, allow_zero=True)
        _choice("model", "norm", self.norm, ("default", "instance", "batch", "none"))
        _choice("model", "pooling", self.pooling, ("default", "avg", "max", "none"))
        check_options(self.name, self.set_options())
        # a built-in model's own defaults are filled in, so that a saved config names what was built (and the
        # default convnet's section reads width=32, depth=3, norm=instance, pooling=avg, as it always has)
        fields = ModelConfig.__dataclass_fields__
        for key, value in model_defaults(self.name).items():
            if getattr(self, key) == fields[key].default:
                setattr(self, key, value)

    def set_options(self) -> dict[str, Any]:
        """The options that differ from the field defaults (0 / 'default' / 1): what the model's builder receives."""
        defaults = ModelConfig.__dataclass_fields__
        return {f: getattr(self, f) for f in ("width", "depth", "norm", "pooling", "width_multiplier")
                if getattr(self, f) != defaults[f].default}


@dataclass(kw_only=True)
class MemoryConfig:
    """What is learned: addressable memories (bases + addressing) or plain pixels, at a storage budget."""

    kind: str = "addressable"
    """'addressable' (K shared bases mixed by learned addressing) or 'pixel' (plain images)."""
    ipc: float = 1.0
    """Storage budget in images per class; addressable memories choose r images per class to fit it."""
    num_bases: int = 16
    """K, the number of shared bases."""
    downsample: int = 2
    """Addressable memories: bases are stored at 1/downsample resolution and upsampled when recalled."""
    pixel_downsample: int = 1
    """Pixel memories: images are stored at 1/pixel_downsample resolution and upsampled when recalled, so a
    memory holds floor(ipc * pixel_downsample**2) images per class and fits every class below 1 IPC (a key of its
    own: configs written before it record downsample=2 for pixel runs, which stored full-resolution images)."""
    init: str = "auto"
    """'auto' (the default): 'pca' for addressable memories, 'real' for pixel memories (resolved when the config is
    built, so config.json and results.json record which). 'real' (bases from K random real images, one-hot
    addressing: slots start as copies of those K images),
    'real_project' (the same bases, every slot the least-squares projection of its own real image), 'pca'
    (bases = the training mean + K-1 principal components, every slot projected from its own real image; see
    rtp_scale/memory/init.py) or 'noise'. Pixel memories: 'real' or 'noise'."""
    coeff_l2: float = 1e-4
    """Weight of ``mean(a**2)`` over the addressing coefficients a, added to the meta-loss (RtP reference: 1e-4).
    Being a mean, each coefficient's gradient is ``2 * coeff_l2 * a / a.numel()``: at 1e-4 and the default's
    4,640 coefficients that is ~4e-8 * a against meta-gradient norms of ~0.2, so at this weight the knob is
    effectively off (the reference adds the same term to its inner loss, where it never reaches the gradient)."""
    learn_labels: bool = False
    """Learn a soft label per synthetic image (FRePo; pixel memories only). Learned labels count as storage."""
    query_mix: float = 0.0
    """RtP only: probability that a class's one-hot query is replaced, per unroll, by a mixed query
    (1-l) e_c + l e_p (p another class, l ~ U(0, 0.5)); its recalled images train with that soft label. 0 = off."""

    def __post_init__(self) -> None:
        _choice("memory", "kind", self.kind, ("addressable", "pixel"))
        if self.init == "auto":  # chosen on the validation split for addressable memories (README, Results)
            self.init = "pca" if self.kind == "addressable" else "real"
        if not 0.0 <= self.query_mix <= 1.0:
            raise UserError(f"memory.query_mix={self.query_mix!r} must be in [0, 1]")
        _positive("memory", "ipc", self.ipc)
        _positive("memory", "num_bases", self.num_bases)
        _positive("memory", "downsample", self.downsample)
        _positive("memory", "pixel_downsample", self.pixel_downsample)
        _choice("memory", "init", self.init, ("real", "real_project", "pca", "noise"))
        if self.kind == "pixel" and self.init not in ("real", "noise"):
            raise UserError(f"memory.init={self.init} is for addressable memories; pixel memories start 'real' "
                            f"or 'noise'")
        _positive("memory", "coeff_l2", self.coeff_l2, allow_zero=True)
        if self.kind == "pixel" and self.pixel_downsample == 1 and self.ipc != int(self.ipc):
            raise UserError(f"memory.ipc={self.ipc} must be a whole number of images for memory.kind=pixel at full "
                            f"resolution; set memory.pixel_downsample > 1 to store smaller images")


@dataclass(kw_only=True)
class InnerConfig:
    """The inner optimisation unrolled in every outer step."""

    steps: int = 60
    """T, inner SGD steps per unroll (RtP: 100-200)."""
    lr: float = 0.01
    """Inner learning rate (initial value when learned)."""
    momentum: float = 0.9
    """Inner SGD momentum."""
    weight_decay: float = 0.0
    """Inner SGD weight decay."""
    batch_per_class: int = 5
    """Synthetic images per class in each inner step's minibatch (RtP: 10 plain, 32 with addressing)."""
    learn_lr: bool = False
    """Learn one learning rate per inner step (as in the original Dataset Distillation)."""

    def __post_init__(self) -> None:
        _positive("inner", "steps", self.steps)
        _positive("inner", "lr", self.lr)
        if not 0 <= self.momentum < 1:
            raise UserError(f"inner.momentum={self.momentum} must be in [0, 1)")
        _positive("inner", "weight_decay", self.weight_decay, allow_zero=True)
        _positive("inner", "batch_per_class", self.batch_per_class)


@dataclass(kw_only=True)
class UnrollConfig:
    """How the meta-gradient is taken through the unroll (see rtp_scale.unroll)."""

    mode: str = "segmented"
    """'full' (keep the whole graph), 'segmented' (exact, recompute segments) or 'truncated' (RaT-BPTT window)."""
    segment: int = 0
    """Steps per segment; 0 = ceil(sqrt(T))."""
    window: int = 0
    """Differentiated steps in 'truncated' mode (the unroll length is drawn in [window, T])."""
    offload: bool = False
    """Keep segment-boundary states in host memory."""
    outer_chunk: int = 128
    """Real images per part of the meta-loss's gradient in segmented/truncated modes: parts are differentiated
    one at a time, so only one part's activations are alive (0 = the whole real batch at once)."""
    memory_budget_mb: float = 0.0
    """Segmented mode only; 0 = off. MiB of autograd's saved tensors (the unroll's graphs, not the process's
    resident memory) the unroll may hold: the last steps that fit keep their forward-pass graph instead of being
    recomputed, up to the whole unroll (= full mode). Same exact gradient; a budget too small for one segment is
    refused (see rtp_scale.unroll.policy)."""
    precision: str = "fp32"
    """'fp32'; 'bf16': the inner and outer losses under bfloat16 autocast, with the state, the update and the
    gradients in float32; 'bf16_reverse' (segmented/truncated modes): the forward pass in float32 (the trajectory
    is float32's) and only the reverse pass's recomputed segments and the outer loss in bfloat16. Faster only where
    bfloat16 is native (CUDA tensor cores, CPU AMX/AVX512-BF16). Both are approximations: 'bf16' drifts from
    float32's meta-gradient on long unrolls, 'bf16_reverse' far less (rtp_scale/unroll/precision.py)."""

    def __post_init__(self) -> None:
        _choice("unroll", "mode", self.mode, ("full", "segmented", "truncated"))
        _positive("unroll", "segment", self.segment, allow_zero=True)
        _positive("unroll", "window", self.window, allow_zero=True)
        _positive("unroll", "outer_chunk", self.outer_chunk, allow_zero=True)
        _positive("unroll", "memory_budget_mb", self.memory_budget_mb, allow_zero=True)
        _choice("unroll", "precision", self.precision, ("fp32", "bf16", "bf16_reverse"))
        if self.memory_budget_mb > 0 and self.mode != "segmented":
            raise UserError(f"unroll.memory_budget_mb needs unroll.mode=segmented (mode is {self.mode!r}); "
                            f"set unroll.memory_budget_mb=0")
        if self.precision == "bf16_reverse" and self.mode == "full":
            raise UserError("unroll.precision=bf16_reverse needs unroll.mode=segmented or truncated (full mode "
                            "recomputes nothing); use unroll.precision=bf16 with full mode")


@dataclass(kw_only=True)
class MetaConfig:
    """The outer (meta) optimiser that updates the memory."""

    steps: int = 30
    """Outer steps (0: no distillation, evaluate the initial memory -- the baseline a distillation must beat).
    May change on resume to extend a run, under the constant schedule (see rtp_scale.run_identity)."""
    optimizer: str = "adam"
    """'sgd' (RtP: lr 0.1, momentum 0.5), 'adam' or 'lamb' (FRePo: lr 3e-4 with cosine decay)."""
    lr: float = 0.004
    """Outer learning rate. May change on resume (with grad_clip and lr_lr): after a divergence, lower it and rerun
    the same command; the change is named on resume and in results.json."""
    momentum: float = 0.5
    """Outer SGD momentum (ignored by adam)."""
    grad_clip: float = 2.0
    """Clip the meta-gradient's global norm (0 = off); learned inner lrs' gradient is clipped to it on its own."""
    lr_lr: float = 1e-3
    """Outer learning rate of learned inner learning rates."""
    schedule: str = "constant"
    """Outer lr schedule: 'constant' or 'cosine' (from lr down to lr_floor * lr over meta.steps, as FRePo)."""
    lr_floor: float = 0.1
    """Final fraction of meta.lr under the cosine schedule (FRePo: 0.1)."""

    def __post_init__(self) -> None:
        _positive("meta", "steps", self.steps, allow_zero=True)
        _choice("meta", "optimizer", self.optimizer, ("sgd", "adam", "lamb"))
        _choice("meta", "schedule", self.schedule, ("constant", "cosine"))
        if not 0 <= self.lr_floor <= 1:
            raise UserError(f"meta.lr_floor={self.lr_floor} must be in [0, 1]")
        _positive("meta", "lr", self.lr)
        _positive("meta", "grad_clip", self.grad_clip, allow_zero=True)
        _positive("meta", "lr_lr", self.lr_lr)


@dataclass(kw_only=True)
class MethodConfig:
    """Which distillation method computes the meta-loss."""

    name: str = "rtp"
    """'rtp' (BPTT through a long momentum unroll), 'frepo' (kernel ridge regression on the features of a
    model pool; settings in [frepo]) or 'dd' (original Dataset Distillation: BPTT through plain GD with a learned
    lr per step; settings in [dd]; sets inner.momentum=0 and inner.learn_lr=true), or ``package.module:Class``,
    a method of your own (the protocol is in rtp_scale.methods; the module is imported now, to check it)."""

    def __post_init__(self) -> None:
        check_method_name(self.name)


@dataclass(kw_only=True)
class FrepoConfig:
    """FRePo (Zhou et al., NeurIPS 2022): used only with method.name=frepo. Defaults are the paper's."""

    pool_size: int = 10
    """Models in the pool; one, drawn from (seed, outer step), gives the features of each outer step."""
    max_age: int = 100
    """A pool model that has taken this many training steps is re-initialised instead of trained."""
    train_steps: int = 1
    """Training steps on the synthetic set for the step's pool model after each outer step (0 = never trained)."""
    train_optimizer: str = "adam"
    """Optimiser of the pool models: 'adam' (FRePo) or 'sgd' (momentum 0.9)."""
    train_lr: float = 3e-4
    """Learning rate of the pool models (FRePo: Adam 3e-4)."""
    train_batch: int = 500
    """Synthetic images per pool-model step (all of them when fewer; FRePo: 500)."""
    reg: float = 1e-6
    """Kernel ridge regulariser relative to the Gram matrix: lambda = reg * trace(K_ss) / n (FRePo: 1e-6)."""
    label_margin: float = 1.0
    """Weight of FRePo's label-margin term -min(top1 - top2, 1/C) on learned labels (0 = off)."""

    def __post_init__(self) -> None:
        _positive("frepo", "pool_size", self.pool_size)
        _positive("frepo", "max_age", self.max_age)
        _positive("frepo", "train_steps", self.train_steps, allow_zero=True)
        _choice("frepo", "train_optimizer", self.train_optimizer, ("adam", "sgd"))
        _positive("frepo", "train_lr", self.train_lr)
        _positive("frepo", "train_batch", self.train_batch)
        _positive("frepo", "reg", self.reg)
        _positive("frepo", "label_margin", self.label_margin, allow_zero=True)


@dataclass(kw_only=True)
class DDConfig:
    """Dataset Distillation (Wang et al., 2018): used only with method.name=dd.

    The unroll is inner.steps = T plain GD steps, each with its own learned lr (one per step per epoch, as in
    the paper). They form dd.epochs passes over S = ceil(T / epochs) steps; step t trains on the (t mod S)-th
    fixed group of every class's images, so every epoch sees the same images in the same order.
    """

    epochs: int = 3
    """Passes over the inner steps (DD: 3)."""
    init: str = "random"
    """'random' (a fresh network every outer step) or 'fixed' (the same init, from (seed, 'dd-fixed-init'))."""

    def __post_init__(self) -> None:
        _positive("dd", "epochs", self.epochs)
        _choice("dd", "init", self.init, ("random", "fixed"))


EVAL_PROTOCOLS: dict[str, dict[str, Any]] = {
    "default": {},
    "rtp_paper": {"num_nets": 10, "epochs": 300, "lr": 0.01, "momentum": 0.9, "weight_decay": 0.0, "batch_size": 640,
                  "schedule": "constant"},
}
"""``eval.protocol`` presets: the ``eval`` keys each one sets unless the recipe or ``--set`` gives them."""


@dataclass(kw_only=True)
class EvalConfig:
    """The evaluation protocol: train fresh networks from scratch on the synthetic set, report test accuracy."""

    num_nets: int = 5
    """Fresh networks per evaluation (RtP: 10, others 5); mean ± std over them."""
    epochs: int = 300
    """Epochs over the synthetic set (RtP: 300)."""
    full_epochs: int = 20
    """Epochs for the full-training-set baseline (it is hundreds of times larger than a synthetic set)."""
    lr: float = 0.01
    """SGD learning rate (RtP: 0.01)."""
    momentum: float = 0.9
    """SGD momentum."""
    weight_decay: float = 5e-4
    """SGD weight decay."""
    batch_size: int = 256
    """Training minibatch."""
    micro_batch: int = 32
    """Images per forward/backward inside one SGD step (0 = the whole minibatch at once). The step's gradient is
    the sum of the pieces' gradients: the same as the whole minibatch's up to float summation order, for any
    network whose layers see one image at a time (a network with batch norm always takes the whole minibatch).
    On a 2-core CPU, ``python -m rtp_scale.evaluate`` trains 1.35-1.55x faster in pieces of 32-64 than with whole
    256-image batches (python -m rtp_scale.bench eval); inside distill's process, after the unroll, both ran at
    the same speed."""
    schedule: str = "step"
    """'step' (lr x0.1 at half the epochs, as in DC/DSA/RtP evaluation), 'cosine' or 'constant'."""
    augment: str = "same"
    """Augmentation during evaluation training: 'same' as data.augment, 'none', or an op list."""
    every: int = 0
    """Evaluate the starting memory and then every this many outer steps during distillation (0 = only at the
    end). The start's accuracy goes into results.json (``start_accuracy``) and the final line says the gain."""
    scores: bool = False
    """Also score the final evaluation against random real images of the same storage (rtp_scale.eval.scores;
    2-4x the evaluation time, so off here; python -m rtp_scale.evaluate scores unless --no-scores)."""
    protocol: str = "default"
    """A named protocol that fills in every ``eval`` key the recipe and ``--set`` leave unset (keys given
    explicitly win): 'default' (the values above, as DC/DSA evaluate) or 'rtp_paper' (the Remember-the-Past
    reference: 10 nets, constant lr 0.01, batch 640, no weight decay, 300 epochs). See ``EVAL_PROTOCOLS``."""

    def __post_init__(self) -> None:
        _choice("eval", "protocol", self.protocol, tuple(EVAL_PROTOCOLS))
        _positive("eval", "num_nets", self.num_nets)
        _positive("eval", "epochs", self.epochs)
        _positive("eval", "full_epochs", self.full_epochs)
        _positive("eval", "lr", self.lr)
        _positive("eval", "batch_size", self.batch_size)
        _positive("eval", "micro_batch", self.micro_batch, allow_zero=True)
        _positive("eval", "every", self.every, allow_zero=True)
        _choice("eval", "schedule", self.schedule, ("step", "cosine", "constant"))
        if self.augment != "same":
            _check_augment("eval", "augment", self.augment)


@dataclass(kw_only=True)
class DistConfig:
    """How the work of one outer step is spread over processes."""

    meta_batch: int = 1
    """Unrolls per outer step (each its own network init, real batch and augmentation draw)."""
    inner_shards: int = 1
    """Processes that share one unroll by splitting its synthetic minibatch."""
    batch_unrolls: bool = False
    """Run a process's unrolls of one outer step (``meta_batch`` / replicas of them) as one unroll of that many
    stacked networks (``torch.func.vmap``) instead of one after another: the same meta-gradient up to float
    rounding (checked in float64), in fewer, larger kernels. RtP only, with every unroll of the same length
    (not ``unroll.mode=truncated``) and one recall shared by all (``memory.query_mix=0``)."""

    def __post_init__(self) -> None:
        _positive("dist", "meta_batch", self.meta_batch)
        _positive("dist", "inner_shards", self.inner_shards)


@dataclass(kw_only=True)
class LogConfig:
    """What is logged, where and how often."""

    tensorboard: bool = True
    """Write TensorBoard events to <out_dir>/tb."""
    every: int = 1
    """Scalars every this many outer steps."""
    image_every: int = 50
    """Grid of recalled images every this many outer steps (0 = off)."""
    progress: bool = True
    """Show progress: a bar on a terminal; in a log file (Slurm, a redirect) a plain line at most every
    $RTP_PROGRESS_INTERVAL seconds (default 30), plus the first and the last (rtp_scale/logging/progress.py)."""

    def __post_init__(self) -> None:
        _positive("log", "every", self.every)
        _positive("log", "image_every", self.image_every, allow_zero=True)


@dataclass(kw_only=True)
class CheckpointConfig:
    """Atomic, verified checkpoints of memory, optimisers, step and metrics (random state is derived, not saved)."""

    every: int = 25
    """Checkpoint every this many outer steps (0 = only at the end). State k is written during step k, once the
    meta-loss and gradients computed from it proved finite, so a diverging state is never kept."""
    resume: bool = True
    """Continue from <out_dir>/checkpoint.pt when it exists; false (``--fresh``): first move the previous run's
    outputs to <out_dir>/previous/<n>/ (n = 1, 2, ...), so two runs never mix."""

    def __post_init__(self) -> None:
        _positive("checkpoint", "every", self.every, allow_zero=True)


@dataclass(kw_only=True)
class Config:
    """A whole run. Cross-section checks live here."""

    recipe: RecipeConfig = field(default_factory=RecipeConfig)
    run: RunConfig = field(default_factory=RunConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    inner: InnerConfig = field(default_factory=InnerConfig)
    unroll: UnrollConfig = field(default_factory=UnrollConfig)
    meta: MetaConfig = field(default_factory=MetaConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    frepo: FrepoConfig = field(default_factory=FrepoConfig)
    dd: DDConfig = field(default_factory=DDConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    dist: DistConfig = field(default_factory=DistConfig)
    log: LogConfig = field(default_factory=LogConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)

    def __post_init__(self) -> None:
        steps = self.inner.steps
        if self.unroll.segment > steps:
            raise UserError(f"unroll.segment={self.unroll.segment} is larger than inner.steps={steps}")
        if self.unroll.mode == "truncated":
            if self.unroll.window <= 0:
                raise UserError("unroll.window must be > 0 when unroll.mode=truncated")
            if self.unroll.window > steps:
                raise UserError(f"unroll.window={self.unroll.window} is larger than inner.steps={steps}")
        elif self.unroll.window:
            raise UserError(f"unroll.window is only used with unroll.mode=truncated (mode is {self.unroll.mode!r})")
        if self.unroll.offload and self.unroll.mode == "full":
            raise UserError("unroll.offload needs unroll.mode=segmented or truncated (full mode keeps no boundary states)")
        self._check_method()
        self._check_batched_unrolls()

    def _check_batched_unrolls(self) -> None:
        if not self.dist.batch_unrolls:
            return
        # each refusal names the setting that makes the unrolls of one step differ in shape
        if self.method.name != "rtp":
            raise UserError(f"dist.batch_unrolls=true batches RtP unrolls; method.name={self.method.name} runs its "
                            f"unrolls one by one (set dist.batch_unrolls=false)")
        if self.unroll.mode == "truncated":
            raise UserError("dist.batch_unrolls=true needs unrolls of one length; unroll.mode=truncated draws a "
                            "length per unroll (use segmented or full mode, or dist.batch_unrolls=false)")
        if self.memory.query_mix > 0:
            raise UserError("dist.batch_unrolls=true needs one recall shared by the unrolls; memory.query_mix > 0 "
                            "recalls per unroll (set memory.query_mix=0 or dist.batch_unrolls=false)")

    def _check_method(self) -> None:
        method = self.method.name
        if self.memory.learn_labels and self.memory.kind != "pixel":
            raise UserError("memory.learn_labels=true needs memory.kind=pixel (addressable memories recall with "
                            "fixed one-hot labels)")
        if self.memory.learn_labels and not uses_learned_labels(method):
            raise UserError(f"memory.learn_labels=true is only used by method.name=frepo ({method} trains on hard "
                            f"labels); set memory.learn_labels=false")
        if method == "frepo" and self.inner.learn_lr:
            raise UserError("inner.learn_lr=true is not used by method.name=frepo (it has no inner loop)")
        if method == "dd":
            # DD's inner loop is plain gradient descent with one learned lr per step, by definition
            self.inner.momentum, self.inner.learn_lr = 0.0, True

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return dataclasses.asdict(self)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n")


def _section_types() -> dict[str, dict[str, type]]:
    hints = typing.get_type_hints(Config)
    return {name: typing.get_type_hints(hints[name]) for name in hints}


_TYPES = _section_types()


def _coerce(key: str, raw: Any, kind: type) -> Any:
    """Turn a TOML value or an override string into the declared type, or explain why not."""
    if isinstance(raw, str) and kind is not str:
        text = raw.strip()
        try:
            if kind is bool:
                lowered = text.lower()
                if lowered not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError
                return lowered in ("true", "1", "yes")
            if kind is int:
                return int(text)
            if kind is float:
                return float(text)
        except ValueError:
            raise UserError(f"{key}={raw!r} is not a valid {kind.__name__}") from None
    if kind is float and isinstance(raw, int) and not isinstance(raw, bool):
        return float(raw)
    type_ok = isinstance(raw, bool) if kind is bool else isinstance(raw, kind) and not isinstance(raw, bool)
    if not type_ok:
        raise UserError(f"{key}={raw!r} is not a valid {kind.__name__}")
    return raw


def _apply(values: dict[str, dict[str, Any]], section: str, key: str, raw: Any, origin: str) -> None:
    if section not in _TYPES:
        raise UserError(f"unknown config section {section!r} in {origin}; sections: {', '.join(_TYPES)}")
    if key not in _TYPES[section]:
        raise UserError(f"unknown config key '{section}.{key}' in {origin}; {section} has: {', '.join(_TYPES[section])}")
    values[section][key] = _coerce(f"{section}.{key}", raw, _TYPES[section][key])


def parse_override(text: str) -> tuple[str, str, str]:
    """Split ``section.key=value``."""
    name, sep, value = text.partition("=")
    section, dot, key = name.strip().partition(".")
    if not sep or not dot or not section or not key:
        raise UserError(f"override {text!r} must look like section.key=value (e.g. inner.steps=50)")
    return section, key, value


def read_recipe(path: str | Path) -> dict[str, Any]:
    """The tables of a TOML recipe, or of a saved config.json."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file not found: {path}")
    try:
        if path.suffix == ".json":
            return json.loads(path.read_text())
        return tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"cannot parse config file {path}: {err}") from None


def build_config(recipe: dict[str, Any] | None = None, overrides: list[str] | None = None,
                 *, origin: str = "recipe") -> Config:
    """Defaults <- recipe tables <- ``section.key=value`` overrides, validated."""
    values: dict[str, dict[str, Any]] = {name: {} for name in _TYPES}
    for section, table in (recipe or {}).items():
        if not isinstance(table, dict):
            raise UserError(f"{origin}: top-level key {section!r} must be a table like [{section}]")
        for key, raw in table.items():
            _apply(values, section, key, raw, origin)
    for text in overrides or []:
        section, key, raw = parse_override(text)
        _apply(values, section, key, raw, "--set")
    for key, value in EVAL_PROTOCOLS.get(values["eval"].get("protocol", "default"), {}).items():
        values["eval"].setdefault(key, value)  # a protocol fills what was not given; a bad name fails below
    hints = typing.get_type_hints(Config)
    sections = {name: hints[name](**values[name]) for name in _TYPES}
    return Config(**sections)


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """The config of a run: an optional recipe file plus overrides."""
    recipe = read_recipe(path) if path else None
    return build_config(recipe, overrides, origin=str(path) if path else "recipe")
