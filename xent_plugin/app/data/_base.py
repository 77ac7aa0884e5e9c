"""Shared plumbing for the in-memory datamodules: argument checks, the seeded split and the loaders."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from xent_plugin.app.data._datasets import TensorDictDataset
from xent_plugin.app.data._random import seeded_rng
from xent_plugin.app.data._splits import check_split_fractions, split_indices
from xent_plugin.functional._validation import check_int


class InMemoryDataModule(pl.LightningDataModule):
    """Builds every row once, splits them with ``seed`` and serves dict batches.

    Subclasses implement ``build_columns`` (all rows, as named tensors) and may override ``preprocess_splits``
    (for statistics that must come from the training split only) and ``make_dataset``.
    """

    task: str = "multiclass"
    num_classes: int

    def __init__(
        self,
        batch_size: int = 64,
        seed: int = 0,
        num_workers: int = 0,
        val_fraction: float = 0.2,
        test_fraction: float = 0.2,
    ) -> None:
        super().__init__()
        check_int("batch_size", batch_size, minimum=1)
        check_int("seed", seed, minimum=0)
        check_int("num_workers", num_workers, minimum=0)
        check_split_fractions(val_fraction, test_fraction)
        self.batch_size = batch_size
        self.seed = seed
        self.num_workers = num_workers
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        # Collects the subclass's constructor arguments too, so loggers record the whole data configuration.
        self.save_hyperparameters()
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.test_set: Dataset | None = None

    def build_columns(self) -> dict[str, Tensor]:
        raise NotImplementedError

    def preprocess_splits(
        self, train: dict[str, Tensor], val: dict[str, Tensor], test: dict[str, Tensor]
    ) -> tuple[dict[str, Tensor], dict[str, Tensor], dict[str, Tensor]]:
        return train, val, test

    def make_dataset(self, columns: dict[str, Tensor]) -> Dataset:
        return TensorDictDataset(columns)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        columns = self.build_columns()
        n_rows = len(next(iter(columns.values())))
        indices = split_indices(n_rows, self.val_fraction, self.test_fraction, seeded_rng(self.seed, "split"))
        splits = [{name: column[torch.from_numpy(rows)] for name, column in columns.items()} for rows in indices]
        self.train_set, self.val_set, self.test_set = (
            self.make_dataset(split) for split in self.preprocess_splits(*splits)
        )

    def train_dataloader(self) -> DataLoader:
        self.setup()
        return self._loader(self.train_set, generator=torch.Generator().manual_seed(self.seed))

    def val_dataloader(self) -> DataLoader:
        self.setup()
        return self._loader(self.val_set)

    def test_dataloader(self) -> DataLoader:
        self.setup()
        return self._loader(self.test_set)

    def _loader(self, dataset: Dataset, generator: torch.Generator | None = None) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=generator is not None,
            generator=generator,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )
