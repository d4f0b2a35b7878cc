"""rnnumba._validation: sequences in every accepted form -> padded array + lengths."""

import numpy as np
import pytest
import scipy.sparse as sp

from rnnumba._validation import check_sequence_targets, check_sequences


def test_3d_array_passes_through():
    X = np.arange(24, dtype=float).reshape(2, 3, 4)
    b = check_sequences(X)
    assert b.X.shape == (2, 3, 4) and b.X.flags.c_contiguous and b.X.dtype == np.float64
    np.testing.assert_array_equal(b.X, X)
    np.testing.assert_array_equal(b.lengths, [3, 3])
    assert b.lengths.dtype == np.int64 and not b.ragged and b.n_timesteps == 3


def test_2d_is_univariate():
    X = np.arange(10.0).reshape(2, 5)
    b = check_sequences(X)
    assert b.X.shape == (2, 5, 1)
    np.testing.assert_array_equal(b.X[:, :, 0], X)


def test_2d_single_column_is_rejected_with_hint():
    with pytest.raises(ValueError, match=r"1 feature\(s\).*n_samples, 1, n_features"):
        check_sequences(np.ones((4, 1)))
    # the explicit 3-D form of length-1 sequences is fine
    assert check_sequences(np.ones((4, 1, 2))).X.shape == (4, 1, 2)


def test_trailing_nan_padding_gives_lengths_and_zeros():
    X = np.ones((3, 4, 2))
    X[0, 2:] = np.nan
    X[1, 3:] = np.nan
    b = check_sequences(X)
    np.testing.assert_array_equal(b.lengths, [2, 3, 4])
    assert not np.isnan(b.X).any()
    assert (b.X[0, 2:] == 0).all() and (b.X[1, 3:] == 0).all()
    assert b.n_timesteps == 4


def test_all_padding_steps_are_trimmed():
    X = np.ones((2, 6, 1))
    X[:, 3:] = np.nan
    b = check_sequences(X)
    assert b.X.shape == (2, 3, 1) and b.n_timesteps == 6


def test_ragged_list():
    seqs = [np.ones((2, 3)), np.zeros((4, 3)), np.full((1, 3), 2.0)]
    b = check_sequences(seqs)
    assert b.ragged and b.X.shape == (3, 4, 3)
    np.testing.assert_array_equal(b.lengths, [2, 4, 1])
    assert (b.X[0, 2:] == 0).all() and (b.X[2, 0] == 2).all()


def test_ragged_object_array_is_a_ragged_list():
    seqs = [np.ones((2, 3)), np.zeros((4, 3)), np.full((1, 3), 2.0)]
    as_objects = np.empty(3, dtype=object)
    as_objects[:] = seqs
    b, want = check_sequences(as_objects), check_sequences(seqs)
    assert b.ragged
    np.testing.assert_array_equal(b.X, want.X)
    np.testing.assert_array_equal(b.lengths, want.lengths)
    univariate = np.array([np.arange(3.0), np.arange(5.0)], dtype=object)
    np.testing.assert_array_equal(check_sequences(univariate).lengths, [3, 5])


def test_ragged_list_of_1d_is_univariate():
    b = check_sequences([np.arange(3.0), np.arange(5.0)])
    assert b.X.shape == (2, 5, 1)
    np.testing.assert_array_equal(b.lengths, [3, 5])


def test_regular_list_is_an_array():
    b = check_sequences(np.ones((3, 4)).tolist())
    assert not b.ragged and b.X.shape == (3, 4, 1)
    b = check_sequences([np.ones((4, 2))] * 3)
    assert not b.ragged and b.X.shape == (3, 4, 2)


def test_float32_request():
    b = check_sequences(np.ones((2, 3, 1)), dtype=np.float32)
    assert b.X.dtype == np.float32


def test_input_not_modified_and_readonly_ok():
    X = np.ones((2, 3, 1))
    X[0, 2] = np.nan
    X.setflags(write=False)
    b = check_sequences(X)
    assert np.isnan(X[0, 2, 0]) and b.X[0, 2, 0] == 0


