"""SequenceScaler: scikit-learn's checks, every input form (round trips, padding, dtypes),
statistics against NumPy over the valid steps, copy/in-place, partial_fit, Pipeline,
clone/pickle and bad input."""

import pickle

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from rnnumba.preprocessing import SequenceScaler

_TABULAR = ("sklearn's checks feed tabular (n_samples, n_features) arrays; rnnumba reads a "
            "2-D X as (n_samples, n_timesteps) univariate series, so n_features_in_ is 1")
EXPECTED_FAILED = {
    "check_n_features_in": _TABULAR,
    "check_n_features_in_after_fitting": _TABULAR + " and a different number of columns is a "
                                                    "different sequence length, not an error",
    "check_transformer_general": _TABULAR + "; the check asserts that transforming X[:, :-1] "
                                            "(a valid batch of shorter series) raises",
    "check_transformer_data_not_an_array": "a list is a batch of sequences and comes back as "
                                           "a list of arrays; the check expects an array "
                                           "(its _NotAnArray half is tested below)",
}


# copy=False is left out, as it is for StandardScaler (whose checks fail the same way): the
# checks reuse X after transforming it, which copy=False changes in place.
@parametrize_with_checks([SequenceScaler(), SequenceScaler(with_mean=False),
                          SequenceScaler(with_std=False)],
                         expected_failed_checks=lambda est: EXPECTED_FAILED)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


# ---------------------------------------------------------------------- data helpers
def _padded(n=7, steps=6, features=3, seed=0, dtype=np.float64):
    """A 3-D batch with trailing NaN padding, its lengths, and the valid rows stacked."""
    rng = np.random.RandomState(seed)
    X = (rng.randn(n, steps, features) * [1.0, 5.0, 0.1][:features]
         + [2.0, -3.0, 10.0][:features]).astype(dtype)
    lengths = rng.randint(1, steps + 1, size=n)
    lengths[0] = steps
    for i, length in enumerate(lengths):
        X[i, length:] = np.nan
    valid = np.concatenate([X[i, :length] for i, length in enumerate(lengths)])
    return X, lengths, valid.astype(np.float64)


def _ragged(features=2, seed=1, flat=False, dtype=np.float64):
    rng = np.random.RandomState(seed)
    lengths = [4, 1, 7, 3]
    shape = (lambda t: (t,)) if flat else (lambda t: (t, features))
    seqs = [(rng.randn(*shape(t)) * 3 + 1).astype(dtype) for t in lengths]
    return seqs


def _object_array(seqs):
    out = np.empty(len(seqs), dtype=object)
    for i, s in enumerate(seqs):
        out[i] = s
    return out


def _stack(seqs):
    return np.concatenate([np.asarray(s, dtype=np.float64).reshape(len(s), -1)
                           for s in seqs])


# ---------------------------------------------------------------------- statistics
def test_statistics_equal_numpy_over_valid_steps_padded():
    X, _, valid = _padded()
    scaler = SequenceScaler().fit(X)
    assert scaler.n_features_in_ == 3
    assert scaler.n_samples_seen_ == valid.shape[0]
    assert isinstance(scaler.n_samples_seen_, int)
    assert_allclose(scaler.mean_, valid.mean(axis=0), rtol=1e-12)
    assert_allclose(scaler.var_, valid.var(axis=0), rtol=1e-12)
    assert_allclose(scaler.scale_, valid.std(axis=0), rtol=1e-12)
    for name in ("mean_", "var_", "scale_"):
        assert getattr(scaler, name).dtype == np.float64
        assert getattr(scaler, name).shape == (3,)


@pytest.mark.parametrize("flat", [False, True])
def test_statistics_equal_numpy_ragged(flat):
    seqs = _ragged(flat=flat)
    valid = _stack(seqs)
    scaler = SequenceScaler().fit(seqs)
    assert scaler.n_features_in_ == valid.shape[1]
    assert scaler.n_samples_seen_ == sum(len(s) for s in seqs)
    assert_allclose(scaler.mean_, valid.mean(axis=0), rtol=1e-12)
    assert_allclose(scaler.var_, valid.var(axis=0), rtol=1e-12)


