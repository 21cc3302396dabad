"""Autograd Functions, built only from backend primitives."""
