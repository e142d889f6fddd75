"""Benchmarks, run as scripts (`python bench/NAME.py`); a package only so that mypy tells
``bench/inference.py`` from the ``inference`` app."""
