"""setuptools entry point, with the optional C++ CPU extension ``tilegrad._cpu`` (``csrc/``).

Building the extension must never make an install fail. With no C++ compiler, no pybind11, or a
file that does not compile, the package installs without it and device "cpu" runs the NumPy
backend; the reason is written next to the package as ``_cpu_build.txt``, which ``tilegrad info``
prints. Without OpenMP the extension is built single-threaded.

Flags: C++17, -O3, no -march=native: the extension must run on any x86-64 (and build on
aarch64), so the kernels that have one variant per vector width (AVX-512, AVX2+FMA, portable)
mark those variants with target attributes and choose among them at run time (csrc/common.h).
A source named ``*_isa.cpp`` is compiled once per x86-64 width with that width's flags and
``-DTG_ISA_<WIDTH>``, for code that is clearer written per width than with attributes.

``TILEGRAD_SANITIZE=1`` builds with AddressSanitizer and UndefinedBehaviorSanitizer instead
(``make sanitize``); ``TILEGRAD_NO_EXTENSION=1`` skips the extension.
"""
import glob
import os
import platform
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
try:
    from setuptools.modified import newer_group
except ImportError:                # setuptools < 69
    from distutils.dep_util import newer_group

STATUS_FILE = "_cpu_build.txt"
ISA_FLAGS = {     # x86-64 only; elsewhere *_isa.cpp is compiled once, portable
    "AVX512": ["-mavx512f", "-mavx512vl", "-mavx512bw", "-mavx512dq", "-mavx2", "-mfma"],
    "AVX2": ["-mavx2", "-mfma"],
    "PORTABLE": [],
}
SANITIZE = os.environ.get("TILEGRAD_SANITIZE") == "1"


def _flags():
    if SANITIZE:
        return ["-std=c++17", "-O1", "-g", "-fno-omit-frame-pointer",
                "-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-DTG_SANITIZE"]
    return ["-std=c++17", "-O3", "-fvisibility=hidden"]


class LenientBuildExt(build_ext):
    """build_ext that reports a failed extension instead of failing the install."""

    status = None

    def finalize_options(self):
        super().finalize_options()
        if self.parallel is None:          # the extension's files compile side by side
            self.parallel = os.cpu_count() or 1

    def run(self):
        try:
            super().run()
        except Exception as e:   # noqa: BLE001  (any failure leaves the NumPy backend in place)
            if self.status is None or not self.status.startswith("not built"):
                self.status = f"not built: {type(e).__name__}: {e}"
        if self.status is not None:
            self._record(self.status)

    def build_extension(self, ext):
        try:
            import pybind11
        except ImportError:
            self.status = ("not built: pybind11 is not installed at build time "
                           "(pip install pybind11, then reinstall tilegrad)")
            return
        ext.include_dirs.append(pybind11.get_include())
        flags = _flags()
        link = ["-fsanitize=address,undefined"] if SANITIZE else []
        openmp = self._has_openmp()
        if openmp:
            flags.append("-fopenmp")
            link.append("-fopenmp")
        try:
            objects = self._compile(ext, flags)
        except Exception as e:   # noqa: BLE001
            self.status = (f"not built: the C++ compile failed ({type(e).__name__}: {e}); "
                           "run `pip install -v -e .` to see the compiler's messages")
            return
        try:
            self.compiler.link_shared_object(
                objects, self.get_ext_fullpath(ext.name), libraries=self.get_libraries(ext),
                extra_postargs=link, export_symbols=self.get_export_symbols(ext),
                build_temp=self.build_temp, target_lang="c++")
        except Exception as e:   # noqa: BLE001
            self.status = (f"not built: the link failed ({type(e).__name__}: {e}); "
                           "run `pip install -v -e .` to see the linker's messages")
            return
        self.status = (f"built with {self.compiler.compiler_cxx[0]}, "
                       f"{'OpenMP' if openmp else 'no OpenMP (single-threaded)'}"
                       f"{', sanitizers' if SANITIZE else ''}")

    def _compile(self, ext, flags):
        """Every source to an object, side by side, skipping objects newer than their source and
        every header (so that editing one kernel file recompiles that file only); the sources
        named *_isa.cpp once per vector width. A compile error raises CompileError."""
        x86 = platform.machine().lower() in ("x86_64", "amd64")
        jobs = []    # (source, object, macros, extra flags)
        for src in ext.sources:
            widths = [("", [])]
            if src.endswith("_isa.cpp"):
                widths = [(w, f) for w, f in ISA_FLAGS.items()] if x86 else [("PORTABLE", [])]
            for width, extra in widths:
                out = os.path.join(self.build_temp, width.lower() or "all")
                obj = self.compiler.object_filenames([src], output_dir=out)[0]
                macros = [(f"TG_ISA_{width}", "1")] if width else []
                jobs.append((src, obj, out, macros, flags + extra))
        stale = [j for j in jobs if self.force or newer_group([j[0]] + ext.depends, j[1])]

        def compile_one(job):
            src, _, out, macros, extra = job
            self.compiler.compile([src], output_dir=out, include_dirs=ext.include_dirs,
                                  macros=macros, extra_postargs=extra)

        with ThreadPoolExecutor(max_workers=self.parallel or 1) as pool:
            list(pool.map(compile_one, stale))
        return [j[1] for j in jobs]

    def _has_openmp(self):
        with tempfile.TemporaryDirectory() as tmp:
            src = os.path.join(tmp, "omp.cpp")
            with open(src, "w") as f:
                f.write("#include <omp.h>\n"
                        "int main() { return omp_get_max_threads() > 0 ? 0 : 1; }\n")
            try:
                objs = self.compiler.compile([src], output_dir=tmp, extra_postargs=["-fopenmp"])
                self.compiler.link_executable(objs, "omp", output_dir=tmp,
                                              extra_postargs=["-fopenmp"])
                return True
            except Exception:   # noqa: BLE001
                return False

    def _record(self, status):
        """Write the build's outcome next to where the extension goes, for `tilegrad info`."""
        where = os.path.dirname(self.get_ext_fullpath("tilegrad._cpu"))
        os.makedirs(where, exist_ok=True)
        with open(os.path.join(where, STATUS_FILE), "w") as f:
            f.write(status + "\n")
        if status.startswith("not built"):
            print(f"warning: tilegrad._cpu {status}; device 'cpu' will use the NumPy backend",
                  file=sys.stderr)


def _extensions():
    if os.environ.get("TILEGRAD_NO_EXTENSION") == "1":
        return []
    sources = sorted(glob.glob("csrc/*.cpp"))
    return [Extension("tilegrad._cpu", sources, include_dirs=["csrc"], language="c++",
                      depends=sorted(glob.glob("csrc/*.h")))] if sources else []


setup(ext_modules=_extensions(), cmdclass={"build_ext": LenientBuildExt})
