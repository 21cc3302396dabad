"""Optimizers and learning-rate schedules under torch.optim's names."""
from . import lr_scheduler
from .adadelta import Adadelta, Adagrad
from .adam import Adam
from .adamw import AdamW
from .optimizer import Optimizer
from .rmsprop import RMSprop
from .sgd import SGD

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "Adadelta", "Adagrad",
           "lr_scheduler"]
