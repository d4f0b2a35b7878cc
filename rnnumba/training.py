"""The network the estimators train, and the epoch loop that trains it.

:class:`SequenceNetwork` is a chain of single-layer :class:`~rnnumba.recurrent.Recurrent`
blocks (one per entry of ``hidden_layer_sizes``, so stacked layers may differ in width),
inverted dropout between them, and a :class:`~rnnumba.losses.DenseHead` on either the last
state of every sequence (forward-last with backward-first when bidirectional) or the output
at every step (``return_sequences``).

:func:`run_epochs` does batching, shuffling, the no-improvement/early-stopping rule of
scikit-learn's MLP with best-weight restore, verbose progress, ``KeyboardInterrupt``
handling and divergence detection. Truncated BPTT (``bptt_steps``) runs each batch in
chunks of that many steps, carrying the state forward and cutting the gradient at chunk
boundaries; gradients are accumulated over the chunks and the batch takes one step.
"""

import time
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from .kernels.cpu import single_threaded_blas
from .losses import DenseHead
from .optim import clip_grad_norm
from .params import parameter_shapes
from .recurrent import Recurrent

__all__ = ["SequenceNetwork", "TrainingData", "TrainingDivergedError", "run_epochs"]


class TrainingDivergedError(FloatingPointError):
    """The training loss or the gradients became NaN or infinite.

    The estimator keeps the last finite weights (those before the failing update).
    """


