"""Evaluation protocol (N fresh networks, mean ± std) and the baselines reported beside every result."""
from rtp_scale.eval.baselines import full_data, random_real
from rtp_scale.eval.protocol import EvalResult, accuracy, build_net, evaluate_synthetic, train_fresh_net

__all__ = ["EvalResult", "accuracy", "build_net", "evaluate_synthetic", "full_data", "random_real", "train_fresh_net"]
