"""setuptools entry point. The optional pybind11 CPU extension (csrc/) hooks in here; building it
must never make an install fail, so until it exists there are no extension modules."""
from setuptools import setup

setup()
