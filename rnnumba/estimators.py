"""scikit-learn estimators: :class:`RNNRegressor` and :class:`RNNClassifier`.

Both read ``X`` as sequences (see :mod:`rnnumba._validation`), run a stack of recurrent
layers (one per entry of ``hidden_layer_sizes``) and a dense output layer on the last state
of every sequence, or on every step with ``return_sequences=True``. Training follows
scikit-learn's MLP (names, defaults where they fit, the stopping rule), plus gradient-norm
clipping and truncated BPTT for recurrent networks.
"""

import numbers
import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, _fit_context
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import _check_sample_weight, check_is_fitted

from ._validation import (check_sample_targets_labels, check_sample_targets_regression,
                          check_sequence_targets, check_sequences)
from .backend import resolve_device
from .losses import log_softmax, softmax, softmax_cross_entropy, squared_error
from .optim import make_optimizer
from .training import SequenceNetwork, TrainingData, TrainingDivergedError, run_epochs

__all__ = ["RNNRegressor", "RNNClassifier", "TrainingDivergedError"]

_PREDICT_BATCH = 1024

#: ``batch_size="auto"`` is ``min(AUTO_BATCH_SIZE, n_samples)``. scikit-learn's MLP uses 200;
#: recurrent networks generalise better with smaller batches (digits: 96-97% test accuracy
#: at 200, 97.5-99% at 64, in rnnumba and in PyTorch alike).
AUTO_BATCH_SIZE = 64


def _resolve_estimator_device(device):
    """The device an estimator trains on: ``"cpu"`` or ``"cuda"``.

    ``"cuda"`` raises a ``ValueError`` saying why when no CUDA device works. ``"auto"`` picks
    ``"cuda"`` only when a *real* CUDA device works: Numba's CUDA simulator
    (``NUMBA_ENABLE_CUDASIM=1``) counts for ``"cuda"`` but not for ``"auto"``, so that a test
    run under the simulator does not train every default estimator on it.
    """
    return resolve_device(device, simulator=False)


def _runnable_device(device):
    """Where a fitted network can run now: its training device, or the CPU when that was
    ``"cuda"`` and no CUDA device works here (the weights are host arrays either way)."""
    from . import backend  # looked up at call time (tests replace the probe)
    if device == "cuda" and backend.cuda_unavailable_reason() is not None:
        return "cpu"
    return device


