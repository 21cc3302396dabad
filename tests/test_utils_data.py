"""tilegrad.utils.data against torch.utils.data where the result is deterministic (sequential
order, collated structures, dtypes and values, random_split lengths, BatchSampler, len(),
errors), and by its own rules where it is random: the order of epoch e is a function of
(seed, e), a seeded generator reproduces itself, and worker processes give the batches of the
main process.
"""
import collections
import doctest
import importlib
import math
import warnings

import numpy as np
import pytest

import tilegrad as tg
from helpers import torch
from tilegrad.testing import random_array
from tilegrad.utils import data as D

if torch is not None:
    import torch.utils.data as TD

Point = collections.namedtuple("Point", "x y")


def need_torch():
    if torch is None:
        pytest.skip("PyTorch is not installed")


def assert_same(ours, theirs):
    """A tilegrad batch equals torch's: the same structure, container types, shapes, dtypes and
    values."""
    if isinstance(theirs, torch.Tensor):
        assert isinstance(ours, tg.Tensor), type(ours)
        assert ours.shape == tuple(theirs.shape)
        assert str(ours.dtype) == str(theirs.dtype).removeprefix("torch.")
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    elif isinstance(theirs, (dict, list, tuple)):
        assert type(ours) is type(theirs) and len(ours) == len(theirs)
        pairs = ([(ours[k], theirs[k]) for k in theirs] if isinstance(theirs, dict)
                 else zip(ours, theirs))
        if isinstance(theirs, dict):
            assert list(ours) == list(theirs)
        for a, b in pairs:
            assert_same(a, b)
    else:
        assert ours == theirs and type(ours) is type(theirs)


class Records:
    """A map-style dataset of nested samples, not derived from Dataset (any object with
    __len__ and __getitem__ works). ``tensor`` makes the framework's tensors."""

    def __init__(self, n, tensor):
        self.n, self.tensor = n, tensor
        self.images = random_array((n, 3, 5), "float32", seed=1)
        self.labels = random_array((n,), "int64", seed=2)

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return (self.images[i],
                {"label": int(self.labels[i]), "weight": 0.5 + i, "ok": bool(i % 2),
                 "name": f"s{i}", "scalar": np.float32(i) / 3,
                 "parts": [self.tensor(self.images[i, 0]), Point(i, np.int64(i) * 2)]})


@pytest.mark.parametrize("batch_size,drop_last", [(3, False), (3, True), (1, False), (13, False)])
def test_sequential_batches_of_nested_samples_match_torch(batch_size, drop_last):
    need_torch()
    ours = D.DataLoader(Records(7, tg.tensor), batch_size=batch_size, drop_last=drop_last)
    theirs = TD.DataLoader(Records(7, torch.tensor), batch_size=batch_size, drop_last=drop_last)
    assert len(ours) == len(theirs)
    batches = list(ours)
    assert len(batches) == len(list(theirs)) == len(ours)
    for a, b in zip(batches, theirs):
        assert_same(a, b)


def test_no_batching_converts_each_sample_as_torch():
    need_torch()
    ours = list(D.DataLoader(Records(3, tg.tensor), batch_size=None))
    theirs = list(TD.DataLoader(Records(3, torch.tensor), batch_size=None))
    assert len(ours) == 3
    for a, b in zip(ours, theirs):
        assert_same(a, b)


def test_default_collate_of_tensors_keeps_the_graph():
    rows = [tg.tensor(random_array((4,), seed=s), requires_grad=True) for s in range(3)]
    batch = D.default_collate(rows)
    assert batch.shape == (3, 4) and batch.requires_grad
    (batch * batch).sum().backward()
    for r in rows:
        np.testing.assert_allclose(r.grad.numpy(), 2 * r.numpy())


@pytest.mark.parametrize("batch,error", [
    ([[1, 2], [3]], RuntimeError), ([{1, 2}, {3, 4}], TypeError),
    ([np.array(["a"]), np.array(["b"])], TypeError), ([object(), object()], TypeError)])