def test_statistics_univariate_2d_match_standard_scaler_on_values():
    X, _, _ = _padded(features=1)
    X2 = X[:, :, 0]
    scaler = SequenceScaler().fit(X2)
    values = X2[~np.isnan(X2)].reshape(-1, 1)
    ref = StandardScaler().fit(values)
    assert scaler.n_features_in_ == 1
    assert scaler.n_samples_seen_ == values.shape[0]
    assert_allclose(scaler.mean_, ref.mean_, rtol=1e-12)
    assert_allclose(scaler.var_, ref.var_, rtol=1e-12)
    assert_allclose(scaler.scale_, ref.scale_, rtol=1e-12)


def test_float32_statistics_in_float64():
    X, _, valid = _padded(dtype=np.float32)
    scaler = SequenceScaler().fit(X)
    assert scaler.mean_.dtype == np.float64
    assert_allclose(scaler.mean_, valid.mean(axis=0), rtol=1e-12)
    assert_allclose(scaler.var_, valid.var(axis=0), rtol=1e-12)


def test_zero_variance_feature():
    rng = np.random.RandomState(0)
    X = rng.randn(5, 4, 3)
    X[:, :, 1] = 7.0
    X[:, :, 2] = 0.1  # constant, but its variance is not exactly 0 in floating point
    X[3, 2:] = np.nan
    scaler = SequenceScaler().fit(X)
    assert_array_equal(scaler.scale_[1:], [1.0, 1.0])
    assert_allclose(scaler.mean_[1:], [7.0, 0.1])
    Z = scaler.transform(X)
    valid = ~np.isnan(X[:, :, 0])
    assert_allclose(Z[:, :, 1][valid], 0.0, atol=1e-15)
    assert_allclose(Z[:, :, 2][valid], 0.0, atol=1e-15)
    assert np.isfinite(Z[valid]).all()
    assert_allclose(scaler.inverse_transform(Z), X, rtol=1e-14, equal_nan=True)


def test_single_valid_step_is_centred_only():
    X = np.array([[[1.0, 2.0]]])
    scaler = SequenceScaler().fit(X)
    assert scaler.n_samples_seen_ == 1
    assert_array_equal(scaler.var_, [0.0, 0.0])
    assert_array_equal(scaler.scale_, [1.0, 1.0])
    assert_array_equal(scaler.transform(X), np.zeros((1, 1, 2)))


def test_transformed_valid_steps_are_standardised():
    X, _, _ = _padded()
    Z = SequenceScaler().fit_transform(X)
    values = Z[~np.isnan(Z[:, :, 0])]
    assert_allclose(values.mean(axis=0), 0.0, atol=1e-12)
    assert_allclose(values.std(axis=0), 1.0, rtol=1e-12)


def test_with_mean_and_with_std_off():
    X, _, valid = _padded()
    only_std = SequenceScaler(with_mean=False).fit(X)
    assert_allclose(only_std.mean_, valid.mean(axis=0), rtol=1e-12)
    assert_allclose(only_std.transform(X), X / valid.std(axis=0), rtol=1e-12, equal_nan=True)

    only_mean = SequenceScaler(with_std=False).fit(X)
    assert only_mean.var_ is None and only_mean.scale_ is None
    assert_allclose(only_mean.transform(X), X - valid.mean(axis=0), rtol=1e-12,
                    equal_nan=True)

    neither = SequenceScaler(with_mean=False, with_std=False).fit(X)
    assert neither.mean_ is None and neither.var_ is None and neither.scale_ is None
    assert neither.n_samples_seen_ == valid.shape[0]
    assert_array_equal(neither.transform(X), X)
    for scaler in (only_std, only_mean, neither):
        assert_allclose(scaler.inverse_transform(scaler.transform(X)), X, rtol=1e-14,
                        equal_nan=True)


@pytest.mark.parametrize("params", [{}, {"with_mean": False}, {"with_std": False},
                                    {"with_mean": False, "with_std": False}])
