import numpy as np
import pytest

import tilegrad as tg
from helpers import on_ci, torch


def pytest_sessionstart(session):
    if on_ci() and torch is None:
        raise pytest.UsageError("CI is set but PyTorch is not importable: the parity tests would "
                                "be skipped. `make test` installs torch==2.13.0.")


def _device_params():
    params = []
    for d in tg.devices():
        marks = [] if d.available else [pytest.mark.skip(reason=f"{d.name}: {d.reason}")]
        params.append(pytest.param(d.name, marks=marks, id=d.name))
    return params


@pytest.fixture(params=_device_params())
def device(request):
    """Every device tilegrad knows; unavailable ones are skipped with their reason."""
    return request.param


@pytest.fixture
def disabled_cuda(monkeypatch):
    """Device "cuda" as a machine without a GPU has it: disabled, with its reason (a stand-in,
    so that the unavailable-device paths are tested where cuda runs in the simulator too)."""
    from tilegrad import backends
    backends.device("cuda")    # set up first, so that undoing the patch puts the real one back
    cuda = tg.Device("cuda", None, "its driver is not installed (a test's stand-in)")
    monkeypatch.setitem(backends._registry(), "cuda", cuda)
    return cuda


@pytest.fixture(autouse=True)
def _seeded():
    tg.manual_seed(0)
    np.random.seed(0)
    yield
    tg.set_default_dtype(tg.float32)
    tg.set_default_device("cpu")
    import sys
    runtime = sys.modules.get("tilegrad.backends.cuda.runtime")
    if runtime is not None:    # an error a test provoked on cuda and did not read is not the next's
        runtime.clear_errors()
