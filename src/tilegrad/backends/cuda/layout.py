"""Layout kernels, the primitives that move data: permute, broadcast_to, index (and its backward),
index_put, concat, copy_into, astype, full; and reshape, which moves nothing.

Versions (one each so far; later versions stay beside them as the ladder):

- ``reshape``: no kernel. Backend arrays are C-contiguous, so a reshape is a view.
- ``permute_fwd_kernel1`` / ``broadcast_to_fwd_kernel1``: one strided gather, made twice by one
  factory. A grid-stride loop over the *output*; each output flat index is peeled into
  coordinates (last dimension first) with the output sizes, and each coordinate times the input's
  stride in elements gives the input offset. For ``permute`` the strides are the input's C
  strides taken in the permuted order; for ``broadcast_to`` they are the input's C strides,
  right-aligned, with 0 on every broadcast dimension. Sizes and strides are small int64 device
  arrays built on the host and cached per shape, coalesced first (size-1 dims dropped, neighbours
  merged where the input is contiguous across them), so an identity permutation is one dimension.
  The result is materialised and C-contiguous, as in the NumPy backend.
- ``index_fwd_kernel1``: a gather ``out[i] = x[src[i]]``. The HOST computes the map ``src`` of
  flat source offsets once per call, with NumPy's own indexing on an index array:
  ``src = np.arange(x.size).reshape(x.shape)[key]``, so every kind of key NumPy accepts (ints,
  negative ints, slices with any step, None, Ellipsis, lists, int and bool arrays) means exactly
  what it means in NumPy. This costs O(x.size) host work and an O(out.size) int64 upload per
  call: acceptable for a first version (the models index small arrays or slice along one axis).
  Index arrays that live on the device are first copied to the host.
- ``index_bwd_kernel1``: the scatter-add ``out[src[i]] += grad[i]`` with ``cuda.atomic.add`` into
  a zeroed array of the input's shape, so repeated indices accumulate as ``np.add.at`` does. The
  order of the additions at one address is not fixed: float results may differ in the last bits
  from run to run when an index repeats.
- ``index_fwd_kernel2``: ``x[key]`` where ``key`` holds one int64 index array on the device (any
  shape ``I``) with slices, an Ellipsis and ints beside it (the ints next to the array, so that
  NumPy puts the index's dimensions where the array stands): ``x[idx]``, ``x[:, idx]``,
  ``x[..., idx]``, ``x[2, idx, ::2]``. No host reads: the output is (before, I, after) with
  ``inner`` = the product of the sizes after; output ``o`` takes ``k = idx[(o // inner) % I]``
  (negative ones counted from the end), and its other coordinates step x through the slices as
  in the strided gather (sizes and strides from the host, cached per shape; the index's
  dimension there has stride 0), plus ``k`` times the indexed axis' stride. An index still out
  of range is reported through the runtime's error flag (code ``INDEX_RANGE + axis``) and
  skipped; the host raises ``IndexRangeError`` (an IndexError) at the next sync, with NumPy's
  message. Every other key (bool masks, several index arrays, None) keeps the host map of
  ``index_fwd_kernel1``, and refuses while a CUDA graph is captured (``rt.forbid_in_capture``).
- ``index_bwd_kernel2``: the backward of kernel 2's keys into a zeroed array, deterministic: the
  thread of an index's first occurrence sums the gradients of all its occurrences in index order
  (``np.add.at``'s order, so the same bits as the NumPy backend) and stores the sum; later
  occurrences store nothing. Each thread scans the index array, O(I) per element: used up to
  ``ORDERED_BWD_MAX`` = 4096 indices (a sort by index is the next rung for more).
- ``index_bwd_kernel3``: the same layout with ``cuda.atomic.add``, above ``ORDERED_BWD_MAX``
  indices (the order of a repeated index's additions is then not fixed).
- ``index_put_fwd_kernel1``: ``x[key] = value`` on a copy of ``x``, a scatter ``out[dst[j]] =
  value[pos[j]]`` with two host-made maps: ``dst`` the flat offsets of ``x[key]`` (as
  ``index_fwd_kernel1``'s map) cut to each offset's last occurrence, ``pos`` where in ``x[key]``
  that occurrence stands. The offsets are then distinct, so no two threads write one element and
  a repeated index gets its last write, as in the NumPy backend (an atomic-free, deterministic
  answer to a question PyTorch leaves open). ``value`` is broadcast to ``x[key]``'s shape first.
  Maps of plain keys (ints, slices, None, Ellipsis) are cached per shape; keys with index arrays
  are copied to the host (refused while a CUDA graph is captured).
- ``concat_fwd_kernel1``: one launch per input, each copying its input into its slice of the
  output. With ``inner`` = the product of the sizes after ``axis``, an input of ``k`` rows along
  ``axis`` is ``outer`` blocks of ``k*inner`` contiguous elements; block ``o`` lands at
  ``o*K*inner + offset*inner`` in an output of ``K`` rows, ``offset`` the rows before it.
- ``copy_into_fwd_kernel1``: ``dst[i] = src[i]``, same shape and dtype (no broadcasting).
- ``astype_fwd_kernel1``: ``out[i] = x[i]`` converted by the store (made by
  ``make_astype_kernel(to_bool=False)``), and ``out[i] = x[i] != 0`` for a conversion to bool
  (``to_bool=True``; NaN converts to True, as in NumPy). Supported: every pair of float32,
  float64, int64 and bool (``SUPPORTED_DTYPES``); anything else raises ``TypeError``. Float to
  int64 truncates toward zero; NaN, inf and out-of-range floats give undefined int64 values, as
  NumPy (which warns) does.
- ``full_fwd_kernel1``: ``out[i] = value``, ``value`` passed as a kernel argument of the dtype.

Cost (n = output elements, s = bytes per element; no FLOPs, all kernels move memory):

=====================  =======================================================================
kernel                 bytes moved (DRAM, ideal)
=====================  =======================================================================
permute                2*n*s (the input read once, uncoalesced unless the last axis stays last)
broadcast_to           n_in*s + n*s (broadcast re-reads hit in cache)
index (gather)         n*8 (map) + n*s + n*s, plus n*8 host-to-device
index_bwd (scatter)    n_x*s (zeroing) + n*8 + n*s + n atomic read-modify-writes of s bytes
index 2 (one array)    I*8 + 2*n*s (no map, no upload)
index_bwd 2 (ordered)  n_x*s (zeroing) + n*s + n*s written at most; n*I index reads (in cache)
index_put              2*n_x*s (the copy) + n*16 (maps) + 2*n*s, plus n*16 host-to-device
concat                 2*n*s over all launches
copy_into, astype      n*s_in + n*s_out
full                   n*s
=====================  =======================================================================

Indices are int64 throughout (correct past 2**31 elements; 32-bit index arithmetic is a later
version).

Test (simulator, no GPU; tiny odd shapes, a block of 8 threads and at most 4 blocks so the
grid-stride loops wrap)::

    NUMBA_ENABLE_CUDASIM=1 PYTHONPATH=src:tests python -m pytest -q tests/test_cuda_layout.py \
        tests/test_index_device.py

``PTX_SIGNATURES`` at the end lists every kernel and signature the launchers use on a GPU, for the
compile check (``python -m tilegrad.backends.cuda.ptx --families layout``).
"""
import functools
from collections import namedtuple

