"""Input checks for the estimators: sequences in, padded arrays and lengths out.

Accepted ``X``:

- a 3-D array ``(n_samples, n_timesteps, n_features)``;
- a 2-D array ``(n_samples, n_timesteps)``: a batch of univariate series (at least two time
  steps: a single column is far more often a tabular feature than a batch of length-1
  series; pass ``(n_samples, 1, n_features)`` for those);
- a list (or tuple) of ``(T_i, n_features)`` or ``(T_i,)`` arrays: a ragged batch; so is a
  1-D object array of them (``np.array(seqs, dtype=object)``).

Trailing rows that are NaN in every feature mark the end of a shorter sequence. Any other
NaN, and any infinity, is a ``ValueError``. The result is a C-contiguous float array
``(n_samples, T, n_features)`` with zeros past each sequence's end and ``int64`` lengths.
"""

import numbers

import numpy as np
from sklearn.utils.validation import check_array, check_consistent_length, column_or_1d

__all__ = ["check_sequences", "check_token_sequences", "SequenceBatch", "check_hidden_layer_sizes",
           "check_sequence_targets", "check_sample_targets_regression",
           "check_sample_targets_labels"]


def check_hidden_layer_sizes(sizes):
    """``hidden_layer_sizes`` (an int or a sequence of ints) as a tuple of positive ints,
    else a ``ValueError`` naming the value."""
    layers = [sizes] if isinstance(sizes, numbers.Integral) and not isinstance(sizes, bool) \
        else list(sizes)
    if not layers or any(isinstance(s, bool) or not isinstance(s, numbers.Integral) or s <= 0
                         for s in layers):
        raise ValueError("hidden_layer_sizes must be one or more positive integers, got "
                         f"{sizes!r}")
    return tuple(int(s) for s in layers)


class SequenceBatch:
    """A validated batch: ``X`` (N, T, F) zero-padded, ``lengths`` (N,) int64.

    ``n_timesteps`` is the time axis of the input as given (before trailing all-padding
    steps are dropped), ``ragged`` whether the input was a list of sequences.
    """

    __slots__ = ("X", "lengths", "n_timesteps", "ragged")

    def __init__(self, X, lengths, n_timesteps, ragged):
        self.X = X
        self.lengths = lengths
        self.n_timesteps = n_timesteps
        self.ragged = ragged

    @property
    def n_samples(self):
        return self.X.shape[0]

    @property
    def n_features(self):
        return self.X.shape[2]


def _is_sequence_list(X):
    return isinstance(X, (list, tuple)) or _is_object_sequences(X)


def _is_object_sequences(X):
    """A 1-D object array of per-sequence arrays, as ``np.array(seqs, dtype=object)`` makes
    of a ragged list."""
    return isinstance(X, np.ndarray) and X.dtype == object and X.ndim == 1


def _ragged_to_padded(X, estimator):
    """A list of per-sequence arrays -> NaN-padded float64 (N, T, F), or None if regular."""
    if len(X) == 0:
        raise ValueError("Found a list of 0 sequences while a minimum of 1 is required.")
    elements = []
    for i, seq in enumerate(X):
        if hasattr(seq, "toarray") or hasattr(seq, "tocsr"):
            raise TypeError("Sparse data was passed for X, but dense data is required.")
        arr = np.asarray(seq) if not isinstance(seq, np.ndarray) else seq
        if arr.ndim == 0:
            return None  # a flat list of numbers: let the array path report it
        elements.append(arr)
    shapes = {e.shape for e in elements}
    if len(shapes) == 1 and all(e.dtype != object for e in elements):
        return None  # regular: same as an array
    padded_parts = []
    n_features = None
    for i, arr in enumerate(elements):
        arr = check_array(arr, dtype=[np.float64, np.float32], ensure_all_finite="allow-nan",
                          ensure_2d=False, ensure_min_samples=1, estimator=estimator,
                          input_name=f"X[{i}]")
        if arr.ndim == 1:
            arr = arr[:, None]
        elif arr.ndim != 2:
            raise ValueError(f"X[{i}] must be a (n_timesteps, n_features) or (n_timesteps,) "
                             f"array in a ragged list, got shape {arr.shape}")
        if arr.shape[1] == 0:
            raise ValueError(f"X[{i}] has 0 features; a minimum of 1 is required.")
        if n_features is None:
            n_features = arr.shape[1]
        elif arr.shape[1] != n_features:
            raise ValueError(f"all sequences must have the same number of features: X[0] has "
                             f"{n_features}, X[{i}] has {arr.shape[1]}")
        padded_parts.append(arr)
    steps = max(a.shape[0] for a in padded_parts)
    out = np.full((len(padded_parts), steps, n_features), np.nan, dtype=np.float64)
    for i, arr in enumerate(padded_parts):
        out[i, :arr.shape[0]] = arr
    return out