class SequenceNetwork:
    """Recurrent layers + dropout + dense head, on flat parameter buffers.

    ``loss_fn(pred, target, weights, normalizer) -> (loss, grad)`` is one of
    :mod:`rnnumba.losses`; targets are per sequence ``(N, ...)`` or per step ``(N, T, ...)``
    with ``return_sequences``.
    """

    def __init__(self, cell, n_features, hidden_layer_sizes, n_outputs, *, bidirectional=False,
                 activation="tanh", dropout=0.0, return_sequences=False, dtype="float64",
                 device="cpu", random_state=None):
        rng = random_state
        self.cell = cell
        self.return_sequences = bool(return_sequences)
        self.dropout = float(dropout)
        self.dtype = np.dtype(dtype)
        self.directions = 2 if bidirectional else 1
        self.layers = []
        n_in = n_features
        for size in hidden_layer_sizes:
            self.layers.append(Recurrent(
                cell=cell, input_size=int(n_in), hidden_size=int(size), num_layers=1,
                bidirectional=bool(bidirectional), nonlinearity=activation, dropout=0.0,
                dtype=self.dtype.name, device=device,
                random_state=int(rng.randint(np.iinfo(np.int32).max))))
            n_in = self.directions * int(size)
        self.head = DenseHead(n_in, n_outputs, dtype=self.dtype, random_state=rng)
        self._dropout_rng = np.random.RandomState(rng.randint(np.iinfo(np.int32).max))
        self.training = False
        self._device_session = None  # set while run_epochs trains on the device

    @property
    def device(self):
        """``"cpu"`` or ``"cuda"``: where the recurrent layers run."""
        return self.layers[0].device

    # ------------------------------------------------------------------ buffers
    @property
    def params(self):
        return [layer.flat_params for layer in self.layers] + [self.head.flat_params]

    @property
    def grads(self):
        return [layer.flat_grads for layer in self.layers] + [self.head.flat_grads]

    def weight_masks(self):
        """Per buffer, True where L2 applies (weight matrices, not biases)."""
        masks = []
        for layer in self.layers:
            shapes = parameter_shapes(layer.cell, layer.input_size, layer.hidden_size,
                                      layer.num_layers, layer.bidirectional)
            parts = [np.full(int(np.prod(shape)), not name.startswith("bias"))
                     for name, shape in shapes]
            masks.append(np.concatenate(parts))
        masks.append(self.head.weight_mask)
        return masks

    def get_weights(self):
        if getattr(self, "_device_session", None) is not None:
            return self._device_session.get_weights()  # device copies during a CUDA fit
        return [p.copy() for p in self.params]

    def set_weights(self, weights):
        if getattr(self, "_device_session", None) is not None:
            return self._device_session.set_weights(weights)
        for p, w in zip(self.params, weights):
            p[...] = w

    def to_device(self, device):
        """Run the recurrent layers on ``device`` ("cpu" or "cuda"; host weights are kept)."""
        for layer in self.layers:
            layer.device = device
            layer._activations = None
        return self

    def train(self, mode=True):
        self.training = bool(mode)
        for layer in self.layers:
            layer.train(mode)
        return self

    # ------------------------------------------------------------------ forward
    def _last_state(self, layer, h_n):
        n, h = h_n.shape[1], layer.hidden_size
        return np.ascontiguousarray(h_n.reshape(1, self.directions, n, h)[-1]
                                    .transpose(1, 0, 2).reshape(n, self.directions * h))

    def forward(self, X, lengths, states=None):
        """Return ``(prediction, new_states)``; keeps what :meth:`backward` needs."""
        inputs, masks, new_states = [], [], []
        x = X
        n_layers = len(self.layers)
        for i, layer in enumerate(self.layers):
            hx = None if states is None else states[i]
            out, state = layer._forward_unchecked(x, lengths, hx)
            new_states.append(state)
            inputs.append(x)
            mask = None
            if i < n_layers - 1 and self.training and self.dropout > 0.0:
                keep = 1.0 - self.dropout
                mask = (self._dropout_rng.random_sample(out.shape) < keep).astype(
                    self.dtype) / keep
                out = out * mask
            masks.append(mask)
            x = out
        if self.return_sequences:
            features = x
        else:
            h_n = new_states[-1][0] if self.cell == "lstm" else new_states[-1]
            features = self._last_state(self.layers[-1], h_n)
        self._cache = (masks, features, X.shape[1])
        return self.head.forward(features), new_states

    def backward(self, grad_pred):
        """Fill every buffer's gradient from ``d loss / d prediction``."""
        masks, features, steps = self._cache
        grad_features = self.head.backward(features, grad_pred)
        last = self.layers[-1]
        n = features.shape[0]
        for i in reversed(range(len(self.layers))):
            layer = self.layers[i]
            h, d = layer.hidden_size, self.directions
            state_shape = (d, n, h)
            grad_h_n = np.zeros(state_shape, dtype=self.dtype)
            if layer is last and not self.return_sequences:
                grad_output = np.zeros((n, steps, d * h), dtype=self.dtype)
                grad_h_n[...] = grad_features.reshape(n, d, h).transpose(1, 0, 2)
            else:
                grad_output = np.ascontiguousarray(grad_features, dtype=self.dtype)
            grad_c_n = np.zeros(state_shape, dtype=self.dtype) if self.cell == "lstm" else None
            result = layer._backward_unchecked(grad_output, grad_h_n, grad_c_n,
                                               need_input_grad=i > 0)
            if i > 0:
                grad_features = result["input"]
                if masks[i - 1] is not None:
                    grad_features = grad_features * masks[i - 1]

    def predict(self, X, lengths, batch_size=1024):
        """Raw outputs (N, n_outputs) or (N, T, n_outputs) in evaluation mode."""
        was_training = self.training
        self.train(False)
        try:
            with single_threaded_blas():
                return self._predict(X, lengths, batch_size)
        finally:
            self.train(was_training)

    def _predict(self, X, lengths, batch_size):
        parts = []
        for start in range(0, X.shape[0], batch_size):
            stop = min(start + batch_size, X.shape[0])
            lb = lengths[start:stop]
            steps = int(lb.max())
            xb = np.ascontiguousarray(X[start:stop, :steps], dtype=self.dtype)
            out, _ = self.forward(xb, lb)
            if self.return_sequences and steps < X.shape[1]:
                full = np.zeros((stop - start, X.shape[1], out.shape[2]), dtype=out.dtype)
                full[:, :steps] = out
                out = full
            parts.append(out)
        self._cache = None
        for layer in self.layers:
            layer._activations = None
        return np.concatenate(parts, axis=0)

    # ------------------------------------------------------------------ training step
    def loss_and_gradients(self, X, lengths, target, weights, normalizer, loss_fn,
                           bptt_steps=None):
        """Loss of a batch and the gradients (in :attr:`grads`), truncated BPTT optional."""
        steps = X.shape[1]
        if bptt_steps is None or bptt_steps >= steps:
            pred, _ = self.forward(X, lengths)
            loss, grad = loss_fn(pred, target, weights, normalizer)
            self.backward(grad)
            return loss
        total = 0.0
        accumulated = None
        for loss in self.truncated_chunks(X, lengths, target, weights, normalizer, loss_fn,
                                          bptt_steps):
            total += loss
            if accumulated is None:
                accumulated = [g.copy() for g in self.grads]
            else:
                for acc, g in zip(accumulated, self.grads):
                    acc += g
        for g, acc in zip(self.grads, accumulated):
            g[...] = acc
        return total

    def truncated_chunks(self, X, lengths, target, weights, normalizer, loss_fn, bptt_steps):
        """Truncated BPTT: run forward and backward over chunks of ``bptt_steps`` steps,
        carrying the state between chunks, and yield each chunk's loss once its gradients
        are in :attr:`grads` (the caller accumulates them)."""
        states = None
        for start in range(0, X.shape[1], bptt_steps):
            stop = min(start + bptt_steps, X.shape[1])
            lc = np.clip(lengths - start, 0, stop - start).astype(np.int64)
            xc = np.ascontiguousarray(X[:, start:stop])
            pred, states = self.forward(xc, lc, states)
            states = [tuple(s.copy() for s in st) if isinstance(st, tuple) else st.copy()
                      for st in states]
            if self.return_sequences:
                tc, wc = target[:, start:stop], weights[:, start:stop]
            else:
                ends = (lengths > start) & (lengths <= stop)
                if not ends.any():
                    continue
                tc, wc = target, weights * ends
            loss, grad = loss_fn(pred, tc, wc, normalizer)
            self.backward(grad)
            yield loss

    def __getstate__(self):
        state = self.__dict__.copy()
        state.pop("_cache", None)
        state["_device_session"] = None
        return state