def test_partial_fit_equals_fit(params):
    X, _, _ = _padded(n=9)
    seqs = _ragged(features=3)
    whole = SequenceScaler(**params).fit(list(X) + seqs)
    parts = SequenceScaler(**params)
    parts.partial_fit(X[:4]).partial_fit(X[4:]).partial_fit(seqs)
    assert parts.n_samples_seen_ == whole.n_samples_seen_
    for name in ("mean_", "var_", "scale_"):
        if getattr(whole, name) is None:
            assert getattr(parts, name) is None
        else:
            assert_allclose(getattr(parts, name), getattr(whole, name), rtol=1e-12)
    # fit starts afresh
    refit = parts.fit(X)
    assert refit.n_samples_seen_ == SequenceScaler(**params).fit(X).n_samples_seen_


# ---------------------------------------------------------------------- forms and round trips
def _check_round_trip(scaler, X, Z):
    back = scaler.inverse_transform(Z)
    if isinstance(X, np.ndarray) and X.dtype != object:
        assert type(back) is np.ndarray and back.shape == X.shape
        assert_allclose(back, X, rtol=1e-12, atol=1e-12, equal_nan=True)
        return
    assert len(back) == len(X)
    for b, x in zip(back, X):
        assert b.shape == np.shape(x)
        assert_allclose(b, np.asarray(x, dtype=np.float64), rtol=1e-12, atol=1e-12,
                        equal_nan=True)


def test_3d_round_trip_and_padding_kept():
    X, lengths, valid = _padded()
    scaler = SequenceScaler().fit(X)
    Z = scaler.transform(X)
    assert type(Z) is np.ndarray and Z.shape == X.shape and Z.dtype == np.float64
    assert_array_equal(np.isnan(Z), np.isnan(X))
    expected = (valid - valid.mean(axis=0)) / valid.std(axis=0)
    got = np.concatenate([Z[i, :length] for i, length in enumerate(lengths)])
    assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    _check_round_trip(scaler, X, Z)


def test_3d_trailing_all_padding_steps_keep_their_shape():
    X, _, _ = _padded()
    X = np.concatenate([X, np.full((X.shape[0], 3, X.shape[2]), np.nan)], axis=1)
    scaler = SequenceScaler().fit(X)
    Z = scaler.transform(X)
    assert Z.shape == X.shape
    assert np.isnan(Z[:, -3:]).all()
    _check_round_trip(scaler, X, Z)


def test_2d_univariate_round_trip_and_padding_kept():
    X, _, _ = _padded(features=1)
    X2 = X[:, :, 0]
    scaler = SequenceScaler().fit(X2)
    Z = scaler.transform(X2)
    assert Z.shape == X2.shape
    assert_array_equal(np.isnan(Z), np.isnan(X2))
    assert_allclose(Z, SequenceScaler().fit_transform(X)[:, :, 0], rtol=1e-14,
                    equal_nan=True)
    _check_round_trip(scaler, X2, Z)


def test_2d_series_of_another_length_than_fit():
    rng = np.random.RandomState(0)
    scaler = SequenceScaler().fit(rng.randn(10, 8))
    X = rng.randn(3, 20)
    Z = scaler.transform(X)
    assert Z.shape == (3, 20)
    assert_allclose(Z, (X - scaler.mean_[0]) / scaler.scale_[0], rtol=1e-14)


@pytest.mark.parametrize("flat", [False, True])
@pytest.mark.parametrize("container", [list, tuple])
def test_ragged_round_trip_keeps_shapes(flat, container):
    seqs = container(_ragged(flat=flat))
    scaler = SequenceScaler().fit(seqs)
    Z = scaler.transform(seqs)
    assert type(Z) is list and len(Z) == len(seqs)
    for z, x in zip(Z, seqs):
        assert type(z) is np.ndarray and z.shape == x.shape and z.dtype == np.float64
        assert_allclose(z, (x.reshape(len(x), -1) - scaler.mean_).reshape(x.shape)
                        / (scaler.scale_ if not flat else scaler.scale_[0]), rtol=1e-12)
    _check_round_trip(scaler, seqs, Z)


