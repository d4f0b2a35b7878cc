"""Input layers: what turns a batch's inputs into the recurrent stack's ``(T, N, F)`` steps.

- :class:`NumericInput`: numeric features per step, passed through (no parameters).
- :class:`EmbeddingInput`: integer tokens looked up in a learned ``(vocabulary, dim)``
  table, as ``torch.nn.Embedding``; its backward sums each token's gradients in a fixed
  order (the same bits on every run and thread count).

An input layer prepares a host batch for its device (:meth:`prepare`: time-major arrays,
and for embeddings the grouping of positions by token that the backward needs), then runs
:meth:`forward` and :meth:`backward` on the backend's arrays.
"""

import numpy as np

from .params import ParameterOwner, check_random_state


class NumericInput(ParameterOwner):
    """Numeric features per step, passed to the recurrent stack as they are.

    Parameters
    ----------
    n_features : int
        Features per step.
    dtype : numpy dtype
    """

    def __init__(self, n_features, dtype):
        self.n_features = int(n_features)
        self.dtype = np.dtype(dtype)
        self._own_store([], self.dtype)

    @property
    def output_size(self):
        return self.n_features

    @property
    def needs_input_gradient(self):
        """Whether :meth:`backward` needs the gradient at the recurrent input (no: nothing to
        learn here)."""
        return False

    def prepare(self, backend, workspace, X, lengths):
        """Host ``X`` ``(N, T, F)`` of the network dtype as the kernels take it: the
        time-major view on the CPU (not copied), an upload of the time-major copy on a
        device."""
        if backend.name == "cpu":
            return backend.time_major(X)
        return workspace.upload("x", np.ascontiguousarray(X.transpose(1, 0, 2)))

    def forward(self, backend, x, workspace):
        return x

    def backward(self, backend, x, grad_steps, workspace):
        """Nothing to learn."""


class EmbeddingInput(ParameterOwner):
    """Integer tokens looked up in a learned table, as ``torch.nn.Embedding``.

    Parameters
    ----------
    vocabulary_size : int
        Number of token ids (``0..vocabulary_size-1``).
    dim : int
        Features per token.
    dtype : numpy dtype
    random_state : int, RandomState or None
        Seeds the initialisation: standard normal, as PyTorch's.
    """

    def __init__(self, vocabulary_size, dim, dtype, random_state=None):
        self.vocabulary_size = int(vocabulary_size)
        self.dim = int(dim)
        self.dtype = np.dtype(dtype)
        self._own_store([("weight", (self.vocabulary_size, self.dim))], self.dtype)
        rng = check_random_state(random_state)
        self.params("host")["weight"][...] = rng.standard_normal(
            (self.vocabulary_size, self.dim))

    @property
    def output_size(self):
        return self.dim

    @property
    def needs_input_gradient(self):
        return True

    def prepare(self, backend, workspace, ids, lengths):
        """Host token ids ``(N, T)`` (validated by the caller, padding positions any valid id)
        as time-major device ids, with the grouping of the active positions by token that
        :meth:`backward` sums in (:func:`embedding_index`)."""
        ids_tm = np.ascontiguousarray(ids.T, dtype=np.int64)
        steps = ids_tm.shape[0]
        active = np.arange(steps)[:, None] < lengths[None, :]
        order, bounds = embedding_index(ids_tm, active, self.vocabulary_size)
        return (workspace.upload("ids", ids_tm), workspace.upload("order", order),
                workspace.upload("bounds", bounds))

    def forward(self, backend, x, workspace):
        self.attach(backend)
        ids = x[0]
        out = workspace.empty("embedded", (ids.shape[0], ids.shape[1], self.dim), self.dtype)
        backend.embedding.embedding_forward(ids, self.params()["weight"], out)
        return out

    def backward(self, backend, x, grad_steps, workspace):
        """Add the table's gradient from the gradient at the looked-up steps (the caller
        zeroed the gradient buffer)."""
        _, order, bounds = x
        backend.embedding.embedding_backward(order, bounds, grad_steps,
                                             self.grads()["weight"])


def embedding_index(ids, active, vocab_size):
    """Group the active positions of ``ids`` by token id for :func:`embedding_backward`.

    Parameters
    ----------
    ids : array-like of int, shape (T, N)
        Token ids in ``0..vocab_size-1`` (padding positions may hold anything in that range).
    active : array-like of bool, shape (T, N), or None
        False at padding positions, which take no part in the gradient; None means every
        position is active.
    vocab_size : int
        Number of rows ``V`` of the embedding table.

    Returns
    -------
    order : ndarray of int64, shape (K,)
        The flat positions ``t*N + n`` of the active entries, stably sorted by token id
        (positions ascending within an id).
    bounds : ndarray of int64, shape (V+1,)
        ``order[bounds[v]:bounds[v+1]]`` are the positions holding id ``v``.

    Raises
    ------
    ValueError
        If ``ids`` is not 2-D, ``active`` does not have its shape, or an active id lies
        outside ``0..vocab_size-1``.
    """
    ids = np.asarray(ids)
    vocab_size = int(vocab_size)
    if ids.ndim != 2:
        raise ValueError(f"ids must be 2-D (T, N), got shape {ids.shape}")
    if vocab_size < 0:
        raise ValueError(f"vocab_size must be >= 0, got {vocab_size}")
    flat = ids.reshape(-1).astype(np.int64, copy=False)
    if active is None:
        positions = np.arange(flat.shape[0], dtype=np.int64)
    else:
        active = np.asarray(active, dtype=bool)
        if active.shape != ids.shape:
            raise ValueError(f"active must have the shape of ids {ids.shape}, "
                             f"got {active.shape}")
        positions = np.flatnonzero(active.reshape(-1)).astype(np.int64, copy=False)
    tokens = flat[positions]
    if tokens.size and (tokens.min() < 0 or tokens.max() >= vocab_size):
        raise ValueError(f"ids must lie in 0..{vocab_size - 1} at active positions, got "
                         f"values from {tokens.min()} to {tokens.max()}")
    order = np.ascontiguousarray(positions[np.argsort(tokens, kind="stable")],
                                 dtype=np.int64)
    bounds = np.zeros(vocab_size + 1, dtype=np.int64)
    np.cumsum(np.bincount(tokens, minlength=vocab_size), out=bounds[1:])
    return order, bounds