class TrainingData:
    """Padded sequences with their targets and per-sample (or per-step) weights."""

    def __init__(self, X, lengths, target, weights, sample_weight):
        self.X = X
        self.lengths = lengths
        self.target = target
        self.weights = weights              # effective: sample x class x step mask
        self.sample_weight = sample_weight  # normaliser source: sample (x step mask)

    def __len__(self):
        return self.X.shape[0]

    def batch(self, idx, dtype):
        lengths = self.lengths[idx]
        steps = int(lengths.max())
        X = np.ascontiguousarray(self.X[idx, :steps], dtype=dtype)
        target = self.target[idx]
        weights = self.weights[idx]
        norm_w = self.sample_weight[idx]
        if weights.ndim == 2:  # per step
            target, weights, norm_w = target[:, :steps], weights[:, :steps], norm_w[:, :steps]
        return X, lengths, target, weights, float(norm_w.sum())


def _format_time(seconds):
    return f"{seconds:.2f} s"


def run_epochs(est, net, optimizer, train_data, val_data, *, loss_fn, score_fn, max_iter,
               batch_size, shuffle, rng, alpha, clip_norm, bptt_steps, tol, n_iter_no_change,
               early_stopping, verbose, incremental):
    """Train ``net`` for up to ``max_iter`` epochs (one with ``incremental``).

    Updates the estimator's fitted attributes in place: ``n_iter_``, ``t_``, ``loss_``,
    ``loss_curve_``, ``best_loss_``, ``validation_scores_``, ``best_validation_score_``
    and the private ``_no_improvement_count``/``_best_weights``.
    """
    n_samples = len(train_data)
    sample_idx = np.arange(n_samples)
    session = None
    if net.device == "cuda":
        # Parameters, gradients and optimizer state live on the device until the session
        # closes (see rnnumba._cuda_training); the host buffers are synced once at the end.
        from ._cuda_training import DeviceSession
        session = DeviceSession(net, optimizer)
        params = grads = masks = backup = None
    else:
        params, grads = net.params, net.grads
        masks = [m.astype(p.dtype) for m, p in zip(net.weight_masks(), params)]
        backup = [p.copy() for p in params]
    try:
        net.train(True)
        # overflow is detected and reported below (TrainingDivergedError), not warned about
        with single_threaded_blas(), np.errstate(over="ignore", invalid="ignore"):
            return _epochs(est, net, optimizer, train_data, val_data, loss_fn, score_fn,
                           max_iter, batch_size, shuffle, rng, alpha, clip_norm, bptt_steps,
                           tol, n_iter_no_change, early_stopping, verbose, incremental, params,
                           grads, masks, backup, sample_idx, n_samples, session)
    finally:
        if session is not None:
            session.close(est)


