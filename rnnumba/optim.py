"""Optimizers on flat parameter buffers, updated in place.

The update rules and learning-rate schedules are scikit-learn's MLP optimizers
(``sklearn.neural_network._stochastic_optimizers``): SGD with (Nesterov) momentum and Adam
with bias correction folded into the step size. Parameters are passed to every
:meth:`step` rather than stored, so an optimizer survives pickling next to the network
whose buffers it updates (a stored reference would become a detached copy).

Schedules (``lr_schedule``), for both solvers:

- ``"constant"``: ``learning_rate_init`` throughout;
- ``"invscaling"``: ``learning_rate_init / (t + 1) ** power_t`` after each epoch, ``t``
  the number of samples seen so far (as scikit-learn);
- ``"adaptive"``: when the training loss (or validation score) stalls, divide the rate
  by 5 instead of stopping, until it drops to ``1e-6``.
"""

import numpy as np

__all__ = ["SGD", "Adam", "global_norm", "clip_grad_norm", "make_optimizer"]


def global_norm(grads):
    """Euclidean norm over a list of arrays (float)."""
    total = 0.0
    for g in grads:
        # einsum, not np.dot: a BLAS call per buffer costs more than the sum itself
        total += float(np.einsum("i,i->", g, g, dtype=np.float64))
    return float(np.sqrt(total))


def clip_grad_norm(grads, max_norm):
    """Scale ``grads`` in place so that their global norm is at most ``max_norm``.

    Returns the norm before clipping. ``max_norm=None`` only measures. A non-finite norm
    leaves the gradients untouched (the caller decides what divergence means).
    """
    norm = global_norm(grads)
    if max_norm is not None and np.isfinite(norm) and norm > max_norm:
        scale = max_norm / (norm + 1e-12)
        for g in grads:
            g *= scale
    return norm


class _Optimizer:
    def __init__(self, shapes, learning_rate_init, lr_schedule="constant", power_t=0.5):
        if lr_schedule not in ("constant", "invscaling", "adaptive"):
            raise ValueError(f"unknown learning-rate schedule {lr_schedule!r}")
        self.shapes = [tuple(s) for s in shapes]
        self.learning_rate_init = float(learning_rate_init)
        self.learning_rate = float(learning_rate_init)
        self.lr_schedule = lr_schedule
        self.power_t = float(power_t)

    def _check(self, params, grads):
        if len(params) != len(self.shapes) or len(grads) != len(self.shapes):
            raise ValueError("params and grads must match the optimizer's buffers")

    def iteration_ends(self, time_step):
        """End of an epoch; ``time_step`` is the number of samples seen so far."""
        if self.lr_schedule == "invscaling":
            self.learning_rate = self.learning_rate_init / (time_step + 1) ** self.power_t

    def trigger_stopping(self, msg, verbose):
        """Whether training should stop after a stall (``adaptive`` lowers the rate)."""
        if self.lr_schedule != "adaptive":
            if verbose:
                print(msg + " Stopping.")
            return True
        if self.learning_rate <= 1e-6:
            if verbose:
                print(msg + " Learning rate too small. Stopping.")
            return True
        self.learning_rate /= 5.0
        if verbose:
            print(msg + " Setting learning rate to %f" % self.learning_rate)
        return False


class SGD(_Optimizer):
    """SGD with momentum; Nesterov's variant as scikit-learn writes it::

        v <- momentum * v - lr * g
        p <- p + (momentum * v - lr * g)   if nesterov else   p <- p + v
    """

    def __init__(self, shapes, learning_rate_init=0.1, lr_schedule="constant", momentum=0.9,
                 nesterov=True, power_t=0.5):
        super().__init__(shapes, learning_rate_init, lr_schedule, power_t)
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)
        self.velocities = [np.zeros(s) for s in self.shapes]

    def step(self, params, grads):
        self._check(params, grads)
        self._update(params, grads, range(len(params)))

    def _update(self, params, grads, which):
        """The update of the buffers at the indices ``which`` (the others are untouched)."""
        lr, mu = self.learning_rate, self.momentum
        for i in which:
            p, g, v = params[i], grads[i], self.velocities[i]
            v *= mu
            v -= lr * g
            if self.nesterov:
                p += (mu * v - lr * g).astype(p.dtype, copy=False)
            else:
                p += v.astype(p.dtype, copy=False)


class Adam(_Optimizer):
    """Adam (Kingma & Ba) as scikit-learn's MLP::

        m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2
        p <- p - lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)

    The moments are kept in float64 whatever the parameter dtype.
    """

    def __init__(self, shapes, learning_rate_init=0.001, beta_1=0.9, beta_2=0.999,
                 epsilon=1e-8, lr_schedule="constant", power_t=0.5):
        super().__init__(shapes, learning_rate_init, lr_schedule, power_t)
        self.beta_1 = float(beta_1)
        self.beta_2 = float(beta_2)
        self.epsilon = float(epsilon)
        self.t = 0
        self.ms = [np.zeros(s) for s in self.shapes]
        self.vs = [np.zeros(s) for s in self.shapes]

    def step(self, params, grads):
        self._check(params, grads)
        self.t += 1
        self._update(params, grads, range(len(params)))

    def _update(self, params, grads, which):
        """Step number :attr:`t` (already counted) of the buffers at the indices ``which``."""
        b1, b2 = self.beta_1, self.beta_2
        step = self.learning_rate * np.sqrt(1.0 - b2 ** self.t) / (1.0 - b1 ** self.t)
        for i in which:
            p, g, m, v = params[i], grads[i], self.ms[i], self.vs[i]
            m *= b1
            m += (1.0 - b1) * g
            v *= b2
            v += (1.0 - b2) * np.square(g, dtype=np.float64)
            update = m / (np.sqrt(v) + self.epsilon)
            update *= step
            p -= update.astype(p.dtype, copy=False)


def make_optimizer(solver, shapes, *, learning_rate_init, learning_rate="constant",
                   power_t=0.5, momentum=0.9, nesterovs_momentum=True, beta_1=0.9,
                   beta_2=0.999, epsilon=1e-8):
    """Build the optimizer for an estimator's ``solver`` and hyper-parameters."""
    if solver == "sgd":
        return SGD(shapes, learning_rate_init, learning_rate, momentum, nesterovs_momentum,
                   power_t)
    if solver == "adam":
        return Adam(shapes, learning_rate_init, beta_1, beta_2, epsilon, learning_rate,
                    power_t)
    raise ValueError(f"unknown solver {solver!r}")
