"""Heads: what turns the recurrent stack's output into predictions.

- :class:`SequenceHead`: one prediction per sequence, a dense layer on a summary of the
  steps (``pooling``): the last state (forward-last and backward-first when
  bidirectional), the mean or the maximum over the steps, or a learned softmax weighting of
  the steps (``"attention"``).
- :class:`StepHead`: one prediction per step, the same dense layer applied to every step
  (per-step regression and tagging, next-token prediction).

The dense layer is ``torch.nn.Linear``'s: ``weight`` ``(n_out, n_in)``, ``bias`` ``(n_out,)``,
initialised as scikit-learn's MLP initialises its layers (Glorot uniform, bias zero).
Heads run on the backend's arrays and keep what their backward needs.
"""

import numpy as np

from .backend import POOL_MODES as POOLINGS
from .params import ParameterOwner, check_random_state


class _Dense(ParameterOwner):
    """Shared by both heads: the dense layer's parameters, initialisation and L2 mask."""

    def _init_dense(self, n_in, n_out, dtype, random_state, extra=()):
        self.n_in, self.n_out = int(n_in), int(n_out)
        self.dtype = np.dtype(dtype)
        self._own_store([("weight", (self.n_out, self.n_in)), ("bias", (self.n_out,))]
                        + list(extra), self.dtype)
        rng = check_random_state(random_state)
        bound = np.sqrt(6.0 / (self.n_in + self.n_out))
        # drawn (n_in, n_out) as scikit-learn's MLP draws its coefs_
        self.params("host")["weight"][...] = rng.uniform(
            -bound, bound, size=(self.n_in, self.n_out)).T

    def forget(self):
        """Drop what the latest forward kept for a backward (arrays on the device)."""
        self._saved = None

    def __getstate__(self):
        return dict(self.__dict__, _saved=None)

    def weight_mask(self):
        """Per parameter of this head's segment, whether L2 applies (not to biases)."""
        return np.concatenate([np.full(int(np.prod(shape)), name != "bias")
                               for name, shape in self._shapes])


class SequenceHead(_Dense):
    """A dense layer on a summary of each sequence's steps.

    Parameters
    ----------
    n_in : int
        Features per step of the recurrent output (``D * hidden``).
    n_out : int
        Outputs per sequence.
    directions : {1, 2}
        Directions of the recurrent output (``"last"`` takes the reverse direction's first
        step).
    pooling : str, default="last"
        ``"last"``, ``"mean"``, ``"max"`` or ``"attention"``, or several joined by ``"+"``
        (e.g. ``"last+max"``): their summaries side by side, ``n_in`` features each.
    dtype : numpy dtype
    random_state : int, RandomState or None
    """

    def __init__(self, n_in, n_out, directions, pooling="last", dtype=np.float64,
                 random_state=None):
        self.modes = pooling_modes(pooling)
        self.pooling = pooling
        self.directions = int(directions)
        self.n_steps_in = int(n_in)
        extra = [("attention", (int(n_in),))] if "attention" in self.modes else []
        self._init_dense(len(self.modes) * int(n_in), n_out, dtype, random_state, extra)
        self._saved = None

    @property
    def per_step(self):
        return False

    def summarize(self, backend, out, lengths, workspace):
        """The summary of each sequence that the dense layer reads: ``(N, n_in)``, the
        poolings' blocks side by side."""
        steps, n_seq = out.shape[0], out.shape[1]
        width = self.n_steps_in
        self.attach(backend)
        attention = self.params().get("attention")
        if attention is None:
            attention = backend.placeholder(self.dtype, ndim=1)
        features = workspace.empty("features", (n_seq, self.n_in), self.dtype)
        pooled = []
        for k, mode in enumerate(self.modes):
            block = features if len(self.modes) == 1 else workspace.empty(
                f"pooled{k}", (n_seq, width), self.dtype)
            step_weights = workspace.empty(f"step_weights{k}", (steps, n_seq), self.dtype)
            argmax = workspace.empty(f"argmax{k}", (n_seq, width), np.int64)
            backend.layers.pool_forward(POOLINGS[mode], out, lengths, self.directions,
                                        attention, block, step_weights, argmax)
            if block is not features:
                backend.layers.put_columns(block, features, k * width)
            pooled.append((step_weights, argmax))
        self._saved = (out, lengths, features, pooled, attention)
        return features

    def forward(self, backend, out, lengths, workspace):
        """``out`` ``(T, N, n_in)`` time-major -> predictions ``(N, n_out)``."""
        features = self.summarize(backend, out, lengths, workspace)
        params = self.params()
        pred = workspace.empty("pred", (features.shape[0], self.n_out), self.dtype)
        backend.layers.dense_forward(features, params["weight"], params["bias"], pred)
        return pred

    def backward(self, backend, grad_pred, workspace):
        """Add this head's gradients (the caller zeroed them); return the gradient at the
        recurrent output ``(T, N, n_in)``."""
        out, lengths, features, pooled, attention = self._saved
        self._saved = None
        params, grads = self.params(), self.grads()
        grad_features = workspace.empty("grad_features", features.shape, self.dtype)
        backend.layers.dense_backward(features, params["weight"], grad_pred, grads["weight"],
                                      grads["bias"], grad_features)
        grad_attention = grads.get("attention")
        if grad_attention is None:
            grad_attention = attention
        grad_out = workspace.empty("grad_steps", out.shape, self.dtype)
        width = self.n_steps_in
        for k, (mode, (step_weights, argmax)) in enumerate(zip(self.modes, pooled)):
            grad_block, target = grad_features, grad_out
            if len(self.modes) > 1:
                grad_block = workspace.empty(f"grad_pooled{k}", (out.shape[1], width),
                                             self.dtype)
                backend.layers.take_columns(grad_features, k * width, grad_block)
                if k > 0:
                    target = workspace.empty("grad_steps_part", out.shape, self.dtype)
            backend.layers.pool_backward(POOLINGS[mode], out, lengths, self.directions,
                                         attention, step_weights, argmax, grad_block, target,
                                         grad_attention)
            if target is not grad_out:
                backend.optim.accumulate(grad_out.reshape(grad_out.size),
                                         target.reshape(target.size))
        return grad_out


