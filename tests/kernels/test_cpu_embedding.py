"""Tests for :mod:`rnnumba.kernels.cpu.embedding`: lookup forward and deterministic backward.

The oracle is a NumPy loop written from the contract (each id's rows of ``grad_out``
summed left to right in position order, the total added once), so the kernels must match
it bit for bit; finite differences in float64 and ``torch.nn.Embedding`` check that this
is the gradient. The backward pass must give the same bits on every run, split over
threads or not, through Python threads or a prange on Numba's TBB layer.
"""

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from rnnumba.kernels.cpu import _threads
from rnnumba.inputs import embedding_index
from rnnumba.kernels.cpu import embedding as emb

dtypes = pytest.mark.parametrize("dtype", [np.float32, np.float64])


# --------------------------------------------------------------------------- reference


def reference_index(ids, active, vocab_size):
    """``(order, bounds)`` by brute force: positions of each id in turn, ascending."""
    flat = ids.reshape(-1)
    mask = np.ones(flat.shape, bool) if active is None else active.reshape(-1)
    order, bounds = [], [0]
    for v in range(vocab_size):
        order += [r for r in range(flat.shape[0]) if mask[r] and flat[r] == v]
        bounds.append(len(order))
    return np.array(order, dtype=np.int64), np.array(bounds, dtype=np.int64)


def reference_backward(ids, active, grad_out, grad_weight):
    """``grad_weight`` plus, per id, its active rows of ``grad_out`` summed in position
    order (a new array)."""
    result = grad_weight.copy()
    rows = grad_out.reshape(-1, grad_out.shape[2])
    flat = ids.reshape(-1)
    mask = np.ones(flat.shape, bool) if active is None else active.reshape(-1)
    for v in range(grad_weight.shape[0]):
        positions = [r for r in range(flat.shape[0]) if mask[r] and flat[r] == v]
        if positions:
            total = rows[positions[0]].copy()
            for r in positions[1:]:
                total += rows[r]
            result[v] += total
    return result


def problem(T, N, V, E, dtype, seed=0, padding=0.3, skew=False):
    """Random ids (Zipf-like when ``skew``), a padding mask, weights, upstream gradient and
    a nonzero ``grad_weight`` to add into."""
    rng = np.random.default_rng(seed)
    if skew:
        ids = np.minimum(rng.zipf(1.5, (T, N)) - 1, V - 1).astype(np.int64)
    else:
        ids = rng.integers(0, V, (T, N)).astype(np.int64)
    active = rng.random((T, N)) >= padding
    weight = rng.standard_normal((V, E)).astype(dtype)
    grad_out = rng.standard_normal((T, N, E)).astype(dtype)
    grad_weight = rng.standard_normal((V, E)).astype(dtype)
    return ids, active, weight, grad_out, grad_weight


def backward(ids, active, grad_out, grad_weight):
    """The kernel's result on a copy of ``grad_weight``."""
    order, bounds = embedding_index(ids, active, grad_weight.shape[0])
    result = grad_weight.copy()
    emb.embedding_backward(order, bounds, grad_out, result)
    return result


# --------------------------------------------------------------------------- index


@pytest.mark.parametrize("use_active", [True, False], ids=["masked", "all"])
def test_index_matches_brute_force(use_active):
    ids, active, *_ = problem(7, 5, 6, 1, np.float64, skew=True)
    active = active if use_active else None
    order, bounds = embedding_index(ids, active, 6)
    want_order, want_bounds = reference_index(ids, active, 6)
    assert order.dtype == np.int64 and bounds.dtype == np.int64
    assert order.flags.c_contiguous and bounds.flags.c_contiguous
    np.testing.assert_array_equal(order, want_order)
    np.testing.assert_array_equal(bounds, want_bounds)


def test_index_unused_ids_and_no_active_positions():
    ids = np.array([[3, 3], [0, 3]])
    order, bounds = embedding_index(ids, np.array([[True, True], [False, True]]), 5)
    np.testing.assert_array_equal(order, [0, 1, 3])
    np.testing.assert_array_equal(bounds, [0, 0, 0, 0, 3, 3])
    order, bounds = embedding_index(ids, np.zeros((2, 2), bool), 5)
    assert order.shape == (0,) and order.dtype == np.int64
    np.testing.assert_array_equal(bounds, np.zeros(6))
    order, bounds = embedding_index(np.zeros((0, 3), np.int64), None, 2)
    assert order.shape == (0,)
    np.testing.assert_array_equal(bounds, [0, 0, 0])


def test_index_ignores_padding_ids_out_of_range():
    ids = np.array([[1, -1], [9, 0]])
    with pytest.raises(ValueError, match="ids must lie in 0..1"):  # 9 is active
        embedding_index(ids, ids >= 0, 2)
    order, bounds = embedding_index(ids, (ids >= 0) & (ids < 2), 2)
    np.testing.assert_array_equal(order, [3, 0])
    np.testing.assert_array_equal(bounds, [0, 1, 2])


