"""Budget sweep: RtP addressable memories at 1, 10 and 50 images per class of storage, per dataset.

One member per (dataset, IPC, seed) = 6 x 3 x 3 = 54 jobs in ONE Slurm job array. Each member uses the
tuned per-budget recipe ``configs/rtp/<dataset>_ipc<IPC>.toml`` (their [recipe] tables state hardware and
the paper's accuracy). Datasets other than the offline ones are read from ``data.root`` (default ``data/``,
torchvision format); pass e.g. ``--set data.root=/datasets`` to point elsewhere.

Hardware: 1 GPU with >= 40 GB per member (A100/H100), about a day each at the recipes' meta.steps; jobs
that hit the time limit checkpoint and requeue themselves (up to 3 times), so a shorter --time also works.

    python -m launch.sweep configs/sweeps/budget.py --dry-run
    python -m launch.sweep configs/sweeps/budget.py --partition gpu --array-parallelism 8
    python -m launch.collect runs/sweeps/budget --plot

Expected (paper, ConvNet, % test accuracy, IPC 1/10/50): MNIST 98.7/99.3/99.4, CIFAR-10 66.4/71.2/73.6,
CIFAR-100 34.0/42.9/-.
"""
DATASETS = ["mnist", "fashion_mnist", "svhn", "cifar10", "cifar100", "tiny_imagenet"]
BUDGETS = [1, 10, 50]

NAME = "budget"
DESCRIPTION = "RtP memories at IPC 1/10/50 on MNIST, Fashion-MNIST, SVHN, CIFAR-10/100, Tiny-ImageNet; 3 seeds"
GRID = {"recipe": [f"configs/rtp/{dataset}_ipc{ipc}.toml" for dataset in DATASETS for ipc in BUDGETS]}
SEEDS = [0, 1, 2]
RESOURCES = {"timeout_min": 24 * 60, "gpus_per_node": 1, "cpus_per_task": 8, "mem_gb": 64, "array_parallelism": 8,
             "signal_delay_s": 300}
