"""``kernels/cpu/_blas.gemm``: BLAS on strided row-major matrices given by address, adding in
place."""

import numpy as np
import pytest

from rnnumba.kernels.cpu._blas import gemm


def _strided(rng, rows, cols, dtype, pad=3):
    """A ``(rows, cols)`` view into wider rows (row stride ``cols + pad``)."""
    return rng.standard_normal((rows, cols + pad)).astype(dtype)[:, :cols]


def _gemm(a, transpose_a, b, transpose_b, beta, c):
    """``c = op(a) @ op(b) + beta * c`` through ``gemm``, on the arrays' addresses."""
    def where(m):
        return m.__array_interface__["data"][0], max(m.strides[0] // m.itemsize, m.shape[1], 1)

    k = a.shape[0] if transpose_a else a.shape[1]
    gemm(c.dtype == np.float64, transpose_a, transpose_b, c.shape[0], c.shape[1], k,
         *where(a), *where(b), beta, *where(c))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("transpose_a", [False, True])
@pytest.mark.parametrize("transpose_b", [False, True])
@pytest.mark.parametrize("beta", [0.0, 1.0, 0.5])
def test_gemm_matches_numpy_on_strided_operands(dtype, transpose_a, transpose_b, beta):
    rng = np.random.default_rng(0)
    m, n, k = 7, 5, 11
    a = _strided(rng, *((k, m) if transpose_a else (m, k)), dtype)
    b = _strided(rng, *((n, k) if transpose_b else (k, n)), dtype)
    c = _strided(rng, m, n, dtype, pad=4)
    start = c.base.copy()
    _gemm(a, transpose_a, b, transpose_b, beta, c)
    want = (a.T if transpose_a else a) @ (b.T if transpose_b else b) + beta * start[:, :n]
    tol = 1e-5 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(c, want, rtol=tol, atol=tol)
    np.testing.assert_array_equal(c.base[:, n:], start[:, n:])  # the padding is untouched


def test_gemm_single_rows_and_empty_products():
    rng = np.random.default_rng(1)
    d = _strided(rng, 6, 4, np.float64)
    sums = np.full((1, 4), 2.0)
    _gemm(np.ones((1, 6)), False, d, False, 1.0, sums)  # column sums added in
    np.testing.assert_allclose(sums[0], d.sum(axis=0) + 2.0, rtol=1e-13)
    c = np.full((3, 2), 4.0)
    _gemm(np.zeros((3, 0)), False, np.zeros((0, 2)), False, 0.5, c)  # nothing to sum
    np.testing.assert_array_equal(c, 2.0)
    _gemm(np.zeros((0, 5)), False, np.zeros((5, 2)), False, 1.0, np.zeros((0, 2)))  # no rows
