"""128-bit global loads and stores for Numba CUDA kernels: ``load_vec`` and ``store_vec``.

Numba has no arrays of vector type, so four float32 loads from global memory stay four 32-bit
``LDG.E`` instructions even when they are adjacent: LLVM cannot merge them without knowing that
the address is 16-byte aligned, and a Numba array's data pointer carries no alignment. These two
intrinsics emit one aligned LLVM ``<n x T>`` load or store instead, which the NVPTX backend turns
into ``ld.global.v4.f32`` (``LDG.E.128`` in SASS) or ``ld.global.v2.f64``:

    v0, v1, v2, v3 = load_vec(a, i, 4)      # a[i], a[i+1], a[i+2], a[i+3], one instruction
    store_vec(c, i, (v0, v1, v2, v3))        # c[i:i+4] = ..., one instruction

``load_l2(a, i)`` reads ``a[i]`` through L2 only (``ld.global.cg``), never from a line the
multiprocessor's L1 may hold from before another block wrote it: how a block reads what other
blocks wrote during the same launch (matmul's split-K).

``width`` must be a compile-time constant, and ``width * itemsize`` must be 16 (4 x float32 or
2 x float64). The caller guarantees what the instruction needs: ``&a[i]`` 16-byte aligned and
``a[i:i+width]`` in bounds. A misaligned vector access is a fault on a GPU ("misaligned
address"); the launchers that use these check the base pointers, offsets and leading dimensions
first and otherwise pick a kernel made with scalar loads.

The index is zero-extended (treated as unsigned), as the kernels that use it index with unsigned
integers.

Under Numba's simulator (``NUMBA_ENABLE_CUDASIM=1``) both are plain Python functions doing the
same, and they raise on an address that is not 16-byte aligned, as the GPU would fault: so the
simulator tests catch a launcher that sends an offset view down the vector path.
"""
from numba import config, types

SIMULATOR = bool(config.ENABLE_CUDASIM)
VECTOR_BYTES = 16


def _check_width(dtype, width):
    if width * dtype.bitwidth != 8 * VECTOR_BYTES:
        raise TypeError(f"load_vec/store_vec: {width} x {dtype} is not {VECTOR_BYTES} bytes")


if SIMULATOR:
    def _address(arr, i):
        base = arr._ary if hasattr(arr, "_ary") else arr      # the simulator's array wrapper
        return base.__array_interface__["data"][0] + int(i) * base.itemsize

    def load_vec(arr, i, width):
        if _address(arr, i) % VECTOR_BYTES:
            raise ValueError(f"load_vec: misaligned address for element {i} (a GPU would fault)")
        return tuple(arr[int(i) + j] for j in range(width))

    def load_l2(arr, i):
        return arr[i]

    def store_vec(arr, i, values):
        if _address(arr, i) % VECTOR_BYTES:
            raise ValueError(f"store_vec: misaligned address for element {i} (a GPU would fault)")
        for j, v in enumerate(values):
            arr[int(i) + j] = v
else:
    from llvmlite import ir
    from numba.cuda import ldcg as load_l2      # noqa: F401  (ld.global.cg: L2, never L1)
    from numba.cuda.extending import intrinsic

    def _element_pointer(context, builder, arrty, arr, index, indexty):
        """The vector pointer to ``arr[index]``, with the index zero-extended to 64 bits."""
        ary = context.make_array(arrty)(context, builder, arr)
        i64 = ir.IntType(64)
        if indexty.bitwidth < 64:
            index = builder.zext(index, i64)
        return builder.gep(ary.data, [index])

    @intrinsic
    def load_vec(typingctx, arr, index, width):
        if not (isinstance(arr, types.Array) and arr.ndim == 1 and arr.layout == "C"
                and isinstance(index, types.Integer)
                and isinstance(width, (types.IntegerLiteral, types.Literal))):
            return None
        n = width.literal_value
        _check_width(arr.dtype, n)
        sig = types.UniTuple(arr.dtype, n)(arr, index, width)

        def codegen(context, builder, signature, args):
            elem = context.get_data_type(arr.dtype)
            vty = ir.VectorType(elem, n)
            ptr = _element_pointer(context, builder, arr, args[0], args[1], index)
            vec = builder.load(builder.bitcast(ptr, vty.as_pointer()), align=VECTOR_BYTES)
            parts = [builder.extract_element(vec, ir.Constant(ir.IntType(32), j))
                     for j in range(n)]
            return context.make_tuple(builder, signature.return_type, parts)
        return sig, codegen

    @intrinsic
    def store_vec(typingctx, arr, index, values):
        if not (isinstance(arr, types.Array) and arr.ndim == 1 and arr.layout == "C"
                and isinstance(index, types.Integer)
                and isinstance(values, types.UniTuple) and values.dtype == arr.dtype):
            return None
        n = values.count
        _check_width(arr.dtype, n)
        sig = types.void(arr, index, values)

        def codegen(context, builder, signature, args):
            elem = context.get_data_type(arr.dtype)
            vty = ir.VectorType(elem, n)
            vec = ir.Constant(vty, ir.Undefined)
            for j in range(n):
                vec = builder.insert_element(vec, builder.extract_value(args[2], j),
                                             ir.Constant(ir.IntType(32), j))
            ptr = _element_pointer(context, builder, arr, args[0], args[1], index)
            builder.store(vec, builder.bitcast(ptr, vty.as_pointer()), align=VECTOR_BYTES)
            return context.get_dummy_value()
        return sig, codegen
