"""LightningDataModules that ``conf/data`` selects; batches are dicts with ``x``, ``y`` and, where known, ``probs``."""

from xent_plugin.app.data.breast_cancer import BreastCancerDataModule
from xent_plugin.app.data.digits import DigitsDataModule
from xent_plugin.app.data.markov import MarkovDataModule
from xent_plugin.app.data.synthetic import SyntheticDataModule

__all__ = ["BreastCancerDataModule", "DigitsDataModule", "MarkovDataModule", "SyntheticDataModule"]
