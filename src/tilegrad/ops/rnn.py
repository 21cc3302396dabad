"""Functions for recurrent layers: one LSTM layer over a whole sequence, as one autograd node."""
from ..autograd import Function

# The layer's inputs in order; the optional ones (biases, initial state) may be None, and only
# the tensors among them are the node's inputs (and get a gradient back).
_INPUTS = ("x", "w_ih", "w_hh", "b_ih", "b_hh", "h0", "c0")


class LSTMLayer(Function):
    """One unidirectional LSTM layer over T steps, gates in PyTorch's order i, f, g, o:
    ``gates_t = x_t @ w_ih.T + b_ih + h_{t-1} @ w_hh.T + b_hh``, ``c_t = f*c_{t-1} + i*g``,
    ``h_t = o*tanh(c_t)``.

    Inputs: x (T, B, I), w_ih (4H, I), w_hh (4H, H), b_ih and b_hh (4H,) or None, h0 and c0
    (B, H) or None (zeros). Outputs: y (T, B, H) (h_1..h_T), h_n and c_n (B, H).

    Forward: one GEMM projects the inputs of all T steps (``matmul`` with the fused b_ih), then
    ``lstm_seq_fwd`` runs the recurrence (two launches a step). Backward: ``lstm_seq_bwd`` runs
    it back (two launches a step, one fewer without h0's gradient) to the gates' gradients of
    every step, dgates (T*B, 4H); then, over all T*B rows at once, ``dx = dgates @ w_ih``,
    ``dw_ih = dgates^T @ x``, ``dw_hh = dgates^T @ [h_0 .. h_{T-1}]`` and the two (equal) bias
    gradients from one ``lstm_bias_bwd``.
    """
    name = "lstm"

    def forward(self, x, w_ih, w_hh, b_ih, b_hh, h0, c0):
        be = self.backend
        steps, bs, n_in = x.shape
        g = w_ih.shape[0]
        self.inputs = tuple(n for n, a in zip(_INPUTS, (x, w_ih, w_hh, b_ih, b_hh, h0, c0))
                            if a is not None)
        xproj = be.matmul(be.reshape(x, (steps * bs, n_in)), w_ih, trans_b=True, bias=b_ih)
        y, h_n, c_n, h_prev, cs, acts = be.lstm_seq_fwd(be.reshape(xproj, (steps, bs, g)), h0,
                                                        c0, w_hh, b_hh)
        # y is saved only for its version: h_prev shares its storage, so an in-place change of
        # the output would change what the w_hh gradient reads.
        self.save_for_backward(x, w_ih, w_hh, y, h_prev, cs, acts)
        return y, h_n, c_n

    def backward(self, grad_y, grad_hn, grad_cn):
        x, w_ih, w_hh, _, h_prev, cs, acts = self.saved
        be = self.backend
        need = dict(zip(self.inputs, self.needs_input_grad))
        steps, bs, g = acts.shape
        rows = steps * bs
        dgates, dh0, dc0 = be.lstm_seq_bwd(grad_y, grad_hn, grad_cn, cs, acts, w_hh,
                                           need.get("h0", False))
        d2 = be.reshape(dgates, (rows, g))
        out = {"h0": dh0, "c0": dc0}
        if need["x"]:
            out["x"] = be.reshape(be.matmul(d2, w_ih), tuple(x.shape))
        if need["w_ih"]:
            out["w_ih"] = be.matmul(d2, be.reshape(x, (rows, x.shape[2])), trans_a=True)
        if need["w_hh"]:
            out["w_hh"] = be.matmul(d2, be.reshape(h_prev, (rows, g // 4)), trans_a=True)
        if need.get("b_ih") or need.get("b_hh"):
            out["b_ih"], out["b_hh"] = be.lstm_bias_bwd(dgates)
        return tuple(out.get(n) if need[n] else None for n in self.inputs)
