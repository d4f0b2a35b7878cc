"""Threads on the CPU: BLAS runs single-threaded and rnnumba splits the work itself.

Rows of a batch never interact in the recurrence, so each thread runs the whole time loop
over its own block of rows, with a single-threaded BLAS for its per-step GEMM: no barrier
per step, and the elementwise passes run in parallel too. A multi-threaded BLAS inside the
loop would wake and synchronise its threads at every step instead (a 128-unit RNN forward
took 20 ms that way on 2 cores, against 4.6 ms on one thread). The large GEMMs outside the
loop are split into row blocks the same way. OpenBLAS's own threads spin for a long while
after each call, and kept a core busy that the next phase (or PyTorch's threads in the same
process) needed; with BLAS single-threaded during our calls they stay asleep.

The time loops hand their blocks to Numba's threading layer (a ``prange`` over the blocks)
when that layer is TBB, which is thread-safe and fork-safe and hands a block over in a few
microseconds; otherwise, and for the GEMM phases (NumPy calls in Python), to a pool of
Python threads, whose hand-off costs 65-100 us (``docs/design.md``, "Threads"). GNU
OpenMP's layer is not used: it aborts forked children.

The thread count is the BLAS thread count in force when a call starts, so
``OMP_NUM_THREADS``, ``threadpoolctl.threadpool_limits`` and joblib's limits in its workers
apply to rnnumba as they apply to NumPy.
"""

import concurrent.futures
import ctypes
import os
import sys
import threading

import numba
import numpy as np

from ._blocks import row_kernel_address, run_row_blocks

#: Fewest batch rows a thread's time loop gets: below this its per-step GEMM is too small.
LOOP_MIN_ROWS = 8

#: Least work (``loop_work``) a thread's time loop gets. Handing a block to another thread
#: and waiting for it cost 65-100 us on a 2-vCPU VM, and the second core does not double the
#: elementwise passes: at 32 units the RNN's and GRU's forward+backward took 10-33% longer
#: split than on one thread at 16-32 rows, and split loops only won from about 4M per
#: thread on (``docs/design.md``, "Threads").
LOOP_MIN_BLOCK_WORK = 1 << 22

#: ``LOOP_MIN_BLOCK_WORK`` for loops split through Numba's TBB layer, whose hand-off is cheap.
PRANGE_MIN_BLOCK_WORK = 1 << 21

#: Split time loops through Numba's threading layer: None decides by the layer
#: (:func:`prange_loops`); True or False forces it.
PRANGE_LOOPS = None

#: Elementwise cost of a gate column, in per-step multiply-adds, for ``loop_work``.
_ELEMENTWISE_MACS = 16

#: Fewest multiply-adds a thread's share of a GEMM outside the loop gets: handing work to
#: another thread costs tens of microseconds, as much as a small product itself.
GEMM_MIN_BLOCK_MACS = 1 << 23

#: A GEMM phase too small for the pool to split runs as one compiled kernel
#: (``common.weight_gradients``), split through Numba's TBB layer from this many
#: multiply-adds per block: a hand-off there costs a few microseconds.
PRANGE_GEMM_MIN_BLOCK_MACS = 1 << 20

#: An unsplit time loop (too few rows to share) hands BLAS its threads back when its
#: per-step GEMM has more multiply-adds than this.
SERIAL_STEP_MAX_MACS = 1 << 23

_lock = threading.Lock()
_blas = None            # threadpoolctl controllers of the loaded BLAS libraries
# contexts open now, on every thread: calls overlap when users run threads, and a call's
# phases open theirs inside the call's
_entered = 0
_local = threading.local()  # .depth: the contexts open on this thread
_saved_threads = []     # each library's thread count before the first of them
_handed_back = False    # BLAS has its threads back for an unsplit loop
_executor = None
_executor_workers = 0
_layer_is_tbb = None    # what prange_loops found, once