class _BaseRNN(BaseEstimator):
    """Shared parameters, fitting loop and persistence of the two estimators."""

    _parameter_constraints = {
        "cell": [StrOptions({"rnn", "lstm", "gru"})],
        "hidden_layer_sizes": ["array-like", Interval(numbers.Integral, 1, None,
                                                      closed="left")],
        "bidirectional": ["boolean"],
        "activation": [StrOptions({"tanh", "relu"})],
        "dropout": [Interval(numbers.Real, 0, 1, closed="left")],
        "return_sequences": ["boolean"],
        "solver": [StrOptions({"adam", "sgd"})],
        "alpha": [Interval(numbers.Real, 0, None, closed="left")],
        "batch_size": [StrOptions({"auto"}), Interval(numbers.Integral, 1, None,
                                                      closed="left")],
        "learning_rate": [StrOptions({"constant", "invscaling", "adaptive"})],
        "learning_rate_init": [Interval(numbers.Real, 0, None, closed="neither")],
        "power_t": [Interval(numbers.Real, 0, None, closed="left")],
        "max_iter": [Interval(numbers.Integral, 1, None, closed="left")],
        "shuffle": ["boolean"],
        "random_state": ["random_state"],
        "tol": [Interval(numbers.Real, 0, None, closed="left")],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
        "momentum": [Interval(numbers.Real, 0, 1, closed="both")],
        "nesterovs_momentum": ["boolean"],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(numbers.Real, 0, 1, closed="neither")],
        "beta_1": [Interval(numbers.Real, 0, 1, closed="left")],
        "beta_2": [Interval(numbers.Real, 0, 1, closed="left")],
        "epsilon": [Interval(numbers.Real, 0, None, closed="neither")],
        "n_iter_no_change": [Interval(numbers.Integral, 1, None, closed="left")],
        "clip_norm": [Interval(numbers.Real, 0, None, closed="neither"), None],
        "bptt_steps": [Interval(numbers.Integral, 1, None, closed="left"), None],
        "device": [StrOptions({"auto", "cpu", "cuda"})],
        "dtype": [StrOptions({"float32", "float64"}), Options(type, {np.float32, np.float64})],
    }

    def __init__(self, cell="lstm", hidden_layer_sizes=(64,), *, bidirectional=False,
                 activation="tanh", dropout=0.0, return_sequences=False, solver="adam",
                 alpha=1e-4, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.01, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, clip_norm=5.0,
                 bptt_steps=None, device="auto", dtype="float64"):
        self.cell = cell
        self.hidden_layer_sizes = hidden_layer_sizes
        self.bidirectional = bidirectional
        self.activation = activation
        self.dropout = dropout
        self.return_sequences = return_sequences
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.clip_norm = clip_norm
        self.bptt_steps = bptt_steps
        self.device = device
        self.dtype = dtype

    # ------------------------------------------------------------------ helpers
    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False
        tags.input_tags.allow_nan = False  # only trailing NaN padding
        return tags

    def _hidden_sizes(self):
        sizes = self.hidden_layer_sizes
        if isinstance(sizes, numbers.Integral) and not isinstance(sizes, bool):
            sizes = [sizes]
        sizes = list(sizes)
        if not sizes:
            raise ValueError("hidden_layer_sizes must have at least one layer, got "
                             f"{self.hidden_layer_sizes!r}")
        for s in sizes:
            if isinstance(s, bool) or not isinstance(s, numbers.Integral) or s <= 0:
                raise ValueError("hidden_layer_sizes must be positive integers, got "
                                 f"{self.hidden_layer_sizes!r}")
        return [int(s) for s in sizes]

    def _check_extra_params(self):
        if self.activation != "tanh" and self.cell != "rnn":
            raise ValueError(f"activation={self.activation!r} applies to cell='rnn' only; "
                             f"the {self.cell!r} cell has fixed gate activations")
        if self.bptt_steps is not None and self.bidirectional:
            raise ValueError("bptt_steps (truncated BPTT) needs a causal network; it cannot "
                             "be combined with bidirectional=True")

    def _network_dtype(self):
        return np.dtype(self.dtype).name

    def _validate_X(self, X, reset):
        batch = check_sequences(X, dtype=np.dtype(self._network_dtype()), estimator=self)
        if reset:
            self.n_features_in_ = batch.n_features
        elif batch.n_features != self.n_features_in_:
            raise ValueError(
                f"X has {batch.n_features} features, but {type(self).__name__} is expecting "
                f"{self.n_features_in_} features as input (features per time step).")
        return batch

    def _architecture(self):
        return (self.cell, tuple(self._hidden_sizes()), bool(self.bidirectional),
                self.activation if self.cell == "rnn" else "tanh", bool(self.return_sequences),
                self._network_dtype())

    def _batch_size(self, n_samples):
        if self.batch_size == "auto":
            return min(AUTO_BATCH_SIZE, n_samples)
        if self.batch_size > n_samples:
            warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is "
                          "going to be clipped")
        return int(np.clip(self.batch_size, 1, n_samples))

    def _initialize(self, n_outputs):
        self._random_state = check_random_state(self.random_state)
        self.device_ = _resolve_estimator_device(self.device)
        self._net = SequenceNetwork(
            self.cell, self.n_features_in_, self._hidden_sizes(), n_outputs,
            bidirectional=bool(self.bidirectional), activation=self.activation,
            dropout=float(self.dropout), return_sequences=bool(self.return_sequences),
            dtype=self._network_dtype(), device=self.device_, random_state=self._random_state)
        self._arch = self._architecture()
        self.n_outputs_ = int(n_outputs)
        self.n_iter_ = 0
        self.t_ = 0
        self.loss_curve_ = []
        self.loss_ = None
        self._no_improvement_count = 0
        self._best_weights = None
        self._optimizer = None
        if self.early_stopping:
            self.validation_scores_ = []
            self.best_validation_score_ = -np.inf
            self.best_loss_ = None
        else:
            self.validation_scores_ = None
            self.best_validation_score_ = None
            self.best_loss_ = np.inf

    def _new_optimizer(self):
        return make_optimizer(
            self.solver, [p.shape for p in self._net.params],
            learning_rate_init=self.learning_rate_init, learning_rate=self.learning_rate,
            power_t=self.power_t, momentum=self.momentum,
            nesterovs_momentum=self.nesterovs_momentum, beta_1=self.beta_1,
            beta_2=self.beta_2, epsilon=self.epsilon)

    def _sample_weight(self, sample_weight, batch):
        if sample_weight is None:
            return np.ones(batch.n_samples, dtype=np.float64)
        return _check_sample_weight(sample_weight, batch.X[:, 0, 0], dtype=np.float64,
                                    ensure_non_negative=True)

    def _fit(self, X, y, sample_weight=None, classes=None, incremental=False):
        self._check_extra_params()
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target "
                             "y is None.")
        first = not hasattr(self, "_net") or (not self.warm_start and not incremental)
        if not first and self._arch != self._architecture():
            raise ValueError("the network architecture (cell, hidden_layer_sizes, "
                             "bidirectional, activation, return_sequences, dtype) changed since "
                             "the last fit; set warm_start=False to fit a new network")
        if incremental and self.early_stopping:
            raise ValueError("partial_fit does not support early_stopping=True")
        batch = self._validate_X(X, reset=first)
        sw = self._sample_weight(sample_weight, batch)
        target, step_mask, n_outputs = self._prepare_targets(y, batch, first, classes,
                                                             incremental)
        weights = sw.copy() if step_mask is None else sw[:, None] * step_mask
        norm_weights = weights.copy()
        weights = self._apply_class_weight(weights, target, step_mask, incremental)
        if first:
            self._initialize(n_outputs)
        else:
            device = _resolve_estimator_device(self.device)
            if device != self._net.device:
                self._net.to_device(device)
            self.device_ = device
        if self._optimizer is None or not incremental:
            self._optimizer = self._new_optimizer()

        data = TrainingData(batch.X, batch.lengths, target, weights, norm_weights)
        val = None
        if self.early_stopping:
            data, val = self._split_validation(data, target, step_mask)
        rng = self._random_state
        run_epochs(
            self, self._net, self._optimizer, data, val, loss_fn=self._loss_fn,
            score_fn=self._validation_score, max_iter=1 if incremental else self.max_iter,
            batch_size=self._batch_size(len(data)), shuffle=self.shuffle, rng=rng,
            alpha=float(self.alpha), clip_norm=self.clip_norm, bptt_steps=self.bptt_steps,
            tol=self.tol, n_iter_no_change=self.n_iter_no_change,
            early_stopping=bool(self.early_stopping), verbose=self.verbose,
            incremental=incremental)
        return self

    def _split_validation(self, data, target, step_mask):
        stratify = None
        if isinstance(self, ClassifierMixin) and step_mask is None:
            stratify = target
        idx = np.arange(len(data))
        try:
            train_idx, val_idx = train_test_split(
                idx, random_state=self._random_state, test_size=self.validation_fraction,
                stratify=stratify)
        except ValueError:
            if stratify is None:
                raise
            train_idx, val_idx = train_test_split(
                idx, random_state=self._random_state, test_size=self.validation_fraction)
        if len(val_idx) < 2:
            raise ValueError("The validation set is too small. Increase 'validation_fraction' "
                             "or the size of your dataset.")

        def take(rows):
            return TrainingData(data.X[rows], data.lengths[rows], data.target[rows],
                                data.weights[rows], data.sample_weight[rows])
        return take(train_idx), take(val_idx)

    def _raw_predict(self, batch):
        return self._net.predict(batch.X, batch.lengths, _PREDICT_BATCH).astype(
            np.float64, copy=False)

    def _step_mask(self, batch):
        return np.arange(batch.X.shape[1])[None, :] < batch.lengths[:, None]

    def _pad_sequences(self, values, batch, fill):
        """(N, T_used, ...) -> the caller's layout: (N, T_input, ...) or a list if ragged."""
        if batch.ragged:
            return [values[i, :length] for i, length in enumerate(batch.lengths)]
        n, steps = values.shape[:2]
        out = np.full((n, batch.n_timesteps) + values.shape[2:], fill, dtype=values.dtype)
        out[:, :steps] = values
        mask = self._step_mask(batch)
        out[:, :steps][~mask] = fill
        return out

    # ------------------------------------------------------------------ persistence
    def __setstate__(self, state):
        super().__setstate__(state)
        net = self.__dict__.get("_net")
        if net is not None and net.device != _runnable_device(net.device):
            # trained on a GPU, unpickled where none works: predict on the CPU
            net.to_device("cpu")
            self.device_ = "cpu"

    def save(self, path):
        """Write the fitted estimator to one ``.npz`` file (no pickle); read with
        :func:`rnnumba.load`."""
        from .persistence import save
        save(self, path)


