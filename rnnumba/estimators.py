"""scikit-learn estimators: :class:`RNNRegressor` and :class:`RNNClassifier`.

Both read ``X`` as sequences (see :mod:`rnnumba._validation`), build a
:class:`~rnnumba.model.SequenceModel` (numeric input, a stack of recurrent layers with one
entry per ``hidden_layer_sizes``, a dense head on the last state of every sequence or, with
``return_sequences=True``, on every step) and train it with the training core
(:class:`~rnnumba.training.Trainer`). Names and defaults follow scikit-learn's MLP where
they fit.
"""

import numbers
import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.base import (BaseEstimator, ClassifierMixin, ClassNamePrefixFeaturesOutMixin,
                          RegressorMixin, TransformerMixin, _fit_context)
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import _check_sample_weight, check_is_fitted

from . import persistence
from ._validation import (check_hidden_layer_sizes, check_sample_targets_labels,
                          check_sample_targets_regression, check_sequence_targets,
                          check_sequences, check_token_sequences)
from .backend import resolve_device, runnable_device
from .heads import SequenceHead, StepHead, pooling_modes
from .inputs import EmbeddingInput, NumericInput
from .losses import CrossEntropy, SquaredError, log_softmax, softmax
from .model import SequenceModel
from .optim import make_optimizer
from .preprocessing import SequenceScaler
from .recurrent import Recurrent
from .training import SequenceData, Trainer, TrainingDivergedError

__all__ = ["RNNRegressor", "RNNClassifier", "TrainingDivergedError"]

_PREDICT_BATCH = 1024

#: ``batch_size="auto"``: about ``n_samples / AUTO_BATCHES`` (so an epoch takes about that
#: many optimizer steps), at least ``AUTO_BATCH_MIN`` and at most ``AUTO_BATCH_SIZE``
#: samples. Small batches keep small data sets from training one step per epoch.
AUTO_BATCH_SIZE = 64
AUTO_BATCH_MIN = 8
AUTO_BATCHES = 100

#: ``n_iter_no_change="auto"``: the epochs that make about this many optimizer steps (at
#: least ``AUTO_MIN_PATIENCE``), so a plateau is waited out as long on small data as on
#: large. ``max_iter="auto"``: the epochs that make about ``AUTO_MAX_STEPS`` steps, at least
#: ``AUTO_MIN_EPOCHS``.
AUTO_PATIENCE_STEPS = 500
AUTO_MIN_PATIENCE = 10
AUTO_MAX_STEPS = 5000
AUTO_MIN_EPOCHS = 200

#: ``patch_size="auto"`` reads long sequences in patches of consecutive steps, so that the
#: longest one has at most this many.
AUTO_PATCH_STEPS = 64

#: The fitted counters the training core keeps, copied onto the estimator after each fit.
_TRAINING_RESULTS = ("n_iter_", "t_", "loss_", "loss_curve_", "best_loss_",
                     "validation_scores_", "best_validation_score_")


@dataclass(frozen=True)
class Architecture:
    """What a fitted network is made of; ``warm_start`` and ``partial_fit`` need it
    unchanged."""

    cell: str
    hidden_layer_sizes: tuple
    bidirectional: bool
    activation: str
    return_sequences: bool
    dtype: str
    pooling: str
    embedding_dim: object


