"""The shared ``prange`` block kernel: row kernels called through their compiled address."""

import numpy as np
import pytest
from numba import njit

from rnnumba.kernels.cpu import _blocks


@njit
def _scaled_rows(x, y, scale, negate, start, stop):
    """``y[start:stop] = ±scale * x[start:stop]``; a row kernel of the cells' form."""
    sign = -1.0 if negate else 1.0
    for n in range(start, stop):
        for j in range(x.shape[1]):
            y[n, j] = sign * scale * x[n, j]


def _blocks_of(rows, count):
    bounds = np.linspace(0, rows, count + 1).astype(np.int64)
    return bounds[:-1].copy(), bounds[1:].copy()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("count", [1, 2, 5])
def test_blocks_compute_what_the_row_kernel_computes_serially(dtype, count):
    x = np.random.default_rng(0).standard_normal((23, 6)).astype(dtype)
    x.flags.writeable = False  # a read-only argument is a type of its own
    expected = np.empty_like(x)
    _scaled_rows(x, expected, 1.5, True, 0, 23)
    y = np.full_like(x, np.nan)
    args = (x, y, 1.5, True)
    starts, stops = _blocks_of(23, count)
    _blocks.run_row_blocks(_blocks.row_kernel_address(_scaled_rows, args), starts, stops, args)
    np.testing.assert_array_equal(y, expected)
    np.testing.assert_allclose(y, -1.5 * x, rtol=1e-6)


def test_addresses_are_kept_per_argument_types():
    x64 = np.ones((4, 3))
    x32 = np.ones((4, 3), dtype=np.float32)
    first = _blocks.row_kernel_address(_scaled_rows, (x64, x64.copy(), 2.0, False))
    again = _blocks.row_kernel_address(_scaled_rows, (np.zeros((9, 2)), x64, 0.5, True))
    other = _blocks.row_kernel_address(_scaled_rows, (x32, x32.copy(), 2.0, False))
    strided = _blocks.row_kernel_address(_scaled_rows, (x64[:, ::2], x64, 2.0, False))
    assert first == again  # same types, other values: one compiled kernel
    assert len({first, other, strided}) == 3
    for args in [(x64, np.zeros_like(x64), 2.0, False), (x32, np.zeros_like(x32), 2.0, False),
                 (x64[:, ::2], np.zeros((4, 2)), 2.0, False)]:
        starts, stops = _blocks_of(4, 2)
        _blocks.run_row_blocks(_blocks.row_kernel_address(_scaled_rows, args), starts, stops,
                               args)
        np.testing.assert_array_equal(args[1], 2.0 * args[0])
