"""Optimizers on flat parameter buffers, updated in place on the network's device.

The update rules and learning-rate schedules are scikit-learn's MLP optimizers
(``sklearn.neural_network._stochastic_optimizers``): SGD with (Nesterov) momentum and Adam
with bias correction folded into the step size. The arithmetic of a step is a kernel of
the backend (:mod:`rnnumba.kernels.cpu.optim` and its CUDA twin); this module keeps the
schedule, the step count and the optimizer state (float64, on the host between fits and
on the device during one: :meth:`attach`, :meth:`release`). Parameters are passed to every
:meth:`step` rather than stored, so an optimizer survives pickling next to the network
whose buffers it updates.

Schedules (``lr_schedule``), for both solvers:

- ``"constant"``: ``learning_rate_init`` throughout;
- ``"invscaling"``: ``learning_rate_init / (t + 1) ** power_t`` after each epoch, ``t``
  the number of samples seen so far (as scikit-learn);
- ``"adaptive"``: when the training loss (or validation score) stalls, divide the rate
  by 5 instead of stopping, until it drops to ``1e-6``.
"""

import numpy as np

from .backend import get_backend

__all__ = ["SGD", "Adam", "make_optimizer"]


class _Optimizer:
    #: Names of the per-buffer state lists (float64 arrays of the buffers' shapes).
    _STATE = ()

    def __init__(self, shapes, learning_rate_init, lr_schedule="constant", power_t=0.5):
        if lr_schedule not in ("constant", "invscaling", "adaptive"):
            raise ValueError(f"unknown learning-rate schedule {lr_schedule!r}")
        self.shapes = [tuple(s) for s in shapes]
        self.learning_rate_init = float(learning_rate_init)
        self.learning_rate = float(learning_rate_init)
        self.lr_schedule = lr_schedule
        self.power_t = float(power_t)
        for name in self._STATE:
            setattr(self, name, [np.zeros(s) for s in self.shapes])
        self._backend = None
        self._device_state = None

    def attach(self, backend):
        """Step on ``backend``'s arrays from now on; the state is copied there once."""
        self.release()
        self._backend = backend
        self._device_state = {name: [backend.mirror(a) for a in getattr(self, name)]
                              for name in self._STATE}

    def release(self):
        """Copy the device state back to the host (once) and step on the host again."""
        if self._backend is not None:
            for name, arrays in self._device_state.items():
                for device, host in zip(arrays, getattr(self, name)):
                    self._backend.copy_to_host(device, host)
        self._backend = None
        self._device_state = None

    def _state(self):
        """``(backend, {name: arrays})`` where the next step runs."""
        if self._backend is None:
            return get_backend("cpu"), {name: getattr(self, name) for name in self._STATE}
        return self._backend, self._device_state

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

    def __getstate__(self):
        state = self.__dict__.copy()
        if self._backend is not None:  # pickled during a fit: the device state is current
            for name, arrays in self._device_state.items():
                state[name] = [np.array(self._backend.to_host(a)) for a in arrays]
        state.update(_backend=None, _device_state=None)
        return state


class SGD(_Optimizer):
    """SGD with momentum; Nesterov's variant as scikit-learn writes it::

        v <- momentum * v - lr * g
        p <- p + (momentum * v - lr * g)   if nesterov else   p <- p + v

    Parameters
    ----------
    shapes : list of tuple
        Shapes of the buffers :meth:`step` updates.
    learning_rate_init : float, default=0.1
    lr_schedule : {"constant", "invscaling", "adaptive"}, default="constant"
    momentum : float, default=0.9
    nesterov : bool, default=True
    power_t : float, default=0.5
    """

    _STATE = ("velocities",)

    def __init__(self, shapes, learning_rate_init=0.1, lr_schedule="constant", momentum=0.9,
                 nesterov=True, power_t=0.5):
        super().__init__(shapes, learning_rate_init, lr_schedule, power_t)
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)

    def step(self, params, grads):
        """One update of every buffer in place."""
        self._check(params, grads)
        backend, state = self._state()
        for p, g, v in zip(params, grads, state["velocities"]):
            backend.optim.sgd_step(p, g, v, self.learning_rate, self.momentum, self.nesterov)


class Adam(_Optimizer):
    """Adam (Kingma & Ba) as scikit-learn's MLP::

        m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2
        p <- p - lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)

    The moments are kept in float64 whatever the parameter dtype.

    Parameters
    ----------
    shapes : list of tuple
        Shapes of the buffers :meth:`step` updates.
    learning_rate_init : float, default=0.001
    beta_1, beta_2 : float, default=0.9, 0.999
    epsilon : float, default=1e-8
    lr_schedule : {"constant", "invscaling", "adaptive"}, default="constant"
    power_t : float, default=0.5
    """

    _STATE = ("ms", "vs")

    def __init__(self, shapes, learning_rate_init=0.001, beta_1=0.9, beta_2=0.999,
                 epsilon=1e-8, lr_schedule="constant", power_t=0.5):
        super().__init__(shapes, learning_rate_init, lr_schedule, power_t)
        self.beta_1 = float(beta_1)
        self.beta_2 = float(beta_2)
        self.epsilon = float(epsilon)
        self.t = 0

    def step(self, params, grads):
        """One update of every buffer in place (step number :attr:`t` + 1)."""
        self._check(params, grads)
        self.t += 1
        backend, state = self._state()
        for p, g, m, v in zip(params, grads, state["ms"], state["vs"]):
            backend.optim.adam_step(p, g, m, v, self.t, self.learning_rate, self.beta_1,
                                    self.beta_2, self.epsilon)


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