def pooling_modes(pooling):
    """The poolings named by ``pooling`` (``"last"``, ``"mean"``, ``"max"``,
    ``"attention"``, or several joined by ``"+"``), each once; else a ``ValueError``."""
    modes = pooling.split("+") if isinstance(pooling, str) else [pooling]
    if (not modes or any(mode not in POOLINGS for mode in modes)
            or len(set(modes)) != len(modes)):
        raise ValueError(f"pooling must be one of {sorted(POOLINGS)} or several of them "
                         f"joined by '+', each once, got {pooling!r}")
    return modes


class StepHead(_Dense):
    """The same dense layer on every step.

    Parameters
    ----------
    n_in : int
        Features per step of the recurrent output.
    n_out : int
        Outputs per step.
    dtype : numpy dtype
    random_state : int, RandomState or None
    """

    def __init__(self, n_in, n_out, dtype=np.float64, random_state=None):
        self._init_dense(n_in, n_out, dtype, random_state)
        self._saved = None

    @property
    def per_step(self):
        return True

    def summarize(self, backend, out, lengths, workspace):
        """What the dense layer reads: every step's output, as it is."""
        return out

    def forward(self, backend, out, lengths, workspace):
        """``out`` ``(T, N, n_in)`` time-major -> predictions ``(T, N, n_out)``."""
        steps, n_seq = out.shape[0], out.shape[1]
        self.attach(backend)
        params = self.params()
        pred = workspace.empty("pred", (steps, n_seq, self.n_out), self.dtype)
        backend.layers.dense_forward(_rows(out), params["weight"], params["bias"], _rows(pred))
        self._saved = out
        return pred

    def backward(self, backend, grad_pred, workspace):
        out = self._saved
        self._saved = None
        params, grads = self.params(), self.grads()
        grad_out = workspace.empty("grad_steps", out.shape, self.dtype)
        backend.layers.dense_backward(_rows(out), params["weight"], _rows(grad_pred),
                                      grads["weight"], grads["bias"], _rows(grad_out))
        return grad_out


def _rows(array):
    """A C-contiguous ``(T, N, K)`` array as ``(T*N, K)`` rows."""
    return array.reshape(array.shape[0] * array.shape[1], array.shape[2])
