"""The training core: one object that trains any :class:`~rnnumba.model.SequenceModel`.

:class:`Trainer` owns everything between the data and the weights: batching and shuffling,
epochs, the loss, the L2 penalty, gradient clipping, the optimizer step, divergence
detection, scikit-learn's MLP stopping rule (no improvement of the training loss, or of a
validation score with ``early_stopping``) with the best weights kept, ``KeyboardInterrupt``
handling and verbose progress. Estimators configure one, call :meth:`Trainer.fit` and read
its results (``n_iter_``, ``loss_curve_``, ...); a new estimator is a new choice of input,
head and loss, not a new loop.

On either device the loop is the same. During a fit the parameters, gradients and
optimizer state stay on the model's device (on a GPU: batches go in, one small array of
statistics per batch comes out, loss, gradient norm and finiteness; the weights come back
once when the fit ends, also when it raises or is interrupted).
"""

import time
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning

__all__ = ["Trainer", "SequenceData", "TrainingDivergedError"]

#: Layout of the per-batch statistics array (4 entries, the last unused): loss, gradient
#: norm, parameters finite.
_LOSS, _NORM, _FINITE = 0, 1, 2


class TrainingDivergedError(FloatingPointError):
    """The training loss, the gradients or the weights became NaN or infinite.

    The model keeps the last finite weights (those before the failing update), and the
    optimizer starts afresh (its moments would hold the non-finite gradients).
    """


class SequenceData:
    """Padded sequences with their targets and weights, batched for a :class:`Trainer`.

    Parameters
    ----------
    X : ndarray of shape (N, T, F), or (N, T) token ids
    lengths : ndarray of shape (N,), int64
    target : ndarray of shape (N, ...) or, per step, (N, T, ...)
    weights : ndarray of shape (N,) or (N, T)
        Effective weights (sample weight times class weight times the step mask).
    sample_weight : ndarray of the shape of ``weights``
        What the loss is normalised by (sample weight times the step mask).
    """

    def __init__(self, X, lengths, target, weights, sample_weight):
        self.X = X
        self.lengths = lengths
        self.target = target
        self.weights = weights
        self.sample_weight = sample_weight

    def __len__(self):
        return self.X.shape[0]

    def take(self, rows):
        """The samples at ``rows`` as a new :class:`SequenceData`."""
        return SequenceData(self.X[rows], self.lengths[rows], self.target[rows],
                            self.weights[rows], self.sample_weight[rows])

    def batch(self, idx, dtype):
        """``(X, lengths, target, weights, normalizer)`` of the samples ``idx``, the time
        axis cut to their longest sequence and ``X`` in ``dtype`` (token ids stay ints)."""
        lengths = self.lengths[idx]
        steps = int(lengths.max())
        X = self.X[idx, :steps]
        X = np.ascontiguousarray(X, dtype=dtype if X.dtype.kind == "f" else X.dtype)
        target, weights, norm_w = self.target[idx], self.weights[idx], self.sample_weight[idx]
        if weights.ndim == 2:  # per step
            target, weights, norm_w = target[:, :steps], weights[:, :steps], norm_w[:, :steps]
        return X, lengths, target, weights, float(norm_w.sum())


