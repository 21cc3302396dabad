"""``tilegrad.accelerator``: a real GPU only, never Numba's simulator."""
import sys

import tilegrad as tg


def test_accelerator_is_a_real_gpu_or_none():
    cuda = tg.device("cuda")
    if cuda.available:
        cuda.backend                       # set up, so that the runtime says if it simulates
        real_gpu = not sys.modules["tilegrad.backends.cuda.runtime"].SIMULATOR
    else:
        real_gpu = False
    assert tg.accelerator.is_available() == real_gpu
    assert tg.accelerator.current_accelerator() == (cuda if real_gpu else None)
    assert tg.accelerator.device_count() == int(real_gpu)
    tg.accelerator.synchronize()


def test_a_script_choosing_its_device_trains_on_the_cpu_without_a_gpu():
    device = (tg.accelerator.current_accelerator() if tg.accelerator.is_available()
              else tg.device("cpu"))
    x = tg.randn(3, 2, device=device)
    assert x.device == device
