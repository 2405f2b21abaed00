"""The test suite; a package so that test helpers import as tests.<module> (see tests/conftest.py)."""
