"""The samplers of data-parallel training: ``DistributedSampler`` against PyTorch's (the same
indices per rank unshuffled, the same padding and dropping, the same lengths), and
``DistributedBatchSampler``, whose ranks' parts of a global batch put back together are exactly
that batch, in order, whatever the world size and however short the last batch."""
import numpy as np
import pytest

from tilegrad.utils.data import (BatchSampler, DistributedBatchSampler, DistributedSampler,
                                 RandomSampler, SequentialSampler)
from tilegrad.utils.data.distributed import share_range, shares

torch_data = pytest.importorskip("torch.utils.data")


@pytest.mark.parametrize("n", [1, 7, 13, 24])
@pytest.mark.parametrize("replicas", [1, 2, 3, 5])
@pytest.mark.parametrize("drop_last", [False, True])
def test_distributed_sampler_is_torchs_unshuffled(n, replicas, drop_last):
    data = list(range(n))
    for rank in range(replicas):
        ours = DistributedSampler(data, num_replicas=replicas, rank=rank, shuffle=False,
                                  drop_last=drop_last)
        theirs = torch_data.DistributedSampler(data, num_replicas=replicas, rank=rank,
                                               shuffle=False, drop_last=drop_last)
        assert list(ours) == list(theirs)
        assert len(ours) == len(theirs) == len(list(ours))


@pytest.mark.parametrize("n,replicas", [(13, 3), (24, 5), (2, 3)])
def test_distributed_sampler_shuffles_by_seed_and_epoch_alike_on_every_rank(n, replicas):
    def parts(epoch, seed=4):
        out = []
        for rank in range(replicas):
            s = DistributedSampler(range(n), num_replicas=replicas, rank=rank, seed=seed)
            s.set_epoch(epoch)
            out.append(list(s))
        return out
    def expected(epoch, seed=4):
        order = np.random.default_rng([seed, epoch]).permutation(n).tolist()
        padded = (order * replicas)[:len(first[0]) * replicas]
        return [padded[r::replicas] for r in range(replicas)]
    first = parts(0)
    assert set(sum(first, [])) == set(range(n))          # everything is seen
    for epoch, seed in ((0, 4), (1, 4), (0, 5)):
        assert parts(epoch, seed) == expected(epoch, seed)


@pytest.mark.parametrize("n,batch,replicas", [(62, 20, 3), (7, 5, 2), (24, 8, 3), (5, 7, 4),
                                              (100, 1, 3)])
def test_batch_parts_put_together_are_the_global_batches(n, batch, replicas):
    order = RandomSampler(range(n), seed=2)
    whole = list(BatchSampler(order, batch, drop_last=False))
    parts = [list(DistributedBatchSampler(order, batch, num_replicas=replicas, rank=r))
             for r in range(replicas)]
    sampler = DistributedBatchSampler(order, batch, num_replicas=replicas, rank=0)
    assert all(len(p) == len(whole) == len(sampler) for p in parts)
    for i, global_batch in enumerate(whole):
        assert sum((p[i] for p in parts), []) == global_batch
        assert [len(p[i]) for p in parts] == shares(len(global_batch), replicas)
        assert sampler.global_batch_size(i) == len(global_batch)
    with pytest.raises(IndexError):
        sampler.global_batch_size(len(whole))


def test_batch_sampler_follows_the_epoch_and_drops_a_short_last_batch():
    order = RandomSampler(range(10), seed=1)
    s = DistributedBatchSampler(order, 4, drop_last=True, num_replicas=2, rank=1)
    s.set_epoch(3)
    want = np.random.default_rng([1, 3]).permutation(10).tolist()
    assert list(s) == [want[2:4], want[6:8]] and len(s) == 2
    assert list(DistributedBatchSampler(SequentialSampler(range(3)), 5, num_replicas=4,
                                        rank=3)) == [[]]      # an empty share


def test_shares():
    assert shares(7, 3) == [3, 2, 2] and shares(2, 3) == [1, 1, 0] and shares(0, 2) == [0, 0]
    assert [list(share_range(7, 3, r)) for r in range(3)] == [[0, 1, 2], [3, 4], [5, 6]]


def test_bad_arguments():
    with pytest.raises(ValueError, match="Invalid rank 3"):
        DistributedSampler(range(5), num_replicas=3, rank=3)
    with pytest.raises(RuntimeError, match="init_process_group"):
        DistributedSampler(range(5))
    with pytest.raises(TypeError, match="rank must be an int"):
        DistributedBatchSampler(range(5), 2, num_replicas=2, rank="0")
    with pytest.raises(ValueError, match="batch_size"):
        DistributedBatchSampler(range(5), 0, num_replicas=2, rank=0)
