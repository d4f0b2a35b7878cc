"""Output head and losses: a dense layer on the recurrent features, squared error and
softmax cross-entropy, with per-element weights and an explicit normaliser.

Every loss returns ``(loss, grad)`` where ``grad`` is the gradient of ``loss`` with respect
to the predictions (or logits). Weights broadcast over the leading axes of the predictions
(one weight per sample, or per sample and step); the loss is ``sum(weight * loss_i) /
normalizer`` so that weighting a sample by ``k`` is the same as repeating it ``k`` times.
"""

import numpy as np

__all__ = ["DenseHead", "squared_error", "softmax", "log_softmax",
           "softmax_cross_entropy"]


class DenseHead:
    """``Z = H @ W + b`` with ``W`` (n_in, n_out), ``b`` (n_out,) views of ``flat_params``.

    Initialised as scikit-learn's MLP initialises its layers (Glorot uniform, bound
    ``sqrt(6 / (n_in + n_out))``), biases zero.
    """

    def __init__(self, n_in, n_out, dtype=np.float64, random_state=None):
        self.n_in = int(n_in)
        self.n_out = int(n_out)
        self.dtype = np.dtype(dtype)
        self.flat_params = np.zeros(self.n_in * self.n_out + self.n_out, dtype=self.dtype)
        self.flat_grads = np.zeros_like(self.flat_params)
        self._bind_views()
        if random_state is not None:
            bound = np.sqrt(6.0 / (self.n_in + self.n_out))
            self.W[...] = random_state.uniform(-bound, bound, size=(self.n_in, self.n_out))

    def _bind_views(self):
        k = self.n_in * self.n_out
        self.W = self.flat_params[:k].reshape(self.n_in, self.n_out)
        self.b = self.flat_params[k:]
        self.grad_W = self.flat_grads[:k].reshape(self.n_in, self.n_out)
        self.grad_b = self.flat_grads[k:]

    @property
    def weight_mask(self):
        """Boolean mask over ``flat_params``: True for ``W``, False for ``b`` (L2 target)."""
        mask = np.zeros(self.flat_params.size, dtype=bool)
        mask[:self.n_in * self.n_out] = True
        return mask

    def forward(self, H):
        """``H`` (..., n_in) -> (..., n_out)."""
        Z = H @ self.W
        Z += self.b
        return Z

    def backward(self, H, dZ):
        """Fill ``flat_grads`` from input ``H`` and ``dZ``; return ``dH``."""
        H2 = H.reshape(-1, self.n_in)
        dZ2 = dZ.reshape(-1, self.n_out)
        self.grad_W[...] = H2.T @ dZ2
        self.grad_b[...] = dZ2.sum(axis=0)
        return dZ @ self.W.T

    def __getstate__(self):
        state = self.__dict__.copy()
        for view in ("W", "b", "grad_W", "grad_b"):
            state.pop(view, None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._bind_views()


def _expand(weights, ndim):
    return weights.reshape(weights.shape + (1,) * (ndim - weights.ndim))


def squared_error(y_pred, y_true, weights, normalizer):
    """Half mean squared error over outputs, weighted over leading axes.

    ``loss = sum_i w_i * 0.5 * mean_o (p_io - y_io)^2 / normalizer`` (scikit-learn's MLP
    ``squared_loss`` when the weights are ones and ``normalizer = n``).
    """
    n_outputs = y_pred.shape[-1]
    diff = y_pred - y_true
    w = _expand(weights, diff.ndim)
    per = 0.5 * np.sum(diff * diff, axis=-1) / n_outputs
    loss = float(np.sum(weights * per) / normalizer)
    grad = (w / (n_outputs * normalizer)) * diff
    return loss, grad.astype(y_pred.dtype, copy=False)


def log_softmax(z):
    """Numerically stable ``log(softmax(z))`` along the last axis."""
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def softmax(z):
    """Softmax along the last axis."""
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def softmax_cross_entropy(logits, labels, weights, normalizer):
    """Cross-entropy of ``softmax(logits)`` against integer ``labels`` (same leading shape).

    ``loss = -sum_i w_i log p_i[label_i] / normalizer``; the gradient with respect to the
    logits is ``w_i (p_i - onehot_i) / normalizer``. Entries with weight 0 may carry any
    label in range.
    """
    n_classes = logits.shape[-1]
    z = logits.reshape(-1, n_classes)
    rows = np.arange(z.shape[0])
    flat_labels = labels.reshape(-1)
    w = weights.reshape(-1)
    grad = z - z.max(axis=1, keepdims=True)
    np.exp(grad, out=grad)
    total = grad.sum(axis=1)
    grad /= total[:, None]                          # softmax
    picked = grad[rows, flat_labels]                # p[label]
    with np.errstate(divide="ignore"):
        logp_picked = np.log(picked)
    # log p[label] computed stably where p underflows to 0
    small = picked < 1e-300
    if small.any():
        stable = log_softmax(z[small])
        logp_picked[small] = stable[np.arange(stable.shape[0]), flat_labels[small]]
    loss = float(-np.dot(w, logp_picked) / normalizer) if w.size else 0.0
    grad[rows, flat_labels] -= 1.0
    grad *= (w / normalizer)[:, None]
    grad = grad.reshape(logits.shape)
    return loss, grad.astype(logits.dtype, copy=False)