class Trainer:
    """Trains a model with a loss and an optimizer, epoch by epoch.

    Parameters
    ----------
    model : SequenceModel
    loss : callable
        A loss of :mod:`rnnumba.losses` (:class:`~rnnumba.losses.SquaredError`,
        :class:`~rnnumba.losses.CrossEntropy`).
    optimizer : SGD or Adam
        Over the model's one flat buffer.
    batch_size : int
    shuffle : bool, default=True
    random_state : numpy.random.RandomState
        Shuffling (dropout masks come from the recurrent stack's own generator).
    alpha : float, default=0.0
        L2 penalty on the weights (not the biases), scikit-learn's MLP convention:
        ``0.5 * alpha * ||W||^2 / normalizer`` added to each batch's loss.
    clip_norm : float or None, default=None
        Scale the gradients of a batch down to this global norm.
    bptt_steps : int or None, default=None
        Truncated BPTT in chunks of this many steps.
    tol : float, default=1e-4
    n_iter_no_change : int, default=10
        Epochs without an improvement of more than ``tol`` before stopping (or, with an
        ``"adaptive"`` learning rate, before the rate is divided by 5).
    early_stopping : bool, default=False
        Judge improvement by the validation score (``fit``'s ``validation`` and
        ``score``) and restore the best weights at the end.
    verbose : bool, default=False
    describe : callable or None, default=None
        ``describe(loss, validation_score)`` returns text added to each verbose progress
        line (a language model's perplexities, say); ``validation_score`` is None without
        ``early_stopping``.

    Attributes
    ----------
    n_iter_, t_, loss_, loss_curve_, best_loss_, validation_scores_,
    best_validation_score_
        As scikit-learn's MLP estimators name them; kept across :meth:`fit` calls
        (``partial_fit``, ``warm_start``).
    """

    def __init__(self, model, loss, optimizer, *, batch_size, shuffle=True, random_state,
                 alpha=0.0, clip_norm=None, bptt_steps=None, tol=1e-4, n_iter_no_change=10,
                 early_stopping=False, verbose=False, describe=None):
        self.model = model
        self.loss = loss
        self.optimizer = optimizer
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.random_state = random_state
        self.alpha = float(alpha)
        self.clip_norm = clip_norm
        self.bptt_steps = bptt_steps
        self.tol = float(tol)
        self.n_iter_no_change = int(n_iter_no_change)
        self.early_stopping = bool(early_stopping)
        self.verbose = verbose
        self.describe = describe
        self.n_iter_ = 0
        self.t_ = 0
        self.loss_ = None
        self.loss_curve_ = []
        if self.early_stopping:
            self.validation_scores_, self.best_validation_score_ = [], -np.inf
            self.best_loss_ = None
        else:
            self.validation_scores_ = self.best_validation_score_ = None
            self.best_loss_ = np.inf
        self._no_improvement_count = 0
        self._best_params = None  # host copy of the best weights so far

    @property
    def best_params(self):
        """Host copy of the weights at the best epoch so far (None before any)."""
        return self._best_params

    def fit(self, train, validation=None, score=None, max_epochs=1, incremental=False):
        """Train for up to ``max_epochs`` epochs (one with ``incremental``).

        ``train`` and ``validation`` are :class:`SequenceData`; ``score(model, data)`` is
        the validation score (higher is better) used with ``early_stopping``. Returns
        whether training stopped by the stopping rule.
        """
        model = self.model
        backend = model.backend
        store = model.store
        store.hold()
        self.optimizer.attach(backend)
        run = _Run(self, backend)
        try:
            model.train(True)
            # overflow is detected and reported (TrainingDivergedError), not warned about
            with backend.compute(), np.errstate(over="ignore", invalid="ignore"):
                return self._epochs(run, train, validation, score, max_epochs, incremental)
        finally:
            model.train(False)
            run.close()
            self.optimizer.release()
            store.release()

    # ------------------------------------------------------------------ the loop
    def _epochs(self, run, train, validation, score, max_epochs, incremental):
        n_samples = len(train)
        order = np.arange(n_samples)
        interrupted = False
        converged = False
        try:
            for _ in range(max_epochs):
                started = time.perf_counter()
                if self.shuffle:
                    order = self.random_state.permutation(n_samples)
                accumulated = total_weight = 0.0
                for start in range(0, n_samples, self.batch_size):
                    X, lengths, target, weights, normalizer = train.batch(
                        order[start:start + self.batch_size], self.model.dtype)
                    if normalizer <= 0.0:
                        continue  # only zero-weight samples: nothing to learn from
                    batch = self.model.prepare(X, lengths, target, weights, normalizer)
                    loss = run.step(batch, start, self.n_iter_ + 1)
                    accumulated += loss * normalizer
                    total_weight += normalizer
                self.n_iter_ += 1
                self.t_ += n_samples
                self.loss_ = accumulated / total_weight if total_weight > 0 else 0.0
                self.loss_curve_.append(self.loss_)
                self._update_no_improvement(run, validation, score)
                if self.verbose:
                    line = f"Iteration {self.n_iter_}, loss = {self.loss_:.8f}"
                    latest = self.validation_scores_[-1] if self.early_stopping else None
                    if latest is not None:
                        line += f", validation score = {latest:.6f}"
                    if self.describe is not None:
                        line += self.describe(self.loss_, latest)
                    print(line + f", time = {time.perf_counter() - started:.2f} s", flush=True)
                self.optimizer.iteration_ends(self.t_)
                if self._no_improvement_count > self.n_iter_no_change:
                    measure = "Validation score" if self.early_stopping else "Training loss"
                    msg = (f"{measure} did not improve more than tol={self.tol:f} for "
                           f"{self.n_iter_no_change} consecutive epochs.")
                    if self.optimizer.trigger_stopping(msg, self.verbose):
                        converged = True
                        break
                    self._no_improvement_count = 0
                if incremental:
                    break
            else:
                if not incremental and max_epochs > 0:
                    warnings.warn(
                        "Stochastic Optimizer: Maximum iterations (%d) reached and the "
                        "optimization hasn't converged yet." % max_epochs, ConvergenceWarning)
        except KeyboardInterrupt:
            interrupted = True
            run.restore_best()
            warnings.warn(
                "Training interrupted by user (KeyboardInterrupt) after %d epoch(s); keeping "
                "the best weights so far." % self.n_iter_, UserWarning)
        if self.early_stopping and not interrupted:
            run.restore_best()
        return converged

    def _update_no_improvement(self, run, validation, score):
        """scikit-learn's MLP rule; keeps the best weights."""
        if self.early_stopping:
            value = score(self.model, validation)
            self.validation_scores_.append(value)
            if value < self.best_validation_score_ + self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if value > self.best_validation_score_:
                self.best_validation_score_ = value
                run.keep_best()
            return
        last = self.loss_curve_[-1]
        if last > self.best_loss_ - self.tol:
            self._no_improvement_count += 1
        else:
            self._no_improvement_count = 0
        if last < self.best_loss_:
            self.best_loss_ = last
            run.keep_best()

    def __getstate__(self):
        return self.__dict__.copy()