def test_index_rejects_bad_arguments():
    with pytest.raises(ValueError, match="ids must be 2-D"):
        embedding_index(np.zeros(3, np.int64), None, 2)
    with pytest.raises(ValueError, match="active must have the shape"):
        embedding_index(np.zeros((2, 3), np.int64), np.ones((3, 2), bool), 2)
    with pytest.raises(ValueError, match="ids must lie in"):
        embedding_index(np.full((2, 3), -1), None, 2)


# --------------------------------------------------------------------------- forward


@dtypes
def test_forward_is_a_lookup(dtype):
    ids, _, weight, _, _ = problem(6, 4, 9, 5, dtype)
    out = np.full((6, 4, 5), np.nan, dtype)
    emb.embedding_forward(ids, weight, out)
    np.testing.assert_array_equal(out, weight[ids])


def test_forward_into_time_major_views():
    """``ids`` and ``out`` as time-major views of batch-major arrays (no copies)."""
    ids, _, weight, _, _ = problem(5, 3, 7, 4, np.float32)
    ids_nt = np.ascontiguousarray(ids.T)
    out_nt = np.zeros((3, 5, 4), np.float32)
    emb.embedding_forward(ids_nt.T, weight, out_nt.transpose(1, 0, 2))
    np.testing.assert_array_equal(out_nt, weight[ids_nt])


@pytest.mark.parametrize("shape", [(0, 3, 4), (3, 0, 4), (3, 2, 0)])
def test_forward_empty(shape):
    T, N, E = shape
    ids = np.zeros((T, N), np.int64)
    out = np.zeros(shape)
    emb.embedding_forward(ids, np.ones((2, E)), out)
    assert out.shape == shape


# --------------------------------------------------------------------------- backward


@dtypes
@pytest.mark.parametrize("skew", [False, True], ids=["uniform", "zipf"])
def test_backward_matches_reference_bitwise(dtype, skew):
    ids, active, _, grad_out, grad_weight = problem(9, 6, 11, 7, dtype, skew=skew)
    result = backward(ids, active, grad_out, grad_weight)
    np.testing.assert_array_equal(result, reference_backward(ids, active, grad_out,
                                                             grad_weight))
    unused = np.setdiff1d(np.arange(11), ids[active])
    np.testing.assert_array_equal(result[unused], grad_weight[unused])


@dtypes
def test_backward_repeated_ids(dtype):
    """Every position holds the same id: one long sum; every other row stays as it was."""
    _, active, _, grad_out, grad_weight = problem(8, 5, 4, 3, dtype, padding=0.0)
    ids = np.full((8, 5), 2, np.int64)
    result = backward(ids, active, grad_out, grad_weight)
    total = grad_out[0, 0].copy()
    for row in grad_out.reshape(-1, 3)[1:]:
        total += row
    np.testing.assert_array_equal(result[2], grad_weight[2] + total)
    np.testing.assert_array_equal(np.delete(result, 2, axis=0),
                                  np.delete(grad_weight, 2, axis=0))


def test_backward_time_major_view():
    """``grad_out`` as the time-major view of a batch-major gradient."""
    ids, active, _, grad_out, grad_weight = problem(6, 4, 5, 3, np.float64)
    batch_major = np.ascontiguousarray(grad_out.transpose(1, 0, 2))
    result = backward(ids, active, batch_major.transpose(1, 0, 2), grad_weight)
    np.testing.assert_array_equal(result, backward(ids, active, grad_out, grad_weight))


@pytest.mark.parametrize("case", ["no-active", "no-rows", "no-width", "no-vocab"])
def test_backward_empty(case):
    T, N, V, E = {"no-active": (3, 4, 5, 2), "no-rows": (0, 4, 5, 2),
                  "no-width": (3, 4, 5, 0), "no-vocab": (3, 4, 0, 2)}[case]
    ids = np.zeros((T, N), np.int64)
    active = np.zeros((T, N), bool) if case in ("no-active", "no-vocab") else None
    grad_weight = np.arange(V * E, dtype=np.float64).reshape(V, E)
    order, bounds = embedding_index(ids, active, V)
    result = grad_weight.copy()
    emb.embedding_backward(order, bounds, np.ones((T, N, E)), result)
    np.testing.assert_array_equal(result, grad_weight)


