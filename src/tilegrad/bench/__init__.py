"""Benchmarks against PyTorch: kernels (backend primitives) and whole training steps.

``tilegrad bench kernels|train|all`` (``make bench``) validates every case against the NumPy
backend or PyTorch before timing it, times both sides in the same process, and writes a JSON
document with the machine's metadata, a Markdown table and a PNG chart of the ratios.
"""