class RNNRegressor(RegressorMixin, _BaseRNN):
    """Recurrent-network regressor (squared error), one target per sequence or per step.

    Parameters follow :class:`sklearn.neural_network.MLPRegressor` where one exists; see
    ``docs/estimators.md`` for the full list. ``X`` is ``(n_samples, n_timesteps,
    n_features)``, ``(n_samples, n_timesteps)`` univariate, a list of ``(T_i, n_features)``
    arrays, or NaN-padded. ``y`` is ``(n_samples,)`` or ``(n_samples, n_outputs)``; with
    ``return_sequences=True`` it is ``(n_samples, n_timesteps[, n_outputs])`` or a list of
    per-sequence arrays.

    Attributes
    ----------
    n_features_in_, n_outputs_, n_iter_, t_, loss_, loss_curve_, best_loss_,
    validation_scores_, best_validation_score_, device_
    """

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def _prepare_targets(self, y, batch, first, classes, incremental):
        if self.return_sequences:
            Y, mask = check_sequence_targets(y, batch, numeric=True)
            if Y.ndim == 2:
                Y = Y[:, :, None]
                ndim = 2
            else:
                ndim = 3
            n_outputs = Y.shape[2]
        else:
            y = check_sample_targets_regression(y, batch.n_samples)
            ndim = y.ndim
            Y = y.reshape(len(y), -1)
            mask = None
            n_outputs = Y.shape[1]
        if not first and n_outputs != self.n_outputs_:
            raise ValueError(f"y has {n_outputs} outputs, the fitted network has "
                             f"{self.n_outputs_}")
        self._y_ndim = ndim
        return Y, (None if mask is None else mask.astype(np.float64)), n_outputs

    def _apply_class_weight(self, weights, target, step_mask, incremental):
        return weights

    @staticmethod
    def _loss_fn(pred, target, weights, normalizer):
        return squared_error(pred, target.astype(pred.dtype, copy=False), weights, normalizer)

    def _validation_score(self, data):
        pred = self._net.predict(data.X, data.lengths, _PREDICT_BATCH).astype(np.float64)
        if self.return_sequences:
            mask = data.sample_weight > 0
            steps = pred.shape[1]
            mask = mask[:, :steps]
            return r2_score(data.target[:, :steps][mask], pred[mask],
                            sample_weight=data.sample_weight[:, :steps][mask])
        return r2_score(data.target, pred, sample_weight=data.sample_weight)

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Fit the network to sequences ``X`` and targets ``y``; returns ``self``."""
        return self._fit(X, y, sample_weight=sample_weight)

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over ``(X, y)`` from the current weights; returns ``self``."""
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)

    def predict(self, X):
        """Predictions: ``(n_samples,)``/``(n_samples, n_outputs)``; with
        ``return_sequences`` ``(n_samples, n_timesteps[, n_outputs])`` (NaN past each
        sequence's end) or a list of per-sequence arrays for ragged-list input."""
        check_is_fitted(self, "_net")
        batch = self._validate_X(X, reset=False)
        raw = self._raw_predict(batch)
        if self._arch[4]:
            if self._y_ndim == 2:
                raw = raw[:, :, 0]
            return self._pad_sequences(raw, batch, np.nan)
        if self._y_ndim == 1:
            return raw[:, 0]
        return raw

    def score(self, X, y, sample_weight=None):
        """R² of the predictions (over all valid steps with ``return_sequences``)."""
        if not getattr(self, "_arch", self._architecture())[4]:
            return super().score(X, y, sample_weight=sample_weight)
        check_is_fitted(self, "_net")
        batch = self._validate_X(X, reset=False)
        Y, mask = check_sequence_targets(y, batch, numeric=True)
        pred = self._raw_predict(batch)
        if Y.ndim == 2:
            Y = Y[:, :, None]
        sw = None
        if sample_weight is not None:
            sw = np.broadcast_to(self._sample_weight(sample_weight, batch)[:, None],
                                 mask.shape)[mask]
        return r2_score(Y[mask], pred[mask], sample_weight=sw)


