"""Benchmarks, run from the repository root as modules: python -m bench.<script> (see each docstring)."""
