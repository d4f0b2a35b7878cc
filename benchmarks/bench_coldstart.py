"""asv: cold start in a fresh interpreter: import rnnumba, then the first forward+backward
of a (32, 50, 8, 32) network, with the Numba cache warm and with an empty cache.

``timeraw_*`` runs the returned code in a new process and times it whole. The empty-cache
case points ``NUMBA_CACHE_DIR`` at a new temporary directory before Numba is imported, so
every kernel compiles; the difference between the two is the compile time of the cell.
"""

from . import _common as c

_EMPTY = """
import os, tempfile
os.environ["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="rnnumba-asv-")
"""


class ColdStart:
    params = [list(c.CELLS), ["warm", "empty"]]
    param_names = ["cell", "cache"]
    timeout = 600
    repeat = (1, 3, 60.0)
    number = 1

    def setup(self, cell, cache):
        if cache == "warm":
            c.cold_start(cell, "warm")  # fill the on-disk cache first

    def timeraw_import_first_step(self, cell, cache):
        code = c.COLD_OURS.format(cell=cell, threads=c.TORCH_THREADS)
        return (_EMPTY + code) if cache == "empty" else code
