"""What the tests of the C++ CPU backend (tests/test_cpu_*.py) share.

- ``ext``: the extension ``tilegrad._cpu`` (the module is skipped where it is not built, except
  in CI, where a missing extension fails: `make test` builds it);
- ``cpp``: the cpp backend module (``tilegrad.backends.cpu.backend``), ``spec``: the NumPy backend;
- ``cases(n)``: Hypothesis settings, ``n`` examples scaled by ``TILEGRAD_CPU_EXAMPLES`` (examples
  per test; `make sanitize` runs fewer under the sanitizers);
- ``SIMD``: the vector widths this CPU has, and the fixture ``simd`` that runs a test once per
  width (the kernels with one variant per width run each);
- ``tol(dtype)``: (rtol, atol) for comparing a kernel with the NumPy backend run in float64 on
  the same inputs; ``check(got, ref, dtype, what)`` compares with them;
- ``bad_input(fn, *args, match=)``: the call raises TypeError or ValueError whose message starts
  with the op's name, and changes none of the arrays given.
"""
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from helpers import on_ci
from tilegrad.testing import assert_close
from tilegrad.backends import cpu as cpu_device
from tilegrad.backends import numpy as spec

ext, _why = cpu_device.extension()
if ext is None:
    if on_ci():
        raise RuntimeError(f"CI: the C++ extension must be built by `make test`: {_why}")
    pytest.skip(f"the C++ extension is not built: {_why}", allow_module_level=True)

from tilegrad.backends.cpu import backend as cpp   # noqa: E402

EXAMPLES = int(os.environ.get("TILEGRAD_CPU_EXAMPLES", "30"))
_ORDER = ("portable", "avx2", "avx512")
SIMD = _ORDER[:_ORDER.index(ext.simd_supported()) + 1]


def cases(n=None):
    """Hypothesis settings: ``n`` examples (default ``EXAMPLES``), derandomized, no deadline."""
    n = EXAMPLES if n is None else max(1, n * EXAMPLES // 30)
    return settings(max_examples=n, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(params=SIMD)
def simd(request):
    """Run the test with the kernels' variant for each vector width this CPU has."""
    before = ext.simd()
    ext.set_simd(request.param)
    yield request.param
    ext.set_simd(before)


def tol(dtype):
    """(rtol, atol) against the NumPy backend in float64, for results computed in ``dtype``."""
    return (1e-4, 1e-5) if np.dtype(dtype) == np.float32 else (1e-10, 1e-12)


def check(got, ref, dtype, what="value", scale=1.0):
    """``got`` (computed in ``dtype``) against ``ref`` (float64), tolerance ``tol(dtype)`` times
    ``scale`` (for long sums, say)."""
    rtol, atol = tol(dtype)
    got = np.asarray(got)
    assert got.dtype == np.dtype(dtype), f"{what}: dtype {got.dtype}, expected {np.dtype(dtype)}"
    assert_close(got, ref, rtol * scale, atol * scale, what)


def bad_input(fn, *args, op, error=(TypeError, ValueError), match=None):
    """``fn(*args)`` raises ``error`` with a message starting with ``op + ':'`` (and containing
    ``match``), and every NumPy array among ``args`` (and in lists among them) is unchanged."""
    arrays = [a for a in args if isinstance(a, np.ndarray)]
    arrays += [x for a in args if isinstance(a, (list, tuple))
               for x in a if isinstance(x, np.ndarray)]
    before = [a.copy() for a in arrays]
    with pytest.raises(error) as info:
        fn(*args)
    message = str(info.value)
    assert message.startswith(f"{op}:"), f"the message does not name {op}: {message!r}"
    if match is not None:
        assert match in message, f"{match!r} not in {message!r}"
    for a, b in zip(arrays, before):
        np.testing.assert_array_equal(a, b, err_msg=f"{op} changed an argument on bad input")
    return message


def rand(rng, shape, dtype, low=-1.0, high=1.0):
    """Uniform random values of ``shape`` and ``dtype`` (never zeros)."""
    return rng.uniform(low, high, size=shape).astype(dtype)


__all__ = ["ext", "cpp", "spec", "cases", "SIMD", "simd", "tol", "check", "bad_input", "rand",
           "EXAMPLES"]
