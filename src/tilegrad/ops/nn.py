"""Functions for the layers: matmul, linear, conv2d, max_pool2d, LSTM cell, softmax and
cross-entropy, embedding. Each forward and backward is one or a few backend primitives."""
from ..autograd import Function
from .elementwise import unbroadcast


class MatMul(Function):
    """``a @ b`` for operands of 2 or more dimensions; leading dimensions broadcast."""
    name = "matmul"

    def forward(self, a, b):
        self.save_for_backward(a, b)
        return self.backend.matmul(a, b)

    def backward(self, grad):
        a, b = self.saved
        be = self.backend
        ga = gb = None
        if self.needs_input_grad[0]:   # dA = dC @ B^T
            ga = unbroadcast(be, be.matmul(grad, b, trans_b=True), a.shape)
        if self.needs_input_grad[1]:   # dB = A^T @ dC
            gb = unbroadcast(be, be.matmul(a, grad, trans_a=True), b.shape)
        return ga, gb


class Linear(Function):
    """``x @ w.T + b`` for x (N, in), w (out, in), b (out,) or None; optionally ReLU fused."""
    name = "linear"

    def forward(self, x, w, b, relu=False):
        self.has_bias, self.relu = b is not None, relu
        y = self.backend.matmul(x, w, trans_b=True, bias=b, relu=relu)
        self.save_for_backward(x, w, y)
        return y

    def backward(self, grad):
        x, w, y = self.saved
        be = self.backend
        if self.relu:
            grad = be.relu_bwd(grad, y)
        gx = be.matmul(grad, w) if self.needs_input_grad[0] else None              # (N, in)
        gw = be.matmul(grad, x, trans_a=True) if self.needs_input_grad[1] else None  # (out, in)
        if not self.has_bias:
            return gx, gw
        gb = be.sum(grad, (0,), False) if self.needs_input_grad[2] else None
        return gx, gw, gb


class Conv2d(Function):
    """2-D cross-correlation: x (N, C, H, W), w (F, C, KH, KW), b (F,) or None."""
    name = "conv2d"

    def forward(self, x, w, b, stride, padding):
        self.has_bias, self.stride, self.padding = b is not None, stride, padding
        self.save_for_backward(x, w)
        return self.backend.conv2d_fwd(x, w, b, stride, padding)

    def backward(self, grad):
        x, w = self.saved
        be = self.backend
        gx = gw = None
        if self.needs_input_grad[0]:
            gx = be.conv2d_bwd_data(grad, w, tuple(x.shape), self.stride, self.padding)
        if self.needs_input_grad[1]:
            gw = be.conv2d_bwd_weight(grad, x, tuple(w.shape), self.stride, self.padding)
        if not self.has_bias:
            return gx, gw
        gb = be.sum(grad, (0, 2, 3), False) if self.needs_input_grad[2] else None
        return gx, gw, gb


class MaxPool2d(Function):
    name = "max_pool2d"

    def forward(self, x, kernel, stride, padding):
        self.in_shape = tuple(x.shape)
        y, argmax = self.backend.max_pool2d_fwd(x, kernel, stride, padding)
        self.save_for_backward(argmax)
        return y

    def backward(self, grad):
        return self.backend.max_pool2d_bwd(grad, self.saved[0], self.in_shape)


class LSTMCellPointwise(Function):
    """The LSTM cell after its two GEMMs: (gates (B, 4H), c_prev (B, H)) -> (h, c)."""
    name = "lstm_cell"

    def forward(self, gates, c_prev):
        h, c, acts = self.backend.lstm_cell_fwd(gates, c_prev)
        self.save_for_backward(acts, c, c_prev)
        return h, c

    def backward(self, grad_h, grad_c):
        acts, c, c_prev = self.saved
        be = self.backend
        if grad_h is None:
            grad_h = be.zeros(c.shape, c.dtype)
        if grad_c is None:
            grad_c = be.zeros(c.shape, c.dtype)
        return be.lstm_cell_bwd(grad_h, grad_c, acts, c, c_prev)


class LogSoftmax(Function):
    """log_softmax over the last dimension."""
    name = "log_softmax"

    def forward(self, x):
        y = self.backend.log_softmax_fwd(x)
        self.save_for_backward(y)
        return y

    def backward(self, grad):
        return self.backend.log_softmax_bwd(grad, self.saved[0])


class CrossEntropy(Function):
    """Softmax and negative log-likelihood fused: logits (N, C), integer target (N,); the
    reduction ('none', 'sum', 'mean') is part of both primitives, so that the backward reads the
    reduced loss's gradient where it lies (no broadcast, no scaling). Rows whose target is
    ``ignore_index`` give loss 0, gradient 0, and are not counted by 'mean'."""
    name = "cross_entropy"

    def forward(self, logits, target, reduction, ignore_index=-100):
        self.reduction, self.ignore_index = reduction, ignore_index
        self.save_for_backward(logits, target)
        return self.backend.cross_entropy_fwd(logits, target, reduction, ignore_index)

    def backward(self, grad):
        logits, target = self.saved
        return self.backend.cross_entropy_bwd(logits, target, grad, self.reduction,
                                              self.ignore_index), None


class Embedding(Function):
    """Rows of weight (V, D) gathered by an integer index tensor of any shape."""
    name = "embedding"

    def forward(self, weight, idx):
        self.num_embeddings = weight.shape[0]
        self.save_for_backward(idx)
        return self.backend.embedding_fwd(weight, idx)

    def backward(self, grad):
        (idx,) = self.saved
        return self.backend.embedding_bwd(grad, idx, self.num_embeddings), None
