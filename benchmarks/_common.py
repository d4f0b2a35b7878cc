"""Workloads and measuring tools shared by the asv modules and ``run.py``.

Nothing here runs on import: asv imports every module of this folder to discover
benchmarks, so torch and rnnumba are imported inside the functions that need them.
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings

from rnnumba.profiling import spread  # noqa: F401  (re-exported for the runner)

#: (B, T, I, H) of each named size.
SIZES = {
    "small": (32, 50, 8, 32),
    "medium": (64, 100, 32, 128),
    "large": (64, 100, 256, 512),
}
CELLS = ("rnn", "lstm", "gru")
#: Threads for PyTorch and for our BLAS calls; ``set_threads`` changes both.
TORCH_THREADS = 2
_BLAS_LIMIT = []
DTYPE = "float32"
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# --------------------------------------------------------------------------- workloads


def make_data(batch, steps, features, out_features, seed=0):
    """``X (B, T, I)`` and a fixed upstream gradient ``G (B, T, out_features)``, float32."""
    import numpy as np
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((batch, steps, features)).astype(DTYPE)
    G = rng.standard_normal((batch, steps, out_features)).astype(DTYPE)
    return X, G


def make_ours(cell, size, num_layers=1, bidirectional=False):
    """``(rec, X, G)``: a float32 ``rnnumba.Recurrent`` and its data."""
    from rnnumba import Recurrent
    batch, steps, features, hidden = SIZES[size]
    rec = Recurrent(cell=cell, input_size=features, hidden_size=hidden, num_layers=num_layers,
                    bidirectional=bidirectional, dtype=DTYPE, random_state=0)
    X, G = make_data(batch, steps, features, rec.num_directions * hidden)
    return rec, X, G


def set_threads(n):
    """Use ``n`` threads in torch (``make_torch``), in NumPy's BLAS and in Numba, for the
    rest of the process (and ``n`` BLAS/OpenMP threads in cold-start subprocesses)."""
    global TORCH_THREADS
    TORCH_THREADS = int(n)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(TORCH_THREADS)  # libraries loaded later read these
    # Load every BLAS our kernels use first: threadpoolctl limits only loaded libraries
    # (NumPy's, and SciPy's, which Numba's np.dot inside the kernels calls).
    import numpy  # noqa: F401
    import scipy.linalg.cython_blas  # noqa: F401

    import rnnumba.recurrent  # noqa: F401
    try:
        from threadpoolctl import threadpool_limits
        _BLAS_LIMIT.append(threadpool_limits(TORCH_THREADS))
    except ImportError:  # pragma: no cover
        pass
    import numba
    numba.set_num_threads(min(TORCH_THREADS, numba.config.NUMBA_NUM_THREADS))


def thread_pools():
    """``[(library, threads)]`` of every thread pool loaded now (threadpoolctl)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:  # pragma: no cover
        return []
    return [(f"{p.get('internal_api')} ({p.get('prefix')})", p.get("num_threads"))
            for p in threadpool_info()]


def torch_available():
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def make_torch(rec, X, G):
    """``(module, x, g)``: the PyTorch twin of ``rec`` with the same weights and data.

    ``x.requires_grad`` is on so that torch computes the input gradient, as ours does.
    """
    import torch
    torch.set_num_threads(TORCH_THREADS)
    cls = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[rec.cell]
    module = cls(rec.input_size, rec.hidden_size, num_layers=rec.num_layers,
                 bidirectional=rec.bidirectional, batch_first=True)
    module.load_state_dict({k: torch.from_numpy(v) for k, v in rec.state_dict().items()})
    x = torch.from_numpy(X.copy()).requires_grad_(True)
    g = torch.from_numpy(G.copy())
    return module, x, g


def ours_forward(rec, X):
    def run():
        rec.forward(X)
    return run


def ours_forward_backward(rec, X, G):
    def run():
        rec.forward(X)
        rec.backward(G)
    return run


def torch_forward(module, x):
    def run():
        module(x)
    return run


def torch_forward_backward(module, x, g):
    def run():
        module.zero_grad(set_to_none=True)
        x.grad = None
        out, _ = module(x)
        out.backward(g)  # == (out * g).sum().backward(), without the extra product
    return run


#: Cells whose PyTorch CPU layer dispatches to oneDNN's fused RNN primitive (where torch
#: was built with it): ``torch.nn.LSTM`` only. The runner times these a second time with
#: oneDNN off, PyTorch's own per-step kernels, as RNN and GRU always run.
ONEDNN_CELLS = ("lstm",)


