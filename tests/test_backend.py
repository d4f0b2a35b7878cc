"""Device resolution: ``"cpu"``, ``"cuda"`` and ``"auto"``, and the errors when CUDA is missing.

These run in the normal suite, without a GPU or the simulator: ``numba.cuda`` is replaced by
small fakes in ``sys.modules`` so that every failure mode can be reached on any machine.
"""

import subprocess
import sys
import types

import numba
import pytest

from rnnumba import Recurrent, backend


@pytest.fixture
def fake_cuda(monkeypatch):
    """Install a fake ``numba.cuda`` (and its driver) and return a handle to steer it."""
    state = types.SimpleNamespace(available=False, count=0, driver_error=None)

    def is_available():
        return state.available

    def get_device_count():
        if state.driver_error is not None:
            raise state.driver_error
        return state.count

    cuda = types.ModuleType("numba.cuda")
    cuda.is_available = is_available
    cudadrv = types.ModuleType("numba.cuda.cudadrv")
    driver_module = types.ModuleType("numba.cuda.cudadrv.driver")
    driver_module.driver = types.SimpleNamespace(get_device_count=get_device_count)
    monkeypatch.delattr(numba, "cuda", raising=False)
    monkeypatch.setitem(sys.modules, "numba.cuda", cuda)
    monkeypatch.setitem(sys.modules, "numba.cuda.cudadrv", cudadrv)
    monkeypatch.setitem(sys.modules, "numba.cuda.cudadrv.driver", driver_module)
    return state


def test_cpu_needs_no_cuda(monkeypatch):
    monkeypatch.setattr(backend, "cuda_unavailable_reason",
                        lambda: pytest.fail("cpu must not probe CUDA"))
    assert backend.resolve_device("cpu") == "cpu"


@pytest.mark.parametrize("device", ["tpu", "CUDA", None, 0])
def test_unknown_device_is_rejected(device):
    with pytest.raises(ValueError, match="device must be one of"):
        backend.resolve_device(device)


def test_working_cuda_is_chosen_by_cuda_and_auto(fake_cuda):
    fake_cuda.available = True
    assert backend.cuda_unavailable_reason() is None
    assert backend.resolve_device("cuda") == "cuda"
    assert backend.resolve_device("auto") == "cuda"


def test_missing_numba_cuda_says_how_to_install(monkeypatch):
    monkeypatch.delattr(numba, "cuda", raising=False)
    monkeypatch.setitem(sys.modules, "numba.cuda", None)  # makes the import fail
    reason = backend.cuda_unavailable_reason()
    assert "numba-cuda is not installed" in reason and "pip install" in reason
    with pytest.raises(ValueError, match="device='cuda' is not available: numba-cuda is not"):
        backend.resolve_device("cuda")
    assert backend.resolve_device("auto") == "cpu"


def test_missing_driver_is_named(fake_cuda):
    fake_cuda.driver_error = RuntimeError("Error at driver init:\n\nCUDA driver library "
                                          "cannot be found.\n")
    with pytest.raises(ValueError, match=r"no usable CUDA driver.*driver library cannot be "
                                         r"found.*device='cpu'"):
        backend.resolve_device("cuda")
    assert backend.resolve_device("auto") == "cpu"


def test_driver_without_devices_is_named(fake_cuda):
    fake_cuda.count = 0
    with pytest.raises(ValueError, match="reports no GPU.*CUDA_VISIBLE_DEVICES"):
        backend.resolve_device("cuda")
    assert backend.resolve_device("auto") == "cpu"


def test_unusable_devices_are_named(fake_cuda):
    fake_cuda.count = 2
    with pytest.raises(ValueError, match="no CUDA device could be used"):
        backend.resolve_device("cuda")


def test_failing_availability_probe_is_reported(fake_cuda, monkeypatch):
    def broken():
        raise OSError("libcuda.so: cannot open shared object file")

    monkeypatch.setattr(sys.modules["numba.cuda"], "is_available", broken)
    with pytest.raises(ValueError, match="could not be initialised.*libcuda"):
        backend.resolve_device("cuda")


def test_recurrent_reports_why_cuda_is_unavailable(monkeypatch):
    monkeypatch.setattr(backend, "cuda_unavailable_reason", lambda: "no GPU here, use cpu")
    with pytest.raises(ValueError, match="device='cuda' is not available: no GPU here"):
        Recurrent("gru", input_size=2, hidden_size=3, device="cuda")
    assert Recurrent("gru", input_size=2, hidden_size=3, device="auto").device == "cpu"


def test_cell_kernels():
    from rnnumba.kernels.cpu import common, lstm
    assert backend.cell_kernels("cpu", "lstm") == (common, lstm)
    with pytest.raises(ValueError, match="no kernels"):
        backend.cell_kernels("tpu", "lstm")


def test_import_and_cpu_use_never_import_numba_cuda():
    code = ("import sys, numpy as np, rnnumba\n"
            "m = rnnumba.Recurrent('lstm', input_size=2, hidden_size=3, device='cpu')\n"
            "m.backward(np.ones_like(m.forward(np.ones((1, 2, 2)))[0]))\n"
            "assert 'numba.cuda' not in sys.modules, 'numba.cuda was imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True)
