"""``default_collate`` and ``default_convert``: samples to batches of tensors, as torch's.

``default_collate(samples)`` walks the structure of the first sample and stacks the leaves:

- tensors with ``tilegrad.stack`` (device and graph kept); NumPy arrays and NumPy scalars
  stacked, their dtype kept; Python ints as int64, bools as bool and floats as float64 (torch's
  choice for collated Python floats, unlike ``tilegrad.tensor``'s default dtype);
- strings and bytes stay a list; dicts collate key by key, namedtuples field by field, other
  sequences position by position (a tuple sample gives a list, as torch's).

Worker processes collate the same way with NumPy leaves (``numpy_collate``) and the main
process turns them into tensors (``to_tensors``): a batch crosses processes as NumPy arrays.

>>> b = default_collate([{"x": np.ones(2, np.float32), "y": 1}, {"x": np.zeros(2, np.float32),
...                                                           "y": 0}])
>>> b["x"].shape, b["y"].tolist()
((2, 2), [1, 0])
"""
from __future__ import annotations

import collections.abc as abc
import re
from typing import Any

import numpy as np

from ...tensor import Tensor

_ERROR = ("default_collate: batch must contain tensors, numpy arrays, numbers, dicts or lists; "
          "found {}")
_STR_OR_OBJECT = re.compile(r"[SaUO]")


def default_collate(batch: list[Any]) -> Any:
    """Stack a list of samples into a batch of tensors (see the module docstring)."""
    return _collate(batch, tensors=True)


def numpy_collate(batch: list[Any]) -> Any:
    """``default_collate``'s batch with NumPy arrays in place of tensors (what workers send)."""
    return _collate(batch, tensors=False)


def _collate(batch, tensors):
    elem = batch[0]
    if isinstance(elem, Tensor):
        if tensors:
            from ...tensor import stack
            return stack(list(batch))
        return np.stack([t.numpy() for t in batch])
    if isinstance(elem, (np.ndarray, np.generic)) and not isinstance(elem, (np.str_, np.bytes_)):
        if _STR_OR_OBJECT.search(elem.dtype.str):
            raise TypeError(_ERROR.format(elem.dtype))
        return _leaf(np.stack([np.asarray(b) for b in batch]), tensors)
    if isinstance(elem, bool):
        return _leaf(np.array(batch, dtype=np.bool_), tensors)
    if isinstance(elem, int):
        return _leaf(np.array(batch, dtype=np.int64), tensors)
    if isinstance(elem, float):
        return _leaf(np.array(batch, dtype=np.float64), tensors)
    if isinstance(elem, (str, bytes)):
        return list(batch)
    if isinstance(elem, abc.Mapping):
        return _rebuild(elem, {key: _collate([d[key] for d in batch], tensors) for key in elem})
    if isinstance(elem, tuple) and hasattr(elem, "_fields"):     # a namedtuple
        return type(elem)(*(_collate(list(s), tensors) for s in zip(*batch)))
    if isinstance(elem, abc.Sequence):
        if any(len(sample) != len(elem) for sample in batch):
            raise RuntimeError("each element in list of batch should be of equal size")
        columns = [_collate(list(s), tensors) for s in zip(*batch)]
        return columns if isinstance(elem, tuple) else _rebuild(elem, columns)
    raise TypeError(_ERROR.format(type(elem)))


def _leaf(array, tensors):
    if not tensors:
        return array
    from ...creation import tensor
    return tensor(array)


def _rebuild(elem, collated):
    """``collated`` in ``elem``'s own mapping or sequence type where it can be made from it (as
    torch), else a plain dict or list."""
    try:
        return type(elem)(collated)
    except TypeError:
        return collated


def to_tensors(batch: Any) -> Any:
    """``numpy_collate``'s batch with its NumPy arrays made tensors, the structure kept."""
    if isinstance(batch, np.ndarray):
        return _leaf(batch, True)
    if isinstance(batch, abc.Mapping):
        return _rebuild(batch, {k: to_tensors(v) for k, v in batch.items()})
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):
        return type(batch)(*(to_tensors(v) for v in batch))
    if isinstance(batch, (list, tuple)):
        return _rebuild(batch, [to_tensors(v) for v in batch])
    return batch


def default_convert(data: Any) -> Any:
    """What a DataLoader with ``batch_size=None`` applies to each sample: NumPy arrays and NumPy
    scalars become tensors, containers are converted element by element, the rest is kept."""
    if isinstance(data, (np.ndarray, np.generic)) and not isinstance(data, (np.str_, np.bytes_)):
        if _STR_OR_OBJECT.search(data.dtype.str):
            return data
        return _leaf(np.asarray(data), True)
    if isinstance(data, abc.Mapping):
        return _rebuild(data, {k: default_convert(v) for k, v in data.items()})
    if isinstance(data, tuple) and hasattr(data, "_fields"):
        return type(data)(*(default_convert(v) for v in data))
    if isinstance(data, tuple):
        return [default_convert(v) for v in data]
    if isinstance(data, abc.Sequence) and not isinstance(data, (str, bytes)):
        return _rebuild(data, [default_convert(v) for v in data])
    return data