def test_collate_errors_match_torch(batch, error):
    need_torch()
    with pytest.raises(error) as theirs:
        TD.default_collate(batch)
    with pytest.raises(error) as ours:
        D.default_collate(batch)
    assert str(ours.value) == str(theirs.value)


@pytest.mark.parametrize("n,batch_size,drop_last", [(10, 3, False), (10, 3, True), (9, 3, True),
                                                    (2, 5, True), (7, 1, False)])
def test_batch_sampler_matches_torch(n, batch_size, drop_last):
    need_torch()
    ours = D.BatchSampler(D.SequentialSampler(range(n)), batch_size, drop_last)
    theirs = TD.BatchSampler(TD.SequentialSampler(range(n)), batch_size, drop_last)
    assert list(ours) == list(theirs) and len(ours) == len(theirs)


def torch_and_ours_raise(error, make):
    """``make(module)`` raises ``error`` with the same message for torch and tilegrad."""
    with pytest.raises(error) as theirs:
        make(TD)
    with pytest.raises(error) as ours:
        make(D)
    assert str(ours.value) == str(theirs.value)


class Stream(D.IterableDataset):
    """0..n-1, or the share of one worker (every num_workers-th item)."""

    def __init__(self, n):
        self.n = n

    def __iter__(self):
        info = D.get_worker_info()
        start, step = (0, 1) if info is None else (info.id, info.num_workers)
        return iter(range(start, self.n, step))

    def __len__(self):
        return self.n


class TorchStream(Stream, TD.IterableDataset if torch is not None else object):
    def __iter__(self):
        return iter(range(self.n))


@pytest.mark.parametrize("kwargs", [
    dict(shuffle=True, sampler=[0, 1]), dict(batch_size=2, batch_sampler=[[0, 1]]),
    dict(shuffle=True, batch_sampler=[[0, 1]]), dict(batch_size=None, drop_last=True),
    dict(num_workers=-1), dict(timeout=-1), dict(prefetch_factor=2),
    dict(persistent_workers=True), dict(iterable=True, shuffle=True),
    dict(iterable=True, sampler=[0, 1]), dict(iterable=True, batch_sampler=[[0, 1]])])
def test_invalid_loader_arguments_are_torch_errors(kwargs):
    need_torch()
    kwargs = dict(kwargs)
    iterable = kwargs.pop("iterable", False)

    def make(module):
        ds = (TorchStream if module is TD else Stream)(5) if iterable else list(range(5))
        module.DataLoader(ds, **kwargs)
    torch_and_ours_raise(ValueError, make)


@pytest.mark.parametrize("make,error", [
    (lambda m: m.BatchSampler(range(3), 0, False), ValueError),
    (lambda m: m.BatchSampler(range(3), 2, "no"), ValueError),
    (lambda m: m.RandomSampler(range(3), replacement=1), TypeError),
    (lambda m: m.RandomSampler(range(3), num_samples=0), ValueError),
    (lambda m: m.random_split(range(5), [2, 2]), ValueError),
    (lambda m: m.random_split(range(5), [0.5, 0.7, -0.2]), ValueError),
    (lambda m: m.ConcatDataset([range(3)])[-4], ValueError),
])
def test_invalid_sampler_and_dataset_arguments_are_torch_errors(make, error):
    need_torch()
    torch_and_ours_raise(error, make)


def test_loader_attributes_are_frozen_after_init():
    need_torch()

    def make(module):
        module.DataLoader(list(range(5))).batch_size = 3
    torch_and_ours_raise(ValueError, make)


@pytest.mark.parametrize("lengths", [[3, 4, 6], [0.3, 0.3, 0.4], [0.5, 0.5], [13], [1 / 3] * 3])
def test_random_split_lengths_match_torch_and_splits_are_disjoint(lengths):
    need_torch()
    theirs = TD.random_split(range(13), lengths)
    ours = D.random_split(range(13), lengths, generator=tg.Generator().manual_seed(3))
    assert [len(s) for s in ours] == [len(s) for s in theirs]
    seen = sorted(i for s in ours for i in (s[k] for k in range(len(s))))
    assert seen == list(range(13))
    again = D.random_split(range(13), lengths, generator=tg.Generator().manual_seed(3))
    assert [list(s.indices) for s in again] == [list(s.indices) for s in ours]