import numpy as np
from numba import cuda, float32, float64, int64, uint64

from tilegrad.errors import IndexRangeError

from . import runtime as rt
from .common import NUMBA_STORAGE_DTYPES, THREADS, flat, grid_blocks, report_error, strided_offset

# Grid-stride loops, so any grid is correct (``common.grid_blocks``).
SUPPORTED_DTYPES = tuple(NUMBA_STORAGE_DTYPES)     # float32, float64, int64, bool

# index_bwd_kernel2 sums each repeated index's gradients in order, a loop over the whole index
# tensor per element: up to this many indices; above, index_bwd_kernel3's atomic adds.
ORDERED_BWD_MAX = 4096

# Error codes (the runtime's flag): an index tensor's value out of range along axis 0..8 of the
# indexed tensor is INDEX_RANGE + axis, along a later axis INDEX_RANGE + 9; value = the index,
# bound = the axis' size. NumPy's message, which the host path gives, names the axis too.
INDEX_RANGE = 20


def _index_range_error(axis):
    where = f"axis {axis}" if axis < 9 else "an axis after 8"
    return lambda value, bound: IndexRangeError(
        f"getitem: index {value} is out of bounds for {where} with size {bound} (an index "
        f"tensor, checked on the device)")


for _axis in range(10):
    rt.register_error(INDEX_RANGE + _axis, _index_range_error(_axis))

