"""Threads on the CPU: BLAS runs single-threaded and rnnumba splits the work itself.

Rows of a batch never interact in the recurrence, so each thread runs the whole time loop
over its own block of rows, with a single-threaded BLAS for its per-step GEMM: no barrier
per step, and the elementwise passes run in parallel too. A multi-threaded BLAS inside the
loop would wake and synchronise its threads at every step instead (a 128-unit RNN forward
took 20 ms that way on 2 cores, against 4.6 ms on one thread). The large GEMMs outside the
loop are split into row blocks the same way. OpenBLAS's own threads spin for a long while
after each call, and kept a core busy that the next phase (or PyTorch's threads in the same
process) needed; with BLAS single-threaded during our calls they stay asleep.

The thread count is the BLAS thread count in force when a call starts, so
``OMP_NUM_THREADS``, ``threadpoolctl.threadpool_limits`` and joblib's limits in its workers
apply to rnnumba as they apply to NumPy.
"""

import concurrent.futures
import contextlib
import os
import threading

#: Fewest batch rows a thread's time loop gets: below this its per-step GEMM is too small.
LOOP_MIN_ROWS = 8

#: Least work (``loop_work``) a thread's time loop gets. Handing a block to another thread
#: and waiting for it cost 65-100 us on a 2-vCPU VM, and the second core does not double the
#: elementwise passes: at 32 units the RNN's and GRU's forward+backward took 10-33% longer
#: split than on one thread at 16-32 rows, and split loops only won from about 4M per
#: thread on (``docs/design.md``, "Threads").
LOOP_MIN_BLOCK_WORK = 1 << 22

#: Elementwise cost of a gate column, in per-step multiply-adds, for ``loop_work``.
_ELEMENTWISE_MACS = 16

#: Fewest multiply-adds a thread's share of a GEMM outside the loop gets: handing work to
#: another thread costs tens of microseconds, as much as a small product itself.
GEMM_MIN_BLOCK_MACS = 1 << 23

#: An unsplit time loop (too few rows to share) hands BLAS its threads back when its
#: per-step GEMM has more multiply-adds than this.
SERIAL_STEP_MAX_MACS = 1 << 23

_lock = threading.Lock()
_blas = None            # threadpoolctl controllers of the loaded BLAS libraries
_entered = 0            # calls running now (they overlap when users run threads)
_saved_threads = []     # each library's thread count before the first of them
_executor = None
_executor_workers = 0


def row_blocks(rows, threads, min_rows):
    """``[(start, stop), ...]``: at most ``threads`` near-equal blocks covering ``rows``,
    none smaller than ``min_rows`` (a single block when there are too few rows)."""
    count = max(1, min(threads, rows // max(1, min_rows)))
    bounds = [rows * k // count for k in range(count + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


@contextlib.contextmanager
def single_threaded_blas():
    """Run the body with a single-threaded BLAS; yields the threads rnnumba may use."""
    threads = _enter()
    try:
        yield threads
    finally:
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


def loop_blocks(steps, batch, gate_columns, hidden, threads):
    """Row blocks of a time loop: one per thread, each with at least ``LOOP_MIN_ROWS`` rows
    and ``LOOP_MIN_BLOCK_WORK`` of work (a single block for small loops)."""
    work = loop_work(steps, batch, gate_columns, hidden)
    by_work = max(1, work // LOOP_MIN_BLOCK_WORK)
    return row_blocks(batch, min(threads, by_work), LOOP_MIN_ROWS)


def run_over_rows(row_kernel, loop, *args):
    """A time loop split over the batch: ``row_kernel(*args, start, stop)`` per block.

    ``loop`` is ``(steps, batch, gate_columns, hidden)``: its work decides the blocks, and
    the per-step GEMM (``batch`` by ``gate_columns`` by ``hidden``) whether a loop that is
    not split gives BLAS its threads back for its per-step products.
    """
    steps, batch, gate_columns, hidden = loop
    with single_threaded_blas() as threads:
        blocks = loop_blocks(steps, batch, gate_columns, hidden, threads)
        if len(blocks) == 1 and batch * gate_columns * hidden > SERIAL_STEP_MAX_MACS:
            _restore_blas_threads()
        run_blocks(lambda start, stop: row_kernel(*args, start, stop), blocks)


def _enter():
    global _blas, _entered
    with _lock:
        if _blas is None:
            # SciPy's BLAS is the one Numba's np.dot calls: load it before selecting.
            import scipy.linalg.cython_blas  # noqa: F401
            from threadpoolctl import ThreadpoolController
            _blas = ThreadpoolController().select(user_api="blas").lib_controllers
        if _entered == 0:
            _saved_threads[:] = [lib.get_num_threads() or 1 for lib in _blas]
            for lib in _blas:
                lib.set_num_threads(1)
        _entered += 1
        return max(_saved_threads, default=1)


def _restore_blas_threads():
    """Give BLAS its own thread count back, unless another call running now needs it
    single-threaded."""
    with _lock:
        if _entered == 1:
            for lib, threads in zip(_blas, _saved_threads):
                lib.set_num_threads(threads)


def _leave():
    global _entered
    with _lock:
        _entered -= 1
        if _entered == 0:
            for lib, threads in zip(_blas, _saved_threads):
                lib.set_num_threads(threads)


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
    global _executor, _executor_workers, _entered, _lock
    _executor = None
    _executor_workers = 0
    _entered = 0
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_after_fork)