_COMMON_PARAMETERS = """
    cell : {"rnn", "lstm", "gru"}, default="lstm"
        The recurrent cell, with PyTorch's gate equations.
    hidden_layer_sizes : array-like of int, default=(64,)
        Units of each stacked recurrent layer (widths may differ).
    bidirectional : bool or "auto", default="auto"
        Every layer reads the sequences both ways; the directions' outputs are concatenated.
        ``"auto"`` is True for one output per sequence (the whole sequence is known when
        it is summarised) and False with ``return_sequences=True`` or ``bptt_steps``, where
        each step's output stays causal (``bidirectional_``).
    activation : {"tanh", "relu"}, default="tanh"
        Activation of the ``"rnn"`` cell (the LSTM's and GRU's gates are fixed).
    dropout : float in [0, 1), default=0.0
        Inverted dropout on the outputs of every recurrent layer but the last, while
        training.
    forget_bias : float or None, default=1.0
        LSTM only: the forget gate's bias starts at this value (PyTorch's ``bias_ih``
        forget rows; its ``bias_hh`` forget rows start at 0), so the cell state is carried
        across steps from the first epoch (Jozefowicz et al., 2015; Keras's
        ``unit_forget_bias``). None keeps PyTorch's uniform draw. Ignored by the other
        cells.
    return_sequences : bool, default=False
        One output per time step instead of one per sequence.
    solver : {"adam", "sgd"}, default="adam"
    alpha : float, default=1e-3
        L2 penalty on the weights (not the biases), scaled as scikit-learn's MLP scales it
        (``alpha / batch weight``).
    batch_size : int or "auto", default="auto"
        ``"auto"`` is about 1% of the training samples, at least 8 and at most 64 (so an
        epoch of a small data set is several optimizer steps, not one); an int larger
        than the data is clipped with a warning.
    learning_rate : {"constant", "invscaling", "adaptive"}, default="adaptive"
        The MLP's schedules, for both solvers. ``"adaptive"`` divides the rate by 5 when
        the training loss (or validation score) stalls for ``n_iter_no_change`` epochs,
        and stops once it is below 1e-6.
    learning_rate_init : float, default=0.003
    power_t : float, default=0.5
        Exponent of ``"invscaling"``.
    max_iter : int or "auto", default="auto"
        Maximum number of epochs; ``"auto"`` is enough epochs for about 5000 optimizer
        steps, at least 200.
    shuffle : bool, default=True
        Reshuffle the samples every epoch.
    random_state : int, RandomState or None, default=None
        Seeds initialisation, shuffling, dropout and the validation split.
    tol : float, default=1e-4
        Least improvement of the training loss (or validation score with
        ``early_stopping``) that counts.
    verbose : bool, default=False
        Print one line per epoch.
    warm_start : bool, default=False
        ``fit`` continues from the current weights (same architecture required).
    momentum : float in [0, 1], default=0.9
        SGD momentum.
    nesterovs_momentum : bool, default=True
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the data (stratified for the per-sequence
        classifier), stop on the validation score and restore the best epoch's weights.
    validation_fraction : float in (0, 1), default=0.1
    beta_1, beta_2 : float in [0, 1), default=0.9, 0.999
        Adam's decay rates.
    epsilon : float, default=1e-8
        Adam's numerical stability term.
    n_iter_no_change : int or "auto", default="auto"
        Epochs without an improvement of ``tol`` before stopping (or, with
        ``learning_rate="adaptive"``, lowering the rate); ``"auto"`` is enough epochs for
        about 500 optimizer steps, at least 10, so that a plateau is waited out as long on
        a small data set as on a large one.
    clip_norm : float or None, default=5.0
        Clip the global gradient norm (every layer and the output layer together) to this
        value; None disables clipping.
    bptt_steps : int or None, default=None
        Truncated backpropagation through time: gradients are cut every ``bptt_steps``
        steps (the forward pass still carries the state through the whole sequence). Not
        with ``bidirectional=True``, and only with ``pooling="last"``.
    pooling : str, default="max"
        How each sequence's steps are summarised for the output layer (one output per
        sequence): ``"last"`` (the last state; forward-last and backward-first when
        bidirectional), ``"mean"`` or ``"max"`` over the steps, ``"attention"`` (a
        learned softmax weighting of the steps), or several joined by ``"+"`` (e.g.
        ``"last+max"``), side by side. Ignored with ``return_sequences=True``.
    embedding_dim : int or None, default=None
        None reads ``X`` as numeric features. An int reads ``X`` as integer token ids (a
        2-D int array, or a list of 1-D int arrays for a ragged batch), looked up in a
        learned table of this many features per token; the ids seen at ``fit`` (0 up to
        their maximum) are the vocabulary, and larger ids at predict time are an error.
    scale : bool, default=True
        Standardise each input feature over the training data's valid steps
        (:class:`~rnnumba.SequenceScaler`) before the network reads it (numeric input);
        the regressor also standardises each target and predicts in the original units.
        The statistics come from the first ``fit`` (or ``partial_fit``) call.
    patch_size : int or "auto", default="auto"
        Read this many consecutive steps as one step of ``patch_size * n_features``
        features (per-sequence outputs with numeric input; 1 otherwise): long sequences
        become short ones, which recurrent networks learn far more reliably. ``"auto"``
        takes the fewest steps per patch that bring the longest training sequence to at
        most 64 patches (``patch_size_``)."""

_DEVICE_PARAMETERS = """
    device : {"auto", "cpu", "cuda"}, default="auto"
        ``"cuda"`` trains on an NVIDIA GPU (``fit`` raises a ``ValueError`` saying why when
        none works); ``"auto"`` picks it when a real CUDA device works (never Numba's
        CUDA simulator), else the CPU.
    dtype : {"float32", "float64"}, default="float32"
        Precision of the network (float64 fits take about three times as long)."""

_COMMON_ATTRIBUTES = """
    n_features_in_ : int
        Features per time step.
    n_outputs_ : int
        Output units.
    n_iter_ : int
        Epochs run.
    t_ : int
        Samples seen by the optimizer.
    loss_ : float
        The last epoch's training loss.
    loss_curve_ : list of float
        The training loss of every epoch.
    best_loss_ : float or None
        The lowest training loss (None with ``early_stopping``).
    validation_scores_ : list of float or None
        The validation score of every epoch (``early_stopping`` only).
    best_validation_score_ : float or None
        The best validation score (``early_stopping`` only).
    device_ : str
        Where the network trained: ``"cpu"`` or ``"cuda"``.
    patch_size_ : int
        Steps read as one (``patch_size``).
    bidirectional_ : bool
        Whether the layers read both ways (``bidirectional``).
    vocabulary_size_ : int
        With ``embedding_dim``: token ids seen at ``fit`` are ``0..vocabulary_size_-1``."""