def _epochs(est, net, optimizer, train_data, val_data, loss_fn, score_fn, max_iter, batch_size,
            shuffle, rng, alpha, clip_norm, bptt_steps, tol, n_iter_no_change, early_stopping,
            verbose, incremental, params, grads, masks, backup, sample_idx, n_samples,
            session=None):
    stopped_reason = None
    converged = False
    try:
        for _ in range(max_iter):
            t0 = time.perf_counter()
            if shuffle:
                sample_idx = rng.permutation(n_samples)
            accumulated = 0.0
            total_norm = 0.0
            for start in range(0, n_samples, batch_size):
                idx = sample_idx[start:start + batch_size]
                X, lengths, target, weights, normalizer = train_data.batch(idx, net.dtype)
                if normalizer <= 0.0:
                    continue  # only zero-weight samples: nothing to learn from
                if session is not None:
                    loss = session.train_step(
                        est, X, lengths, target, weights, normalizer, loss_fn, bptt_steps,
                        alpha, clip_norm, start,
                        lambda saved, at=start: _diverged(est, net, saved, at))
                    accumulated += loss * normalizer
                    total_norm += normalizer
                    continue
                loss = net.loss_and_gradients(X, lengths, target, weights, normalizer,
                                              loss_fn, bptt_steps)
                if alpha > 0.0:
                    penalty = 0.0
                    for p, g, m in zip(params, grads, masks):
                        pm = p * m
                        penalty += float(np.einsum("i,i->", pm, pm, dtype=np.float64))
                        pm *= alpha / normalizer
                        g += pm
                    loss += 0.5 * alpha * penalty / normalizer
                norm = clip_grad_norm(grads, clip_norm)
                if not (np.isfinite(loss) and np.isfinite(norm)):
                    _diverged(est, net, None, start)  # current weights are still finite
                for b, p in zip(backup, params):
                    b[...] = p
                optimizer.step(params, grads)
                if not np.isfinite(sum(float(np.einsum("i->", p)) for p in params)):
                    _diverged(est, net, backup, start)
                accumulated += loss * normalizer
                total_norm += normalizer
            est.n_iter_ += 1
            est.t_ += n_samples
            est.loss_ = accumulated / total_norm if total_norm > 0 else 0.0
            est.loss_curve_.append(est.loss_)
            _update_no_improvement(est, net, val_data, score_fn, tol, early_stopping)
            elapsed = time.perf_counter() - t0
            if verbose:
                line = f"Iteration {est.n_iter_}, loss = {est.loss_:.8f}"
                if early_stopping:
                    line += f", validation score = {est.validation_scores_[-1]:.6f}"
                print(line + f", time = {_format_time(elapsed)}", flush=True)
            optimizer.iteration_ends(est.t_)
            if est._no_improvement_count > n_iter_no_change:
                if early_stopping:
                    msg = ("Validation score did not improve more than tol=%f for %d "
                           "consecutive epochs." % (tol, n_iter_no_change))
                else:
                    msg = ("Training loss did not improve more than tol=%f for %d "
                           "consecutive epochs." % (tol, n_iter_no_change))
                if optimizer.trigger_stopping(msg, verbose):
                    converged = True
                    break
                est._no_improvement_count = 0
            if incremental:
                break
        else:
            if not incremental and max_iter > 0:
                warnings.warn(
                    "Stochastic Optimizer: Maximum iterations (%d) reached and the "
                    "optimization hasn't converged yet." % max_iter, ConvergenceWarning)
    except KeyboardInterrupt:
        stopped_reason = "interrupted"
        if est._best_weights is not None:
            net.set_weights(est._best_weights)
        warnings.warn(
            "Training interrupted by user (KeyboardInterrupt) after %d epoch(s); keeping the "
            "best weights so far." % est.n_iter_, UserWarning)
    finally:
        net.train(False)
    if early_stopping and stopped_reason is None and est._best_weights is not None:
        net.set_weights(est._best_weights)
    return converged


def _diverged(est, net, backup, position):
    if backup is not None:
        net.set_weights(backup)
    net.train(False)
    raise TrainingDivergedError(
        f"training diverged in epoch {est.n_iter_ + 1} (batch starting at sample {position}): "
        "the loss or the gradients are NaN or infinite. The last finite weights are kept. "
        "Lower learning_rate_init, set clip_norm, or scale the inputs and targets.")


def _update_no_improvement(est, net, val_data, score_fn, tol, early_stopping):
    """scikit-learn's MLP rule; snapshots the best weights. Returns whether it improved."""
    if early_stopping:
        score = score_fn(val_data)
        est.validation_scores_.append(score)
        if score < est.best_validation_score_ + tol:
            est._no_improvement_count += 1
        else:
            est._no_improvement_count = 0
        if score > est.best_validation_score_:
            est.best_validation_score_ = score
            est._best_weights = net.get_weights()
            return True
        return False
    last = est.loss_curve_[-1]
    if last > est.best_loss_ - tol:
        est._no_improvement_count += 1
    else:
        est._no_improvement_count = 0
    if last < est.best_loss_:
        est.best_loss_ = last
        est._best_weights = net.get_weights()
        return True
    return False
