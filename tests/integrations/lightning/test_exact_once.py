import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from xent_plugin.integrations.lightning.exact_once import SampleBudget, real_samples_on_rank


@pytest.mark.parametrize("world_size", [2, 3, 4])
@pytest.mark.parametrize("n", [7, 13, 31])
@pytest.mark.parametrize("batch_size", [1, 3, 5])
def test_kept_rows_cover_each_sample_exactly_once(world_size, n, batch_size):
    data = TensorDataset(torch.arange(n))
    kept = []
    for rank in range(world_size):
        sampler = DistributedSampler(data, num_replicas=world_size, rank=rank, shuffle=True, seed=3)
        loader = DataLoader(data, sampler=sampler, batch_size=batch_size)
        budget = SampleBudget()
        budget.reset([loader])
        for (batch,) in loader:
            kept.extend(batch[: budget.rows_to_keep(0, len(batch))].tolist())
    assert sorted(kept) == list(range(n))


def test_loader_without_distributed_sampler_keeps_everything():
    loader = DataLoader(TensorDataset(torch.arange(5)), batch_size=2)
    assert real_samples_on_rank(loader) is None
    budget = SampleBudget()
    budget.reset(loader)
    assert [budget.rows_to_keep(0, 2) for _ in range(3)] == [2, 2, 2]


def test_drop_last_sampler_has_no_repeats_to_drop():
    data = TensorDataset(torch.arange(7))
    loader = DataLoader(data, sampler=DistributedSampler(data, num_replicas=2, rank=0, drop_last=True))
    assert real_samples_on_rank(loader) is None
