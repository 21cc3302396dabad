"""Where a kernel launch's host time goes on a GPU: one small elementwise kernel (the CUDA
backend's ``relu_bwd_kernel1`` on 1024 floats, so the GPU work is negligible) launched N times
in a row, six ways:

  numba+cupy   ``kernel[grid, block, stream](cupy arrays...)``, Numba's own launch
  rt.launch    the backend's launch (``backends/cuda/runtime.py``): Numba's the first time,
               then the compiled function through ``cuda.core`` with the arguments flattened
  numba+dev    the same with numba device arrays made once (``cuda.as_cuda_array``)
  numba _Kernel  the compiled ``_Kernel.launch`` called directly (no dispatch, no typing)
  core launch  ``cuda.core.launch`` with the arguments flattened by hand as numba's ABI wants
               them (meminfo, parent, size, itemsize, data, shape..., strides...)
  cupy raw     a CuPy RawKernel doing the same in CUDA C (a floor for a Python launch)
  torch        ``torch.relu`` on a tensor of the same size

Each prints microseconds per launch (host, and with the final synchronisation), checks its
output, and the first is profiled. Run: ``PYTHONPATH=src python3 bench/launch_overhead.py``.
"""
import cProfile
import ctypes
import io
import pstats
import sys
import time

import numpy as np

N = 2000
SIZE = 1024


def timed(name, fn, sync, check):
    try:
        return _timed(name, fn, sync, check)
    except Exception as e:   # noqa: BLE001 - one way failing must not hide the others
        print(f"{name:14s} failed: {type(e).__name__}: {e}", flush=True)
        return None


def _timed(name, fn, sync, check):
    for _ in range(20):
        fn()
    sync()
    start = time.perf_counter()
    for _ in range(N):
        fn()
    host = time.perf_counter() - start
    sync()
    total = time.perf_counter() - start
    ok = check()
    print(f"{name:14s} {host / N * 1e6:8.1f} us host {total / N * 1e6:8.1f} us with sync  "
          f"output {'ok' if ok else 'WRONG'}", flush=True)
    return host / N


def main():
    import cupy as cp
    from numba import cuda

    from tilegrad.backends.cuda import elementwise as ew
    from tilegrad.backends.cuda import runtime as rt

    rng = np.random.default_rng(0)
    g_h = rng.standard_normal(SIZE).astype(np.float32)
    y_h = rng.standard_normal(SIZE).astype(np.float32)
    want = np.where(y_h > 0, g_h, 0).astype(np.float32)
    g, y = cp.asarray(g_h), cp.asarray(y_h)
    out = cp.empty(SIZE, cp.float32)
    kernel, grid, block = ew.relu_bwd_kernel1, 4, 256
    sync = cp.cuda.get_current_stream().synchronize

    def fresh():
        out.fill(np.nan)
        return True

    def check():
        return np.array_equal(cp.asnumpy(out), want)

    results = {}
    fresh()
    results["numba+cupy"] = timed(
        "numba+cupy", lambda: kernel[grid, block, rt.stream()](g, y, out, SIZE), sync, check)

    fresh()
    results["rt.launch"] = timed(
        "rt.launch", lambda: rt.launch(kernel, grid, block, g, y, out, SIZE), sync, check)

    dg, dy, dout = (cuda.as_cuda_array(a) for a in (g, y, out))
    fresh()
    results["numba+dev"] = timed(
        "numba+dev", lambda: kernel[grid, block, 0](dg, dy, dout, SIZE), sync, check)

    compiled = next(iter(kernel.overloads.values()))
    from numba.cuda.cudadrv import driver
    core_stream = driver._to_core_stream(0)
    fresh()
    results["numba _Kernel"] = timed(
        "numba _Kernel",
        lambda: compiled.launch((dg, dy, dout, SIZE), (grid, 1, 1), (block, 1, 1), core_stream, 0),
        sync, check)

    from cuda.core import LaunchConfig, launch
    cufunc = compiled._codelibrary.get_cufunc()
    config = LaunchConfig(grid=(grid, 1, 1), block=(block, 1, 1), shmem_size=0)

    def flat(a):
        return [0, 0, a.size, a.itemsize, a.data.ptr, a.shape[0], a.strides[0]]
    params = flat(g) + flat(y) + flat(out) + [ctypes.c_int64(SIZE)]
    fresh()
    results["core launch"] = timed(
        "core launch", lambda: launch(core_stream, config, cufunc.kernel, *params), sync, check)

    raw = cp.RawKernel(r'''
    extern "C" __global__ void relu_bwd(const float* g, const float* y, float* o, long long n) {
        for (long long i = blockIdx.x * blockDim.x + threadIdx.x; i < n;
             i += (long long)blockDim.x * gridDim.x)
            o[i] = y[i] > 0.0f ? g[i] : 0.0f;
    }''', "relu_bwd")
    fresh()
    results["cupy raw"] = timed(
        "cupy raw", lambda: raw((grid,), (block,), (g, y, out, np.int64(SIZE))), sync, check)

    try:
        import torch
        t = torch.randn(SIZE, device="cuda")
        results["torch"] = timed("torch relu", lambda: torch.relu(t), torch.cuda.synchronize,
                                 lambda: True)
    except ImportError:
        pass

    prof = cProfile.Profile()
    prof.enable()
    for _ in range(500):
        kernel[grid, block, rt.stream()](g, y, out, SIZE)
    prof.disable()
    sync()
    s = io.StringIO()
    pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(18)
    print("\nnumba+cupy, 500 launches profiled (by own time):")
    print("\n".join(s.getvalue().splitlines()[:45]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
