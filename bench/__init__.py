"""Benchmarks of the hot paths, each beside a baseline measured in the same run.

``python -m bench`` (``make bench``) builds its data sets in a temporary folder,
runs every suite in a fresh process and writes ``docs/benchmarks.md``. Nothing
here runs under ``make test``: the figures depend on the machine and its load,
so they are recorded and compared, never asserted.
"""
