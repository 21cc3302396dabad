"""Functions that move data without arithmetic: reshape, permute, index, concatenate."""
import numbers

from ..autograd import Function


class Reshape(Function):
    """A view: the backends reshape C-contiguous arrays without moving data, so the output
    shares the input's storage (and its version counter)."""
    name = "reshape"
    view = True

    def forward(self, x, shape):
        self.in_shape = tuple(x.shape)
        return self.backend.reshape(x, shape)

    def backward(self, grad):
        return self.backend.reshape(grad, self.in_shape)


class Permute(Function):
    name = "permute"
    copies_a_view = True   # a view in PyTorch, a copy here

    def forward(self, x, axes):
        self.axes = axes
        return self.backend.permute(x, axes)

    def backward(self, grad):
        inverse = [0] * len(self.axes)
        for k, a in enumerate(self.axes):
            inverse[a] = k
        return self.backend.permute(grad, tuple(inverse))


class Expand(Function):
    name = "expand"
    copies_a_view = True   # a view in PyTorch, a copy here

    def forward(self, x, shape):
        self.in_shape = tuple(x.shape)
        return self.backend.broadcast_to(x, shape)

    def backward(self, grad):
        from .elementwise import unbroadcast
        return unbroadcast(self.backend, grad, self.in_shape)


class Index(Function):
    """``x[key]``; ``key`` already holds backend arrays in place of any index tensors."""
    name = "getitem"

    def forward(self, x, key):
        self.in_shape, self.key = tuple(x.shape), key
        # Basic indexing (ints, slices, None, ...) is a view in PyTorch; here it is a copy.
        self.copies_a_view = all(
            k is None or k is Ellipsis or isinstance(k, (numbers.Integral, slice)) for k in key)
        return self.backend.index(x, key)

    def backward(self, grad):
        return self.backend.index_bwd(grad, self.key, self.in_shape)


class IndexPut(Function):
    """``x`` with ``x[key] = value``, out of place (``Tensor.__setitem__`` writes it back); ``key``
    holds backend arrays in place of index tensors, ``value`` has ``x``'s dtype and broadcasts to
    ``x[key]``'s shape. Gradients as PyTorch's: ``x``'s is zero where it was overwritten;
    ``value``'s is the gradient at ``key``, summed to ``value``'s shape (each occurrence of a
    repeated index passes it on, whichever write won)."""
    name = "index_put"

    def forward(self, x, value, key):
        self.key, self.value_shape = key, tuple(value.shape)
        return self.backend.index_put(x, key, value)

    def backward(self, grad):
        from .elementwise import unbroadcast
        be = self.backend
        gx = gv = None
        if self.needs_input_grad[0]:
            gx = be.index_put(grad, self.key, be.zeros((), grad.dtype))
        if self.needs_input_grad[1]:
            gv = unbroadcast(be, be.index(grad, self.key), self.value_shape)
        return gx, gv


class Unbind(Function):
    """The slices of ``x`` along ``axis``, as separate outputs. The backward pass stacks their
    gradients once (zeros for unused slices): cheaper than indexing slice by slice, where each
    slice's backward would scatter into a zero array the size of ``x``."""
    name = "unbind"
    copies_a_view = True   # views in PyTorch, copies here

    def forward(self, x, axis):
        self.axis, self.in_shape = axis, tuple(x.shape)
        n = x.shape[axis]
        return tuple(self.backend.index(x, (slice(None),) * axis + (k,)) for k in range(n))

    def backward(self, *grads):
        be = self.backend
        part = self.in_shape[:self.axis] + (1,) + self.in_shape[self.axis + 1:]
        slice_shape = self.in_shape[:self.axis] + self.in_shape[self.axis + 1:]
        dtype = next(g for g in grads if g is not None).dtype
        pieces = [be.reshape(be.zeros(slice_shape, dtype) if g is None else g, part) for g in grads]
        return be.concat(pieces, self.axis)


class Cat(Function):
    """Concatenation of any number of tensors along ``axis``."""
    name = "cat"

    def forward(self, *xs, axis):
        self.axis = axis
        self.sizes = [x.shape[axis] for x in xs]
        return self.backend.concat(list(xs), axis)

    def backward(self, grad):
        grads, start = [], 0
        for n in self.sizes:
            key = (slice(None),) * self.axis + (slice(start, start + n),)
            grads.append(self.backend.index(grad, key))
            start += n
        return tuple(grads)


class Cast(Function):
    name = "to"

    def forward(self, x, dtype):
        self.in_dtype = x.dtype
        return self.backend.astype(x, dtype)

    def backward(self, grad):
        return self.backend.astype(grad, self.in_dtype)


class ToDevice(Function):
    name = "to"

    def forward(self, x, device):
        self.src = self.backend
        self.dst, self.out_device = device.backend, device
        return device.backend.from_numpy(self.backend.to_numpy(x))

    def backward(self, grad):
        return self.src.from_numpy(self.dst.to_numpy(grad))