def test_ragged_equals_nan_padding():
    seqs = _ragged(features=3)
    steps = max(len(s) for s in seqs)
    X = np.full((len(seqs), steps, 3), np.nan)
    for i, s in enumerate(seqs):
        X[i, :len(s)] = s
    from_list = SequenceScaler().fit(seqs)
    from_array = SequenceScaler().fit(X)
    assert_allclose(from_list.mean_, from_array.mean_, rtol=1e-14)
    assert_allclose(from_list.scale_, from_array.scale_, rtol=1e-14)
    Z_list = from_list.transform(seqs)
    Z_array = from_array.transform(X)
    for i, z in enumerate(Z_list):
        assert_allclose(z, Z_array[i, :len(z)], rtol=1e-14)


def test_mixed_1d_and_2d_sequences_keep_their_own_shapes():
    rng = np.random.RandomState(3)
    seqs = [rng.randn(5), rng.randn(3, 1), rng.randn(2)]
    scaler = SequenceScaler().fit(seqs)
    Z = scaler.transform(seqs)
    assert [z.shape for z in Z] == [(5,), (3, 1), (2,)]
    _check_round_trip(scaler, seqs, Z)


def test_list_of_equal_length_sequences_stays_a_list():
    rng = np.random.RandomState(4)
    seqs = [rng.randn(4, 2) for _ in range(3)]
    scaler = SequenceScaler().fit(seqs)
    Z = scaler.transform(seqs)
    assert type(Z) is list and [z.shape for z in Z] == [(4, 2)] * 3
    assert_allclose(np.stack(Z), scaler.transform(np.stack(seqs)), rtol=1e-14)
    _check_round_trip(scaler, seqs, Z)


def test_nested_python_lists_are_a_batch_of_sequences():
    X = [[1.0, 2.0, 3.0], [4.0, 5.0]]
    scaler = SequenceScaler().fit(X)
    assert scaler.n_features_in_ == 1
    assert_allclose(scaler.mean_, [3.0])
    Z = scaler.transform(X)
    assert [z.shape for z in Z] == [(3,), (2,)]
    _check_round_trip(scaler, X, Z)


def test_sequences_with_trailing_nan_rows_in_a_list():
    rng = np.random.RandomState(5)
    a = rng.randn(6, 2)
    a[4:] = np.nan
    b = rng.randn(3, 2)
    scaler = SequenceScaler().fit([a, b])
    assert scaler.n_samples_seen_ == 7
    assert_allclose(scaler.mean_, np.concatenate([a[:4], b]).mean(axis=0), rtol=1e-12)
    Z = scaler.transform([a, b])
    assert Z[0].shape == (6, 2)
    assert_array_equal(np.isnan(Z[0]), np.isnan(a))
    _check_round_trip(scaler, [a, b], Z)


@pytest.mark.parametrize("flat", [False, True])
def test_object_array_round_trip(flat):
    seqs = _ragged(flat=flat)
    X = np.array(seqs, dtype=object)
    assert X.ndim == 1  # ragged: NumPy makes a 1-D array of the sequences
    scaler = SequenceScaler().fit(X)
    ref = SequenceScaler().fit(seqs)
    assert_allclose(scaler.mean_, ref.mean_, rtol=1e-14)
    Z = scaler.transform(X)
    assert type(Z) is np.ndarray and Z.dtype == object and Z.shape == (len(seqs),)
    for z, r in zip(Z, ref.transform(seqs)):
        assert_allclose(z, r, rtol=1e-14)
    assert type(Z[[0, 2]]) is np.ndarray  # indexable by an array, as in cross-validation
    back = scaler.inverse_transform(Z)
    assert back.dtype == object
    _check_round_trip(scaler, seqs, Z)