def row_blocks(rows, threads, min_rows):
    """``[(start, stop), ...]``: at most ``threads`` near-equal blocks covering ``rows``,
    none smaller than ``min_rows`` (a single block when there are too few rows)."""
    count = max(1, min(threads, rows // max(1, min_rows)))
    bounds = [rows * k // count for k in range(count + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


class single_threaded_blas:
    """Context in which BLAS runs single-threaded; ``with ... as threads`` gives the threads
    rnnumba may use. (A class, not a generator: it is entered several times per call.)"""

    __slots__ = ()

    def __enter__(self):
        return _enter()

    def __exit__(self, *exc_info):
        _leave()


def run_blocks(work, blocks):
    """Call ``work(start, stop)`` for each block, one thread each (the kernels release the
    GIL); the calling thread takes the first block. Returns when all are done."""
    if len(blocks) == 1:
        work(*blocks[0])
        return
    pool = _pool(len(blocks) - 1)
    futures = [pool.submit(work, start, stop) for start, stop in blocks[1:]]
    try:
        work(*blocks[0])
    finally:
        for future in futures:
            future.result()


def loop_work(steps, batch, gate_columns, hidden):
    """Work of a time loop in multiply-adds: the per-step products (``gate_columns`` by
    ``hidden`` per row) plus the elementwise passes counted as ``_ELEMENTWISE_MACS`` each
    gate column."""
    return steps * batch * gate_columns * (hidden + _ELEMENTWISE_MACS)


def loop_blocks(steps, batch, gate_columns, hidden, threads, min_block_work=None):
    """Row blocks of a time loop: one per thread, each with at least ``LOOP_MIN_ROWS`` rows
    and ``min_block_work`` of work (default ``LOOP_MIN_BLOCK_WORK``; a single block for
    small loops)."""
    if min_block_work is None:
        min_block_work = LOOP_MIN_BLOCK_WORK
    work = loop_work(steps, batch, gate_columns, hidden)
    by_work = max(1, work // min_block_work)
    return row_blocks(batch, min(threads, by_work), LOOP_MIN_ROWS)


def run_over_rows(row_kernel, loop, *args):
    """A time loop split over the batch: ``row_kernel(*args, start, stop)`` per block.

    ``loop`` is ``(steps, batch, gate_columns, hidden)``: its work decides the blocks, and
    the per-step GEMM (``batch`` by ``gate_columns`` by ``hidden``) whether a loop that is
    not split gives BLAS its threads back for its per-step products. Several blocks run in
    a ``prange`` when :func:`prange_loops`, else on the pool of Python threads.
    """
    steps, batch, gate_columns, hidden = loop
    with single_threaded_blas() as threads:
        in_prange = prange_loops()
        blocks = loop_blocks(steps, batch, gate_columns, hidden, threads,
                             PRANGE_MIN_BLOCK_WORK if in_prange else LOOP_MIN_BLOCK_WORK)
        if len(blocks) == 1 and batch * gate_columns * hidden > SERIAL_STEP_MAX_MACS:
            _restore_blas_threads()
        if in_prange and len(blocks) > 1:
            run_in_prange(row_kernel, blocks, args)
        else:
            run_blocks(lambda start, stop: row_kernel(*args, start, stop), blocks)


def run_in_prange(row_kernel, blocks, args):
    """``row_kernel(*args, start, stop)`` for each block in a ``prange``
    (:func:`._blocks.run_row_blocks`) with as many of Numba's threads as blocks (or all it
    has); the calling thread's Numba thread count is restored afterwards."""
    address = row_kernel_address(row_kernel, args)
    starts = np.array([start for start, _ in blocks], dtype=np.int64)
    stops = np.array([stop for _, stop in blocks], dtype=np.int64)
    saved = numba.get_num_threads()
    numba.set_num_threads(min(len(blocks), numba.config.NUMBA_NUM_THREADS))
    try:
        run_row_blocks(address, starts, stops, args)
    finally:
        numba.set_num_threads(saved)


def prange_loops():
    """Whether time loops run their blocks through Numba's threading layer: ``PRANGE_LOOPS``
    when set, else whether that layer is (or, not started yet, will be) TBB. Never with
    ``NUMBA_DISABLE_JIT``: the row kernels are then Python functions, with no address."""
    global _layer_is_tbb
    if numba.config.DISABLE_JIT:
        return False
    if PRANGE_LOOPS is not None:
        return PRANGE_LOOPS
    if _layer_is_tbb is None:
        _layer_is_tbb = _numba_layer_is_tbb()
    return _layer_is_tbb


def _numba_layer_is_tbb():
    try:
        return numba.threading_layer() == "tbb"
    except ValueError:  # no parallel kernel has run yet: which layer would Numba start?
        pass
    load_tbb()
    config = numba.config
    if config.THREADING_LAYER == "default":
        wanted = config.THREADING_LAYER_PRIORITY[0] == "tbb"
    else:  # Numba tries TBB first for these
        wanted = config.THREADING_LAYER in ("tbb", "safe", "threadsafe", "forksafe")
    if not wanted:
        return False
    try:
        from numba.np.ufunc import parallel
        parallel._check_tbb_version_compatible()  # raises ImportError, as Numba then does
        from numba.np.ufunc import tbbpool  # noqa: F401
    except (ImportError, AttributeError):  # no TBB, or a Numba without this check
        return False
    return True


#: TBB's runtime library as the ``tbb`` wheel names it, per platform.
_TBB_LIBRARY = {"linux": "libtbb.so.12", "darwin": "libtbb.12.dylib", "win32": "tbb12.dll"}
_tbb_loaded = None  # what load_tbb found, once


def load_tbb():
    """Load TBB's runtime from where pip put it, so that Numba's TBB layer can start.

    The ``tbb`` wheel installs ``libtbb.so.12`` into the environment's ``lib/``, which the
    dynamic loader does not search: in a plain venv Numba then cannot import its TBB layer
    and falls back to another. Loaded once by its path (``RTLD_GLOBAL``), the library
    satisfies Numba's own lookup by name. Returns the path loaded (or None: no ``tbb``
    distribution, another platform, or a load that failed; Numba then decides as before).
    """
    global _tbb_loaded
    if _tbb_loaded is not None:
        return _tbb_loaded or None
    _tbb_loaded = ""
    name = next((lib for key, lib in _TBB_LIBRARY.items() if sys.platform.startswith(key)),
                None)
    if name is None:
        return None
    for path in _tbb_candidates(name):
        try:
            ctypes.CDLL(path, mode=getattr(ctypes, "RTLD_GLOBAL", 0))
        except OSError:
            continue
        _tbb_loaded = path
        return path
    return None


def _tbb_candidates(name):
    """Files named ``name`` that the ``tbb`` distribution installed, then the environment's
    ``lib/`` directories."""
    paths = []
    try:
        from importlib import metadata
        files = metadata.distribution("tbb").files or []
        paths += [str(f.locate()) for f in files if f.name == name]
    except Exception:  # no such distribution, or metadata without a file list
        pass
    for prefix in dict.fromkeys((sys.prefix, sys.base_prefix)):
        paths += [os.path.join(prefix, "lib", name), os.path.join(prefix, "Library", "bin",
                                                                  name)]
    return list(dict.fromkeys(os.path.realpath(p) for p in paths if os.path.exists(p)))


def _enter():
    global _blas, _entered, _handed_back
    with _lock:
        if _blas is None:
            # SciPy's BLAS is the one Numba's np.dot calls: load it before selecting.
            import scipy.linalg.cython_blas  # noqa: F401
            from threadpoolctl import ThreadpoolController
            _blas = ThreadpoolController().select(user_api="blas").lib_controllers
        if _entered == 0:
            _saved_threads[:] = [lib.get_num_threads() or 1 for lib in _blas]
            _set_blas_threads(1)
        elif _handed_back:  # another thread's call starts beside an unsplit loop
            _set_blas_threads(1)
            _handed_back = False
        _entered += 1
        _local.depth = getattr(_local, "depth", 0) + 1
        return max(_saved_threads, default=1)


def _restore_blas_threads():
    """Give BLAS its own thread count back until the innermost context closes, unless
    another thread's call running now needs it single-threaded."""
    global _handed_back
    with _lock:
        if _entered == getattr(_local, "depth", 0):
            _set_blas_threads(None)
            _handed_back = True


def _leave():
    global _entered, _handed_back
    with _lock:
        _entered -= 1
        _local.depth = getattr(_local, "depth", 1) - 1  # none: opened before a fork
        if _entered == 0:
            _set_blas_threads(None)
        elif _handed_back:  # the unsplit loop is done; the call around it goes on
            _set_blas_threads(1)
        _handed_back = False


def _set_blas_threads(threads):
    """Every BLAS library to ``threads`` (None: the count saved when the first call began).
    The caller holds ``_lock``."""
    for lib, saved in zip(_blas, _saved_threads):
        lib.set_num_threads(saved if threads is None else threads)


def _pool(workers):
    global _executor, _executor_workers
    with _lock:
        if _executor is None or _executor_workers < workers:
            if _executor is not None:
                _executor.shutdown(wait=False)
            _executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=workers, thread_name_prefix="rnnumba")
            _executor_workers = workers
        return _executor


def _forget_after_fork():
    """A forked child has none of the parent's threads: start afresh."""
    global _executor, _executor_workers, _entered, _lock, _local, _handed_back
    _executor = None
    _executor_workers = 0
    _entered = 0
    _handed_back = False
    _lock = threading.Lock()
    _local = threading.local()


os.register_at_fork(after_in_child=_forget_after_fork)
