"""Device resolution: which backend a network or estimator runs on.

``numba.cuda`` is imported only here, lazily, when ``"cuda"`` or ``"auto"`` is asked for, so
``import rnnumba`` never touches the CUDA toolkit. Numba's CUDA simulator
(``NUMBA_ENABLE_CUDASIM=1``) counts as a working device: that is how CI runs the CUDA kernels.
"""

DEVICES = ("auto", "cpu", "cuda")

_INSTALL_HINT = ("install the CUDA backend with `pip install 'rnnumba[cuda]'` or "
                 "`pip install 'numba-cuda[cu12]'` (cu13 for CUDA 13 drivers), or use "
                 "device='cpu'")


def cuda_unavailable_reason():
    """Return ``None`` when a CUDA device works, else a sentence saying why not and what to do."""
    try:
        from numba import cuda
    except ImportError as exc:  # numba without its CUDA target, or numba-cuda missing
        return f"numba-cuda is not installed ({exc}); {_INSTALL_HINT}"
    except Exception as exc:  # a broken CUDA installation can fail at import
        return f"numba.cuda could not be imported ({type(exc).__name__}: {exc}); {_INSTALL_HINT}"
    try:
        if cuda.is_available():
            return None
    except Exception as exc:
        return (f"the CUDA driver could not be initialised ({type(exc).__name__}: {exc}); "
                "check the NVIDIA driver installation, or use device='cpu'")
    return _diagnose(cuda)


def _diagnose(cuda):
    """Why ``cuda.is_available()`` said no: no driver, or a driver without devices."""
    try:
        from numba.cuda.cudadrv.driver import driver
        count = driver.get_device_count()
    except Exception as exc:
        lines = [line.strip(" :") for line in str(exc).splitlines() if line.strip(" :")]
        detail = "; ".join(lines)[:300] or type(exc).__name__
        return (f"no usable CUDA driver was found ({detail}); install the NVIDIA driver "
                "(a machine with an NVIDIA GPU is needed), or use device='cpu'")
    if count == 0:
        return ("the CUDA driver reports no GPU (is CUDA_VISIBLE_DEVICES empty, or the "
                "device busy or in an exclusive mode?); use device='cpu'")
    return "no CUDA device could be used (numba.cuda.is_available() is False); use device='cpu'"


def simulator_enabled():
    """Whether Numba's CUDA simulator is on (``NUMBA_ENABLE_CUDASIM=1`` when numba was first
    imported): CUDA kernels then run as Python threads, correct but very slow."""
    from numba import config
    return bool(config.ENABLE_CUDASIM)


def resolve_device(device, simulator=True):
    """Map a requested device to the one that will run: ``"cpu"`` or ``"cuda"``.

    ``"auto"`` picks ``"cuda"`` when a CUDA device works, else ``"cpu"``; ``"cuda"`` raises a
    ``ValueError`` saying why no device works and what to do. With ``simulator=False``,
    ``"auto"`` does not count Numba's CUDA simulator as a working device (it picks
    ``"cpu"`` there); ``"cuda"`` still accepts the simulator. The estimators resolve
    ``"auto"`` that way, so a test run under the simulator does not train every default
    estimator on it.
    """
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    if device == "cpu":
        return "cpu"
    if device == "auto" and not simulator and simulator_enabled():
        return "cpu"
    reason = cuda_unavailable_reason()
    if device == "auto":
        return "cpu" if reason else "cuda"
    if reason:
        raise ValueError(f"device='cuda' is not available: {reason}")
    return "cuda"


def cell_kernels(device, cell):
    """Return ``(common, cell_module)``: the GEMM phases and the cell's recurrence kernels."""
    if device == "cpu":
        from .kernels.cpu import CELLS, common
        return common, CELLS[cell]
    if device == "cuda":
        from .kernels.cuda import CELLS, common
        return common, CELLS[cell]
    raise ValueError(f"no kernels for device {device!r}")