def test_object_array_of_equal_length_sequences():
    rng = np.random.RandomState(6)
    seqs = [rng.randn(4, 2) for _ in range(3)]
    X = _object_array(seqs)  # built element by element: 1-D, holds the arrays
    Z = SequenceScaler().fit(X).transform(X)
    assert Z.dtype == object and [z.shape for z in Z] == [(4, 2)] * 3
    # np.array(seqs, dtype=object) stacks them into a 3-D object array of numbers instead:
    # that is an array and comes back as a float array
    X3 = np.array(seqs, dtype=object)
    Z3 = SequenceScaler().fit(X3).transform(X3)
    assert Z3.dtype == np.float64 and Z3.shape == (3, 4, 2)
    assert_allclose(Z3, np.stack(list(Z)), rtol=1e-14)


class _OnlyArrayProtocol:
    """An array-like with ``__array__`` and nothing else (like sklearn's _NotAnArray)."""

    def __init__(self, data):
        self.data = data

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self.data, dtype=dtype)


def test_array_like_without_ndim_and_dataframe():
    X, _, _ = _padded()
    scaler = SequenceScaler().fit(X)
    Z = scaler.transform(_OnlyArrayProtocol(X))
    assert type(Z) is np.ndarray
    assert_allclose(Z, scaler.transform(X), rtol=1e-14, equal_nan=True)

    pd = pytest.importorskip("pandas")
    X2 = X[:, :, 0]
    frame = pd.DataFrame(X2.astype(np.float32))
    scaler2 = SequenceScaler().fit(frame)
    assert not hasattr(scaler2, "feature_names_in_")
    Z2 = scaler2.transform(frame)
    assert type(Z2) is np.ndarray and Z2.dtype == np.float32 and Z2.shape == X2.shape


# ---------------------------------------------------------------------- dtypes
@pytest.mark.parametrize("dtype, expected", [(np.float32, np.float32), (np.float64, np.float64),
                                             (np.int64, np.float64), (np.float16, np.float64)])
def test_output_dtype_arrays(dtype, expected):
    rng = np.random.RandomState(0)
    X = (rng.rand(4, 5, 2) * 10).astype(dtype)
    scaler = SequenceScaler().fit(X)
    Z = scaler.transform(X)
    assert Z.dtype == expected
    assert scaler.inverse_transform(Z).dtype == expected
    assert SequenceScaler().fit_transform(X[:, :, 0]).dtype == expected


def test_float32_kept_padded_and_round_trip():
    X, _, _ = _padded(dtype=np.float32)
    scaler = SequenceScaler().fit(X)
    Z = scaler.transform(X)
    assert Z.dtype == np.float32
    assert_array_equal(np.isnan(Z), np.isnan(X))
    Z64 = SequenceScaler().fit(X.astype(np.float64)).transform(X.astype(np.float64))
    assert_allclose(Z, Z64, rtol=1e-6, atol=1e-6, equal_nan=True)
    back = scaler.inverse_transform(Z)
    assert back.dtype == np.float32
    assert_allclose(back, X, rtol=1e-6, atol=1e-5, equal_nan=True)


def test_float32_lists():
    seqs = _ragged(dtype=np.float32)
    scaler = SequenceScaler().fit(seqs)
    assert all(z.dtype == np.float32 for z in scaler.transform(seqs))
    assert all(z.dtype == np.float32 for z in scaler.transform(_object_array(seqs)))
    mixed = seqs[:2] + [seqs[2].astype(np.float64)]
    assert all(z.dtype == np.float64 for z in scaler.transform(mixed))


# ---------------------------------------------------------------------- copy
def test_copy_true_leaves_input_alone():
    X, _, _ = _padded()
    before = X.copy()
    Z = SequenceScaler().fit(X).transform(X)
    assert Z is not X
    assert_array_equal(X, before)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_copy_false_scales_in_place(dtype):
    X, _, _ = _padded(dtype=dtype)
    expected = SequenceScaler().fit(X).transform(X)
    scaler = SequenceScaler(copy=False).fit(X)
    Z = scaler.transform(X)
    assert Z is X
    assert_array_equal(Z, expected)
    back = scaler.inverse_transform(Z)
    assert back is X
    # the copy argument of transform overrides the parameter
    X2, _, _ = _padded(dtype=dtype)
    assert SequenceScaler().fit(X2).transform(X2, copy=False) is X2
    assert scaler.transform(X2, copy=True) is not X2