def _padded_with_nan(batch):
    """A checked batch as NaN-padded sequences (what :class:`SequenceScaler` reads)."""
    valid = np.arange(batch.X.shape[1])[None, :] < batch.lengths[:, None]
    return np.where(valid[:, :, None], batch.X, np.nan)


def _standardisation(values, weights):
    """``(mean, scale)`` per column of ``values`` (rows are observations, weighted), scale
    1 where a column is constant, as scikit-learn's StandardScaler sets it."""
    scaler = StandardScaler().fit(values, sample_weight=weights)
    return scaler.mean_, scaler.scale_


class _BaseRNN(ClassNamePrefixFeaturesOutMixin, BaseEstimator):
    """Shared parameters, fitting and persistence of the two estimators."""

    _parameter_constraints = {
        "cell": [StrOptions({"rnn", "lstm", "gru"})],
        "hidden_layer_sizes": ["array-like", Interval(numbers.Integral, 1, None,
                                                      closed="left")],
        "bidirectional": ["boolean", StrOptions({"auto"})],
        "activation": [StrOptions({"tanh", "relu"})],
        "dropout": [Interval(numbers.Real, 0, 1, closed="left")],
        "forget_bias": [Interval(numbers.Real, None, None, closed="neither"), None],
        "return_sequences": ["boolean"],
        "solver": [StrOptions({"adam", "sgd"})],
        "alpha": [Interval(numbers.Real, 0, None, closed="left")],
        "batch_size": [StrOptions({"auto"}), Interval(numbers.Integral, 1, None,
                                                      closed="left")],
        "learning_rate": [StrOptions({"constant", "invscaling", "adaptive"})],
        "learning_rate_init": [Interval(numbers.Real, 0, None, closed="neither")],
        "power_t": [Interval(numbers.Real, 0, None, closed="left")],
        "max_iter": [StrOptions({"auto"}), Interval(numbers.Integral, 1, None, closed="left")],
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
        "n_iter_no_change": [StrOptions({"auto"}),
                             Interval(numbers.Integral, 1, None, closed="left")],
        "clip_norm": [Interval(numbers.Real, 0, None, closed="neither"), None],
        "bptt_steps": [Interval(numbers.Integral, 1, None, closed="left"), None],
        "pooling": [str],
        "embedding_dim": [Interval(numbers.Integral, 1, None, closed="left"), None],
        "scale": ["boolean"],
        "patch_size": [StrOptions({"auto"}), Interval(numbers.Integral, 1, None,
                                                      closed="left")],
        "device": [StrOptions({"auto", "cpu", "cuda"})],
        "dtype": [StrOptions({"float32", "float64"}), Options(type, {np.float32, np.float64})],
    }

    def __init__(self, cell="lstm", hidden_layer_sizes=(64,), *, bidirectional="auto",
                 activation="tanh", dropout=0.0, forget_bias=1.0, return_sequences=False,
                 solver="adam", alpha=1e-3, batch_size="auto", learning_rate="adaptive",
                 learning_rate_init=0.003, power_t=0.5, max_iter="auto", shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change="auto", clip_norm=5.0,
                 bptt_steps=None, pooling="max", embedding_dim=None, scale=True,
                 patch_size="auto", device="auto", dtype="float32"):
        self.cell = cell
        self.hidden_layer_sizes = hidden_layer_sizes
        self.bidirectional = bidirectional
        self.activation = activation
        self.dropout = dropout
        self.forget_bias = forget_bias
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
        self.pooling = pooling
        self.embedding_dim = embedding_dim
        self.scale = scale
        self.patch_size = patch_size
        self.device = device
        self.dtype = dtype

    # ------------------------------------------------------------------ helpers
    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False
        tags.input_tags.allow_nan = False  # only trailing NaN padding
        return tags

    def _bidirectional(self):
        """``bidirectional`` resolved: ``"auto"`` reads both ways only where every output
        summarises a whole sequence."""
        if isinstance(self.bidirectional, str):
            return not self.return_sequences and self.bptt_steps is None
        return bool(self.bidirectional)

    def _check_extra_params(self):
        if self.activation != "tanh" and self.cell != "rnn":
            raise ValueError(f"activation={self.activation!r} applies to cell='rnn' only; "
                             f"the {self.cell!r} cell has fixed gate activations")
        if self.bptt_steps is not None and self._bidirectional():
            raise ValueError("bptt_steps (truncated BPTT) needs a causal network; it cannot "
                             "be combined with bidirectional=True")
        pooling_modes(self.pooling)
        if (self.bptt_steps is not None and not self.return_sequences
                and self.pooling != "last"):
            raise ValueError(f"bptt_steps (truncated BPTT) summarises each sequence by its "
                             f"last state; it cannot be combined with pooling="
                             f"{self.pooling!r}")

    def _network_dtype(self):
        return np.dtype(self.dtype).name

    def _validate_X(self, X, reset=False):
        """The checked batch as the network reads it (scaled); ``reset`` (the first fit)
        learns ``n_features_in_`` or the vocabulary and the scaling (unweighted)."""
        batch = self._check_X(X, reset)
        if reset:
            self._fit_x_scaling(batch, None)
            self._fit_patch_size(batch)
        return self._network_input(batch)

    def _check_X(self, X, reset):
        """The checked batch, as given (``reset``: learn ``n_features_in_`` or the
        vocabulary)."""
        if self.embedding_dim is not None:
            batch = check_token_sequences(
                X, vocabulary_size=None if reset else self.vocabulary_size_)
            if reset:
                self.n_features_in_ = 1
                self.vocabulary_size_ = int(batch.X[self._step_mask(batch)].max()) + 1
            return batch
        batch = check_sequences(X, dtype=np.dtype(self._network_dtype()), estimator=self)
        if reset:
            self.n_features_in_ = batch.n_features
        elif batch.n_features != self.n_features_in_:
            raise ValueError(
                f"X has {batch.n_features} features, but {type(self).__name__} is expecting "
                f"{self.n_features_in_} features as input (features per time step).")
        return batch

    def _fit_x_scaling(self, batch, sample_weight):
        """Learn the input standardisation (``scale``, numeric input) from a checked batch,
        each sequence weighted by ``sample_weight``."""
        self._x_scaling = None
        if self.scale and self.embedding_dim is None:
            scaler = SequenceScaler().fit(_padded_with_nan(batch), sample_weight=sample_weight)
            self._x_scaling = (scaler.mean_, scaler.scale_)

    def _network_input(self, batch):
        """A checked batch as the network reads it: scaled, and ``patch_size_`` steps read
        as one (the lengths then count patches; a last partial patch is zero-filled, the
        scaled mean)."""
        if self._x_scaling is not None:
            mean, scale = self._x_scaling
            valid = self._step_mask(batch)[:, :, None]
            batch.X = np.where(valid, (batch.X - mean) / scale, 0.0).astype(batch.X.dtype)
        k = self.patch_size_
        if k > 1:
            n_seq, steps, features = batch.X.shape
            patches = -(-steps // k)
            padded = np.zeros((n_seq, patches * k, features), dtype=batch.X.dtype)
            padded[:, :steps] = batch.X
            batch.X = padded.reshape(n_seq, patches, k * features)
            batch.lengths = -(-batch.lengths // k)
        return batch

    def _fit_patch_size(self, batch):
        """``patch_size_``: ``patch_size``, or for ``"auto"`` the fewest steps per patch that
        bring the longest sequence to at most ``AUTO_PATCH_STEPS`` patches (1 with
        ``return_sequences`` or token input, where every step is read on its own)."""
        if self.return_sequences or self.embedding_dim is not None:
            self.patch_size_ = 1
        elif self.patch_size == "auto":
            self.patch_size_ = max(1, -(-int(batch.lengths.max()) // AUTO_PATCH_STEPS))
        else:
            self.patch_size_ = int(self.patch_size)

    def _architecture(self):
        return Architecture(self.cell, check_hidden_layer_sizes(self.hidden_layer_sizes),
                            self._bidirectional(),
                            self.activation if self.cell == "rnn" else "tanh",
                            bool(self.return_sequences), self._network_dtype(),
                            "last" if self.return_sequences else self.pooling,
                            None if self.embedding_dim is None else int(self.embedding_dim))

    def _batch_size(self, n_samples):
        if self.batch_size == "auto":
            return min(n_samples, max(AUTO_BATCH_MIN, min(AUTO_BATCH_SIZE,
                                                          n_samples // AUTO_BATCHES)))
        if self.batch_size > n_samples:
            warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is "
                          "going to be clipped")
        return int(np.clip(self.batch_size, 1, n_samples))

    def _build_model(self, arch, n_features, n_outputs, device, rng):
        """The network of ``arch``, its weights drawn from ``rng``: one seed per recurrent
        layer, then the head, then the dropout stream."""
        seeds = [rng.randint(np.iinfo(np.int32).max) for _ in arch.hidden_layer_sizes]
        dtype = np.dtype(arch.dtype)
        directions = 2 if arch.bidirectional else 1
        n_in = directions * arch.hidden_layer_sizes[-1]
        if arch.return_sequences:
            head = StepHead(n_in, n_outputs, dtype=dtype, random_state=rng)
        else:
            head = SequenceHead(n_in, n_outputs, directions, pooling=arch.pooling, dtype=dtype,
                                random_state=rng)
        input_size = (n_features * self.patch_size_ if arch.embedding_dim is None
                      else arch.embedding_dim)
        recurrent = Recurrent(
            arch.cell, input_size=int(input_size), hidden_size=list(arch.hidden_layer_sizes),
            bidirectional=arch.bidirectional, nonlinearity=arch.activation,
            dropout=float(self.dropout), dtype=arch.dtype, device=device,
            random_state=np.random.RandomState(rng.randint(np.iinfo(np.int32).max)))
        recurrent.initialize_layers([np.random.RandomState(seed) for seed in seeds],
                                    forget_bias=self.forget_bias)
        if arch.embedding_dim is None:
            input_layer = NumericInput(input_size, dtype)
        else:
            input_layer = EmbeddingInput(self.vocabulary_size_, arch.embedding_dim, dtype,
                                         random_state=rng)
        return SequenceModel(input_layer, recurrent, head)

    def _new_optimizer(self):
        return make_optimizer(
            self.solver, [(self._model.store.size,)],
            learning_rate_init=self.learning_rate_init, learning_rate=self.learning_rate,
            power_t=self.power_t, momentum=self.momentum,
            nesterovs_momentum=self.nesterovs_momentum, beta_1=self.beta_1,
            beta_2=self.beta_2, epsilon=self.epsilon)

    def _new_trainer(self):
        return Trainer(self._model, self._loss(), self._new_optimizer(), batch_size=1,
                       random_state=self._random_state, early_stopping=self.early_stopping)

    def _configure(self, trainer, n_samples):
        """The current parameters onto the trainer (they may change between fits)."""
        trainer.batch_size = self._batch_size(n_samples)
        trainer.shuffle = bool(self.shuffle)
        trainer.alpha = float(self.alpha)
        trainer.clip_norm = self.clip_norm
        trainer.bptt_steps = self.bptt_steps
        trainer.tol = float(self.tol)
        steps = -(-n_samples // trainer.batch_size)  # optimizer steps per epoch
        trainer.n_iter_no_change = (max(AUTO_MIN_PATIENCE, -(-AUTO_PATIENCE_STEPS // steps))
                                    if self.n_iter_no_change == "auto"
                                    else int(self.n_iter_no_change))
        self._max_epochs = (max(AUTO_MIN_EPOCHS, -(-AUTO_MAX_STEPS // steps))
                            if self.max_iter == "auto" else int(self.max_iter))
        trainer.verbose = self.verbose

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
        first = not hasattr(self, "_model") or (not self.warm_start and not incremental)
        if not first and self._arch != self._architecture():
            raise ValueError("the network architecture (cell, hidden_layer_sizes, "
                             "bidirectional, activation, return_sequences, dtype, pooling, "
                             "embedding_dim) changed since the last fit; set warm_start=False "
                             "to fit a new network")
        if incremental and self.early_stopping:
            raise ValueError("partial_fit does not support early_stopping=True")
        batch = self._check_X(X, reset=first)
        sw = self._sample_weight(sample_weight, batch)
        if first:
            self._fit_x_scaling(batch, sw)
            self._fit_patch_size(batch)
        batch = self._network_input(batch)
        target, step_mask, n_outputs = self._prepare_targets(y, batch, first, classes,
                                                             incremental, sw)
        weights = sw.copy() if step_mask is None else sw[:, None] * step_mask
        norm_weights = weights.copy()
        weights = self._apply_class_weight(weights, target, step_mask, incremental)
        self.device_ = resolve_device(self.device)
        if first:
            self._random_state = check_random_state(self.random_state)
            self._arch = self._architecture()
            self._model = self._build_model(self._arch, self.n_features_in_, n_outputs,
                                            self.device_, self._random_state)
            self.n_outputs_ = int(n_outputs)
            self._trainer = self._new_trainer()
        else:
            if self.device_ != self._model.device:
                self._model.to_device(self.device_)
            if not incremental:
                self._trainer.optimizer = self._new_optimizer()

        data = SequenceData(batch.X, batch.lengths, target, weights, norm_weights)
        val = None
        if self.early_stopping:
            data, val = self._split_validation(data, target, step_mask)
        self._configure(self._trainer, len(data))
        try:
            self._trainer.fit(data, val, score=self._validation_score,
                              max_epochs=1 if incremental else self._max_epochs,
                              incremental=incremental)
        finally:
            for name in _TRAINING_RESULTS:
                value = getattr(self._trainer, name)
                setattr(self, name, list(value) if isinstance(value, list) else value)
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
        return data.take(train_idx), data.take(val_idx)

    def _raw_predict(self, batch):
        return self._model.predict(batch.X, batch.lengths, _PREDICT_BATCH).astype(
            np.float64, copy=False)

    def transform(self, X):
        """The learned sequence features that feed the output layer.

        Parameters
        ----------
        X : sequences, as :meth:`fit` takes them

        Returns
        -------
        ndarray of shape (n_samples, n_features_out)
            Each sequence's summary (``pooling``): ``directions * hidden_layer_sizes[-1]``
            features, for any scikit-learn estimator to use. With ``return_sequences`` every
            step's output, ``(n_samples, n_timesteps, n_features_out)`` (NaN past each end;
            a list for ragged-list input).
        """
        check_is_fitted(self, "_model")
        batch = self._validate_X(X, reset=False)
        features = self._model.transform(batch.X, batch.lengths, _PREDICT_BATCH).astype(
            np.float64, copy=False)
        if self._arch.return_sequences:
            return self._pad_sequences(features, batch, np.nan)
        return features

    @property
    def bidirectional_(self):
        return self._arch.bidirectional

    @property
    def _n_features_out(self):
        """Features per sequence (or step) that :meth:`transform` returns."""
        per_step = (2 if self._arch.bidirectional else 1) * self._arch.hidden_layer_sizes[-1]
        if self._arch.return_sequences:
            return per_step
        return len(pooling_modes(self._arch.pooling)) * per_step

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
        model = self.__dict__.get("_model")
        if model is not None and model.device != runnable_device(model.device):
            # trained on a GPU, unpickled where none works: predict on the CPU
            model.to_device("cpu")
            self.device_ = "cpu"

    def save(self, path):
        """Write the fitted estimator to one ``.npz`` file (no pickle); read it back with
        :func:`rnnumba.load`."""
        check_is_fitted(self, "_model")
        persistence.write_archive(path, *self._to_archive())

    def _to_archive(self):
        """``(class name, params, fitted, arrays)`` for :mod:`rnnumba.persistence`."""
        trainer = self._trainer
        fitted = {"n_features_in_": self.n_features_in_, "n_outputs_": self.n_outputs_,
                  "device_": self.device_, "no_improvement_count":
                  trainer._no_improvement_count}
        for name in ("n_iter_", "t_", "loss_", "best_loss_", "best_validation_score_"):
            fitted[name] = getattr(self, name)
        arrays = {f"model/{name}": value for name, value in self._model.state_dict().items()}
        fitted["patch_size_"] = self.patch_size_
        if self.embedding_dim is not None:
            fitted["vocabulary_size_"] = self.vocabulary_size_
        for name, scaling in (("x", self._x_scaling), ("y", getattr(self, "_y_scaling", None))):
            if scaling is not None:
                arrays[f"scaling/{name}_mean"], arrays[f"scaling/{name}_scale"] = scaling
        arrays["loss_curve_"] = np.asarray(self.loss_curve_, dtype=np.float64)
        if self.validation_scores_ is not None:
            arrays["validation_scores_"] = np.asarray(self.validation_scores_, np.float64)
        return type(self).__name__, self.get_params(deep=False), fitted, arrays

    @classmethod
    def _from_archive(cls, params, fitted, arrays):
        """The estimator :meth:`_to_archive` described (checked: a corrupt file is a
        ``ValueError``)."""
        est = persistence.estimator_from_params(cls, params)
        est._check_extra_params()
        persistence.set_fitted_counts(est, fitted,
                                      ("n_features_in_", "n_outputs_", "n_iter_", "t_"))
        if est.n_features_in_ < 1 or est.n_outputs_ < 1:
            raise ValueError("the file describes a network without inputs or outputs")
        for name in ("loss_", "best_loss_", "best_validation_score_"):
            setattr(est, name, persistence.optional_float(fitted.get(name), name))
        if fitted.get("device_") not in ("cpu", "cuda"):
            raise ValueError(f"unknown device_ {fitted.get('device_')!r} in file")
        # trained on a GPU, loaded where none works: the network runs on the CPU
        est.device_ = runnable_device(fitted["device_"])
        est.loss_curve_ = [float(v) for v in persistence.float_array(arrays, "loss_curve_")]
        est.validation_scores_ = (
            [float(v) for v in persistence.float_array(arrays, "validation_scores_")]
            if "validation_scores_" in arrays else None)
        est._classes_from_archive(arrays)
        if est.embedding_dim is not None:
            vocabulary = fitted.get("vocabulary_size_")
            if isinstance(vocabulary, bool) or not isinstance(vocabulary, int) or vocabulary < 1:
                raise ValueError(f"vocabulary_size_ must be a positive int, got {vocabulary!r}")
            est.vocabulary_size_ = vocabulary
        est._x_scaling = persistence.scaling(arrays, "x", est.n_features_in_)
        patch = fitted.get("patch_size_", 1)
        if isinstance(patch, bool) or not isinstance(patch, int) or patch < 1:
            raise ValueError(f"patch_size_ must be a positive int, got {patch!r}")
        est.patch_size_ = patch
        est._arch = est._architecture()
        est._random_state = np.random.RandomState(
            est.random_state if isinstance(est.random_state, numbers.Integral) else None)
        est._model = est._build_model(est._arch, est.n_features_in_, est.n_outputs_,
                                      est.device_, np.random.RandomState(0))
        prefix = "model/"
        est._model.load_state_dict({name[len(prefix):]: value for name, value in arrays.items()
                                    if name.startswith(prefix)})
        est._model.train(False)
        trainer = est._trainer = est._new_trainer()
        for name in _TRAINING_RESULTS:
            setattr(trainer, name, getattr(est, name))
        if isinstance(trainer.loss_curve_, list):
            trainer.loss_curve_ = list(trainer.loss_curve_)
        count = fitted.get("no_improvement_count", 0)
        trainer._no_improvement_count = count if isinstance(count, int) else 0
        return est

    def _classes_from_archive(self, arrays):
        """Fitted labels, for the classifier."""


class RNNRegressor(RegressorMixin, TransformerMixin, _BaseRNN):
    __doc__ = f"""Recurrent-network regressor (squared error), one target per sequence or
    per step.

    ``X`` is ``(n_samples, n_timesteps, n_features)``, ``(n_samples, n_timesteps)``
    univariate, a list of ``(T_i, n_features)`` arrays, or NaN-padded. ``y`` is
    ``(n_samples,)`` or ``(n_samples, n_outputs)``; with ``return_sequences=True`` it is
    ``(n_samples, n_timesteps[, n_outputs])`` or a list of per-sequence arrays. Parameters
    follow :class:`sklearn.neural_network.MLPRegressor` where one exists.

    Parameters
    ----------{_COMMON_PARAMETERS}{_DEVICE_PARAMETERS}

    Attributes
    ----------{_COMMON_ATTRIBUTES}

    See Also
    --------
    RNNClassifier : The classifier on the same network.
    sklearn.neural_network.MLPRegressor : The feed-forward regressor whose names these are.

    Examples
    --------
    >>> import numpy as np
    >>> from rnnumba import RNNRegressor
    >>> rng = np.random.RandomState(0)
    >>> X = rng.rand(64, 10, 1)
    >>> y = X.sum(axis=(1, 2))
    >>> reg = RNNRegressor(hidden_layer_sizes=(8,), max_iter=20, random_state=0).fit(X, y)
    >>> reg.predict(X[:2]).shape
    (2,)
    """

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def _loss(self):
        return SquaredError()

    def _prepare_targets(self, y, batch, first, classes, incremental, sample_weight):
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
        if first:
            self._y_scaling = None
            if self.scale:
                weights = (sample_weight if mask is None else
                           np.broadcast_to(sample_weight[:, None], mask.shape)[mask])
                self._y_scaling = _standardisation(Y if mask is None else Y[mask], weights)
        if self._y_scaling is not None:
            mean, scale = self._y_scaling
            Y = (Y - mean) / scale
            if mask is not None:
                Y[~mask] = 0.0
        Y = Y.astype(self._network_dtype())
        return Y, (None if mask is None else mask.astype(np.float64)), n_outputs

    def _apply_class_weight(self, weights, target, step_mask, incremental):
        return weights

    def _validation_score(self, model, data):
        pred = model.predict(data.X, data.lengths, _PREDICT_BATCH).astype(np.float64)
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
        check_is_fitted(self, "_model")
        batch = self._validate_X(X, reset=False)
        raw = self._raw_predict(batch)
        if self._y_scaling is not None:
            mean, scale = self._y_scaling
            raw = raw * scale + mean
        if self._arch.return_sequences:
            if self._y_ndim == 2:
                raw = raw[:, :, 0]
            return self._pad_sequences(raw, batch, np.nan)
        if self._y_ndim == 1:
            return raw[:, 0]
        return raw

    def score(self, X, y, sample_weight=None):
        """R² of the predictions (over all valid steps with ``return_sequences``)."""
        if not getattr(self, "_arch", self._architecture()).return_sequences:
            return super().score(X, y, sample_weight=sample_weight)
        check_is_fitted(self, "_model")
        batch = self._validate_X(X, reset=False)
        Y, mask = check_sequence_targets(y, batch, numeric=True)
        pred = self._raw_predict(batch)
        if self._y_scaling is not None:
            pred = pred * self._y_scaling[1] + self._y_scaling[0]
        if Y.ndim == 2:
            Y = Y[:, :, None]
        sw = None
        if sample_weight is not None:
            sw = np.broadcast_to(self._sample_weight(sample_weight, batch)[:, None],
                                 mask.shape)[mask]
        return r2_score(Y[mask], pred[mask], sample_weight=sw)

    def _to_archive(self):
        name, params, fitted, arrays = super()._to_archive()
        fitted["y_ndim"] = self._y_ndim
        return name, params, fitted, arrays

    @classmethod
    def _from_archive(cls, params, fitted, arrays):
        est = super()._from_archive(params, fitted, arrays)
        y_ndim = fitted.get("y_ndim")
        allowed = (2, 3) if est.return_sequences else (1, 2)
        if y_ndim not in allowed:
            raise ValueError(f"fitted y_ndim {y_ndim!r} does not fit return_sequences="
                             f"{est.return_sequences}")
        est._y_ndim = y_ndim
        est._y_scaling = persistence.scaling(arrays, "y", est.n_outputs_)
        return est


class RNNClassifier(ClassifierMixin, TransformerMixin, _BaseRNN):
    __doc__ = f"""Recurrent-network classifier (softmax cross-entropy), one label per
    sequence or per step.

    ``X`` as :class:`RNNRegressor` takes it. Labels may be any sortable type (strings
    too). Parameters follow :class:`sklearn.neural_network.MLPClassifier` where one exists.

    Parameters
    ----------{_COMMON_PARAMETERS}
    class_weight : dict, "balanced" or None, default=None
        Weights of the classes in the loss, as in scikit-learn's linear models
        (``"balanced"`` is not available in ``partial_fit``).{_DEVICE_PARAMETERS}

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The labels, sorted.{_COMMON_ATTRIBUTES}

    See Also
    --------
    RNNRegressor : The regressor on the same network.
    sklearn.neural_network.MLPClassifier : The feed-forward classifier whose names these are.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from rnnumba import RNNClassifier
    >>> digits = load_digits()
    >>> X = digits.images[:200] / 16.0            # 8 steps of 8 features
    >>> clf = RNNClassifier(hidden_layer_sizes=(16,), max_iter=5, random_state=0)
    >>> clf.fit(X, digits.target[:200]).predict(X[:3]).shape
    (3,)
    """

    _parameter_constraints = {
        **_BaseRNN._parameter_constraints,
        "class_weight": [dict, StrOptions({"balanced"}), None],
    }

    def __init__(self, cell="lstm", hidden_layer_sizes=(64,), *, bidirectional="auto",
                 activation="tanh", dropout=0.0, forget_bias=1.0, return_sequences=False,
                 solver="adam", alpha=1e-3, batch_size="auto", learning_rate="adaptive",
                 learning_rate_init=0.003, power_t=0.5, max_iter="auto", shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change="auto", clip_norm=5.0,
                 bptt_steps=None, pooling="max", embedding_dim=None, scale=True,
                 patch_size="auto", class_weight=None, device="auto", dtype="float32"):
        super().__init__(
            cell=cell, hidden_layer_sizes=hidden_layer_sizes, bidirectional=bidirectional,
            activation=activation, dropout=dropout, forget_bias=forget_bias,
            return_sequences=return_sequences, solver=solver, alpha=alpha,
            batch_size=batch_size, learning_rate=learning_rate,
            learning_rate_init=learning_rate_init, power_t=power_t, max_iter=max_iter,
            shuffle=shuffle, random_state=random_state, tol=tol, verbose=verbose,
            warm_start=warm_start, momentum=momentum, nesterovs_momentum=nesterovs_momentum,
            early_stopping=early_stopping, validation_fraction=validation_fraction,
            beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, n_iter_no_change=n_iter_no_change,
            clip_norm=clip_norm, bptt_steps=bptt_steps, pooling=pooling,
            embedding_dim=embedding_dim, scale=scale, patch_size=patch_size, device=device,
            dtype=dtype)
        self.class_weight = class_weight

    def _loss(self):
        return CrossEntropy()

    def _prepare_targets(self, y, batch, first, classes, incremental, sample_weight):
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

    def _validation_score(self, model, data):
        raw = model.predict(data.X, data.lengths, _PREDICT_BATCH)
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
        check_is_fitted(self, "_model")
        batch = self._validate_X(X, reset=False)
        return batch, self._raw_predict(batch)

    def predict_proba(self, X):
        """Class probabilities ``(n_samples, n_classes)``; per step ``(n_samples,
        n_timesteps, n_classes)`` with ``return_sequences`` (NaN past each end; a list for
        ragged-list input)."""
        batch, raw = self._proba(X)
        proba = softmax(raw)
        if self._arch.return_sequences:
            return self._pad_sequences(proba, batch, np.nan)
        return proba

    def predict_log_proba(self, X):
        """Logarithm of :meth:`predict_proba`, computed stably."""
        batch, raw = self._proba(X)
        logp = log_softmax(raw)
        if self._arch.return_sequences:
            return self._pad_sequences(logp, batch, np.nan)
        return logp

    def predict(self, X):
        """Labels ``(n_samples,)``; per step ``(n_samples, n_timesteps)`` with
        ``return_sequences``: an object array with None past each sequence's end, or a list
        of per-sequence label arrays for ragged-list input."""
        batch, raw = self._proba(X)
        labels = self.classes_[raw.argmax(axis=-1)]
        if self._arch.return_sequences:
            if batch.ragged:
                return [labels[i, :length] for i, length in enumerate(batch.lengths)]
            if np.all(batch.lengths == batch.n_timesteps):
                return labels
            return self._pad_sequences(labels.astype(object), batch, None)
        return labels

    def score(self, X, y, sample_weight=None):
        """Accuracy (over all valid steps with ``return_sequences``)."""
        if not getattr(self, "_arch", self._architecture()).return_sequences:
            return super().score(X, y, sample_weight=sample_weight)
        check_is_fitted(self, "_model")
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

    def _to_archive(self):
        name, params, fitted, arrays = super()._to_archive()
        arrays["classes_"] = self.classes_
        if isinstance(params.get("class_weight"), dict):
            params = dict(params, class_weight=persistence.LabelledWeights(
                self.class_weight))
        return name, params, fitted, arrays

    def _classes_from_archive(self, arrays):
        if "classes_" not in arrays:
            raise ValueError("the file holds no classes_ for a classifier")
        self.classes_ = persistence.label_array(arrays["classes_"])
        if len(self.classes_) != self.n_outputs_:
            raise ValueError(f"{len(self.classes_)} classes in the file for "
                             f"{self.n_outputs_} output units")
