"""Layers and containers under torch.nn's names."""
from . import functional, init, utils
from .layers import (Conv2d, CrossEntropyLoss, Dropout, Embedding, Flatten, Linear, MaxPool2d,
                     ReLU, Sequential)
from .module import Module, Parameter
from .container import ModuleDict, ModuleList, ParameterDict, ParameterList
from .normalization import BatchNorm1d, BatchNorm2d, LayerNorm
from .rnn import LSTM, LSTMCell
from .activation import GELU, Identity, LeakyReLU, LogSoftmax, Sigmoid, Softmax, Tanh
from .layers import AvgPool2d
from .loss import BCELoss, BCEWithLogitsLoss, L1Loss, MSELoss, NLLLoss
from .recurrent import GRU, RNN, GRUCell, RNNCell
from . import parallel

__all__ = ["functional", "init", "utils", "Module", "Parameter", "Linear", "Conv2d", "MaxPool2d",
           "ReLU", "Flatten", "Sequential", "Embedding", "LSTMCell", "LSTM", "Dropout",
           "CrossEntropyLoss"]
__all__ += ["ModuleList", "ModuleDict", "ParameterList", "ParameterDict"]
__all__ += ["Identity", "Tanh", "Sigmoid", "GELU", "Softmax", "LogSoftmax", "LeakyReLU",
            "AvgPool2d", "MSELoss", "L1Loss", "NLLLoss", "BCELoss", "BCEWithLogitsLoss",
            "RNNCell", "GRUCell", "RNN", "GRU"]
__all__ += ["BatchNorm1d", "BatchNorm2d", "LayerNorm", "parallel"]