def test_copy_false_lists_and_fallbacks():
    seqs = _ragged()
    expected = SequenceScaler().fit(seqs).transform(seqs)
    Z = SequenceScaler(copy=False).fit(seqs).transform(seqs)
    assert all(z is s for z, s in zip(Z, seqs))
    for z, e in zip(Z, expected):
        assert_array_equal(z, e)
    # read-only, integer and non-array inputs are copied
    X, _, _ = _padded()
    X.flags.writeable = False
    scaler = SequenceScaler(copy=False).fit(X)
    assert scaler.transform(X) is not X
    Xi = np.arange(24).reshape(2, 4, 3)
    assert SequenceScaler(copy=False).fit(Xi).transform(Xi).dtype == np.float64


# ---------------------------------------------------------------------- sklearn integration
def _last_valid_step(X):
    """(N, T, F) NaN-padded -> (N, F): each sequence's last valid step."""
    lengths = (~np.isnan(X[:, :, 0])).sum(axis=1)
    return X[np.arange(len(X)), lengths - 1]


def test_pipeline_with_function_transformer():
    X, lengths, _ = _padded()
    pipe = make_pipeline(SequenceScaler(), FunctionTransformer(_last_valid_step))
    out = pipe.fit_transform(X)
    scaler = pipe[0]
    expected = (X[np.arange(len(X)), lengths - 1] - scaler.mean_) / scaler.scale_
    assert_allclose(out, expected, rtol=1e-12)
    assert_allclose(pipe.transform(X), out, rtol=1e-14)


def test_pipeline_fit_transform_and_inverse_on_ragged():
    seqs = _ragged()
    pipe = Pipeline([("scale", SequenceScaler())])
    Z = pipe.fit_transform(seqs)
    assert [z.shape for z in Z] == [s.shape for s in seqs]
    back = pipe.inverse_transform(Z)
    for b, s in zip(back, seqs):
        assert_allclose(b, s, rtol=1e-12, atol=1e-12)
    assert pipe.get_params()["scale__with_mean"] is True
    pipe.set_params(scale__with_std=False)
    assert pipe.fit(seqs)[0].scale_ is None


def test_clone_and_get_params():
    scaler = SequenceScaler(with_mean=False, copy=False).fit(_ragged())
    twin = clone(scaler)
    assert twin.get_params() == {"with_mean": False, "with_std": True, "copy": False}
    assert not hasattr(twin, "mean_")
    with pytest.raises(NotFittedError):
        twin.transform(_ragged())


def test_pickle_round_trip():
    seqs = _ragged()
    scaler = SequenceScaler().fit(seqs)
    restored = pickle.loads(pickle.dumps(scaler))
    assert restored.get_params() == scaler.get_params()
    for name in ("mean_", "var_", "scale_"):
        assert_array_equal(getattr(restored, name), getattr(scaler, name))
    assert restored.n_samples_seen_ == scaler.n_samples_seen_
    for a, b in zip(restored.transform(seqs), scaler.transform(seqs)):
        assert_array_equal(a, b)


def test_no_feature_names_api():
    scaler = SequenceScaler().fit(np.ones((2, 3, 2)))
    assert not hasattr(scaler, "get_feature_names_out")
    assert not hasattr(scaler, "set_output")


# ---------------------------------------------------------------------- bad input
def _fitted(features=2):
    return SequenceScaler().fit(np.random.RandomState(0).randn(4, 5, features))


