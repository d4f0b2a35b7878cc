"""Runtime settings for the kernels, read once from ``RNNUMBA_*`` environment variables.

``RNNUMBA_FASTMATH`` (default ``0``): compile the CPU kernels with ``fastmath``; faster
elementwise passes, results no longer bitwise reproducible across machines.
``RNNUMBA_CACHE`` (default ``1``): keep compiled kernels in Numba's on-disk cache.
"""

import os


def _flag(name, default):
    value = os.environ.get(name, default).strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"environment variable {name} must be 0 or 1, got {value!r}")


FASTMATH = _flag("RNNUMBA_FASTMATH", "0")
CACHE = _flag("RNNUMBA_CACHE", "1")

# error_model="numpy": a float division yields inf/nan instead of a zero check per element,
# which is what lets LLVM vectorise the elementwise passes.
JIT_OPTIONS = {"nogil": True, "cache": CACHE, "fastmath": FASTMATH, "error_model": "numpy"}
