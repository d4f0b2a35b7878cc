"""Device resolution: which backend a network or estimator runs on."""

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(device):
    """Map a requested device to the one that will run: ``"cpu"`` (or ``"cuda"``).

    ``"auto"`` picks the CPU while no CUDA backend is built; ``"cuda"`` is a clear error.
    """
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    if device == "cuda":
        raise ValueError("device='cuda' is not available: this build of rnnumba has no CUDA "
                         "backend yet; use device='cpu' or 'auto'")
    return "cpu"


def cell_kernels(device, cell):
    """Return ``(common, cell_module)``: the GEMM phases and the cell's recurrence kernels."""
    if device == "cpu":
        from .kernels.cpu import CELLS, common
        return common, CELLS[cell]
    raise ValueError(f"no kernels for device {device!r}")