@pytest.mark.parametrize("method", ["fit", "transform", "inverse_transform", "partial_fit"])
def test_nan_inside_a_sequence(method):
    X = np.random.RandomState(0).randn(3, 5, 2)
    X[1, 2] = np.nan
    target = SequenceScaler() if method in ("fit", "partial_fit") else _fitted()
    with pytest.raises(ValueError, match="NaN that is not trailing padding"):
        getattr(target, method)(X)
    seqs = [np.array([1.0, np.nan, 2.0]), np.array([1.0, 2.0])]
    target = SequenceScaler() if method in ("fit", "partial_fit") else _fitted(1)
    with pytest.raises(ValueError, match="NaN that is not trailing padding"):
        getattr(target, method)(seqs)


def test_nan_in_some_features_of_a_step():
    X = np.random.RandomState(0).randn(3, 5, 2)
    X[0, 4, 0] = np.nan
    with pytest.raises(ValueError, match="NaN in some but not all features"):
        SequenceScaler().fit(X)


@pytest.mark.parametrize("value", [np.inf, -np.inf])
def test_infinity(value):
    X = np.random.RandomState(0).randn(3, 5, 2)
    X[2, 1, 1] = value
    with pytest.raises(ValueError, match="contains infinity"):
        SequenceScaler().fit(X)
    with pytest.raises(ValueError, match="contains infinity"):
        _fitted().transform(X)
    with pytest.raises(ValueError, match="contains infinity"):
        _fitted().transform([np.ones((2, 2)), np.array([[1.0, value]])])


@pytest.mark.parametrize("method", ["transform", "inverse_transform", "partial_fit"])
def test_number_of_features_changed(method):
    scaler = _fitted(2)
    with pytest.raises(ValueError, match="X has 3 features, but SequenceScaler is expecting "
                                         "2 features as input"):
        getattr(scaler, method)(np.ones((2, 4, 3)))
    with pytest.raises(ValueError, match="X has 1 features, but SequenceScaler is expecting "
                                         "2 features as input"):
        getattr(scaler, method)([np.ones(3), np.ones(5)])
    with pytest.raises(ValueError, match="X has 1 features, but SequenceScaler is expecting "
                                         "2 features as input"):
        getattr(scaler, method)(np.ones((2, 4)))


def test_sequences_with_different_features_in_one_list():
    with pytest.raises(ValueError, match="same number of features"):
        SequenceScaler().fit([np.ones((3, 2)), np.ones((2, 3))])


@pytest.mark.parametrize("X, message", [
    (np.empty((0, 4, 2)), "0 sample"),
    (np.empty((0, 4)), "0 sample"),
    (np.empty((3, 0, 2)), "at least 1 time step and 1 feature"),
    ([], "0 sequences"),
    (np.empty(0, dtype=object), "0 sequences"),
])
def test_empty_input(X, message):
    with pytest.raises(ValueError, match=message):
        SequenceScaler().fit(X)


def test_all_nan_sequence():
    X = np.random.RandomState(0).randn(3, 4, 2)
    X[1] = np.nan
    with pytest.raises(ValueError, match=r"empty sequences \(all NaN\): \[1\]"):
        SequenceScaler().fit(X)
    with pytest.raises(ValueError, match=r"empty sequences \(all NaN\)"):
        SequenceScaler().fit([np.ones(3), np.full(2, np.nan)])
    with pytest.raises(ValueError, match=r"empty sequences \(all NaN\)"):
        _fitted().transform(X)


def test_wrong_dimensions():
    with pytest.raises(ValueError, match="Expected 2D array, got 1D array"):
        SequenceScaler().fit(np.ones(5))
    with pytest.raises(ValueError, match="must be 2-D .* or 3-D"):
        SequenceScaler().fit(np.ones((2, 3, 4, 5)))
    with pytest.raises(ValueError, match="minimum of 2 is required"):
        SequenceScaler().fit(np.ones((5, 1)))


def test_not_fitted_and_bad_parameters():
    with pytest.raises(NotFittedError):
        SequenceScaler().transform(np.ones((2, 3, 1)))
    with pytest.raises(NotFittedError):
        SequenceScaler().inverse_transform(np.ones((2, 3, 1)))
    with pytest.raises(ValueError, match="'with_mean' parameter of SequenceScaler must be"):
        SequenceScaler(with_mean="yes").fit(np.ones((2, 3, 1)))
