"""The workarounds of ``tilegrad/backends/cuda/_numba_compat.py``: for each, a test that fails once
numba-cuda or NumPy no longer needs it (so that it can be removed) and a test that it works.

The simulator's workarounds are tested here, in the simulator (NUMBA_ENABLE_CUDASIM=1, as the
suite runs). The compiler's and the GPU launch's are tested in subprocesses with the real compiler
(NUMBA_ENABLE_CUDASIM=0), which cannot run in the simulator's process; there NumPy >= 2.5 (no
``np.row_stack``) is imitated by deleting ``np.row_stack`` before numba-cuda first compiles.
"""
import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("numba.cuda", reason="numba-cuda is not installed (pip install -e '.[sim]')")

from numba import cuda, float32  # noqa: E402  (kernels find it as a global in the simulator)

import tilegrad as tg  # noqa: E402
from tilegrad.backends.cuda import _numba_compat as compat  # noqa: E402
from tilegrad.backends.cuda.runtime import SIMULATOR  # noqa: E402

SRC = Path(__file__).resolve().parents[1] / "src"
simulator_only = pytest.mark.skipif(not SIMULATOR, reason="needs NUMBA_ENABLE_CUDASIM=1")

# Run with the real compiler; prints one JSON object of facts. "bare": numba-cuda as installed on
# a NumPy without row_stack; "patched": the same after the workarounds, then a kernel with one
# argument of each kind the fast launch packs, compiled to PTX.
_COMPILER_SCRIPT = textwrap.dedent("""
    import ctypes, inspect, json, re, sys
    import numpy as np
    if hasattr(np, "row_stack"):
        del np.row_stack                          # as NumPy >= 2.5
    from numba import cuda
    from tilegrad.backends.cuda import _numba_compat as compat
    facts = {"row_stack_check": compat._check_row_stack(False, True)[0]}

    def probe(x):
        x[0] = 0.0

    if sys.argv[1] == "bare":
        try:
            cuda.compile_ptx(probe, "void(float32[::1])", cc=(8, 0))
            facts["error"] = None
        except AttributeError as e:
            facts["error"] = str(e)
        print(json.dumps(facts))
        sys.exit(0)

    compat.numpy_row_stack()
    facts["alias"] = np.row_stack is np.vstack

    from numba.cuda import api
    config = compat._cuda_config()
    facts["sync_default"] = bool(config.CUDA_ARRAY_INTERFACE_SYNC)
    facts["sync_read_at_conversion"] = api.config is config and \\
        "CUDA_ARRAY_INTERFACE_SYNC" in inspect.getsource(api.from_cuda_array_interface)
    compat.no_interface_sync()
    facts["sync_after"] = bool(api.config.CUDA_ARRAY_INTERFACE_SYNC)

    facts["fast_check"] = compat._check_fast_launch(False, True)
    compat.fast_launch()
    facts["core"] = sorted(k for k, v in compat.CORE.items() if callable(v))

    def kernel(a, pair, n, x, d, m, flag):
        a[0] = x + n + d + m + pair[0][0, 0] + pair[1][0, 0]
        if flag:
            a[1] = 1.0

    from numba.cuda.typing.typeof import Purpose, typeof
    matrix = np.ones((2, 3), np.float32)
    args = (np.ones(5, np.float32), (matrix, matrix), np.int32(1), np.float32(2), 3.0, 4, True)
    argtypes = tuple(typeof(a, Purpose.argument) for a in args)
    ptx, _ = cuda.compile_ptx(kernel, argtypes, cc=(8, 0))
    facts["ptx_params"] = re.findall(r"\\.param \\.(\\w+) \\S+_param_\\d+", ptx)
    expected = []                  # what runtime._launch passes for each packer
    for t, pack in zip(argtypes, compat.packers(argtypes)):
        if pack is None:           # meminfo, parent, size, itemsize, data, shape..., strides...
            expected += ["u64"] * (5 + 2 * t.ndim)
        elif pack is tuple:        # each member as an array
            expected += ["u64"] * (t.count * (5 + 2 * t.dtype.ndim))
        elif pack is bool:
            expected.append("u8")
        else:
            kind = "f" if pack in (ctypes.c_float, ctypes.c_double) else "u"
            expected.append(f"{kind}{8 * ctypes.sizeof(pack)}")
    facts["expected_params"] = expected
    print(json.dumps(facts))
""")