class RNNClassifier(ClassifierMixin, _BaseRNN):
    """Recurrent-network classifier (softmax cross-entropy), one label per sequence or
    per step.

    Parameters follow :class:`sklearn.neural_network.MLPClassifier` where one exists, plus
    ``class_weight`` (dict, ``"balanced"`` or None) as in linear models; see
    ``docs/estimators.md``. Labels may be any hashable sortable type (strings too).

    Attributes
    ----------
    classes_, n_features_in_, n_outputs_ (output units: one per class), n_iter_, t_,
    loss_, loss_curve_, best_loss_, validation_scores_, best_validation_score_, device_
    """

    _parameter_constraints = {
        **_BaseRNN._parameter_constraints,
        "class_weight": [dict, StrOptions({"balanced"}), None],
    }

    def __init__(self, cell="lstm", hidden_layer_sizes=(64,), *, bidirectional=False,
                 activation="tanh", dropout=0.0, return_sequences=False, solver="adam",
                 alpha=1e-4, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.01, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, clip_norm=5.0,
                 bptt_steps=None, class_weight=None, device="auto", dtype="float64"):
        super().__init__(
            cell=cell, hidden_layer_sizes=hidden_layer_sizes, bidirectional=bidirectional,
            activation=activation, dropout=dropout, return_sequences=return_sequences,
            solver=solver, alpha=alpha, batch_size=batch_size, learning_rate=learning_rate,
            learning_rate_init=learning_rate_init, power_t=power_t, max_iter=max_iter,
            shuffle=shuffle, random_state=random_state, tol=tol, verbose=verbose,
            warm_start=warm_start, momentum=momentum, nesterovs_momentum=nesterovs_momentum,
            early_stopping=early_stopping, validation_fraction=validation_fraction,
            beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, n_iter_no_change=n_iter_no_change,
            clip_norm=clip_norm, bptt_steps=bptt_steps, device=device, dtype=dtype)
        self.class_weight = class_weight

    def _prepare_targets(self, y, batch, first, classes, incremental):
        if self.return_sequences:
            Y, mask = check_sequence_targets(y, batch, numeric=False)
            labels = Y[mask]
            try:
                labels = np.asarray(labels.tolist())
            except (TypeError, ValueError):
                pass
        else:
            shape = np.asarray(y).shape
            if len(shape) == 2 and shape[1] > 1:
                raise ValueError(
                    f"{type(self).__name__} takes one label per sequence, got a "
                    f"{type_of_target(y)} target of shape {shape}; for one label per time "
                    "step set return_sequences=True (multi-output classification is not "
                    "supported)")
            Y = check_sample_targets_labels(y, batch.n_samples)
            mask = None
            labels = Y
        check_classification_targets(labels)
        if first:
            if classes is not None:
                all_classes = np.unique(np.asarray(classes))
                if incremental and not np.all(np.isin(np.unique(labels), all_classes)):
                    raise ValueError("`y` has classes not in `classes`: "
                                     f"{np.setdiff1d(np.unique(labels), all_classes)}")
            elif incremental:
                raise ValueError("classes must be passed on the first call to partial_fit.")
            else:
                all_classes = np.unique(labels)
            if len(all_classes) < 2:
                raise ValueError(f"{type(self).__name__} needs samples of at least 2 classes "
                                 f"in the data, but the data contains only 1 class: "
                                 f"{all_classes.tolist()!r}")
            self.classes_ = all_classes
        else:
            if classes is not None and incremental and not np.array_equal(
                    np.unique(np.asarray(classes)), self.classes_):
                raise ValueError(f"`classes={classes!r}` is not the same as on the first call "
                                 f"to partial_fit: {self.classes_!r}")
            unseen = np.setdiff1d(np.unique(labels), self.classes_)
            if unseen.size:
                raise ValueError(f"`y` has classes not in `self.classes_`: {unseen!r}; "
                                 f"fitted classes are {self.classes_!r}")
        if self.return_sequences:
            codes = np.zeros(mask.shape, dtype=np.int64)
            codes[mask] = np.searchsorted(self.classes_, labels)
            return codes, mask.astype(np.float64), len(self.classes_)
        codes = np.searchsorted(self.classes_, labels).astype(np.int64)
        return codes, None, len(self.classes_)

    def _apply_class_weight(self, weights, codes, step_mask, incremental):
        if self.class_weight is None:
            if step_mask is None:
                present = np.bincount(codes, weights=weights, minlength=len(self.classes_))
                if np.count_nonzero(present) < 2 and not incremental:
                    raise ValueError(
                        f"{type(self).__name__} needs samples of at least 2 classes with a "
                        "positive sample_weight; after weighting the data contains only 1 "
                        "class.")
            return weights
        if self.class_weight == "balanced" and incremental:
            raise ValueError("class_weight 'balanced' is not supported for partial_fit; "
                             "compute the weights on the full data and pass a dict.")
        valid = codes if step_mask is None else codes[step_mask > 0]
        cw = compute_class_weight(self.class_weight, classes=np.arange(len(self.classes_)),
                                  y=valid) if self.class_weight == "balanced" else \
            np.array([float(self.class_weight.get(c, 1.0)) for c in self.classes_.tolist()])
        return weights * cw[codes]

    @staticmethod
    def _loss_fn(pred, target, weights, normalizer):
        return softmax_cross_entropy(pred, target, weights, normalizer)

    def _validation_score(self, data):
        raw = self._net.predict(data.X, data.lengths, _PREDICT_BATCH)
        pred = raw.argmax(axis=-1)
        if self.return_sequences:
            steps = pred.shape[1]
            mask = data.sample_weight[:, :steps] > 0
            return accuracy_score(data.target[:, :steps][mask], pred[mask],
                                  sample_weight=data.sample_weight[:, :steps][mask])
        return accuracy_score(data.target, pred, sample_weight=data.sample_weight)

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Fit the network to sequences ``X`` and labels ``y``; returns ``self``."""
        return self._fit(X, y, sample_weight=sample_weight)

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """One epoch over ``(X, y)``; ``classes`` is required on the first call."""
        return self._fit(X, y, sample_weight=sample_weight, classes=classes, incremental=True)

    def _proba(self, X):
        check_is_fitted(self, "_net")
        batch = self._validate_X(X, reset=False)
        return batch, self._raw_predict(batch)

    def predict_proba(self, X):
        """Class probabilities ``(n_samples, n_classes)``; per step ``(n_samples,
        n_timesteps, n_classes)`` with ``return_sequences`` (NaN past each end; a list for
        ragged-list input)."""
        batch, raw = self._proba(X)
        proba = softmax(raw)
        if self._arch[4]:
            return self._pad_sequences(proba, batch, np.nan)
        return proba

    def predict_log_proba(self, X):
        """Logarithm of :meth:`predict_proba`, computed stably."""
        batch, raw = self._proba(X)
        logp = log_softmax(raw)
        if self._arch[4]:
            return self._pad_sequences(logp, batch, np.nan)
        return logp

    def predict(self, X):
        """Labels ``(n_samples,)``; per step ``(n_samples, n_timesteps)`` with
        ``return_sequences``: an object array with None past each sequence's end, or a list
        of per-sequence label arrays for ragged-list input."""
        batch, raw = self._proba(X)
        labels = self.classes_[raw.argmax(axis=-1)]
        if self._arch[4]:
            if batch.ragged:
                return [labels[i, :length] for i, length in enumerate(batch.lengths)]
            if np.all(batch.lengths == batch.n_timesteps):
                return labels
            return self._pad_sequences(labels.astype(object), batch, None)
        return labels

    def score(self, X, y, sample_weight=None):
        """Accuracy (over all valid steps with ``return_sequences``)."""
        if not getattr(self, "_arch", self._architecture())[4]:
            return super().score(X, y, sample_weight=sample_weight)
        check_is_fitted(self, "_net")
        batch = self._validate_X(X, reset=False)
        Y, mask = check_sequence_targets(y, batch, numeric=False)
        _, raw = batch, self._raw_predict(batch)
        pred = self.classes_[raw.argmax(axis=-1)]
        sw = None
        if sample_weight is not None:
            sw = np.broadcast_to(self._sample_weight(sample_weight, batch)[:, None],
                                 mask.shape)[mask]
        truth = np.asarray(Y[mask].tolist())
        return accuracy_score(truth, pred[mask], sample_weight=sw)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = False
        return tags
