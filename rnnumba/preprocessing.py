"""Preprocessing for sequences: :class:`SequenceScaler`, a per-feature standard scaler.

The scaler reads every input form that rnnumba's estimators read (see
:mod:`rnnumba._validation`) and gives its output back in the form it was given, so it can
sit in front of an estimator in a :class:`~sklearn.pipeline.Pipeline` whatever the batch
looks like.
"""

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils.validation import _check_sample_weight, check_is_fitted

from ._validation import check_sequences

__all__ = ["SequenceScaler"]


def _is_constant_feature(var, mean, n_samples):
    """Features whose variance is at the level of the rounding error of its computation.

    The same bound as scikit-learn's ``StandardScaler`` (``sklearn.preprocessing._data``),
    written out here because that helper is private.
    """
    eps = np.finfo(np.float64).eps
    upper_bound = n_samples * eps * var + (n_samples * mean * eps) ** 2
    return var <= upper_bound


def _scale_from_var(var, mean, n_samples):
    """``sqrt(var)``, with 1.0 for constant features (as ``StandardScaler``)."""
    scale = np.sqrt(var)
    constant = _is_constant_feature(var, mean, n_samples)
    scale[constant | (scale < 10 * np.finfo(scale.dtype).eps)] = 1.0
    return scale


class _Batch:
    """A validated batch plus what is needed to give results back in the input's form.

    ``form`` is ``"array"`` (a 2-D or 3-D array-like), ``"list"`` (a list or tuple of
    sequences) or ``"object"`` (a 1-D NumPy object array of sequences); ``given`` is the
    input itself for arrays and the list of sequences for the two others.
    """

    __slots__ = ("seq", "form", "given", "ndim", "dtype")

    def __init__(self, seq, form, given, ndim, dtype):
        self.seq = seq
        self.form = form
        self.given = given
        self.ndim = ndim
        self.dtype = dtype

    def valid_mask(self):
        steps = self.seq.X.shape[1]
        return np.arange(steps)[None, :] < self.seq.lengths[:, None]


def _sequence_dtype(seq):
    dtype = getattr(seq, "dtype", None)
    if dtype is None:
        dtype = np.asarray(seq).dtype
    return np.dtype(dtype)


