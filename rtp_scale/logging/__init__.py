"""Rank-0 logging: TensorBoard scalars and image grids on the main process, a null writer elsewhere; progress
as a bar on a terminal and as sparse plain lines in a log file (:mod:`rtp_scale.logging.progress`).

Scalar names are stable (``meta/loss``, ``meta/grad_norm``, ``inner/loss_first``, ``inner/loss_last``,
``eval/acc_mean``, ``sys/step_time``, ``sys/cpu_time``, ``sys/peak_mem``) with the outer step as x-axis.
"""
from rtp_scale.logging.progress import PlainProgress, open_progress
from rtp_scale.logging.writer import MetricWriter, NullWriter, TensorBoardWriter, open_writer, read_metrics

__all__ = ["MetricWriter", "NullWriter", "PlainProgress", "TensorBoardWriter", "open_progress", "open_writer",
           "read_metrics"]