@pytest.mark.parametrize("make, exc, match", [
    (lambda X: X.__setitem__((0, 1, 0), np.nan) or X, ValueError, "some but not all"),
    (lambda X: X.__setitem__((0, 1), np.nan) or X, ValueError, "not trailing"),
    (lambda X: X.__setitem__((1, 0), np.inf) or X, ValueError, "infinity"),
    (lambda X: X.__setitem__((1, 3, 1), -np.inf) or X, ValueError, "infinity"),
    (lambda X: X.__setitem__(2, np.nan) or X, ValueError, "empty"),
    (lambda X: X[:, :, 0, None, None], ValueError, "2-D"),
    (lambda X: X[:, 0, 0], ValueError, "2D array"),
    (lambda X: X[:0], ValueError, "0 sample"),
    (lambda X: X[:, :0], ValueError, "time step"),
    (lambda X: X[:, :, :0], ValueError, "feature"),
    (lambda X: X.astype(complex), ValueError, "Complex"),
    (lambda X: sp.csr_matrix(X[:, :, 0]), TypeError, "[Ss]parse"),
])
def test_bad_inputs(make, exc, match):
    X = np.ones((3, 4, 2))
    with pytest.raises(exc, match=match):
        check_sequences(make(X))


def test_bad_ragged_lists():
    with pytest.raises(ValueError, match="same number of features"):
        check_sequences([np.ones((2, 3)), np.ones((3, 2))])
    with pytest.raises(ValueError, match="not trailing"):
        check_sequences([np.ones((2, 3)), np.array([[1, 1, 1], [np.nan] * 3, [1, 1, 1]])])
    with pytest.raises(ValueError, match="infinity"):
        check_sequences([np.ones((2, 1)), np.array([[1.0], [np.inf], [2.0]])])
    with pytest.raises(ValueError, match="0 sequences"):
        check_sequences([])
    with pytest.raises(ValueError):
        check_sequences([np.ones((2, 3, 1)), np.ones((3, 3, 1))])
    with pytest.raises(ValueError, match="could not convert"):
        check_sequences([np.ones((2, 1)), np.array([["a"], ["b"], ["c"]], dtype=object)])


def test_sequence_targets_array_and_list():
    X = np.ones((2, 4, 1))
    X[0, 2:] = np.nan
    b = check_sequences(X)
    y = np.array([[1.0, 2.0, np.nan, np.nan], [1.0, 2.0, 3.0, 4.0]])
    Y, mask = check_sequence_targets(y, b, numeric=True)
    np.testing.assert_array_equal(mask, [[1, 1, 0, 0], [1, 1, 1, 1]])
    assert Y[0, 2] == 0 and Y[1, 3] == 4
    Yl, mask_l = check_sequence_targets([[1.0, 2.0], [1.0, 2.0, 3.0, 4.0]], b, numeric=True)
    np.testing.assert_array_equal(Yl, Y)
    labels, _ = check_sequence_targets([["a", "b"], ["a", "a", "b", "b"]], b, numeric=False)
    assert labels[0, 1] == "b" and labels[1, 3] == "b"
    with pytest.raises(ValueError, match="NaN"):
        check_sequence_targets(np.where(np.isnan(y), 0, np.nan), b, numeric=True)
    with pytest.raises(ValueError, match="time steps"):
        check_sequence_targets(np.ones((2, 3)), b, numeric=True)
    with pytest.raises(ValueError, match="one target per time step"):
        check_sequence_targets([[1.0], [1.0, 2.0, 3.0, 4.0]], b, numeric=True)


def test_hidden_layer_sizes_are_positive_integers():
    from rnnumba._validation import check_hidden_layer_sizes
    assert check_hidden_layer_sizes(8) == (8,)
    assert check_hidden_layer_sizes([16, np.int64(4)]) == (16, 4)
    for bad in ([], [8, 0], [True], [2.5], (-1,)):
        with pytest.raises(ValueError, match="hidden_layer_sizes must be one or more positive"):
            check_hidden_layer_sizes(bad)
