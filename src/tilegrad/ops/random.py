"""Functions that draw random numbers on the inputs' device: dropout."""
from ..autograd import Function


class Dropout(Function):
    """``x * mask / (1 - p)``, the mask drawn by the backend from the counter generator ``state``
    (advanced on the device); the backward multiplies by the same mask and scale."""
    name = "dropout"

    def forward(self, x, p, state):
        self.p = p
        y, mask = self.backend.dropout_fwd(x, p, state)
        self.save_for_backward(mask)
        return y

    def backward(self, grad):
        mask, = self.saved
        return self.backend.dropout_bwd(grad, mask, self.p)
