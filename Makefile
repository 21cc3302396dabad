# tilegrad. `make demo` and `make test` each set up what they need themselves: a virtual
# environment in .venv with the package, and the Debian data packages where apt-get is there.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# PyTorch is the parity reference in tests, never a package dependency. The CPU build, pinned.
TORCH  ?= torch==2.13.0
# Fashion-MNIST and the fortunes corpus: the reference models' default data.
DEBIAN_DATA := dataset-fashion-mnist fortunes
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup ext sanitize data demo lint test sdist-check bench gpu-check clean

$(VENV)/.ready: pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e '.[dev,cli,sim,dist]'
	$(PY) -m pip install -q '$(TORCH)' || echo "warning: $(TORCH) did not install; PyTorch parity tests will be skipped"
	touch $@

setup: $(VENV)/.ready

# The C++ extension tilegrad._cpu (csrc/), rebuilt in place when a source changed; only the files
# that changed are recompiled. A failed build leaves device "cpu" on the NumPy backend and says
# why (`tilegrad info`), as an install does. The install in .venv builds it the first time (and
# writes the status file), so the venv is an order-only prerequisite: no second build after it.
EXT_STATUS := src/tilegrad/_cpu_build.txt
$(EXT_STATUS): setup.py $(wildcard csrc/*.cpp csrc/*.h) | $(VENV)/.ready
	$(PY) setup.py -q build_ext --inplace
	@cat $@

ext: $(EXT_STATUS)

# The extension's tests against a second build of it with AddressSanitizer and
# UndefinedBehaviorSanitizer (any report fails the run). Python itself is not instrumented, so the
# sanitizer runtimes are preloaded; leak checking is off (the interpreter keeps memory at exit).
SAN_BUILD := build/sanitize
SAN_ENV = TILEGRAD_CPU_EXTENSION="$$(ls $(SAN_BUILD)/tilegrad/_cpu*.so)" TILEGRAD_EXPECT_SANITIZED=1 \
	LD_PRELOAD="$$($(CXX) -print-file-name=libasan.so) $$($(CXX) -print-file-name=libubsan.so)" \
	ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
sanitize: setup
	TILEGRAD_SANITIZE=1 $(PY) setup.py -q build_ext --build-lib $(SAN_BUILD) --build-temp $(SAN_BUILD)/tmp
	@grep -q "^built" $(SAN_BUILD)/tilegrad/_cpu_build.txt || { cat $(SAN_BUILD)/tilegrad/_cpu_build.txt; exit 1; }
	$(SAN_ENV) TILEGRAD_CPU_EXAMPLES=8 $(PY) -m pytest -q -p no:cacheprovider tests/test_cpu_*.py

# The data packages, where this is a Debian-like system and they are missing.
data:
	@if [ -d /usr/share/datasets/fashion-mnist ] && [ -d /usr/share/games/fortunes ]; then :; \
	elif command -v apt-get >/dev/null 2>&1; then \
	  echo "installing $(DEBIAN_DATA) with apt-get"; \
	  { $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $(DEBIAN_DATA) >/dev/null; } \
	    || echo "warning: could not install $(DEBIAN_DATA); the demo will say what is missing"; \
	else echo "no apt-get here: point TILEGRAD_DATA (or --data-dir) at the data, see README.md"; fi

demo: setup data ext
	$(VENV)/bin/tilegrad demo

# ruff, configured in pyproject.toml: pyflakes, pycodestyle and bugbear's likely bugs.
lint: setup
	$(VENV)/bin/ruff check .

# The linter first (seconds), then the tests. The CUDA kernels run in Numba's simulator here (and
# their PTX is compiled without it, in a subprocess of tests/test_cuda_ptx.py).
test: setup data ext
	$(VENV)/bin/ruff check .
	NUMBA_ENABLE_CUDASIM=1 $(PY) -m pytest -q

# The source distribution on its own, away from this checkout: build it, check that the wheel
# built from it carries py.typed, unpack it into a temporary folder, install it there as `make
# test` does (editable, with the same extras, into a fresh venv: the tests run helpers with
# PYTHONPATH=src, read the kernels' sources and draw curves), and run SDIST_TESTS from the
# unpacked folder. The temporary folder is removed at the end. `make sdist-check
# SDIST_TESTS=tests` runs the whole suite so. Not part of `make test`.
SDIST_TESTS ?= tests/test_packaging.py tests/test_ops.py tests/test_cpu_backend.py tests/test_functional.py
sdist-check:
	@set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	$(PYTHON) -m venv "$$tmp/tools"; "$$tmp/tools/bin/pip" install -q build; \
	"$$tmp/tools/bin/python" -m build -q --sdist --outdir "$$tmp/dist" .; \
	tar -xzf "$$tmp"/dist/tilegrad-*.tar.gz -C "$$tmp"; unpacked=$$(echo "$$tmp"/tilegrad-*/); \
	echo "sdist: $$(ls "$$tmp"/dist), $$(find "$$unpacked" -type f | wc -l) files"; \
	TILEGRAD_NO_EXTENSION=1 "$$tmp/tools/bin/python" -m build -q --wheel --outdir "$$tmp/dist" "$$unpacked"; \
	"$$tmp/tools/bin/python" -m zipfile -l "$$tmp"/dist/*.whl | grep -q "tilegrad/py.typed" \
	  || { echo "sdist-check: the wheel has no tilegrad/py.typed"; exit 1; }; \
	cd "$$unpacked"; $(PYTHON) -m venv "$$tmp/venv"; \
	"$$tmp/venv/bin/pip" install -q -e '.[dev,cli,sim,dist]'; \
	"$$tmp/venv/bin/pip" install -q '$(TORCH)' || echo "warning: $(TORCH) did not install"; \
	"$$tmp/venv/bin/tilegrad" --version; "$$tmp/venv/bin/tilegrad" info | grep "^  cpp: " || true; \
	NUMBA_ENABLE_CUDASIM=1 "$$tmp/venv/bin/python" -m pytest -q -p no:cacheprovider $(SDIST_TESTS)

# Kernels and training steps against PyTorch (CPU by default: make bench DEVICE=cuda on a GPU).
DEVICE ?= cpu
bench: setup ext
	$(VENV)/bin/tilegrad bench all --device $(DEVICE) --out bench/results --results-md bench/RESULTS.md

# On a machine with an NVIDIA GPU and what such a machine has (CuPy, numba-cuda, PyTorch, pytest;
# no venv, no network): the CUDA tests at full size on the GPU, then the benchmarks against
# PyTorch, in under five minutes. Results and logs go to GPU_OUT (see bench/gpu_check.py).
GPU_OUT ?= bench/results
gpu-check:
	PYTHONPATH=src:tests $(PYTHON) bench/gpu_check.py --out $(GPU_OUT)

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache report runs
