"""CUDA embedding kernels (:mod:`rnnumba.kernels.cuda.embedding`) against the CPU kernels.

Run under Numba's simulator (one Python thread per CUDA thread, so shapes are tiny)::

    NUMBA_ENABLE_CUDASIM=1 python -m pytest -m cudasim tests/kernels/test_cuda_embedding.py

Elementwise blocks are lowered to 8 threads so that the tiny problems span several blocks.
The backward pass sums in the same order on both backends, so results must agree bit for
bit, on host arrays (copied in and out by the launchers) and on device arrays alike.
"""

import os

import numpy as np
import pytest

from rnnumba.inputs import embedding_index
from rnnumba.kernels.cpu import embedding as cpu

SIM = os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")

pytestmark = pytest.mark.cudasim

dtypes = pytest.mark.parametrize("dtype", [np.float32, np.float64])


@pytest.fixture(scope="module")
def gpu():
    """``rnnumba.kernels.cuda.embedding`` under the simulator, or a skip."""
    if not SIM:
        pytest.skip("simulator tests need NUMBA_ENABLE_CUDASIM=1 set before numba is imported")
    from numba import config
    if not config.ENABLE_CUDASIM:
        pytest.skip("numba was imported before NUMBA_ENABLE_CUDASIM=1 was set")
    from rnnumba.kernels.cuda import embedding
    return embedding


@pytest.fixture
def small_launches(gpu, monkeypatch):
    """Elementwise blocks of 8 threads: tiny problems span several blocks."""
    from rnnumba.kernels.cuda import _jit
    monkeypatch.setattr(_jit, "ELEMENTWISE_BLOCK", 8)
    return gpu


def problem(T, N, V, E, dtype, seed=0, padding=0.3):
    """Skewed ids (repeats, unused ids), a padding mask, weights, upstream gradient and a
    nonzero ``grad_weight`` to add into."""
    rng = np.random.default_rng(seed)
    ids = np.minimum(rng.zipf(1.4, (T, N)) - 1, V - 1).astype(np.int64)
    active = rng.random((T, N)) >= padding
    weight = rng.standard_normal((V, E)).astype(dtype)
    grad_out = rng.standard_normal((T, N, E)).astype(dtype)
    grad_weight = rng.standard_normal((V, E)).astype(dtype)
    return ids, active, weight, grad_out, grad_weight


@dtypes
def test_forward_matches_cpu(small_launches, dtype):
    ids, _, weight, _, _ = problem(3, 4, 7, 5, dtype)
    out = np.full((3, 4, 5), np.nan, dtype)
    small_launches.embedding_forward(ids, weight, out)
    want = np.empty_like(out)
    cpu.embedding_forward(ids, weight, want)
    np.testing.assert_array_equal(out, want)


@dtypes
def test_backward_matches_cpu_bitwise(small_launches, dtype):
    ids, active, _, grad_out, grad_weight = problem(5, 4, 6, 3, dtype, seed=1)
    order, bounds = embedding_index(ids, active, 6)
    assert (np.diff(bounds) > 1).any() and (np.diff(bounds) == 0).any()
    want = grad_weight.copy()
    cpu.embedding_backward(order, bounds, grad_out, want)
    for _ in range(2):  # and the same bits on a second run
        result = grad_weight.copy()
        small_launches.embedding_backward(order, bounds, grad_out, result)
        np.testing.assert_array_equal(result, want)


def test_device_arrays(small_launches):
    """Device arrays in and out, no host copies: forward then backward."""
    from numba import cuda
    ids, active, weight, grad_out, grad_weight = problem(4, 3, 5, 2, np.float32, seed=2)
    order, bounds = embedding_index(ids, active, 5)
    out = cuda.device_array((4, 3, 2), np.float32)
    small_launches.embedding_forward(cuda.to_device(ids), cuda.to_device(weight), out)
    np.testing.assert_array_equal(out.copy_to_host(), weight[ids])
    d_grad_weight = cuda.to_device(grad_weight)
    small_launches.embedding_backward(cuda.to_device(order), cuda.to_device(bounds),
                                      cuda.to_device(grad_out), d_grad_weight)
    want = grad_weight.copy()
    cpu.embedding_backward(order, bounds, grad_out, want)
    np.testing.assert_array_equal(d_grad_weight.copy_to_host(), want)


@pytest.mark.parametrize("case", ["no-active", "no-rows", "no-width"])
def test_empty(small_launches, case):
    T, N, V, E = {"no-active": (3, 2, 4, 2), "no-rows": (0, 2, 4, 2),
                  "no-width": (3, 2, 4, 0)}[case]
    ids = np.zeros((T, N), np.int64)
    active = np.zeros((T, N), bool) if case == "no-active" else None
    order, bounds = embedding_index(ids, active, V)
    grad_weight = np.arange(V * E, dtype=np.float64).reshape(V, E)
    result = grad_weight.copy()
    small_launches.embedding_backward(order, bounds, np.ones((T, N, E)), result)
    np.testing.assert_array_equal(result, grad_weight)
    out = np.zeros((T, N, E))
    small_launches.embedding_forward(ids, np.ones((V, E)), out)
    np.testing.assert_array_equal(out, np.ones((T, N, E)))


def _forward_args():
    return {"ids": np.zeros((2, 3), np.int64), "weight": np.zeros((4, 5), np.float32),
            "out": np.zeros((2, 3, 5), np.float32)}


def _backward_args():
    return {"order": np.zeros(4, np.int64), "bounds": np.array([0, 4, 4, 4, 4]),
            "grad_out": np.zeros((2, 3, 5), np.float32),
            "grad_weight": np.zeros((4, 5), np.float32)}


@pytest.mark.parametrize("name, bad, match", [
    ("ids", np.zeros((2, 3), np.int32), "ids must have shape"),
    ("ids", np.zeros(6, np.int64), "ids must be 2-D"),
    ("weight", np.zeros((4, 5), np.float16), "weight must have shape"),
    ("weight", np.zeros(20, np.float32), "weight must be 2-D"),
    ("out", np.zeros((2, 3, 4), np.float32), "out must have shape"),
    ("out", np.zeros((3, 2, 5), np.float32), "out must have shape"),
    ("out", np.zeros((2, 3, 5), np.float64), "out must have shape"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_forward_rejects(gpu, name, bad, match):
    args = _forward_args()
    args[name] = bad
    with pytest.raises(ValueError, match=match):
        gpu.embedding_forward(*args.values())


@pytest.mark.parametrize("name, bad, match", [
    ("order", np.zeros(4, np.int32), "order must have shape"),
    ("order", np.zeros((2, 2), np.int64), "order must be 1-D"),
    ("order", np.zeros(7, np.int64), "order has 7 entries"),
    ("bounds", np.zeros(4, np.int64), "bounds must have shape"),
    ("bounds", np.zeros(5, np.float64), "bounds must have shape"),
    ("grad_out", np.zeros((2, 3, 4), np.float32), "grad_weight must have shape"),
    ("grad_out", np.zeros((6, 5), np.float32), "grad_out must be 3-D"),
    ("grad_out", np.zeros((2, 3, 5), np.int64), "grad_out must have shape"),
    ("grad_weight", np.zeros((4, 5), np.float64), "grad_weight must have shape"),
    ("grad_weight", np.zeros((3, 5), np.float32), "bounds must have shape"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_backward_rejects(gpu, name, bad, match):
    args = _backward_args()
    args[name] = bad
    with pytest.raises(ValueError, match=match):
        gpu.embedding_backward(*args.values())