class _Run:
    """The device arrays of one :meth:`Trainer.fit`: statistics, the backup of the weights
    before each step, the best weights, the L2 mask."""

    def __init__(self, trainer, backend):
        self.trainer = trainer
        self.backend = backend
        model = trainer.model
        workspace = model.recurrent.workspace()
        store = model.store
        self.params, self.grads = store.device, store.device_grads
        self.stats = workspace.empty("stats", (4,), np.float64)
        self.backup = workspace.empty("backup", self.params.shape, model.dtype)
        self.best = None
        self.mask = None
        if trainer.alpha > 0.0:
            self.mask = workspace.upload("l2_mask", model.weight_mask().astype(model.dtype))

    def step(self, batch, position, epoch):
        """Loss, gradients, L2, clipping and the optimizer step of one batch; returns the
        loss. Raises :class:`TrainingDivergedError` with the last finite weights kept."""
        trainer, optim = self.trainer, self.backend.optim
        self.backend.fill(self.stats, 0.0)
        trainer.model.loss_and_gradients(batch, trainer.loss, self.stats, trainer.bptt_steps)
        if self.mask is not None:
            coef = trainer.alpha / batch.normalizer
            optim.add_l2(self.params, self.grads, self.mask, coef, 0.5 * coef, self.stats)
        optim.clip_grad_norm(self.grads, trainer.clip_norm or 0.0, self.stats)
        optim.copy(self.backup, self.params)
        trainer.optimizer.step([self.params], [self.grads])
        optim.check_finite(self.params, self.stats)
        stats = self.backend.to_host(self.stats)  # the one copy that comes back per batch
        if not (np.isfinite(stats[_LOSS]) and np.isfinite(stats[_NORM])
                and stats[_FINITE] == 1.0):
            optim.copy(self.params, self.backup)
            trainer.optimizer = _fresh(trainer.optimizer, self.backend)
            raise TrainingDivergedError(
                f"training diverged in epoch {epoch} (batch starting at sample {position}): "
                "the loss or the gradients are NaN or infinite. The last finite weights are "
                "kept. Lower learning_rate_init, set clip_norm, or scale the inputs and "
                "targets.")
        return float(stats[_LOSS])

    def keep_best(self):
        if self.best is None:
            self.best = self.trainer.model.recurrent.workspace().empty(
                "best", self.params.shape, self.params.dtype)
        self.backend.optim.copy(self.best, self.params)

    def restore_best(self):
        if self.best is not None:
            self.backend.optim.copy(self.params, self.best)
        elif self.trainer.best_params is not None:
            self.backend.copy_to_device(self.trainer.best_params, self.params)

    def close(self):
        """The best weights come back to the host with the weights, once."""
        if self.best is not None:
            self.trainer._best_params = np.array(self.backend.to_host(self.best))


def _fresh(optimizer, backend):
    """A new optimizer of the same kind and settings, attached to ``backend``."""
    state = optimizer.__getstate__()
    fresh = type(optimizer).__new__(type(optimizer))
    fresh.__dict__.update(state)
    for name in fresh._STATE:
        setattr(fresh, name, [np.zeros(s) for s in fresh.shapes])
    if hasattr(fresh, "t"):
        fresh.t = 0
    fresh.attach(backend)
    return fresh
