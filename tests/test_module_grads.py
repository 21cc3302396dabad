"""Every layer module: parameter and input gradients against central differences (float64).

The functional ops are checked the same way in test_functional.py; this closes the loop for the
modules, which add parameter registration, reshapes (LSTM's one-GEMM input projection, batch_first)
and state handling on top.
"""
import numpy as np
import pytest

import tilegrad as tg
from tilegrad.testing import assert_close, rng


def _outputs(out):
    """A module's outputs as a flat list: LSTM gives ``output, (h_n, c_n)``."""
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in _outputs(o)]
    return [out]


def _objective(m, inputs, weights):
    return sum((o * tg.tensor(w)).sum() for o, w in zip(_outputs(m(*inputs)), weights))


def check_module_grads(m, arrays, eps=1e-6, rtol=1e-5, atol=1e-8):
    """Analytical gradients of ``sum(w * m(*inputs))`` against central differences, for every
    parameter of ``m`` and every float input."""
    inputs = [tg.tensor(a, requires_grad=a.dtype.kind == "f") for a in arrays]
    with tg.no_grad():
        probe = _outputs(m(*[tg.tensor(a) for a in arrays]))
    r = rng(5)
    weights = [r.standard_normal(o.shape) for o in probe]
    _objective(m, inputs, weights).backward()

    def value():
        with tg.no_grad():
            return _objective(m, [tg.tensor(a) for a in arrays], weights).item()

    for name, p in m.named_parameters():
        flat = p._data.reshape(-1)            # the NumPy backend's storage, perturbed in place
        num = np.zeros(flat.size)
        for i in range(flat.size):
            keep = flat[i]
            flat[i] = keep + eps
            up = value()
            flat[i] = keep - eps
            down = value()
            flat[i] = keep
            num[i] = (up - down) / (2 * eps)
        assert_close(p.grad.numpy().reshape(-1), num, rtol, atol, what=f"gradient of {name}")
    for k, (a, t) in enumerate(zip(arrays, inputs)):
        if a.dtype.kind != "f":
            continue
        num = np.zeros(a.size)
        for i in range(a.size):
            plus, minus = a.copy(), a.copy()
            plus.reshape(-1)[i] += eps
            minus.reshape(-1)[i] -= eps
            args_p = [plus if j == k else b for j, b in enumerate(arrays)]
            args_m = [minus if j == k else b for j, b in enumerate(arrays)]
            with tg.no_grad():
                up = _objective(m, [tg.tensor(b) for b in args_p], weights).item()
                down = _objective(m, [tg.tensor(b) for b in args_m], weights).item()
            num[i] = (up - down) / (2 * eps)
        assert_close(t.grad.numpy().reshape(-1), num, rtol, atol, what=f"gradient of input {k}")


def _r(*shape, seed=0):
    return rng(seed).standard_normal(shape)


CASES = {
    "Linear": (lambda: tg.nn.Linear(3, 2), [_r(2, 3)]),
    "Conv2d": (lambda: tg.nn.Conv2d(2, 3, 3, stride=2, padding=1), [_r(1, 2, 5, 4)]),
    "MaxPool2d": (lambda: tg.nn.MaxPool2d(3, 2), [_r(1, 2, 5, 5)]),
    "ReLU": (lambda: tg.nn.ReLU(), [_r(3, 4)]),
    "Flatten": (lambda: tg.nn.Flatten(), [_r(2, 3, 2)]),
    "Embedding": (lambda: tg.nn.Embedding(4, 3), [np.array([[1, 3, 1], [0, 1, 2]])]),
    "LSTMCell": (lambda: tg.nn.LSTMCell(3, 2), [_r(2, 3)]),
    "LSTM": (lambda: tg.nn.LSTM(3, 2, num_layers=2), [_r(3, 2, 3)]),
    "LSTM-batch-first": (lambda: tg.nn.LSTM(2, 3, batch_first=True), [_r(2, 3, 2)]),
    "Sequential": (lambda: tg.nn.Sequential(tg.nn.Linear(3, 4), tg.nn.ReLU(), tg.nn.Linear(4, 2)),
                   [_r(3, 3)]),
    "CrossEntropyLoss": (lambda: tg.nn.CrossEntropyLoss(), [_r(3, 5), np.array([4, 0, 4])]),
    "Dropout-eval": (lambda: tg.nn.Dropout(0.3).eval(), [_r(2, 3)]),
}


@pytest.mark.parametrize("name", CASES)
def test_module_gradients_match_central_differences(name):
    tg.set_default_dtype(tg.float64)   # reset by the conftest fixture
    make, arrays = CASES[name]
    check_module_grads(make(), arrays)
