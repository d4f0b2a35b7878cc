"""Tests for :mod:`rnnumba.kernels.cpu._threads`: the batch and the GEMMs split over threads.

Splitting must not change results beyond rounding, must actually happen (the split is
observed, not assumed), must follow the BLAS thread count the user set, must leave that
count as it was, and must survive a fork and callers in several threads, with the time
loops on Python threads and in a prange on Numba's TBB layer alike.
"""

import functools
import multiprocessing
import os
import platform
import subprocess
import sys
import threading

import numba
import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from rnnumba import Recurrent
from rnnumba.kernels.cpu import _threads, common
from reference import reference_forward

CELLS = [("rnn", "tanh"), ("rnn", "relu"), ("lstm", "tanh"), ("gru", "tanh")]
N, T, I, H = 13, 6, 3, 5
LENGTHS = np.array([6, 1, 3, 2, 6, 5, 4, 1, 6, 2, 3, 6, 5])


def _blas_threads():
    return sorted(info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas")


@functools.lru_cache(maxsize=None)
def _tbb_available():
    """Whether Numba starts its TBB layer when asked for it, in a fresh interpreter, after
    rnnumba has loaded the TBB runtime as its kernels do."""
    code = ("import numba, numpy as np\n"
            "from rnnumba.kernels.cpu import _threads\n"
            "_threads.load_tbb()\n"
            "numba.config.THREADING_LAYER = 'tbb'\n"
            "numba.njit(parallel=True)(lambda a: a + 1)(np.ones(2))\n"
            "print(numba.threading_layer())")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    return run.returncode == 0 and run.stdout.strip() == "tbb"


def _require_tbb():
    """Numba's TBB layer, or a failure where ``tbb`` is one of rnnumba's dependencies (x86-64:
    a fresh install must run the fast path), or a skip elsewhere."""
    if _tbb_available():
        return
    if platform.machine() in ("x86_64", "AMD64"):
        pytest.fail("Numba's TBB layer does not start although tbb is a dependency here")
    pytest.skip("Numba has no TBB layer here (TBB is a dependency on x86-64 only)")


class Splits(list):
    """Blocks of every split call; ``in_prange``: those of the time loops run in a prange."""

    def __init__(self):
        super().__init__()
        self.in_prange = []


@pytest.fixture(params=["python-threads", "prange"])
def split_everything(request, monkeypatch):
    """Split even tiny batches and GEMMs, the time loops through Python threads or through a
    prange in Numba's TBB layer, and record the blocks of every split call."""
    in_prange = request.param == "prange"
    if in_prange:
        _require_tbb()
    monkeypatch.setattr(_threads, "PRANGE_LOOPS", in_prange)
    for name in ("LOOP_MIN_ROWS", "LOOP_MIN_BLOCK_WORK", "PRANGE_MIN_BLOCK_WORK",
                 "GEMM_MIN_BLOCK_MACS"):
        monkeypatch.setattr(_threads, name, 1)
    import rnnumba.kernels.cpu.common as common
    seen = Splits()
    original, original_prange = _threads.run_blocks, _threads.run_in_prange

    def recording(work, blocks):
        seen.append(list(blocks))
        return original(work, blocks)

    def recording_prange(row_kernel, blocks, args):
        seen.append(list(blocks))
        seen.in_prange.append(list(blocks))
        return original_prange(row_kernel, blocks, args)

    monkeypatch.setattr(_threads, "run_blocks", recording)
    monkeypatch.setattr(common, "run_blocks", recording)
    monkeypatch.setattr(_threads, "run_in_prange", recording_prange)
    return seen


def _run(cell, nonlinearity, threads, bidirectional=True, num_layers=2):
    rec = Recurrent(cell=cell, input_size=I, hidden_size=H, num_layers=num_layers,
                    bidirectional=bidirectional, nonlinearity=nonlinearity, dtype="float64",
                    random_state=0)
    rng = np.random.default_rng(1)
    X = rng.standard_normal((N, T, I))
    G = rng.standard_normal((N, T, rec.num_directions * H))
    with threadpool_limits(limits=threads, user_api="blas"):
        output, state = rec.forward(X, lengths=LENGTHS)
        grads = rec.backward(G)
    return rec, X, output, state, grads


def test_row_blocks_cover_the_rows_in_near_equal_blocks():
    assert _threads.row_blocks(64, 2, 8) == [(0, 32), (32, 64)]
    assert _threads.row_blocks(10, 3, 1) == [(0, 3), (3, 6), (6, 10)]
    assert _threads.row_blocks(15, 4, 8) == [(0, 15)]     # too few rows to share
    assert _threads.row_blocks(100, 1, 8) == [(0, 100)]   # one thread
    assert _threads.row_blocks(5, 8, 1) == [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5)]