def test_random_split_warns_of_an_empty_split_as_torch():
    need_torch()
    with warnings.catch_warnings(record=True) as theirs:
        warnings.simplefilter("always")
        TD.random_split(range(4), [0.5, 0.5, 0.0])
    with pytest.warns(UserWarning) as ours:
        D.random_split(range(4), [0.5, 0.5, 0.0])
    assert [str(w.message) for w in ours] == [str(w.message) for w in theirs]
    assert len(theirs) == 1


def test_datasets_match_torch():
    need_torch()
    x, y = random_array((7, 3), seed=4), random_array((7,), "int64", seed=5)
    ours, theirs = D.TensorDataset(x, y), TD.TensorDataset(torch.tensor(x), torch.tensor(y))
    tensors = D.TensorDataset(tg.tensor(x), tg.tensor(y))
    for i in (0, 3, 6, -1):
        assert_same(ours[i], theirs[i])
        assert_same(tensors[i], theirs[i])
    ours_cat, theirs_cat = ours + D.Subset(ours, [5, 1]), theirs + TD.Subset(theirs, [5, 1])
    assert len(ours_cat) == len(theirs_cat) == 9 and ours_cat.cumulative_sizes == [7, 9]
    for i in (0, 6, 7, 8, -1, -9):
        assert_same(ours_cat[i], theirs_cat[i])
    with pytest.raises(ValueError, match="Size mismatch"):
        D.TensorDataset(x, y[:5])


def test_iterable_dataset_batches_match_torch():
    need_torch()
    for kwargs in (dict(batch_size=3), dict(batch_size=3, drop_last=True), dict(batch_size=None)):
        ours, theirs = D.DataLoader(Stream(8), **kwargs), TD.DataLoader(TorchStream(8), **kwargs)
        assert len(ours) == len(theirs)
        got, want = list(ours), list(theirs)
        assert len(got) == len(want)
        for a, b in zip(got, want):
            assert_same(a, b)
    chained = list(D.DataLoader(Stream(2) + Stream(3), batch_size=2))
    assert [b.tolist() for b in chained] == [[0, 1], [0, 1], [2]]


# ---------------------------------------------------------------- reproducible order

def epoch_order(loader, epoch):
    loader.set_epoch(epoch)
    return np.concatenate([y.numpy() for _, y in loader])


def test_shuffle_order_is_a_function_of_seed_and_epoch():
    ds = D.ArrayDataset(random_array((50, 2), seed=6), np.arange(50))
    a = D.DataLoader(ds, batch_size=8, shuffle=True, seed=7)
    b = D.DataLoader(ds, batch_size=8, shuffle=True, seed=7)
    orders = [epoch_order(a, e) for e in range(3)]
    for e, order in enumerate(orders):          # the rule resumed runs rely on
        np.testing.assert_array_equal(order, np.random.default_rng([7, e]).permutation(50))
    np.testing.assert_array_equal(epoch_order(b, 2), orders[2])      # a resumed run
    np.testing.assert_array_equal(epoch_order(a, 1), orders[1])      # iterating again
    x, y = next(iter(a))
    np.testing.assert_array_equal(x.numpy(), ds.arrays[0][y.numpy()])  # rows stay paired


