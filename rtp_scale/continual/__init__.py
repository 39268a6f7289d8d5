"""Continual learning by compress-then-recall (RtP, Deng & Russakovsky 2022, sec. 5): class-incremental
task streams, learners under one fixed storage budget, the benchmark loop and its report.

Entry point: ``python -m rtp_scale.continual`` (see rtp_scale/continual/__main__.py).
"""
from rtp_scale.continual.benchmark import BenchmarkOptions, forgetting, run_benchmark
from rtp_scale.continual.learners import (LEARNERS, Budget, CompressRecallLearner, PixelLearner, ReservoirLearner,
                                          TaskView)
from rtp_scale.continual.tasks import Task, load_stream, make_tasks

__all__ = ["LEARNERS", "BenchmarkOptions", "Budget", "CompressRecallLearner", "PixelLearner", "ReservoirLearner",
           "Task", "TaskView", "forgetting", "load_stream", "make_tasks", "run_benchmark"]