def test_time_loops_split_only_with_enough_work_per_thread():
    # (steps, batch, gate columns, hidden): the benchmark's small size, 32 units
    assert _threads.loop_blocks(50, 32, 128, 32, 2) == [(0, 16), (16, 32)]   # LSTM: 9.8M
    assert _threads.loop_blocks(50, 32, 96, 32, 2) == [(0, 32)]              # GRU: 7.4M
    assert _threads.loop_blocks(50, 32, 32, 32, 2) == [(0, 32)]              # RNN: 2.5M
    # enough work for 3 of 4 threads; rows still limit a large loop over a small batch
    assert _threads.loop_blocks(50, 64, 96, 32, 4) == [(0, 21), (21, 42), (42, 64)]  # 14.7M
    assert _threads.loop_blocks(100, 15, 2048, 512, 4) == [(0, 15)]
    assert _threads.loop_blocks(100, 64, 2048, 512, 4) == [(0, 16), (16, 32), (32, 48), (48, 64)]
    assert _threads.loop_blocks(100, 64, 2048, 512, 1) == [(0, 64)]
    # through Numba's TBB layer a hand-off costs less: the GRU's small loop splits too
    cheap = _threads.PRANGE_MIN_BLOCK_WORK
    assert _threads.loop_blocks(50, 32, 128, 32, 2, cheap) == [(0, 16), (16, 32)]
    assert _threads.loop_blocks(50, 32, 96, 32, 2, cheap) == [(0, 16), (16, 32)]
    assert _threads.loop_blocks(50, 32, 32, 32, 2, cheap) == [(0, 32)]


