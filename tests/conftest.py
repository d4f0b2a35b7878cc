"""Shared test setup: pytest puts this folder on ``sys.path``, so any test can
``import reference`` (the NumPy oracle in ``tests/reference.py``)."""