def check_sequences(X, *, dtype=np.float64, estimator=None, input_name="X"):
    """Validate a batch of sequences; return a :class:`SequenceBatch`.

    Raises ``ValueError`` for 1-D or >3-D arrays, empty inputs, infinities, NaN that is not
    trailing padding, partly-NaN time steps and all-NaN sequences; ``TypeError`` for sparse
    or non-numeric input.
    """
    ragged = False
    padded = None
    if _is_sequence_list(X):
        padded = _ragged_to_padded(X, estimator)
        ragged = padded is not None
    if padded is None:
        array = check_array(X, accept_sparse=False, dtype=[np.float64, np.float32],
                            ensure_all_finite="allow-nan", ensure_2d=False, allow_nd=True,
                            ensure_min_samples=1, ensure_min_features=1, estimator=estimator,
                            input_name=input_name)
        if array.ndim == 1:
            raise ValueError(
                "Expected 2D array, got 1D array instead:\narray={}.\nReshape your data: "
                "X is (n_samples, n_timesteps) for univariate series or (n_samples, "
                "n_timesteps, n_features); use X.reshape(1, -1) for a single univariate "
                "series.".format(array))
        if array.ndim == 2:
            if array.shape[1] < 2:
                raise ValueError(
                    f"Found array with {array.shape[1]} feature(s) (shape={array.shape}) while "
                    "a minimum of 2 is required. A 2-D X is read as (n_samples, n_timesteps) "
                    "univariate series and needs at least 2 time steps; pass a 3-D array "
                    "(n_samples, 1, n_features) for sequences of length 1.")
            array = array[:, :, None]
        elif array.ndim != 3:
            raise ValueError(f"{input_name} must be 2-D (n_samples, n_timesteps) or 3-D "
                             f"(n_samples, n_timesteps, n_features), got shape {array.shape}")
        if array.shape[1] == 0 or array.shape[2] == 0:
            raise ValueError(f"Found array with shape {array.shape}: sequences need at least "
                             "1 time step and 1 feature.")
        padded = array
    n_samples, n_timesteps, _ = padded.shape
    if np.isinf(padded).any():
        raise ValueError(f"Input {input_name} contains infinity; inf is not allowed anywhere "
                         "(NaN is allowed only as trailing padding).")
    nan = np.isnan(padded)
    if nan.any():
        step_nan = nan.all(axis=2)
        if not np.array_equal(step_nan, nan.any(axis=2)):
            raise ValueError(f"Input {input_name} contains NaN in some but not all features of a "
                             "time step; NaN is allowed only as trailing padding, whole steps.")
        lengths = (~step_nan).sum(axis=1).astype(np.int64)
        expected = np.arange(n_timesteps)[None, :] < lengths[:, None]
        if not np.array_equal(expected, ~step_nan):
            rows = np.flatnonzero((expected != ~step_nan).any(axis=1))
            raise ValueError(f"Input {input_name} contains NaN that is not trailing padding (in "
                             f"sequence(s) {rows[:5].tolist()}); NaN may only mark the end of "
                             "shorter sequences.")
        if (lengths == 0).any():
            rows = np.flatnonzero(lengths == 0)
            raise ValueError(f"Input {input_name} contains empty sequences (all NaN): "
                             f"{rows[:5].tolist()}")
        steps = int(lengths.max())
        out = np.where(nan[:, :steps], 0.0, padded[:, :steps])
        out = np.ascontiguousarray(out, dtype=dtype)
    else:
        lengths = np.full(n_samples, n_timesteps, dtype=np.int64)
        out = np.ascontiguousarray(padded, dtype=dtype)
        if out is padded and not out.flags.writeable:
            out = out.copy()
    return SequenceBatch(out, lengths, n_timesteps, ragged)


