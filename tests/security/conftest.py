"""The in-process loader of tests/functions, shared with the security tests."""

from tests.functions.conftest import data_dir, load_function

__all__ = ["data_dir", "load_function"]
