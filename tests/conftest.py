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


@pytest.fixture
def initializations(monkeypatch):
    """Every ``Recurrent.initialize_layers`` call made while the test runs, as
    ``(forget_bias, state_dict after the call)``."""
    from rnnumba import Recurrent
    calls = []
    original = Recurrent.initialize_layers

    def recorded(self, rngs, forget_bias=None):
        original(self, rngs, forget_bias=forget_bias)
        calls.append((forget_bias, self.state_dict()))

    monkeypatch.setattr(Recurrent, "initialize_layers", recorded)
    return calls
