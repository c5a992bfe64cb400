"""Mini-batches by index: a permutation per epoch, DistributedSampler's sharding, resumable."""

import pytest
import torch
from torch.utils.data import DistributedSampler

from initlab.data.batches import IndexSampler, TensorBatches


def batches(x, y, batch_size, **kw):
    return TensorBatches(x, y, IndexSampler(len(x), batch_size, **kw))


def labels(loader):
    return [b[1].tolist() for b in loader]


def test_batches_depend_on_the_seed_only():
    x, y = torch.arange(100.0).unsqueeze(1), torch.arange(100)
    first = labels(batches(x, y, 10, shuffle=True, seed=3))
    again = labels(batches(x, y, 10, shuffle=True, seed=3))
    other = labels(batches(x, y, 10, shuffle=True, seed=4))
    assert first == again and first != other
    assert sorted(sum(first, [])) == list(range(100))  # an epoch is a permutation


def test_set_epoch_reshuffles_and_drop_last_drops():
    x, y = torch.zeros(105, 1), torch.arange(105)
    loader = batches(x, y, 10, shuffle=True, seed=0, drop_last=True)
    e1 = labels(loader)
    assert labels(loader) == e1  # the same epoch again: the same order
    loader.sampler.set_epoch(1)
    e2 = labels(loader)
    assert len(loader) == len(e1) == len(e2) == 10 and e1 != e2


def test_full_batch_and_steps_per_epoch():
    x, y = torch.randn(300, 2), torch.randint(2, (300,))
    out = list(batches(x, y, None, steps_per_epoch=500))
    assert len(out) == 500 and all(b[0] is x for b in out)


def test_replacement_draws_fixed_count_batches():
    x, y = torch.zeros(50, 1), torch.arange(50)
    out = list(batches(x, y, 128, replacement=True, steps_per_epoch=7, seed=0))
    assert len(out) == 7 and all(len(b[1]) == 128 for b in out)


@pytest.mark.parametrize("n,world", [(100, 2), (105, 2), (105, 4), (7, 3)])
def test_ranks_take_disjoint_shares_sized_as_a_distributed_sampler(n, world):
    x, y = torch.zeros(n, 1), torch.arange(n)
    shares = [sum(labels(batches(x, y, 10, shuffle=True, seed=0, rank=r, world_size=world)), [])
              for r in range(world)]
    expected = len(DistributedSampler(range(n), num_replicas=world, rank=0))
    assert [len(share) for share in shares] == [expected] * world
    assert set().union(*shares) == set(range(n))  # the union is the whole training set
    seen = [i for share in shares for i in share]
    assert len(seen) - len(set(seen)) == expected * world - n  # only the wrap-around padding
    for drop_last in (False, True):
        sampler = IndexSampler(n, 10, rank=0, world_size=world, drop_last=drop_last)
        assert sampler.per_rank == len(DistributedSampler(range(n), num_replicas=world, rank=0,
                                                          drop_last=drop_last))


def test_a_loader_resumes_mid_epoch_from_its_state():
    x, y = torch.zeros(100, 1), torch.arange(100)
    loader = batches(x, y, 10, shuffle=True, seed=5)
    loader.sampler.set_epoch(2)
    full = labels(loader)
    it = iter(loader)
    [next(it) for _ in range(4)]
    state = loader.state_dict()
    assert state == {"epoch": 2, "served": 4}
    fresh = batches(x, y, 10, shuffle=True, seed=5)
    fresh.load_state_dict(state)
    fresh.sampler.set_epoch(2)
    assert labels(fresh) == full[4:]
    assert labels(fresh) == full  # the skip applies to the resumed epoch only