# ---------------------------------------------------------------- kernels


def _make_strided_gather_kernel():
    """``out[i] = x[offset(i)]``, the offset from the output coordinates of ``i`` and per-dimension
    input strides (the permuted strides for permute, 0 on broadcast dims for broadcast_to)."""

    @cuda.jit
    def strided_gather_kernel(x, out, sizes, strides, n):
        for i in range(cuda.grid(1), n, cuda.gridsize(1)):
            out[i] = x[strided_offset(0, i, sizes, strides)]   # i's coordinates, x's strides

    return strided_gather_kernel


permute_fwd_kernel1 = _make_strided_gather_kernel()
broadcast_to_fwd_kernel1 = _make_strided_gather_kernel()


@cuda.jit
def index_fwd_kernel1(x, src, out, n):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        out[i] = x[src[i]]          # src: flat offsets into x, computed on the host


@cuda.jit
def index_bwd_kernel1(grad, src, out, n):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        # Several i may share one src[i] (a repeated index): the add must be atomic.
        cuda.atomic.add(out, src[i], grad[i])


@cuda.jit(device=True)
def wrap_index(k, size):
    """Index ``k`` of an axis of ``size``, a negative one counted from the end (as NumPy);
    out of range if it is still outside [0, size)."""
    return k + size if k < 0 else k


@cuda.jit(device=True)
def checked_index(idx, j, axis_size, flag, code):
    """``idx[j]`` wrapped (``wrap_index``), or -1 if out of range, after reporting it to the host
    (raised at the next sync); the caller then skips the element."""
    k = wrap_index(idx[j], axis_size)
    if k < 0 or k >= axis_size:
        report_error(flag, code, idx[j], axis_size)
        return -1
    return k