def torch_onednn():
    """Whether PyTorch's CPU LSTM may use oneDNN here (built with it, and enabled)."""
    import torch
    return bool(torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled)


def without_onednn(fn):
    """``fn`` run with PyTorch's oneDNN backend switched off for the call."""
    import torch

    def run():
        with warnings.catch_warnings():
            # torch warns, on each switch, that TF32 on oneDNN needs an Intel GPU
            warnings.simplefilter("ignore", UserWarning)
            with torch.backends.mkldnn.flags(enabled=False):
                fn()
    return run


def flops(cell, size, num_layers=1, bidirectional=False):
    """GEMM FLOPs of forward and of forward+backward (``rnnumba.profiling.flop_counts``)."""
    from rnnumba.profiling import flop_counts
    batch, steps, features, hidden = SIZES[size]
    counts = flop_counts(cell, batch, steps, features, hidden, num_layers, bidirectional)
    return {"forward": counts["forward"], "forward_backward": counts["train_step"]}


# --------------------------------------------------------------------------- timing


def calibrate(fn, min_sample=0.01):
    """Calls per sample so that one sample lasts at least ``min_sample`` seconds."""
    t0 = time.perf_counter()
    fn()
    once = time.perf_counter() - t0
    if once >= min_sample:
        return 1
    return min(1000, max(1, int(min_sample / max(once, 1e-7)) + 1))


#: Seconds of idle time before each sample. PyTorch's OpenMP threads keep spinning for a
#: few milliseconds after its calls (libgomp's default wait policy): a medium LSTM
#: forward+backward of ours took 42 ms right after one of PyTorch's, 37 ms after 5 ms of
#: sleep and 35.5 ms after 20 ms. Ours leave no thread spinning.
PAUSE_BEFORE_SAMPLE = 0.02
#: The first call after that pause is slow for both libraries (sleeping threads, cold
#: caches): at the small LSTM size, 1.59 against 1.20-1.34 ms for ours and 2.10 against
#: 1.32-1.42 ms for PyTorch's (median of 20 pauses, calls 2-6 after it). A training loop
#: calls back to back, so each sample starts with this many untimed calls.
SETTLE_CALLS = 1


def interleaved(fns, repeats, warmup=2, min_sample=0.01, budget=None, settle=None):
    """Time several callables in the same process with interleaved repeats.

    ``fns`` maps a name to a no-argument callable. Each gets ``warmup`` untimed calls, then
    every repeat times each callable once in turn (in a rotating order, so that none
    always runs first), ``number`` calls per sample, each sample after
    ``PAUSE_BEFORE_SAMPLE`` of idle time and ``settle`` untimed calls (default
    ``SETTLE_CALLS``; 0 where one call is long enough to make the first call's extra cost
    negligible). ``budget`` (seconds) lowers the number of repeats, to at least 5, when the
    callables are slow. Returns ``{name: spread(per-call seconds)}``.
    """
    names = list(fns)
    settle = SETTLE_CALLS if settle is None else settle
    for name in names:
        for _ in range(warmup):
            fns[name]()
    number = {name: calibrate(fns[name], min_sample) for name in names}
    if budget is not None:
        t0 = time.perf_counter()
        for name in names:
            for _ in range(number[name]):
                fns[name]()
        per_round = time.perf_counter() - t0
        repeats = max(min(repeats, 5), min(repeats, int(budget / max(per_round, 1e-9))))
    samples = {name: [] for name in names}
    for r in range(repeats):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            fn, n = fns[name], number[name]
            time.sleep(PAUSE_BEFORE_SAMPLE)
            for _ in range(settle):
                fn()
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            samples[name].append((time.perf_counter() - t0) / n)
    return {name: dict(spread(samples[name]), number=number[name]) for name in names}


def gemm_rate(n=2048, repeats=5, threads=None):
    """This machine's float32 GEMM rate in GFLOP/s: ``np.matmul`` on ``n x n`` matrices."""
    import contextlib

    import numpy as np
    threads = TORCH_THREADS if threads is None else threads
    try:
        from threadpoolctl import threadpool_limits
        limit = threadpool_limits(threads, user_api="blas")
    except ImportError:  # pragma: no cover
        limit = contextlib.nullcontext()
    with limit:
        rng = np.random.default_rng(0)
        a = rng.standard_normal((n, n)).astype(np.float32)
        b = rng.standard_normal((n, n)).astype(np.float32)
        out = np.empty((n, n), dtype=np.float32)
        np.matmul(a, b, out=out)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            np.matmul(a, b, out=out)
            times.append(time.perf_counter() - t0)
    median = statistics.median(times)
    return {"n": n, "threads": threads, "seconds": median, "gflops": 2 * n ** 3 / median / 1e9}