def test_generator_and_global_seed_reproduce_the_shuffle():
    ds = list(range(20))

    def order(**kwargs):
        return [b.tolist() for b in D.DataLoader(ds, batch_size=6, shuffle=True, **kwargs)]

    g = tg.Generator().manual_seed(11)
    first, second = order(generator=g), order(generator=g)
    assert first != second                        # the generator advances
    state = g.get_state()
    third = order(generator=g)
    g.set_state(state)
    assert order(generator=g) == third and g.initial_seed() == 11
    assert order(generator=tg.Generator().manual_seed(11)) == first
    tg.manual_seed(5)
    unseeded = order()
    tg.manual_seed(5)
    assert order() == unseeded and sorted(sum(unseeded, [])) == ds
    with pytest.raises(ValueError, match="seed and generator"):
        D.DataLoader(ds, shuffle=True, seed=1, generator=g)


def test_random_samplers():
    r = D.RandomSampler(range(5), num_samples=12, generator=tg.Generator().manual_seed(0))
    drawn = list(r)
    assert len(r) == len(drawn) == 12             # two whole permutations, then 2 of a third
    assert sorted(drawn[:5]) == sorted(drawn[5:10]) == [0, 1, 2, 3, 4]
    assert len(set(drawn[10:])) == 2 and drawn[:5] != drawn[5:10]
    with_replacement = list(D.RandomSampler(range(5), replacement=True, num_samples=30))
    assert len(with_replacement) == 30 and set(with_replacement) <= set(range(5))
    subset = list(D.SubsetRandomSampler([3, 9, 4]))
    assert sorted(subset) == [3, 4, 9]


# ---------------------------------------------------------------- workers

class Doubling(D.Dataset):
    """Sample i is (a float32 row, i); which worker served it is recorded in the row's last
    value, and the worker's seed in the second."""

    def __init__(self, n):
        self.x = random_array((n, 3), "float32", seed=8)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        row = self.x[i].copy()
        info = D.get_worker_info()
        if info is not None:
            row[1], row[2] = info.seed % 1000, info.id
        return row, i


def test_workers_give_the_batches_of_the_main_process():
    ds = Doubling(23)
    main = D.DataLoader(ds, batch_size=4, shuffle=True, seed=2)
    workers = D.DataLoader(ds, batch_size=4, shuffle=True, seed=2, num_workers=2,
                           persistent_workers=True, worker_init_fn=lambda i: None)
    for epoch in (0, 1):                          # persistent workers serve both epochs
        main.set_epoch(epoch)
        workers.set_epoch(epoch)
        got, want = list(workers), list(main)
        assert len(got) == len(want) == math.ceil(23 / 4)
        for (xw, iw), (xm, im) in zip(got, want):
            assert xw.dtype == xm.dtype and iw.dtype == im.dtype == np.int64
            np.testing.assert_array_equal(iw.numpy(), im.numpy())
            np.testing.assert_array_equal(xw.numpy()[:, 0], xm.numpy()[:, 0])
        ids = np.concatenate([x.numpy()[:, 2] for x, _ in got])
        seeds = np.concatenate([x.numpy()[:, 1] for x, _ in got])
        assert set(ids) == {0, 1}                  # batches alternate between the workers
        assert len(set(seeds)) == 2 and seeds[ids == 1][0] == (seeds[ids == 0][0] + 1) % 1000
    stream = [b.tolist() for b in D.DataLoader(Stream(11), batch_size=3, num_workers=2)]
    assert stream == [[0, 2, 4], [1, 3, 5], [6, 8, 10], [7, 9]]   # torch's interleaving


class Failing(D.Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, i):
        if i == 5:
            raise KeyError(f"no sample {i} here")
        return i


def test_a_worker_error_is_raised_in_the_main_process_with_its_traceback():
    loader = D.DataLoader(Failing(), batch_size=2, num_workers=2)
    with pytest.raises(KeyError) as err:
        list(loader)
    text = str(err.value)
    assert "Caught KeyError in DataLoader worker process 0" in text
    assert "no sample 5 here" in text and "__getitem__" in text


@pytest.mark.parametrize("name", ["tilegrad.utils.data", "tilegrad.utils.data.dataloader",
                                  "tilegrad.utils.data.dataset", "tilegrad.utils.data.sampler",
                                  "tilegrad.utils.data._collate", "tilegrad.random"])
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0 and result.failed == 0