@cuda.jit
def index_fwd_kernel2(x, idx, out, sizes, strides, base, inner, count, axis_size, axis_stride,
                      flag, code, n):
    # out is (before..., count, after...) with inner = the product of the sizes after: output o
    # takes index j = (o // inner) % count. sizes/strides step x over every output dimension
    # but the index's (stride 0 there); the index adds k * axis_stride.
    for o in range(cuda.grid(1), n, cuda.gridsize(1)):
        j = (o // inner) % count
        k = checked_index(idx, j, axis_size, flag, code)
        if k >= 0:
            out[o] = x[strided_offset(base, o, sizes, strides) + k * axis_stride]


@cuda.jit
def index_bwd_kernel2(grad, idx, out, sizes, strides, base, inner, count, axis_size, axis_stride,
                      flag, code, n):
    # The layout of index_fwd_kernel2, grad in out's place. Gradients of one index repeated go to
    # one element of out: the thread of its first occurrence j sums them all in the order of j
    # (as np.add.at does) and stores the sum; the threads of later occurrences store nothing. No
    # atomics, so the result is the same at every run. Each thread scans idx: O(count) per element.
    zero = grad.dtype.type(0)
    for o in range(cuda.grid(1), n, cuda.gridsize(1)):
        j = (o // inner) % count
        k = checked_index(idx, j, axis_size, flag, code)
        if k < 0:
            continue
        first = o - j * inner                  # the element of index 0 beside o
        acc = zero
        owner = True
        for jj in range(count):
            if wrap_index(idx[jj], axis_size) == k:
                if jj < j:
                    owner = False              # an earlier occurrence's thread sums this one
                    break
                acc += grad[first + jj * inner]
        if owner:
            out[strided_offset(base, o, sizes, strides) + k * axis_stride] = acc


@cuda.jit
def index_bwd_kernel3(grad, idx, out, sizes, strides, base, inner, count, axis_size, axis_stride,
                      flag, code, n):
    # index_bwd_kernel2's layout with atomic adds, for more than ORDERED_BWD_MAX indices: the
    # order of the adds into a repeated index's element is not fixed.
    for o in range(cuda.grid(1), n, cuda.gridsize(1)):
        j = (o // inner) % count
        k = checked_index(idx, j, axis_size, flag, code)
        if k >= 0:
            cuda.atomic.add(out, strided_offset(base, o, sizes, strides) + k * axis_stride,
                            grad[o])


@cuda.jit
def index_put_fwd_kernel1(value, pos, dst, out, n):
    for j in range(cuda.grid(1), n, cuda.gridsize(1)):
        out[dst[j]] = value[pos[j]]     # dst holds distinct offsets: no two threads collide


@cuda.jit
def concat_fwd_kernel1(x, out, block_in, block_out, offset, n):
    # x is (outer) blocks of block_in = k*inner contiguous elements; block o goes to
    # o*block_out + offset in out, block_out = K*inner, offset = (rows before x)*inner.
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        o = i // block_in
        out[o * block_out + offset + (i - o * block_in)] = x[i]


@cuda.jit
def copy_into_fwd_kernel1(src, dst, n):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        dst[i] = src[i]


@functools.lru_cache(maxsize=None)
def make_astype_kernel(to_bool):
    """``astype_fwd_kernel1``: the store converts (``to_bool`` False), or ``x != 0`` (True).
    ``to_bool`` is a compile-time constant, so Numba prunes the other branch."""

    @cuda.jit
    def astype_fwd_kernel1(x, out, n):
        for i in range(cuda.grid(1), n, cuda.gridsize(1)):
            if to_bool:
                out[i] = x[i] != 0          # NaN != 0: True, as in NumPy
            else:
                out[i] = x[i]               # the store converts (float to int64 truncates)

    return astype_fwd_kernel1


@cuda.jit
def full_fwd_kernel1(out, value, n):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        out[i] = value

# ---------------------------------------------------------------- host-side layout


@functools.lru_cache(maxsize=512)
def _gather_layout(dims):
    """Device int64 arrays (sizes, strides) of the coalesced ``dims``; cached per layout (only
    read by the kernels; a training step repeats its shapes, so one upload each)."""
    dims = rt.coalesce(dims)
    return (rt.constant(np.array([s for s, _ in dims], dtype=np.int64)),
            rt.constant(np.array([st for _, st in dims], dtype=np.int64)))


def _size(shape):
    return int(np.prod(shape, dtype=np.int64))


def _is_device_array(k):
    """Whether ``k`` is an array in device memory (every NumPy array, in the simulator)."""
    return hasattr(k, "__cuda_array_interface__") or (rt.SIMULATOR and isinstance(k, np.ndarray))


def _host_key(key):
    """``key`` as a tuple whose index arrays are NumPy arrays (device ones copied to the host:
    refused while a CUDA graph is captured, which cannot hold a host read)."""
    key = key if isinstance(key, tuple) else (key,)
    on_device = [k for k in key if _is_device_array(k)]
    if any(k.dtype == np.bool_ for k in on_device):
        rt.forbid_in_capture("indexing with a boolean mask")
    elif on_device:
        rt.forbid_in_capture("indexing with index tensors other than one int64 tensor beside "
                             "slices (and ints next to it)")
    return tuple(rt.to_numpy(k) if _is_device_array(k) else k for k in key)


# x[key] with one int64 index tensor idx on axis ``axis`` (of ``axis_size`` elements, each
# ``axis_stride`` apart in x), the rest of the key slices and ints:
# out.shape = before + idx.shape + after. ``dims`` are (size, stride in x) of every output
# dimension, the index's as one dimension of ``count = idx.size`` with stride 0; ``base`` the
# offset in x of the slices' starts and the ints; ``inner`` the product of the sizes ``after``.
IndexPlan = namedtuple("IndexPlan", "idx axis axis_size axis_stride shape dims base inner")


def _index_plan(shape, key):
    """The IndexPlan of ``x[key]`` for ``x`` of ``shape``, or None where ``key`` is not one
    int64 device array with slices, Ellipsis and ints, the ints next to the array (NumPy puts
    the index's dimensions first otherwise) and in range."""
    items, axis = [], None
    for k in key if isinstance(key, tuple) else (key,):
        if _is_device_array(k) and k.dtype == np.int64 and axis is None:
            axis = len(items)
        elif not (isinstance(k, slice) or k is Ellipsis
                  or (isinstance(k, (int, np.integer)) and not isinstance(k, (bool, np.bool_)))):
            return None
        items.append(k)
    ellipses = [d for d, k in enumerate(items) if k is Ellipsis]
    used = len(items) - len(ellipses)
    if axis is None or len(ellipses) > 1 or used > len(shape):
        return None
    fill = [slice(None)] * (len(shape) - used)
    at = ellipses[0] if ellipses else len(items)
    if ellipses and ellipses[0] < axis:
        axis += len(fill) - 1
    items = items[:at] + fill + items[at + 1:]
    advanced = [d for d, k in enumerate(items) if not isinstance(k, slice)]
    if advanced != list(range(advanced[0], advanced[-1] + 1)):
        return None
    strides, base, before, after = rt.c_strides(shape), 0, [], []
    for d, k in enumerate(items):
        if isinstance(k, slice):
            start, stop, step = k.indices(shape[d])
            (before if d < axis else after).append((len(range(start, stop, step)),
                                                    step * strides[d]))
            base += start * strides[d]
        elif d != axis:
            i = int(k) + (shape[d] if k < 0 else 0)
            if not 0 <= i < shape[d]:
                return None
            base += i * strides[d]
    idx = items[axis]
    out_shape = tuple(n for n, _ in before) + tuple(idx.shape) + tuple(n for n, _ in after)
    dims = tuple(before) + ((idx.size, 0),) + tuple(after)
    return IndexPlan(idx, axis, shape[axis], strides[axis], out_shape, dims, base,
                     _size([n for n, _ in after]))


def _launch_index(kernel, src, plan, out, n):
    """Launch ``kernel`` (index_fwd_kernel2, index_bwd_kernel2 or 3) of ``plan`` over ``n``
    elements: from ``src`` (x, or grad) into ``out``."""
    sizes, strides = _gather_layout(plan.dims)
    rt.launch(kernel, grid_blocks(n), THREADS,
              flat(src), flat(plan.idx), out.reshape(-1), sizes, strides, plan.base, plan.inner,
              plan.idx.size, plan.axis_size, plan.axis_stride, rt.expect_errors(),
              INDEX_RANGE + min(plan.axis, 9), n)


def _index_map(shape, key):
    """(device int64 array of flat source offsets, result shape) of ``x[key]`` for ``x`` of
    ``shape``: NumPy indexes an array of offsets on the host (O(size of x) host work). Keys made
    only of ints, slices, None and Ellipsis (an LSTM's ``x[t]``, say) are cached per shape, so a
    training step that repeats them uploads each map once; keys holding index arrays are not."""
    return _key_map(_build_index_map, shape, key)


def _put_map(shape, key):
    """(dst, pos, shape of ``x[key]``) for ``index_put``: device int64 arrays of the distinct
    flat offsets that ``x[key]`` writes and, for each, the position in ``x[key]`` of its last
    write. Cached per shape for plain keys, as ``_index_map``."""
    return _key_map(_build_put_map, shape, key)


def _key_map(build, shape, key):
    """``build(shape, key)``, cached per (build, shape, key) when ``key`` is plain."""
    plain = _plain_key(key)
    if plain is not None:
        return _cached_key_map(build, shape, plain)
    return build(shape, _host_key(key))


def _plain_key(key):
    """``key`` as a hashable tuple if it holds only ints, slices, None and Ellipsis, else None."""
    out = []
    for k in key if isinstance(key, tuple) else (key,):
        if isinstance(k, slice):
            out.append(("slice", k.start, k.stop, k.step))
        elif k is None or k is Ellipsis or (isinstance(k, (int, np.integer))
                                            and not isinstance(k, (bool, np.bool_))):
            out.append(k if not isinstance(k, np.integer) else int(k))
        else:
            return None
    return tuple(out)


@functools.lru_cache(maxsize=512)   # 256 maps of each kind, as before they shared one
def _cached_key_map(build, shape, plain):
    key = tuple(slice(*k[1:]) if isinstance(k, tuple) else k for k in plain)
    return build(shape, key)


def _offsets(shape, key, op):
    """The flat offsets into an array of ``shape`` that ``[key]`` selects, as NumPy indexes."""
    try:
        return np.arange(_size(shape), dtype=np.int64).reshape(shape)[key]
    except IndexError as e:
        raise IndexError(f"{op}: {e} (tensor of shape {shape})") from None


def _build_index_map(shape, key):
    src = np.array(_offsets(shape, key, "getitem"), dtype=np.int64, order="C")   # all-int keys
    return rt.from_numpy(src.reshape(-1)), src.shape                              # give 0-d


def _build_put_map(shape, key):
    offsets = _offsets(shape, key, "setitem")
    out_shape = np.shape(offsets)
    offsets = np.asarray(offsets, dtype=np.int64).reshape(-1)
    _, last = np.unique(offsets[::-1], return_index=True)   # first from the end = last write
    pos = (offsets.size - 1 - last).astype(np.int64)
    return rt.from_numpy(offsets[pos]), rt.from_numpy(pos), out_shape


def _check_dtype(dtype, what):
    dtype = np.dtype(dtype)
    if dtype not in SUPPORTED_DTYPES:
        raise TypeError(f"{what}: dtype {dtype} is not supported by the CUDA backend (supported: "
                        + ", ".join(str(d) for d in SUPPORTED_DTYPES) + ")")
    return dtype

# ---------------------------------------------------------------- launchers


def reshape(x, shape):
    """A view of ``x`` with ``shape`` (backend arrays are C-contiguous: no data moves)."""
    return x.reshape(shape)


def permute(x, axes):
    """``x`` with its axes reordered (``out.shape[d] = x.shape[axes[d]]``), C-contiguous."""
    nd = x.ndim
    axes = tuple(range(nd - 1, -1, -1)) if axes is None else tuple(int(a) % max(nd, 1)
                                                                    for a in axes)
    assert sorted(axes) == list(range(nd)), f"permute: {axes} is not a permutation of {nd} axes"
    strides = rt.c_strides(tuple(x.shape))
    out = rt.empty(tuple(x.shape[a] for a in axes), x.dtype)
    n = out.size
    if n:
        sizes, in_strides = _gather_layout(tuple((x.shape[a], strides[a]) for a in axes))
        rt.launch(permute_fwd_kernel1, grid_blocks(n), THREADS, flat(x), out.reshape(-1), sizes,
                  in_strides, n)
    return out


def broadcast_to(x, shape):
    """``x`` broadcast to ``shape`` (NumPy rules), materialised and C-contiguous."""
    shape = tuple(int(s) for s in shape)
    pad = len(shape) - x.ndim
    assert pad >= 0, f"broadcast_to: cannot broadcast {x.shape} to {shape}"
    in_shape = (1,) * pad + tuple(x.shape)
    strides = rt.c_strides(in_shape)
    dims = []
    for d, (m, k) in enumerate(zip(in_shape, shape)):
        assert m in (1, k), f"broadcast_to: cannot broadcast {x.shape} to {shape}"
        dims.append((k, strides[d] if m != 1 else 0))   # stride 0: every coordinate reads one
    out = rt.empty(shape, x.dtype)
    n = out.size
    if n:
        sizes, in_strides = _gather_layout(tuple(dims))
        rt.launch(broadcast_to_fwd_kernel1, grid_blocks(n), THREADS, flat(x), out.reshape(-1),
                  sizes, in_strides, n)
    return out


def index(x, key):
    """A copy of ``x[key]`` with NumPy's indexing rules (ints, slices, None, Ellipsis, lists, int
    and bool arrays). One int64 index array with slices and ints is gathered on the device, its
    values range-checked there (an error at the next sync); any other key through a map of source
    offsets built on the host (see the module docstring)."""
    plan = _index_plan(tuple(x.shape), key)
    if plan is not None:
        out = rt.empty(plan.shape, x.dtype)
        if out.size:
            _launch_index(index_fwd_kernel2, x, plan, out, out.size)
        return out
    src, shape = _index_map(tuple(x.shape), key)
    out = rt.empty(shape, x.dtype)
    n = out.size
    if n:
        rt.launch(index_fwd_kernel1, grid_blocks(n), THREADS, flat(x), src, out.reshape(-1), n)
    return out


def index_bwd(grad, key, shape):
    """Gradient of ``x[key]``: ``grad`` scattered with accumulation into zeros of ``shape``."""
    plan = _index_plan(tuple(shape), key)
    out_shape = plan.shape if plan is not None else None
    if plan is None:
        src, out_shape = _index_map(tuple(shape), key)
    if tuple(grad.shape) != tuple(out_shape):
        grad = broadcast_to(grad, out_shape)        # np.add.at broadcasts the values, too
    out = rt.zeros(tuple(shape), grad.dtype)
    n = grad.size
    if n and plan is not None:
        ordered = plan.idx.size <= ORDERED_BWD_MAX
        _launch_index(index_bwd_kernel2 if ordered else index_bwd_kernel3, grad, plan, out, n)
    elif n:
        rt.launch(index_bwd_kernel1, grid_blocks(n), THREADS, flat(grad), src, out.reshape(-1), n)
    return out


def index_put(x, key, value):
    """A copy of ``x`` with ``x[key] = value`` (``value`` of ``x``'s dtype, broadcast to the
    shape of ``x[key]``); where an index repeats, the last write wins, as in the NumPy backend."""
    _check_dtype(x.dtype, "index_put")
    dst, pos, shape = _put_map(tuple(x.shape), key)
    out = rt.copy(x)
    if tuple(value.shape) != tuple(shape):
        value = broadcast_to(value, shape)
    n = dst.size
    if n:
        rt.launch(index_put_fwd_kernel1, grid_blocks(n), THREADS, flat(value), pos, dst,
                  out.reshape(-1), n)
    return out


def concat(xs, axis):
    """The arrays ``xs`` (same dtype, same shape but along ``axis``) joined along ``axis``."""
    xs = list(xs)
    assert xs, "concat: no arrays"
    nd = xs[0].ndim
    axis = int(axis) % max(nd, 1)
    dtype = xs[0].dtype
    for x in xs:
        assert x.dtype == dtype, f"concat: dtypes differ ({dtype}, {x.dtype})"
        assert x.ndim == nd and all(x.shape[d] == xs[0].shape[d] for d in range(nd) if d != axis), \
            f"concat: shapes {[tuple(x.shape) for x in xs]} do not match off axis {axis}"
    total = sum(x.shape[axis] for x in xs)
    shape = tuple(xs[0].shape[:axis]) + (total,) + tuple(xs[0].shape[axis + 1:])
    inner = _size(shape[axis + 1:])
    out = rt.empty(shape, dtype)
    flat_out = out.reshape(-1)
    rows = 0
    for x in xs:
        n = x.size
        if n:
            rt.launch(concat_fwd_kernel1, grid_blocks(n), THREADS,
                      flat(x), flat_out, x.shape[axis] * inner, total * inner, rows * inner, n)
        rows += x.shape[axis]
    return out


def copy_into(dst, src):
    """Write ``src`` into the existing C-contiguous array ``dst`` (same shape and dtype)."""
    assert tuple(dst.shape) == tuple(src.shape), \
        f"copy_into: shapes differ ({dst.shape}, {src.shape})"
    assert dst.dtype == src.dtype, f"copy_into: dtypes differ ({dst.dtype}, {src.dtype})"
    assert dst.flags.c_contiguous, "copy_into: dst must be C-contiguous (written through a view)"
    n = dst.size
    if n:
        rt.launch(copy_into_fwd_kernel1, grid_blocks(n), THREADS, flat(src), dst.reshape(-1), n)


def astype(x, dtype):
    """A copy of ``x`` converted to ``dtype``, as ``numpy.ndarray.astype``; both dtypes among
    ``SUPPORTED_DTYPES`` (float32, float64, int64, bool), else ``TypeError``."""
    src_dtype = _check_dtype(x.dtype, "astype")
    dtype = _check_dtype(dtype, "astype")
    out = rt.empty(tuple(x.shape), dtype)
    n = out.size
    if n:
        kernel = make_astype_kernel(dtype == np.bool_ and src_dtype != np.bool_)
        rt.launch(kernel, grid_blocks(n), THREADS, flat(x), out.reshape(-1), n)
    return out


def full(shape, value, dtype):
    """A new array of ``shape`` filled with ``value`` taken in ``dtype`` (one of
    ``SUPPORTED_DTYPES``)."""
    dtype = _check_dtype(dtype, "full")
    out = rt.empty(shape, dtype)
    n = out.size
    if n:
        rt.launch(full_fwd_kernel1, grid_blocks(n), THREADS, out.reshape(-1), dtype.type(value), n)
    return out

# ---------------------------------------------------------------- compile check

def _signatures():
    idx = int64[::1]
    # sizes, strides, base, inner, count, axis_size, axis_stride, flag, code, n
    index_args = (idx, idx) + (int64,) * 5 + (idx, int64, int64)
    sigs = []
    # Data movement in the float dtypes; full also makes int64 and bool arrays (masks, targets).
    for f in (float32, float64):
        arr = f[::1]
        sigs += [
            ("permute_fwd_kernel1", permute_fwd_kernel1, (arr, arr, idx, idx, int64)),
            ("broadcast_to_fwd_kernel1", broadcast_to_fwd_kernel1, (arr, arr, idx, idx, int64)),
            ("index_fwd_kernel1", index_fwd_kernel1, (arr, idx, arr, int64)),
            ("index_bwd_kernel1", index_bwd_kernel1, (arr, idx, arr, int64)),
            (f"index_bwd_kernel2_{f}", index_bwd_kernel2, (arr, idx, arr) + index_args),
            (f"index_bwd_kernel3_{f}", index_bwd_kernel3, (arr, idx, arr) + index_args),
            ("concat_fwd_kernel1", concat_fwd_kernel1, (arr, arr, int64, int64, int64, int64)),
            ("copy_into_fwd_kernel1", copy_into_fwd_kernel1, (arr, arr, int64)),
        ]
    for d in SUPPORTED_DTYPES:
        t = NUMBA_STORAGE_DTYPES[d]
        sigs.append((f"full_fwd_kernel1_{d}", full_fwd_kernel1, (t[::1], t, int64)))
        # x[idx] of any tensor (an int64 argmax, a bool mask, a float batch).
        sigs.append((f"index_fwd_kernel2_{d}", index_fwd_kernel2,
                     (t[::1], idx, t[::1]) + index_args))
        # x[key] = value on any tensor (token ids, masks, floats).
        sigs.append((f"index_put_fwd_kernel1_{d}", index_put_fwd_kernel1,
                     (t[::1], idx, idx, t[::1], int64)))
    # The generator state of dropout, reseeded in place (tilegrad.random).
    sigs.append(("copy_into_fwd_kernel1_uint64", copy_into_fwd_kernel1,
                 (uint64[::1], uint64[::1], int64)))
    # Every supported astype pair, with the kernel the launcher picks for it.
    for a in SUPPORTED_DTYPES:
        for b in SUPPORTED_DTYPES:
            kernel = make_astype_kernel(b == np.bool_ and a != np.bool_)
            sigs.append((f"astype_fwd_kernel1_{a}_to_{b}", kernel,
                         (NUMBA_STORAGE_DTYPES[a][::1], NUMBA_STORAGE_DTYPES[b][::1], int64)))
    return sigs


# (name, kernel, numba signature) for every kernel and dtype the launchers use on a GPU.
PTX_SIGNATURES = _signatures()
