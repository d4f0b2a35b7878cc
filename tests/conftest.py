"""Shared test setup.

pytest puts this folder on ``sys.path``, so any test can ``import reference`` (the NumPy
oracle in ``tests/reference.py``).
"""

import pytest


@pytest.fixture
def torch():
    """PyTorch on one thread (tiny tensors: threads only add contention), or a skip."""
    torch = pytest.importorskip("torch", reason="PyTorch parity needs torch (test extra)")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield torch
    torch.set_num_threads(threads)