def test_backward_finite_differences():
    """Gradient of ``sum(out * G)`` over the active positions, float64."""
    T, N, V, E = 4, 3, 5, 2
    ids, active, weight, G, _ = problem(T, N, V, E, np.float64, seed=3)

    def loss(w):
        out = np.empty((T, N, E))
        emb.embedding_forward(ids, w, out)
        return np.sum((out * G)[active])

    grad = backward(ids, active, G, np.zeros((V, E)))
    numeric = np.zeros((V, E))
    eps = 1e-6
    for v in range(V):
        for e in range(E):
            plus, minus = weight.copy(), weight.copy()
            plus[v, e] += eps
            minus[v, e] -= eps
            numeric[v, e] = (loss(plus) - loss(minus)) / (2 * eps)
    np.testing.assert_allclose(grad, numeric, rtol=1e-7, atol=1e-8)


@dtypes
@pytest.mark.parametrize("masking", ["active", "padding_idx"])
def test_torch_parity(torch, dtype, masking):
    """Forward and weight gradient of ``torch.nn.Embedding``, padding masked in the loss
    (``active``) or through ``padding_idx=0`` (whose row gets no gradient)."""
    T, N, V, E = 7, 5, 8, 6
    ids, active, weight, G, _ = problem(T, N, V, E, dtype, seed=5, skew=True)
    if masking == "padding_idx":
        active = ids != 0
    layer = torch.nn.Embedding(V, E, padding_idx=0 if masking == "padding_idx" else None,
                               dtype=torch.float64 if dtype == np.float64 else torch.float32)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(weight))
    out_t = layer(torch.from_numpy(ids))
    mask = torch.from_numpy(active[:, :, None].astype(dtype))
    (out_t * torch.from_numpy(G) * mask).sum().backward()

    out = np.empty((T, N, E), dtype)
    emb.embedding_forward(ids, weight, out)
    np.testing.assert_array_equal(out, out_t.detach().numpy())
    grad = backward(ids, active, G, np.zeros((V, E), dtype))
    tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == np.float32 else {"rtol": 1e-12, "atol": 0}
    np.testing.assert_allclose(grad, layer.weight.grad.numpy(), **tol)


# --------------------------------------------------------------------------- threads


def test_vocabulary_blocks_balance_occurrences():
    counts = np.array([0, 5, 1, 0, 2, 2, 7, 0, 3, 0])
    bounds = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    for count in range(1, 8):
        blocks = emb.vocabulary_blocks(bounds, count)
        assert 1 <= len(blocks) <= count
        covered = np.zeros(10, bool)
        previous = 0
        for start, stop in blocks:
            assert previous <= start < stop and bounds[stop] > bounds[start]
            covered[start:stop] = True
            previous = stop
        assert covered[counts > 0].all()
        biggest = max(bounds[stop] - bounds[start] for start, stop in blocks)
        assert biggest <= -(-bounds[-1] // count) + counts.max()
    assert emb.vocabulary_blocks(bounds, 2) == [(0, 6), (6, 10)]
    assert emb.vocabulary_blocks(np.zeros(4, np.int64), 3) == []


@pytest.fixture(params=["python-threads", "prange"])
def split_backward(request, monkeypatch):
    """Split every backward pass over as many threads as asked (any size), through Python
    threads or a prange on Numba's TBB layer, and record the blocks of each pass."""
    in_prange = request.param == "prange"
    if in_prange and not _threads._numba_layer_is_tbb():
        pytest.skip("Numba's TBB threading layer is not available here")
    monkeypatch.setattr(_threads, "PRANGE_LOOPS", in_prange)
    monkeypatch.setattr(emb, "BACKWARD_MIN_BLOCK_WORK", 1)
    seen = []
    real = emb.vocabulary_blocks

    def spy(bounds, count):
        blocks = real(bounds, count)
        seen.append(blocks)
        return blocks

    monkeypatch.setattr(emb, "vocabulary_blocks", spy)
    return seen


@dtypes
def test_backward_bitwise_across_threads_and_runs(split_backward, dtype):
    ids, active, _, grad_out, grad_weight = problem(10, 7, 13, 5, dtype, seed=7, skew=True)
    want = reference_backward(ids, active, grad_out, grad_weight)
    results = {}
    for threads in (1, 2, 2):
        with threadpool_limits(limits=threads, user_api="blas"):
            results.setdefault(threads, []).append(backward(ids, active, grad_out,
                                                            grad_weight))
    assert [len(blocks) for blocks in split_backward] == [1, 2, 2]
    for runs in results.values():
        for result in runs:
            np.testing.assert_array_equal(result, want)


def test_backward_small_pass_stays_on_one_thread(monkeypatch):
    """Below ``2 * BACKWARD_MIN_BLOCK_WORK`` additions nothing is split."""
    monkeypatch.setattr(_threads, "run_blocks", None)  # would fail if called
    ids, active, _, grad_out, grad_weight = problem(4, 3, 5, 2, np.float32)
    result = backward(ids, active, grad_out, grad_weight)
    np.testing.assert_array_equal(result, reference_backward(ids, active, grad_out,
                                                             grad_weight))
