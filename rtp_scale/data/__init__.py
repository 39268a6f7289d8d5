"""Datasets held in memory, class-balanced real-batch sampling, differentiable augmentation, ZCA.

Importing this package is cheap: torchvision / PIL / mlxtend / scikit-learn are imported only by the
loader that needs them.
"""
from rtp_scale.data.augment import OPS, AugmentDraw, Augmenter
from rtp_scale.data.registry import DATASETS, dataset_names, load_dataset
from rtp_scale.data.sampler import ClassBalancedSampler, random_subset_per_class
from rtp_scale.data.split import DatasetInfo, SplitDataset
from rtp_scale.data.zca import ZCA

__all__ = [
    "DATASETS", "OPS", "ZCA", "AugmentDraw", "Augmenter", "ClassBalancedSampler", "DatasetInfo",
    "SplitDataset", "dataset_names", "load_dataset", "random_subset_per_class",
]