@pytest.mark.parametrize("cell, nonlinearity", CELLS, ids=["rnn-tanh", "rnn-relu", "lstm", "gru"])
def test_split_over_threads_gives_the_serial_results(cell, nonlinearity, split_everything):
    rec, X, output, state, grads = _run(cell, nonlinearity, threads=3)
    assert any(len(blocks) == 3 for blocks in split_everything), split_everything
    if _threads.PRANGE_LOOPS:  # every time loop went through the prange, split
        # 2 layers x 2 directions x (forward, backward); the RNN's backward runs in chunks
        chunk = common.chunk_steps(T, 4)  # a buffer shared by 4 layers and directions
        backward_loops = -(-T // chunk) if cell == "rnn" else 1
        assert len(split_everything.in_prange) == 4 * (1 + backward_loops)
        assert all(len(blocks) == 3 for blocks in split_everything.in_prange)
    else:
        assert not split_everything.in_prange
    split_everything.clear()
    _, _, output1, state1, grads1 = _run(cell, nonlinearity, threads=1)
    assert all(len(blocks) == 1 for blocks in split_everything)

    expected, _, _ = reference_forward(cell, rec.state_dict(), X, lengths=LENGTHS,
                                       num_layers=2, bidirectional=True,
                                       nonlinearity=nonlinearity)
    np.testing.assert_allclose(output, expected, atol=1e-12)
    np.testing.assert_allclose(output, output1, atol=1e-13)
    for mine, serial in zip(np.atleast_1d(state), np.atleast_1d(state1)):
        np.testing.assert_allclose(mine, serial, atol=1e-13)
    assert grads.keys() == grads1.keys()
    for name in grads:
        np.testing.assert_allclose(grads[name], grads1[name], atol=1e-12, err_msg=name)


def test_blas_is_single_threaded_inside_and_restored_after(split_everything):
    inside = []
    original, original_prange = _threads.run_blocks, _threads.run_in_prange

    def spying(work, blocks):
        inside.append(_blas_threads())
        return original(work, blocks)

    def spying_prange(row_kernel, blocks, args):
        inside.append(_blas_threads())
        return original_prange(row_kernel, blocks, args)

    # undone by the fixture's monkeypatches of the same names
    _threads.run_blocks, _threads.run_in_prange = spying, spying_prange
    with threadpool_limits(limits=2, user_api="blas"):
        before = _blas_threads()
        rec = Recurrent(cell="lstm", input_size=I, hidden_size=H, random_state=0)
        rec.forward(np.ones((N, T, I)))
        rec.backward()
        after = _blas_threads()
    assert len(inside) == 2  # the forward and backward time loops
    assert all(set(counts) == {1} for counts in inside)
    assert before == after == [2] * len(before)


def test_unsplit_loop_with_a_large_step_gemm_gets_blas_threads_inside_a_call():
    # one block of 4 rows; the per-step GEMM 4 x 4096 x 1024 is over SERIAL_STEP_MAX_MACS
    large, small = (3, 4, 4096, 1024), (3, 4, 128, 32)
    assert 4 * 4096 * 1024 > _threads.SERIAL_STEP_MAX_MACS >= 4 * 128 * 32
    seen = []

    def row_kernel(start, stop):
        seen.append(_blas_threads())

    with threadpool_limits(limits=2, user_api="blas"):
        two = _blas_threads()
        with _threads.single_threaded_blas():  # a call's own context (backend.compute)
            _threads.run_over_rows(row_kernel, large)
            seen.append(_blas_threads())  # single-threaded again for the rest of the call
            _threads.run_over_rows(row_kernel, small)
        seen.append(_blas_threads())
    one = [1] * len(two)
    assert two == [2] * len(two)
    assert seen == [two, one, one, two]
    assert _threads._entered == 0 and not _threads._handed_back


class _FakeBlas:
    """A BLAS library's thread setting, the same from every thread (OpenBLAS ignores a
    setting made from another thread once the main thread has made one)."""

    def __init__(self, threads):
        self.threads = threads

    def get_num_threads(self):
        return self.threads

    def set_num_threads(self, threads):
        self.threads = threads


@pytest.fixture
def fake_blas(monkeypatch):
    assert _threads._entered == 0
    blas = _FakeBlas(2)
    monkeypatch.setattr(_threads, "_blas", [blas])
    return blas


def test_unsplit_loop_keeps_blas_single_threaded_beside_another_call(fake_blas):
    inside, release = threading.Event(), threading.Event()
    seen = []

    def other_call():
        with _threads.single_threaded_blas():
            inside.set()
            release.wait(30)

    with _threads.single_threaded_blas():
        worker = threading.Thread(target=other_call)
        worker.start()
        try:
            assert inside.wait(30)
            _threads.run_over_rows(lambda start, stop: seen.append(fake_blas.threads),
                                   (3, 4, 4096, 1024))
            seen.append(fake_blas.threads)
        finally:
            release.set()
            worker.join(30)
    seen.append(fake_blas.threads)
    assert seen == [1, 1, 2]


def test_a_call_starting_beside_an_unsplit_loop_takes_blas_threads_back(fake_blas):
    seen = []

    def other_call():
        with _threads.single_threaded_blas():
            seen.append(fake_blas.threads)

    def row_kernel(start, stop):
        seen.append(fake_blas.threads)  # handed back to the loop
        worker = threading.Thread(target=other_call)
        worker.start()
        worker.join(30)
        seen.append(fake_blas.threads)  # the other call took them away

    with _threads.single_threaded_blas():
        _threads.run_over_rows(row_kernel, (3, 4, 4096, 1024))
        seen.append(fake_blas.threads)
    seen.append(fake_blas.threads)
    assert seen == [2, 1, 1, 1, 2]
    assert _threads._entered == 0 and not _threads._handed_back


def test_thread_count_follows_the_blas_limit(split_everything):
    _run("gru", "tanh", threads=1, bidirectional=False, num_layers=1)
    assert split_everything and all(len(blocks) == 1 for blocks in split_everything)
    split_everything.clear()
    _run("gru", "tanh", threads=4, bidirectional=False, num_layers=1)
    assert max(len(blocks) for blocks in split_everything) == 4


def test_prange_leaves_numba_thread_count_as_it_was(split_everything):
    before = numba.get_num_threads()
    _run("lstm", "tanh", threads=2)
    assert numba.get_num_threads() == before


def test_prange_only_under_numba_tbb_layer(monkeypatch):
    def not_started():
        raise ValueError("Threading layer is not initialized.")

    monkeypatch.setattr(numba, "threading_layer", not_started)
    for layer, priority, expected in [
            ("default", ["tbb", "omp", "workqueue"], _tbb_available()),
            ("default", ["omp", "tbb", "workqueue"], False),
            ("tbb", ["omp", "tbb", "workqueue"], _tbb_available()),
            ("safe", ["tbb", "omp", "workqueue"], _tbb_available()),
            ("omp", ["tbb", "omp", "workqueue"], False),  # GNU OpenMP aborts forked children
            ("workqueue", ["tbb", "omp", "workqueue"], False)]:  # not thread-safe
        monkeypatch.setattr(numba.config, "THREADING_LAYER", layer)
        monkeypatch.setattr(numba.config, "THREADING_LAYER_PRIORITY", priority)
        assert _threads._numba_layer_is_tbb() == expected, (layer, priority)
    for started in ("tbb", "omp", "workqueue"):  # once started, the layer decides
        monkeypatch.setattr(numba, "threading_layer", lambda: started)
        assert _threads._numba_layer_is_tbb() == (started == "tbb")
    monkeypatch.setattr(_threads, "_layer_is_tbb", False)
    assert not _threads.prange_loops()
    monkeypatch.setattr(_threads, "PRANGE_LOOPS", True)
    assert _threads.prange_loops()


_NO_JIT_CHILD = """
import sys
import numpy as np
from threadpoolctl import threadpool_limits
from rnnumba import Recurrent
from rnnumba.kernels.cpu import _threads
_threads.PRANGE_LOOPS = True
for name in ("LOOP_MIN_ROWS", "LOOP_MIN_BLOCK_WORK", "PRANGE_MIN_BLOCK_WORK"):
    setattr(_threads, name, 1)
blocks_seen = []
run_blocks = _threads.run_blocks
def recording(work, blocks):
    blocks_seen.append(len(blocks))
    return run_blocks(work, blocks)
_threads.run_blocks = recording
rec = Recurrent("gru", 3, 5, dtype="float64", random_state=0)
X = np.random.default_rng(1).standard_normal((13, 6, 3))
with threadpool_limits(limits=2, user_api="blas"):
    out, _ = rec.forward(X)
    grads = rec.backward(np.ones_like(out))
np.savez(sys.argv[1], out=out, dx=grads["input"], dw=grads["weight_hh_l0"])
print("BLOCKS", max(blocks_seen))
"""


def test_time_loops_leave_the_prange_to_compiled_kernels(tmp_path, monkeypatch):
    """Under ``NUMBA_DISABLE_JIT`` the row kernels are Python functions, which have no
    address for the prange to call: loops asked to split there split on Python threads,
    with the compiled kernels' results."""
    monkeypatch.setenv("NUMBA_DISABLE_JIT", "1")
    result = tmp_path / "no_jit.npz"
    child = subprocess.run([sys.executable, "-c", _NO_JIT_CHILD, str(result)],
                           capture_output=True, text=True, timeout=300)
    assert child.returncode == 0, child.stderr[-2000:]
    assert "BLOCKS 2" in child.stdout
    rec = Recurrent("gru", 3, 5, dtype="float64", random_state=0)
    out, _ = rec.forward(np.random.default_rng(1).standard_normal((13, 6, 3)))
    grads = rec.backward(np.ones_like(out))
    saved = np.load(result)
    np.testing.assert_allclose(saved["out"], out, atol=1e-12)
    np.testing.assert_allclose(saved["dx"], grads["input"], atol=1e-12)
    np.testing.assert_allclose(saved["dw"], grads["weight_hh_l0"], atol=1e-12)
    monkeypatch.setattr(numba.config, "DISABLE_JIT", True)
    monkeypatch.setattr(_threads, "PRANGE_LOOPS", True)
    assert not _threads.prange_loops()


def test_time_loops_run_in_prange_when_numba_has_tbb(monkeypatch):
    _require_tbb()
    monkeypatch.setattr(_threads, "_layer_is_tbb", None)  # decide afresh, by the layer
    calls = []
    original = _threads.run_in_prange

    def recording(row_kernel, blocks, args):
        calls.append(len(blocks))
        return original(row_kernel, blocks, args)

    monkeypatch.setattr(_threads, "run_in_prange", recording)
    rec = Recurrent(cell="gru", input_size=I, hidden_size=32, dtype="float32", random_state=0)
    with threadpool_limits(limits=2, user_api="blas"):
        rec.forward(np.ones((64, 50, I), dtype=np.float32))  # 14.7M of work: splits
    assert calls == [2]
    assert numba.threading_layer() == "tbb"


def test_callers_in_several_threads_get_their_own_results(split_everything):
    _, _, expected, _, expected_grads = _run("lstm", "tanh", threads=2)
    results = [None] * 4

    def fit(k):
        results[k] = _run("lstm", "tanh", threads=2)

    with threadpool_limits(limits=2, user_api="blas"):
        before = _blas_threads()
        workers = [threading.Thread(target=fit, args=(k,)) for k in range(4)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        assert _blas_threads() == before
    for _, _, output, _, grads in results:
        np.testing.assert_allclose(output, expected, atol=1e-13)
        np.testing.assert_allclose(grads["weight_hh_l1"], expected_grads["weight_hh_l1"],
                                   atol=1e-12)


def _forward_in_child(queue):
    rec = Recurrent(cell="gru", input_size=I, hidden_size=H, random_state=0)
    with threadpool_limits(limits=2, user_api="blas"):
        output, _ = rec.forward(np.ones((64, T, I)))
        rec.backward()
    queue.put(float(output.sum()))


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(),
                    reason="the platform has no fork()")
def test_a_forked_child_runs_the_split_loops(split_everything):
    rec = Recurrent(cell="gru", input_size=I, hidden_size=H, random_state=0)
    with threadpool_limits(limits=2, user_api="blas"):
        expected, _ = rec.forward(np.ones((64, T, I)))
    if _threads.PRANGE_LOOPS:
        assert numba.threading_layer() == "tbb"  # the parent's TBB threads now exist
    else:
        assert _threads._executor is not None  # the parent's thread pool now exists
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_forward_in_child, args=(queue,))
    child.start()
    child.join(timeout=120)
    assert child.exitcode == 0, "the forked child hung or failed"
    assert queue.get(timeout=5) == pytest.approx(float(expected.sum()))


def test_the_tbb_runtime_is_found_where_pip_put_it():
    """The ``tbb`` wheel's library sits in the environment's ``lib/``, which the loader does not
    search in a plain venv: rnnumba finds it from the distribution's file list and loads it
    by its path, and ``rnnumba info`` says so."""
    from importlib import metadata
    try:
        files = metadata.distribution("tbb").files or []
    except metadata.PackageNotFoundError:
        _require_tbb()  # fails on x86-64, where tbb is a dependency
        return
    shipped = {str(f.locate()) for f in files if f.name == "libtbb.so.12"}
    if not shipped:
        pytest.skip("this tbb distribution ships no libtbb.so.12 (not Linux)")
    candidates = _threads._tbb_candidates("libtbb.so.12")
    assert {os.path.realpath(p) for p in shipped} <= set(candidates)
    code = ("from rnnumba.cli import info_lines\n"
            "from rnnumba.kernels.cpu import _threads\n"
            "print(_threads.prange_loops())\n"
            "print(chr(10).join(info_lines()))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, check=True)
    assert run.stdout.splitlines()[0] == "True"
    assert "TBB runtime            /" in run.stdout
    assert "time loops split by    Numba's TBB layer" in run.stdout