# --------------------------------------------------------------------------- memory


def activation_bytes(rec, batch, steps):
    """Bytes of the activations BPTT must keep: per layer and direction the hidden states
    ``(T, N, H)`` plus what the cell's backward needs beyond them (LSTM: i, f, g, o and c;
    GRU: r, z, n and ``W_hn h + b_hn``; RNN: nothing)."""
    from rnnumba.backend import cell_kernels
    _, kernels = cell_kernels("cpu", rec.cell)
    per_step = rec.hidden_size + kernels.cache_width(rec.hidden_size)
    return rec.num_layers * rec.num_directions * steps * batch * per_step * rec.dtype.itemsize


def peak_training_memory(cell, size, num_layers=1, bidirectional=False):
    """Peak bytes traced by ``tracemalloc`` during one training step (forward, backward
    without the input gradient, as the estimators train, and an Adam step), above what was
    allocated before it, with the activations for scale."""
    import tracemalloc
    rec, X, G = make_ours(cell, size, num_layers, bidirectional)
    from rnnumba.optim import Adam
    adam = Adam([rec.flat_params.shape])

    def step():
        rec.forward(X)
        rec.backward(G, input_grad=False)
        adam.step([rec.flat_params], [rec.flat_grads])

    step()  # compile / load kernels (and keep a previous step's activations, as a
    # training loop does: allocated before the trace starts, they are not counted)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        step()
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    batch, steps = X.shape[0], X.shape[1]
    acts = activation_bytes(rec, batch, steps)
    return {"peak_bytes": peak, "activation_bytes": acts, "ratio": peak / acts,
            "param_bytes": rec.flat_params.nbytes, "input_bytes": X.nbytes + G.nbytes}


# --------------------------------------------------------------------------- cold start


COLD_OURS = """
import time
t0 = time.perf_counter()
import numpy as np
from rnnumba import Recurrent
t1 = time.perf_counter()
rec = Recurrent({cell!r}, 8, 32, dtype="float32", random_state=0)
rng = np.random.default_rng(0)
X = rng.standard_normal((32, 50, 8)).astype("float32")
G = rng.standard_normal((32, 50, 32)).astype("float32")
rec.forward(X); rec.backward(G)
t2 = time.perf_counter()
rec.forward(X); rec.backward(G)
t3 = time.perf_counter()
"""

COLD_TORCH = """
import time
t0 = time.perf_counter()
import torch
t1 = time.perf_counter()
torch.set_num_threads({threads})
torch.manual_seed(0)
cls = {{"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}}[{cell!r}]
m = cls(8, 32, batch_first=True)
x = torch.randn(32, 50, 8, requires_grad=True)
g = torch.randn(32, 50, 32)
out, _ = m(x); out.backward(g)
t2 = time.perf_counter()
m.zero_grad(); out, _ = m(x); out.backward(g)
t3 = time.perf_counter()
"""

#: Appended by :func:`cold_start` (not by asv's ``timeraw``, which reads stdout itself).
COLD_REPORT = """
print("RESULT", {"import_s": t1 - t0, "first_step_s": t2 - t1, "steady_step_s": t3 - t2})
"""


def cold_start(cell, cache="warm", impl="rnnumba", timeout=600):
    """One fresh interpreter: import + first forward+backward of a (32, 50, 8, 32) network.

    ``cache="empty"`` points ``NUMBA_CACHE_DIR`` at a new temporary directory so that every
    kernel compiles; ``"warm"`` uses the cache as it is (call once first to fill it).
    Returns the in-process times and the whole process's wall time.
    """
    import ast
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO_ROOT + os.pathsep + env.get("PYTHONPATH", "")
    template = COLD_OURS if impl == "rnnumba" else COLD_TORCH
    code = template.format(cell=cell, threads=TORCH_THREADS)
    code += COLD_REPORT
    with tempfile.TemporaryDirectory(prefix="rnnumba-cold-") as tmp:
        if cache == "empty":
            env["NUMBA_CACHE_DIR"] = tmp
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env[var] = str(TORCH_THREADS)
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                              text=True, timeout=timeout, cwd=tmp)
        wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"cold-start subprocess failed ({impl}, {cell}, {cache}):\n"
                           f"{proc.stderr[-2000:]}")
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    result = ast.literal_eval(line[len("RESULT "):])
    result["process_s"] = wall
    return result


def write_json(data, path):
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=1, allow_nan=False)
        fh.write("\n")