def _compiler_facts(mode):
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CUDA_ARRAY_INTERFACE_SYNC"}
    env["NUMBA_ENABLE_CUDASIM"] = "0"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), env.get("PYTHONPATH")) if p)
    proc = subprocess.run([sys.executable, "-c", _COMPILER_SCRIPT, mode], env=env,
                          capture_output=True, text=True, timeout=300)
    if proc.returncode != 0 and ("NVVM" in proc.stderr or "libnvvm" in proc.stderr):
        pytest.skip(f"no NVVM for numba-cuda's compiler: {proc.stderr.splitlines()[-1]}")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


@pytest.fixture(scope="module")
def bare():
    return _compiler_facts("bare")


@pytest.fixture(scope="module")
def patched():
    return _compiler_facts("patched")


# ---------------------------------------------------------------- numpy_row_stack

def test_row_stack_applies_exactly_where_numpy_lacks_it():
    # This process never applies it (the simulator compiles nothing), so NumPy is as installed.
    lacks = not hasattr(np, "row_stack")
    assert lacks == (compat.numpy_version() >= (2, 5))
    assert compat._check_row_stack(False, True)[0] == lacks
    assert not compat._check_row_stack(True, False)[0]


def test_row_stack_still_needed_numba_cuda_names_it(bare):
    # If this fails, numba-cuda no longer looks np.row_stack up: numpy_row_stack can go.
    assert bare["row_stack_check"]
    assert bare["error"] is not None and "row_stack" in bare["error"]


def test_row_stack_shim_lets_kernels_compile(patched):
    assert patched["alias"]
    assert patched["ptx_params"]           # the kernel compiled after the shim


# ---------------------------------------------------------------- no_interface_sync

def test_interface_sync_still_on_by_default(patched):
    # If this fails, numba-cuda no longer waits on a CuPy array's stream: no_interface_sync can go.
    assert patched["sync_default"]
    assert patched["sync_read_at_conversion"]


def test_no_interface_sync_turns_it_off(patched):
    assert not patched["sync_after"]


# ---------------------------------------------------------------- fast_launch

def test_fast_launch_finds_cuda_core(patched):
    active, why = patched["fast_check"]
    assert active, why
    assert patched["core"] == ["LaunchConfig", "launch", "to_core_stream"]


def test_fast_launch_packs_numba_kernel_abi(patched):
    # The parameters runtime._launch passes, one per packed value, against the compiled kernel's.
    assert patched["expected_params"] == patched["ptx_params"]


# ---------------------------------------------------------------- simulator_switch_interval

@simulator_only
def test_simulator_still_runs_cuda_threads_as_python_threads():
    # If this fails, the simulator no longer schedules Python threads: the interval can go.
    idents = []

    @cuda.jit
    def record(out):
        idents.append(threading.get_ident())
        cuda.syncthreads()                   # all alive at once: no thread's ident reused
        out[cuda.threadIdx.x] = 1.0

    out = np.zeros(7, np.float32)
    record[1, 7](out)
    assert len(set(idents)) == 7 and out.sum() == 7


@simulator_only
def test_switch_interval_set_once_cuda_is_set_up():
    tg.device("cuda")
    assert sys.getswitchinterval() == pytest.approx(1e-4)
    assert ("simulator_switch_interval", True) in [(n, a) for n, a, _ in compat.applied()]


# ---------------------------------------------------------------- simulator_shared_array_lock

def _two_threads_at_once(array, wait):
    """The arrays two threads get from ``array(shared, ...)`` on one line of one block, with the
    lookup in ``_allocations`` made to wait (up to ``wait`` seconds) until both threads have looked:
    the interleaving that races. Under a lock the second never looks and the wait runs out."""
    from numba.cuda.simulator.kernelapi import FakeCUDAShared
    shared = FakeCUDAShared(0)
    meet = threading.Barrier(2, timeout=wait)

    class Meeting(dict):
        def get(self, key, default=None):
            found = super().get(key, default)
            try:                         # neither goes on until both have looked
                meet.wait()
            except threading.BrokenBarrierError:
                missed.append(True)
            return found

    shared._allocations = Meeting()
    got, missed = [None, None], []

    def call(i):
        got[i] = array(shared, (3,), np.float32)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return got[0], got[1], not missed