def check_token_sequences(X, *, vocabulary_size=None, input_name="X"):
    """Validate a batch of token sequences; return a :class:`SequenceBatch` whose ``X`` is
    ``int64 (N, T)`` (0 past each end) and whose ``n_features`` is 1.

    Accepted: a 2-D integer array ``(n_samples, n_timesteps)`` (every sequence that long),
    or a list (or 1-D object array) of 1-D integer arrays, a ragged batch. Token ids are
    integers >= 0 (floats that hold integers are accepted), below ``vocabulary_size`` when
    it is given (at predict time: the ids seen at fit). Anything else is a ``TypeError``
    (not integers) or ``ValueError`` (empty, negative, beyond the vocabulary) naming it.
    """
    if _is_sequence_list(X):
        if len(X) == 0:
            raise ValueError(f"{input_name} holds no sequences; a minimum of 1 is required.")
        parts = [_token_array(seq, f"{input_name}[{i}]") for i, seq in enumerate(X)]
        for i, part in enumerate(parts):
            if part.ndim != 1:
                raise ValueError(f"{input_name}[{i}] must be a 1-D array of token ids, got "
                                 f"shape {part.shape}")
            if part.size == 0:
                raise ValueError(f"{input_name}[{i}] is an empty sequence")
        lengths = np.array([p.size for p in parts], dtype=np.int64)
        ids = np.zeros((len(parts), int(lengths.max())), dtype=np.int64)
        for i, part in enumerate(parts):
            ids[i, :part.size] = part
        ragged = True
    else:
        ids = _token_array(X, input_name)
        if ids.ndim != 2:
            raise ValueError(f"{input_name} of token ids must be 2-D (n_samples, n_timesteps) "
                             f"or a list of 1-D arrays, got shape {ids.shape}")
        if ids.shape[0] == 0 or ids.shape[1] == 0:
            raise ValueError(f"Found {input_name} of shape {ids.shape}: sequences need at "
                             "least 1 token.")
        lengths = np.full(ids.shape[0], ids.shape[1], dtype=np.int64)
        ragged = False
    valid = np.arange(ids.shape[1])[None, :] < lengths[:, None]
    used = ids[valid]
    if used.min() < 0:
        raise ValueError(f"{input_name} holds negative token ids (e.g. {int(used.min())}); "
                         "token ids are integers >= 0")
    if vocabulary_size is not None and used.max() >= vocabulary_size:
        unseen = np.unique(used[used >= vocabulary_size])
        raise ValueError(f"{input_name} holds token ids beyond the vocabulary seen at fit "
                         f"(0..{vocabulary_size - 1}): {unseen[:5].tolist()}")
    return SequenceBatch(np.ascontiguousarray(ids), lengths, ids.shape[1], ragged)


def _token_array(value, name):
    """``value`` as an int64 array of token ids, or a ``TypeError`` naming ``name``."""
    if hasattr(value, "toarray") or hasattr(value, "tocsr"):
        raise TypeError("Sparse data was passed for X, but dense data is required.")
    array = np.asarray(value)
    if array.dtype.kind in "iu":
        return array.astype(np.int64, copy=False)
    if array.dtype.kind == "b":
        raise TypeError(f"{name} must hold integer token ids, got booleans")
    if array.dtype.kind == "f":
        if not np.isfinite(array).all() or not np.array_equal(array, np.round(array)):
            raise TypeError(f"{name} must hold integer token ids, got non-integer values")
        return array.astype(np.int64)
    raise TypeError(f"{name} must hold integer token ids, got dtype {array.dtype}")