class SequenceScaler(TransformerMixin, BaseEstimator):
    """Standardise each feature of a batch of sequences to zero mean and unit variance.

    The statistics are global per feature: the mean and the standard deviation of feature
    ``j`` are taken over every valid time step of every sequence, and
    ``z = (x - mean_[j]) / scale_[j]`` is applied to every time step. Padding (trailing
    all-NaN steps that mark a shorter sequence) is left out of the statistics and stays NaN
    in the output. This is :class:`sklearn.preprocessing.StandardScaler` for the inputs
    that rnnumba's estimators read, where a 2-D array is a batch of univariate series
    rather than a table.

    Accepted ``X`` (the forms of :class:`rnnumba.RNNRegressor`):

    - a 3-D array ``(n_samples, n_timesteps, n_features)``;
    - a 2-D array ``(n_samples, n_timesteps)``: univariate series (``n_features_in_`` is 1);
    - a list or tuple of ``(T_i, n_features)`` or ``(T_i,)`` arrays: a ragged batch;
    - a 1-D NumPy object array of such per-sequence arrays
      (``np.array(seqs, dtype=object)``), read like the list.

    Trailing time steps that are NaN in every feature mark the end of a shorter sequence.
    Any other NaN, any infinity, empty input and all-NaN sequences are a ``ValueError``.

    ``transform`` and ``inverse_transform`` give the result in the form of their input:

    - an array: an array of the same shape (2-D stays 2-D), padding NaN in place;
    - a list or tuple: a list of arrays with the shapes of the given sequences (a ``(T_i,)``
      sequence stays ``(T_i,)``, trailing NaN rows stay NaN). A list is always a batch of
      sequences, never a table: this holds also when all sequences have the same length or
      are nested Python lists;
    - a 1-D object array: a 1-D object array of such arrays, so that it can still be
      indexed by an array of indices (as cross-validation does).

    The dtype is ``float32`` where the input is ``float32`` (for a list: every sequence
    is), else ``float64``; the statistics are always computed and applied in ``float64``.

    Parameters
    ----------
    with_mean : bool, default=True
        If True, centre each feature (subtract ``mean_``) before scaling.

    with_std : bool, default=True
        If True, scale each feature to unit variance (divide by ``scale_``).

    copy : bool, default=True
        If False, try to scale in place and return the input itself: this happens for a
        writeable ``float32``/``float64`` NumPy array (and, in a list or object array, for
        each sequence that is one; the list itself is new). Any other input is copied.

    Attributes
    ----------
    mean_ : ndarray of shape (n_features_in_,) or None
        The mean of each feature over all valid time steps, in ``float64``. None when
        ``with_mean=False`` and ``with_std=False``.

    var_ : ndarray of shape (n_features_in_,) or None
        The (biased, ``ddof=0``) variance of each feature over all valid time steps, used
        to compute ``scale_``. None when ``with_std=False``.

    scale_ : ndarray of shape (n_features_in_,) or None
        The per-feature scaling, ``np.sqrt(var_)``, with 1.0 for a feature whose variance
        is zero (up to rounding), so that a constant feature is only centred. None when
        ``with_std=False``.

    n_features_in_ : int
        Number of features per time step seen during :meth:`fit` (1 for a 2-D ``X``).

    n_samples_seen_ : int or float
        Number of valid (non-padding) time steps the statistics were computed over,
        summed over all sequences (their total weight, a float, when ``sample_weight`` was
        given); :meth:`partial_fit` adds to it.

    See Also
    --------
    sklearn.preprocessing.StandardScaler : The same scaling for tabular data.

    Notes
    -----
    There is no ``get_feature_names_out``. scikit-learn's feature names label the columns
    of a 2-D output, whereas here the columns of a 2-D input or output are time steps and
    the features sit on the third axis of a 3-D array (or in each sequence of a list);
    names for ``n_features_in_`` features would not match the output's columns, and they
    would switch on ``set_output(transform="pandas")``, which cannot hold 3-D or ragged
    output. For the same reason no ``feature_names_in_`` is recorded from a DataFrame (its
    columns are time steps).

    Examples
    --------
    >>> import numpy as np
    >>> from rnnumba.preprocessing import SequenceScaler
    >>> X = np.array([[[0.0, 10.0], [2.0, 10.0], [4.0, 10.0]],
    ...               [[6.0, 10.0], [np.nan, np.nan], [np.nan, np.nan]]])
    >>> scaler = SequenceScaler().fit(X)
    >>> scaler.mean_, scaler.scale_, scaler.n_samples_seen_
    (array([ 3., 10.]), array([2.23606798, 1.        ]), 4)
    >>> scaler.transform(X)[1]
    array([[1.34164079, 0.        ],
           [       nan,        nan],
           [       nan,        nan]])

    A ragged list comes back as a list of arrays of the same shapes:

    >>> Z = scaler.transform([np.array([[0.0, 10.0]]), np.array([[4.0, 10.0], [6.0, 10.0]])])
    >>> [z.shape for z in Z]
    [(1, 2), (2, 2)]
    >>> np.allclose(scaler.inverse_transform(Z)[1], [[4.0, 10.0], [6.0, 10.0]])
    True
    """

    _parameter_constraints = {
        "with_mean": ["boolean"],
        "with_std": ["boolean"],
        "copy": ["boolean"],
    }

    def __init__(self, *, with_mean=True, with_std=True, copy=True):
        self.with_mean = with_mean
        self.with_std = with_std
        self.copy = copy

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False
        tags.input_tags.allow_nan = False  # only trailing NaN padding
        tags.input_tags.three_d_array = True
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags

    # ------------------------------------------------------------------ validation
    def _validate(self, X, *, reset):
        """Check ``X`` with rnnumba's sequence rules; record or check ``n_features_in_``."""
        if isinstance(X, np.ndarray) and X.dtype == object and X.ndim == 1:
            form, given = "object", list(X)
        elif isinstance(X, (list, tuple)):
            form, given = "list", list(X)
        else:
            form, given = "array", X
        seq = check_sequences(given, dtype=np.float64, estimator=self)
        if reset:
            self.n_features_in_ = seq.n_features
        elif seq.n_features != self.n_features_in_:
            raise ValueError(
                f"X has {seq.n_features} features, but {type(self).__name__} is expecting "
                f"{self.n_features_in_} features as input (features per time step).")
        if form == "array":
            ndim, in_dtype = getattr(X, "ndim", None), getattr(X, "dtype", None)
            if ndim is None or in_dtype is None:  # a DataFrame, an object with __array__
                as_array = np.asarray(X)
                ndim, in_dtype = as_array.ndim, as_array.dtype
            out_dtype = np.float32 if in_dtype == np.float32 else np.float64
        else:
            ndim = None
            all32 = all(_sequence_dtype(s) == np.float32 for s in given)
            out_dtype = np.float32 if all32 else np.float64
        return _Batch(seq, form, given, ndim, np.dtype(out_dtype))

    # ------------------------------------------------------------------ fitting
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None, sample_weight=None):
        """Compute the per-feature mean and standard deviation over all valid time steps.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_timesteps, n_features) or \
(n_samples, n_timesteps), or list of arrays
            The sequences; see the class docstring for the accepted forms.

        y : None
            Ignored.

        sample_weight : array-like of shape (n_samples,), default=None
            Weight of each sequence: each of its valid steps counts this much in the
            statistics (as :class:`~sklearn.preprocessing.StandardScaler` weighs rows).

        Returns
        -------
        self : SequenceScaler
            The fitted scaler.
        """
        for name in ("mean_", "var_", "scale_", "n_samples_seen_", "n_features_in_"):
            if hasattr(self, name):
                delattr(self, name)
        return self._partial_fit(X, sample_weight)

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y=None, sample_weight=None):
        """Update the statistics with one more batch of sequences.

        The result equals :meth:`fit` on all the batches together, up to rounding
        (the means and variances are combined exactly, by Chan et al.'s formula).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_timesteps, n_features) or \
(n_samples, n_timesteps), or list of arrays
            The sequences; every batch must have ``n_features_in_`` features.

        y : None
            Ignored.

        sample_weight : array-like of shape (n_samples,), default=None
            Weight of each sequence, as in :meth:`fit`.

        Returns
        -------
        self : SequenceScaler
            The updated scaler.
        """
        return self._partial_fit(X, sample_weight)

    def _partial_fit(self, X, sample_weight=None):
        first = not hasattr(self, "n_samples_seen_")
        batch = self._validate(X, reset=first)
        values = batch.seq.X[batch.valid_mask()]  # (n_valid, n_features), float64
        weights = None
        if sample_weight is not None:
            per_sequence = _check_sample_weight(sample_weight, batch.seq.X[:, 0, 0],
                                                dtype=np.float64, ensure_non_negative=True)
            weights = np.repeat(per_sequence, batch.seq.lengths)  # the valid steps' order
            if not weights.sum() > 0:
                raise ValueError("sample_weight gives the valid steps no weight in total")
        n_new = int(values.shape[0]) if weights is None else float(weights.sum())
        need_mean = self.with_mean or self.with_std
        mean = var = None
        if need_mean:
            mean_new = np.average(values, axis=0, weights=weights)
        if self.with_std:
            squares = (values - mean_new) ** 2
            m2_new = (squares if weights is None else squares * weights[:, None]).sum(axis=0)
        if first:
            n = n_new
            if need_mean:
                mean = mean_new
            if self.with_std:
                var = m2_new / n
        else:
            n_old = self.n_samples_seen_
            n = n_old + n_new
            if need_mean:
                delta = mean_new - self.mean_
                mean = self.mean_ + delta * (n_new / n)
            if self.with_std:
                m2 = self.var_ * n_old + m2_new + delta ** 2 * (n_old * n_new / n)
                var = m2 / n
        self.n_samples_seen_ = n
        self.mean_ = mean
        self.var_ = var
        self.scale_ = _scale_from_var(var, mean, n) if self.with_std else None
        return self

    # ------------------------------------------------------------------ transforming
    def transform(self, X, copy=None):
        """Standardise ``X`` with the fitted statistics.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_timesteps, n_features) or \
(n_samples, n_timesteps), or list of arrays
            The sequences, with ``n_features_in_`` features.

        copy : bool, default=None
            Copy the input or not; None means the ``copy`` parameter.

        Returns
        -------
        X_tr : ndarray, list of ndarray or object ndarray
            The scaled sequences, in the form and shapes of ``X`` (padding stays NaN).
        """
        check_is_fitted(self, "n_samples_seen_")
        return self._apply(X, copy, inverse=False)

    def inverse_transform(self, X, copy=None):
        """Undo :meth:`transform`: scale back to the original units.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_timesteps, n_features) or \
(n_samples, n_timesteps), or list of arrays
            Scaled sequences, with ``n_features_in_`` features.

        copy : bool, default=None
            Copy the input or not; None means the ``copy`` parameter.

        Returns
        -------
        X_original : ndarray, list of ndarray or object ndarray
            The sequences in the original units, in the form and shapes of ``X``.
        """
        check_is_fitted(self, "n_samples_seen_")
        return self._apply(X, copy, inverse=True)

    def _apply(self, X, copy, inverse):
        copy = self.copy if copy is None else copy
        batch = self._validate(X, reset=False)
        values = batch.seq.X  # (N, T_used, F) float64, zeros past each end
        if inverse:
            if self.with_std:
                values = values * self.scale_
            if self.with_mean:
                values = values + self.mean_
        else:
            if self.with_mean:
                values = values - self.mean_
            if self.with_std:
                values = values / self.scale_
        lengths = batch.seq.lengths
        if batch.form == "array":
            n_samples, steps, n_features = values.shape
            full = np.full((n_samples, batch.seq.n_timesteps, n_features), np.nan)
            mask = batch.valid_mask()
            full[:, :steps][mask] = values[mask]
            if batch.ndim == 2:
                full = full[:, :, 0]
            return _emit(full, X, batch.dtype, copy)
        out = []
        for i, given in enumerate(batch.given):
            shape = np.shape(given)
            full = np.full((shape[0], values.shape[2]), np.nan)
            full[:lengths[i]] = values[i, :lengths[i]]
            out.append(_emit(full.reshape(shape), given, batch.dtype, copy))
        if batch.form == "object":
            result = np.empty(len(out), dtype=object)
            for i, arr in enumerate(out):
                result[i] = arr
            return result
        return out


def _emit(result, given, dtype, copy):
    """``result`` (float64) as ``dtype``: written into ``given`` when ``copy`` is False and
    ``given`` is a writeable NumPy array of that dtype and shape, else a new array."""
    if (not copy and isinstance(given, np.ndarray) and given.dtype == dtype
            and given.shape == result.shape and given.flags.writeable):
        given[...] = result
        return given
    return result.astype(dtype, copy=False)