@simulator_only
def test_simulator_shared_array_still_races():
    # If these fail, the simulator's cuda.shared.array is safe and aligns: the lock can go.
    tg.device("cuda")
    original = compat.ORIGINAL_SHARED_ARRAY[0]
    first, second, met = _two_threads_at_once(original, wait=30)
    assert met and first is not second
    from numba.cuda.simulator.kernelapi import FakeCUDAShared
    with pytest.raises(RuntimeError, match="lignment"):
        original(FakeCUDAShared(0), (4,), np.float32, alignment=16)


@simulator_only
def test_shared_array_lock_gives_threads_one_array():
    tg.device("cuda")
    from numba.cuda.simulator.kernelapi import FakeCUDAShared
    first, second, met = _two_threads_at_once(FakeCUDAShared.array, wait=0.5)
    assert not met and first is second


@simulator_only
def test_shared_array_kernel_with_alignment():
    tg.device("cuda")
    block = 13

    @cuda.jit
    def reverse_blocks(x, out, aligned):
        tile = cuda.shared.array(block, float32, alignment=16)   # one per block, 16-byte aligned
        t, i = cuda.threadIdx.x, cuda.blockIdx.x * block + cuda.threadIdx.x
        tile[t] = x[i]
        cuda.syncthreads()                   # every thread's write is seen by every other
        out[i] = tile[block - 1 - t]
        aligned[i] = tile.ctypes.data % 16 == 0

    x = np.random.default_rng().standard_normal(3 * block).astype(np.float32)
    out, aligned = np.zeros_like(x), np.zeros(x.size, np.bool_)
    reverse_blocks[3, block](x, out, aligned)
    np.testing.assert_array_equal(out, x.reshape(3, block)[:, ::-1].ravel())
    assert aligned.all()


# ---------------------------------------------------------------- the report

@simulator_only
def test_report_names_every_workaround():
    tg.device("cuda")
    names = [fn.__name__ for fn, _ in compat._WORKAROUNDS]
    assert [n for n, _, _ in compat.applied()] == names
    from tilegrad.cli.info import info
    text = info()
    for name, active, why in compat.applied():
        assert any(name in line and ("on " if active else "off") in line and why in line
                   for line in text.splitlines()), name


# ---------------------------------------------------------------- target_cc

_TARGET_SCRIPT = textwrap.dedent("""
    import json, re, sys
    from numba import cuda
    from tilegrad.backends.cuda._numba_compat import target_cc

    @cuda.jit(device=True)
    def twice(x):
        return 2 * x

    def kernel(a):
        a[0] = twice(a[0])

    sig = "void(float32[::1])"
    facts = {}
    try:
        cuda.compile_ptx(kernel, sig, cc=(8, 0))
        facts["bare"] = "compiled"
    except Exception as e:
        facts["bare"] = type(e).__name__
    with target_cc((8, 0)):
        ptx, _ = cuda.compile_ptx(kernel, sig, cc=(8, 0))
    facts["target"] = re.findall(r"^\\.target (\\w+)", ptx, re.M)
    try:
        cuda.cudadrv.driver.driver.get_device_count()
        facts["driver"] = True
    except Exception:
        facts["driver"] = False
    print(json.dumps(facts))
""")


def test_target_cc_compiles_device_functions_without_a_driver():
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="0")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), env.get("PYTHONPATH")) if p)
    proc = subprocess.run([sys.executable, "-c", _TARGET_SCRIPT], env=env, capture_output=True,
                          text=True, timeout=300)
    if proc.returncode != 0 and ("NVVM" in proc.stderr or "libnvvm" in proc.stderr):
        pytest.skip(f"no NVVM for numba-cuda's compiler: {proc.stderr.splitlines()[-1]}")
    assert proc.returncode == 0, proc.stderr
    facts = json.loads(proc.stdout.splitlines()[-1])
    assert facts["target"] == ["sm_80"]
    if not facts["driver"]:
        # Still needed: without it a kernel calling a device function needs a driver.
        assert facts["bare"] != "compiled", facts
