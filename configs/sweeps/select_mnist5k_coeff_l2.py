"""Selection: does a working coefficient regulariser help the default job?

``memory.coeff_l2`` weighs ``mean(a**2)`` over the addressing coefficients in the meta-loss. At the reference's
1e-4 each coefficient's gradient is ~4e-8 * a (config.py's docstring), against meta-gradient entries of ~3e-3
(norm ~0.2 over 4,640 coefficients): the knob is off. These members raise it until the regulariser's gradient is
comparable to the meta-gradient (~10-100 for coefficients of ~0.3), with the default job's recipe otherwise
unchanged. Scored on the validation split (the last 50 training images per class), 5 networks, seed 0.

    OMP_NUM_THREADS=1 python -m launch.sweep configs/sweeps/select_mnist5k_coeff_l2.py --cluster local --cpus 1 --array-parallelism 2 --wait
    python -m launch.collect runs/sweeps/select_mnist5k_coeff_l2

Hardware: a 2-core CPU, two members side by side on one thread each, about 20 minutes per member.
"""
NAME = "select_mnist5k_coeff_l2"
DESCRIPTION = "mnist5k IPC 1, the default recipe at five coefficient-regulariser weights, validation split"
BASE = "configs/mnist5k_rtp_ipc1.toml"
GRID = {"variant": {f"l2_{label}": [f"memory.coeff_l2={value}"]
                    for label, value in (("0", 0.0), ("1e-4", 1e-4), ("1", 1.0), ("10", 10.0), ("100", 100.0))}}
SEEDS = [0]
OVERRIDES = ["data.val_per_class=50", "data.eval_split=val"]
RESOURCES = {"timeout_min": 90, "cpus_per_task": 1, "mem_gb": 4, "array_parallelism": 2}
