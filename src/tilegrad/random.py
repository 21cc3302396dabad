"""The global random number generator behind randn, rand, parameter initialisation and dropout."""
import numpy as np

_rng = [np.random.default_rng()]


def manual_seed(seed):
    """Seed the global generator, so that what follows is reproducible."""
    _rng[0] = np.random.default_rng(int(seed))


def generator():
    return _rng[0]


def get_rng_state():
    """The generator's state, a plain dict that ``tilegrad.save`` can store."""
    return _rng[0].bit_generator.state


def set_rng_state(state):
    g = np.random.default_rng()
    g.bit_generator.state = state
    _rng[0] = g