def check_sequence_targets(y, batch, *, numeric, input_name="y"):
    """Per-step targets for ``return_sequences=True``.

    ``y`` is an array ``(n_samples, n_timesteps[, n_outputs])`` aligned with ``X`` (entries
    past a sequence's end are ignored and may be NaN), or a list of per-sequence arrays of
    length ``T_i``. Returns ``(Y, mask)``: ``Y`` of shape (N, T_used[, n_outputs]) over the
    time axis of ``batch.X`` and the boolean mask of valid steps. For ``numeric=False``
    (labels) ``Y`` keeps the label dtype.
    """
    n, steps = batch.X.shape[0], batch.X.shape[1]
    lengths = batch.lengths
    if _is_sequence_list(y):
        if len(y) != n:
            raise ValueError(f"{input_name} has {len(y)} sequences, X has {n}")
        parts = [np.asarray(v) for v in y]
        for i, (part, length) in enumerate(zip(parts, lengths)):
            if part.ndim == 0 or part.shape[0] != length:
                raise ValueError(f"{input_name}[{i}] must have one target per time step "
                                 f"({length}), got shape {part.shape}")
        tail = {p.shape[1:] for p in parts}
        if len(tail) != 1:
            raise ValueError(f"all {input_name}[i] must have the same trailing shape")
        tail = tail.pop()
        if len(tail) > 1:
            raise ValueError(f"{input_name}[i] must be 1-D or 2-D, got shape {parts[0].shape}")
        if numeric:
            Y = np.zeros((n, steps) + tail, dtype=np.float64)
        else:
            if tail:
                raise ValueError(f"{input_name}[i] must be 1-D arrays of labels")
            Y = np.empty((n, steps), dtype=object)
        for i, part in enumerate(parts):
            Y[i, :part.shape[0]] = part
    else:
        if numeric:
            Y = check_array(y, dtype=np.float64, ensure_all_finite="allow-nan",
                            ensure_2d=False, allow_nd=True, input_name=input_name)
        else:
            Y = np.asarray(y)
        if Y.ndim not in (2, 3) or (not numeric and Y.ndim != 2):
            want = "(n_samples, n_timesteps[, n_outputs])" if numeric else \
                "(n_samples, n_timesteps)"
            raise ValueError(f"with return_sequences=True, {input_name} must have shape "
                             f"{want}, got shape {Y.shape}")
        check_consistent_length(batch.X, Y)
        if Y.shape[1] != batch.n_timesteps:
            raise ValueError(f"{input_name} has {Y.shape[1]} time steps, X has "
                             f"{batch.n_timesteps}")
        Y = Y[:, :steps]
    mask = np.arange(steps)[None, :] < lengths[:, None]
    if numeric:
        valid = Y[mask]
        if not np.isfinite(valid).all():
            if np.isnan(valid).any():
                raise ValueError(f"Input {input_name} contains NaN within a sequence.")
            raise ValueError(f"Input {input_name} contains infinity.")
        Y = np.where(mask.reshape(mask.shape + (1,) * (Y.ndim - 2)), Y, 0.0)
    return Y, mask


def check_sample_targets_regression(y, n_samples):
    """Sequence-level regression targets: float64 (n,) or (n, n_outputs)."""
    y = check_array(y, dtype=np.float64, ensure_2d=False, input_name="y")
    if y.ndim not in (1, 2):
        raise ValueError(f"y must be 1-D or 2-D (n_samples, n_outputs), got shape {y.shape}")
    if y.shape[0] != n_samples:
        raise ValueError(f"Found input variables with inconsistent numbers of samples: "
                         f"[{n_samples}, {y.shape[0]}]")
    if y.ndim == 2 and y.shape[1] == 0:
        raise ValueError("y has 0 outputs")
    return y


def check_sample_targets_labels(y, n_samples):
    """Sequence-level class labels: 1-D (a column vector warns)."""
    y = column_or_1d(y, warn=True)
    if y.shape[0] != n_samples:
        raise ValueError(f"Found input variables with inconsistent numbers of samples: "
                         f"[{n_samples}, {y.shape[0]}]")
    return y
