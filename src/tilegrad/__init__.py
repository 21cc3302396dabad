"""tilegrad: a small deep-learning framework with hand-written kernels and PyTorch's API.

>>> import tilegrad
>>> x = tilegrad.randn(3, 4, requires_grad=True)
>>> (x * x).sum().backward()
>>> x.grad.shape
(3, 4)
"""
from . import autograd
from .autograd import enable_grad, is_grad_enabled, no_grad, set_grad_enabled
from .backends import (Device, DeviceUnavailableError, device, devices, get_default_device,
                       set_default_device)
from .backends.cpu import get_num_threads, set_num_threads
from .dtypes import (bool_, double, float32, float64, get_default_dtype, int32, int64, long,
                     set_default_dtype, uint8)
from .random import get_rng_state, manual_seed, set_rng_state
from .random import Generator
from .serialization import load, save
from .creation import (arange, from_numpy, full, ones, ones_like, rand, randn, tensor, zeros,
                       zeros_like)
from .tensor import Tensor, cat, matmul, stack
from .creation import (as_tensor, empty, empty_like, eye, full_like, rand_like, randint,
                       randn_like)
from .interop import from_dlpack
from .sampling import multinomial
from .tensor_ops import (abs, add, all, allclose, amax, amin, any, argmax, argmin, clamp, clip, div,
                         eq, exp, flatten, ge, gt, isclose, le, log, lt, masked_fill, max,
                         maximum, mean, min, minimum, mul, narrow, ne, neg, permute, pow, relu,
                         reshape, sigmoid, sqrt, squeeze, std, sub, sum, t, tanh, transpose, tril,
                         triu, unbind, unsqueeze, var, where)
from .tensor_ops import cos, sin
from . import accelerator, cuda, distributed, nn, optim, utils  # noqa: E402  (they build on the names above)

float = float32   # torch.float

__version__ = "0.1.0"

__all__ = [
    "Tensor", "tensor", "from_numpy", "zeros", "ones", "full", "zeros_like", "ones_like", "randn",
    "rand", "arange", "cat", "stack", "matmul", "no_grad", "enable_grad", "is_grad_enabled",
    "set_grad_enabled", "get_num_threads", "set_num_threads", "manual_seed", "get_rng_state",
    "set_rng_state", "save", "load", "device", "devices", "get_default_device",
    "set_default_device", "Device", "DeviceUnavailableError", "float32", "float64", "double",
    "int32", "int64", "long", "uint8", "bool_", "get_default_dtype", "set_default_dtype", "nn",
    "optim", "autograd", "cuda",
    "Generator", "utils", "accelerator", "distributed",
    # interop, more creation functions, and the tensor functions of the torch namespace
    "from_dlpack", "as_tensor", "empty", "empty_like", "eye", "full_like", "rand_like",
    "randint", "randn_like", "abs", "add", "all", "allclose", "amax", "amin", "any", "argmax",
    "argmin", "clamp", "clip", "div", "eq", "exp", "flatten", "ge", "gt", "isclose", "le", "log",
    "lt", "masked_fill", "max", "maximum", "mean", "min", "minimum", "mul", "narrow", "ne",
    "neg", "permute", "pow", "relu", "reshape", "sigmoid", "sqrt", "squeeze", "std", "sub",
    "sum", "t", "tanh", "transpose", "tril", "triu", "unbind", "unsqueeze", "var", "where",
    "sin", "cos", "multinomial",
]
