"""Fuzzing the C++ extension's bindings directly: every kernel binding of tilegrad._cpu is
called with arguments drawn from a pool of wrong and right things (arrays of every dtype and many
shapes, strided and read-only arrays, empty and 0-d arrays, lists, None, negative and huge
integers, strings). Each call must either return or raise TypeError, ValueError, IndexError or
MemoryError naming the binding, and a call that raises must leave every array it was given as
it was. A crash, a hang or a sanitizer report (`make sanitize` runs this file under ASan and
UBSan) fails the run.
"""
import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cpu_helpers import cases, ext

MODULE_FUNCTIONS = {"set_num_threads", "get_num_threads", "simd", "simd_supported", "set_simd"}
ERRORS = (TypeError, ValueError, IndexError, MemoryError)


def _bindings():
    names = [n for n in dir(ext) if not n.startswith("_") and callable(getattr(ext, n))]
    return sorted(n for n in names if n not in MODULE_FUNCTIONS)


def _arity(fn):
    """(required, total) parameters from pybind11's signature line
    ``name(a: T, b: T = ...) -> R``."""
    first = fn.__doc__.splitlines()[0]
    inner = first[first.index("(") + 1:first.rindex(")")]
    params = [p for p in re.split(r",\s*(?![^\[]*\])", inner) if p.strip()]
    required = sum(1 for p in params if "=" not in p)
    return required, len(params)


def _array(draw):
    dtype = draw(st.sampled_from([np.float32, np.float64, np.float64, np.float32, np.int64,
                                  np.int32, np.bool_, np.float16, np.uint8]))
    shape = tuple(draw(st.lists(st.integers(0, 5), min_size=0, max_size=4)))
    if np.issubdtype(dtype, np.integer):
        a = np.asarray(draw(st.integers(-2, 2)) + np.arange(int(np.prod(shape))) % 7,
                       dtype=dtype).reshape(shape)
    else:
        a = np.linspace(-2.5, 3.5, int(np.prod(shape))).astype(dtype).reshape(shape)
    kind = draw(st.sampled_from(["plain", "plain", "plain", "strided", "readonly", "fortran"]))
    if kind == "strided" and a.ndim and a.shape[-1] > 1:
        a = np.repeat(a, 2, axis=-1)[..., ::2]
    elif kind == "readonly":
        a.setflags(write=False)
    elif kind == "fortran" and a.ndim >= 2:
        a = np.asfortranarray(a)
    return a


@st.composite
def _value(draw):
    choice = draw(st.integers(0, 9))
    if choice <= 4:
        return _array(draw)
    if choice == 5:
        return [_array(draw) for _ in range(draw(st.integers(0, 3)))]
    if choice == 6:
        return tuple(draw(st.lists(st.integers(-1, 4), min_size=0, max_size=3)))
    if choice == 7:
        return draw(st.sampled_from([0, 1, 2, 3, 5, -1, -7, 2 ** 40, -(2 ** 40)]))
    if choice == 8:
        return draw(st.sampled_from([0.0, 0.5, 0.9, -1.0, float("nan"), 1e30]))
    return draw(st.sampled_from([None, True, False, "mean", "sum", "none", "add", "relu", "?",
                                 object()]))


def _arrays_in(args):
    out = []
    for a in args:
        if isinstance(a, np.ndarray):
            out.append(a)
        elif isinstance(a, list):
            out += [x for x in a if isinstance(x, np.ndarray)]
    return out


@pytest.mark.parametrize("name", _bindings() or ["(none yet)"])
def test_a_binding_given_anything_returns_or_raises_a_clear_error(name):
    if name == "(none yet)":
        pytest.skip("the extension has no kernel bindings yet")
    fn = getattr(ext, name)
    required, total = _arity(fn)

    @cases(200)
    @given(st.data())
    def run(data):
        n = data.draw(st.integers(required, total))
        args = [data.draw(_value()) for _ in range(n)]
        arrays = _arrays_in(args)
        before = [(a, a.copy()) for a in arrays]
        try:
            fn(*args)
        except ERRORS as e:
            assert name in str(e) or isinstance(e, MemoryError), \
                f"{name}: the error does not name the binding: {type(e).__name__}: {e}"
            for a, copy in before:
                np.testing.assert_array_equal(a, copy, err_msg=f"{name} changed an argument "
                                              f"and then raised {type(e).__name__}: {e}")

    run()
