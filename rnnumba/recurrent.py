"""``Recurrent``: a stack of RNN, LSTM or GRU layers that mirrors PyTorch's layers.

This is the one layer loop of rnnumba (layers × directions, dropout between layers,
lengths, activations kept for BPTT): the public :meth:`Recurrent.forward` and
:meth:`Recurrent.backward`, the networks the estimators train and the profiler all run
through :meth:`Recurrent.run_forward` and :meth:`Recurrent.run_backward`, on whichever
backend object (:mod:`rnnumba.backend`) the network's device gives.
"""

import contextlib
import numbers
import sys
import threading

import numpy as np

from .backend import NO_CLOCK, NONLINEARITIES, get_backend, resolve_device
from .params import (ParameterOwner, all_finite, check_random_state, init_uniform, numeric_array,
                     parameter_shapes)

CELLS = ("rnn", "lstm", "gru")
DTYPES = ("float32", "float64")
_WEIGHT_KINDS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")

#: A first forward or backward of a cell, dtype and device taking longer than this is
#: compiling its kernels: say so once (Numba then caches them on disk).
COMPILE_NOTICE_SECONDS = 1.0
_first_calls = set()


def compile_notice(key, what):
    """A context that prints once per process, to stderr, that ``what()`` (a callable
    returning the text) is being compiled if the first call under ``key`` is still running
    after :data:`COMPILE_NOTICE_SECONDS`; later calls get a context that does nothing."""
    if key in _first_calls:
        return NO_CLOCK
    _first_calls.add(key)
    return _notice_after(COMPILE_NOTICE_SECONDS, what())


@contextlib.contextmanager
def _notice_after(seconds, what):
    timer = threading.Timer(seconds, lambda: print(
        f"rnnumba: compiling {what} (first use with an empty kernel cache; Numba keeps them "
        "for later runs)", file=sys.stderr, flush=True))
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


class Activations:
    """What a forward pass keeps for BPTT, in the backend's arrays (time-major).

    ``inputs[l]`` and ``outputs[l]`` are layer ``l``'s input and output ``(T, N, ...)``,
    ``caches[l][d]`` its gate cache per direction, ``masks[l]`` the dropout mask applied to
    its output (or None); ``h0``/``c0``/``h_n``/``c_n`` are lists with one ``(N, H)``
    array per layer and direction (``c0``/``c_n`` None but for the LSTM).
    """

    __slots__ = ("lengths", "h0", "c0", "inputs", "outputs", "caches", "masks", "h_n", "c_n")

    def __init__(self, lengths, h0, c0):
        self.lengths, self.h0, self.c0 = lengths, h0, c0
        self.inputs, self.outputs, self.caches, self.masks = [], [], [], []
        self.h_n = self.c_n = None

    @property
    def output(self):
        """The last layer's output ``(T, N, D*H)``."""
        return self.outputs[-1]


class Recurrent(ParameterOwner):
    """Stacked, optionally bidirectional RNN/LSTM/GRU with Numba kernels.

    Weights, shapes, gate order and results equal ``torch.nn.RNN/LSTM/GRU(batch_first=True)``.

    Parameters
    ----------
    cell : {"rnn", "lstm", "gru"}, default="lstm"
    input_size : int
        Features per time step.
    hidden_size : int or sequence of int
        Units per layer and direction. A sequence gives each layer its own width (then
        ``num_layers`` is its length; PyTorch's layers all have one width, and states are
        then returned per layer, see :meth:`forward`).
    num_layers : int, default=1
    bidirectional : bool, default=False
    nonlinearity : {"tanh", "relu"}, default="tanh"
        Activation of the ``"rnn"`` cell.
    dropout : float in [0, 1), default=0.0
        Dropout on the outputs of every layer but the last, in training mode only.
    dtype : {"float32", "float64"}, default="float32"
    device : {"cpu", "cuda", "auto"}, default="cpu"
        ``"cuda"`` runs the kernels on an NVIDIA GPU (weights mirrored on the device,
        activations kept there between forward and backward); ``"auto"`` picks it when a
        CUDA device works (never Numba's CUDA simulator).
    random_state : int, RandomState or None
        Seeds the initialisation (uniform in ``±1/sqrt(hidden_size)``) and dropout masks.

    Attributes
    ----------
    hidden_sizes : tuple of int
        The width of every layer.
    flat_params : ndarray of shape (n_params,)
        All weights in ``state_dict`` order; every weight is a view of it. Assigning to it
        copies into the buffer.
    flat_grads : ndarray of shape (n_params,)
        Gradients from the latest :meth:`backward`, same layout.
    training : bool
        Whether dropout is applied; see :meth:`train` and :meth:`eval`.
    """

    def __init__(self, cell="lstm", input_size=None, hidden_size=None, num_layers=1,
                 bidirectional=False, nonlinearity="tanh", dropout=0.0, dtype="float32",
                 device="cpu", random_state=None):
        if cell not in CELLS:
            raise ValueError(f"cell must be one of {CELLS}, got {cell!r}")
        self.cell = cell
        self.input_size = _positive_int(input_size, "input_size")
        if isinstance(hidden_size, (list, tuple, np.ndarray)):
            sizes = tuple(_positive_int(h, "hidden_size") for h in hidden_size)
            if not sizes:
                raise ValueError("hidden_size must name at least one layer")
            if num_layers not in (1, len(sizes)):
                raise ValueError(f"num_layers={num_layers!r} does not match the "
                                 f"{len(sizes)} widths in hidden_size")
        else:
            sizes = (_positive_int(hidden_size, "hidden_size"),) * _positive_int(
                num_layers, "num_layers")
        self.hidden_sizes = sizes
        self.hidden_size = sizes[0] if len(set(sizes)) == 1 else sizes
        self.num_layers = len(sizes)
        if not isinstance(bidirectional, (bool, np.bool_)):
            raise TypeError(f"bidirectional must be a bool, got {bidirectional!r}")
        self.bidirectional = bool(bidirectional)
        if nonlinearity not in NONLINEARITIES:
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        if cell != "rnn" and nonlinearity != "tanh":
            raise ValueError(f"nonlinearity applies to cell='rnn' only, not cell={cell!r}")
        self.nonlinearity = nonlinearity
        if (isinstance(dropout, bool) or not isinstance(dropout, numbers.Real)
                or not 0.0 <= dropout < 1.0):
            raise ValueError(f"dropout must be a number in [0, 1), got {dropout!r}")
        self.dropout = float(dropout)
        if str(np.dtype(dtype) if _is_dtype_like(dtype) else dtype) not in DTYPES:
            raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
        self.dtype = np.dtype(dtype)
        self.device = resolve_device(device)
        self.training = True
        self._rng = check_random_state(random_state)
        self._own_store(parameter_shapes(cell, self.input_size, self.hidden_sizes,
                                         self.bidirectional), self.dtype)
        self._workspace = None
        self._activations = None
        self.reset_parameters()

    # ----------------------------------------------------------------- parameters
    @property
    def num_directions(self):
        """1, or 2 when bidirectional."""
        return 2 if self.bidirectional else 1

    @property
    def output_size(self):
        """Features per step of the output: ``num_directions * hidden_sizes[-1]``."""
        return self.num_directions * self.hidden_sizes[-1]

    def reset_parameters(self):
        """Draw new weights, uniform in ``±1/sqrt(hidden_size)`` as PyTorch does (each
        layer's own width where they differ)."""
        if len(set(self.hidden_sizes)) == 1:
            init_uniform(self.flat_params, self.hidden_sizes[0], self._rng)
        else:
            self.initialize_layers([self._rng] * self.num_layers)

    def initialize_layers(self, rngs, forget_bias=None):
        """Draw each layer's weights from its own generator (``rngs``, one per layer), as
        :meth:`reset_parameters` draws them.

        Parameters
        ----------
        rngs : sequence of RandomState
            One generator per layer.
        forget_bias : float or None, default=None
            LSTM only (ignored by the other cells): after the draw, the forget gate's rows
            of every ``bias_ih`` are set to this value and those of every ``bias_hh`` to 0,
            so the gate starts at ``sigmoid(forget_bias)`` on average and the cell state is
            carried across steps from the start (Jozefowicz et al., 2015; Keras's
            ``unit_forget_bias``). None keeps PyTorch's uniform draw.
        """
        if forget_bias is not None and (isinstance(forget_bias, (bool, np.bool_))
                                        or not isinstance(forget_bias, numbers.Real)
                                        or not np.isfinite(forget_bias)):
            raise ValueError(f"forget_bias must be a finite number or None, got "
                             f"{forget_bias!r}")
        params = self._store.views(self._prefix)
        flat = self.flat_params
        base = flat.__array_interface__["data"][0]
        for layer, (hidden, rng) in enumerate(zip(self.hidden_sizes, rngs)):
            first = params[f"weight_ih_l{layer}"]
            last = params[f"bias_hh_l{layer}" + ("_reverse" if self.bidirectional else "")]
            start = (first.__array_interface__["data"][0] - base) // flat.itemsize
            stop = (last.__array_interface__["data"][0] + last.nbytes - base) // flat.itemsize
            init_uniform(flat[start:stop], hidden, rng)
        if forget_bias is not None and self.cell == "lstm":
            for name, bias in params.items():
                if name.startswith("bias_"):
                    hidden = bias.shape[0] // 4  # gate rows i, f, g, o
                    bias[hidden:2 * hidden] = forget_bias if name.startswith("bias_ih") else 0.0

    def train(self, mode=True):
        """Switch dropout on (``mode=True``) or off; returns ``self``."""
        self.training = bool(mode)
        return self

    def eval(self):
        """Switch dropout off; returns ``self``."""
        return self.train(False)

    # ----------------------------------------------------------------- placement
    def bind(self, store, prefix):
        super().bind(store, prefix)
        self._activations = None

    def to_device(self, device):
        """Run on ``device`` from now on (host weights are kept); returns ``self``."""
        self.device = resolve_device(device)
        self._workspace = None
        self._activations = None
        if self._store.backend is not None and self._store.backend.name != self.device:
            self._store.attach(None)
        return self

    @property
    def backend(self):
        """The backend object of :attr:`device` (raises where that device cannot run)."""
        backend = self._store.backend
        if backend is None or backend.name != self.device:
            backend = get_backend(self.device)
            self.attach(backend)
        return backend

    def workspace(self):
        """This network's named arrays on its device (kept between calls on a GPU)."""
        backend = self.backend
        if self._workspace is None or self._workspace_backend is not backend:
            self._workspace = backend.workspace()
            self._workspace_backend = backend
        return self._workspace

    # ----------------------------------------------------------------- public API
    def forward(self, X, lengths=None, hx=None):
        """Run the network over a padded batch.

        Parameters
        ----------
        X : array-like of shape (N, T, input_size)
        lengths : array-like of N ints in 1..T, optional
            Sequence ``n`` uses its first ``lengths[n]`` steps, as PyTorch's
            ``pack_padded_sequence(..., enforce_sorted=False)``.
        hx : array of shape (num_layers*D, N, hidden_size), or ``(h0, c0)`` for the LSTM
            With layers of different widths, a list with one ``(D, N, hidden_sizes[l])``
            array per layer (a pair of such lists for the LSTM).

        Returns
        -------
        output : ndarray of shape (N, T, D*hidden_size)
            Zero past each sequence's end. On the CPU a read-only view of the activations
            that :meth:`backward` uses (not a copy, as PyTorch's ``batch_first`` output is a
            transposed view); copy it to modify it.
        h_n : ndarray of shape (num_layers*D, N, hidden_size), or ``(h_n, c_n)`` for the LSTM
            Per layer where the widths differ, as ``hx``.
        """
        output, states, activations = self._public_forward(X, lengths, hx)
        self._activations = activations
        return output, states

    __call__ = forward

    def step(self, X, hx=None):
        """Advance the network a few steps from given states, as inference.

        The same as :meth:`forward` with ``hx`` on a network in evaluation mode, without
        keeping activations for :meth:`backward`: feeding a sequence in pieces, each from the
        states the previous piece returned, gives the outputs and final states of one
        :meth:`forward` over the whole of it. Causal (one-directional) networks only.

        Parameters
        ----------
        X : array-like of shape (N, k, input_size)
            The next ``k`` steps of ``N`` sequences.
        hx : as :meth:`forward`, optional (zeros)

        Returns
        -------
        output : ndarray of shape (N, k, hidden_size)
        h_n : the new states, as :meth:`forward` returns them
        """
        if self.bidirectional:
            raise ValueError("step() needs a causal network: a bidirectional one reads each "
                             "sequence from its end, which is not known while stepping")
        training = self.training
        self.training = False
        try:
            output, states, _ = self._public_forward(X, None, hx)
        finally:
            self.training = training
        return output, states

    def _public_forward(self, X, lengths, hx):
        X = self._check_input(X)
        n_seq, steps, _ = X.shape
        lengths = check_lengths(lengths, n_seq, steps)
        hx = self._check_hx(hx, n_seq)
        backend, workspace = self.backend, self.workspace()
        self._activations = None  # release the previous batch's before allocating new ones
        x = (backend.time_major(X) if backend.name == "cpu"
             else workspace.upload("x", X.transpose(1, 0, 2)))
        h0, c0 = self.initial_states(hx, n_seq)
        if not self._store.resident:
            self._store.push()
        with backend.compute():
            acts = self.run_forward(x, workspace.upload("lengths", lengths), h0, c0)
        output = backend.batch_major_host(acts.output, read_only=True)
        h_n = self._states_to_host(acts.h_n)
        if self.cell == "lstm":
            return output, (h_n, self._states_to_host(acts.c_n)), acts
        return output, h_n, acts

    def backward(self, grad_output=None, grad_h_n=None, grad_c_n=None,
                 retain_activations=False, input_grad=True):
        """Backpropagate through time from the latest :meth:`forward`.

        Parameters
        ----------
        grad_output : array of shape (N, T, D*hidden_size), optional (zeros)
        grad_h_n, grad_c_n : array of shape (num_layers*D, N, hidden_size), optional (zeros)
            ``grad_c_n`` is for the LSTM only; per layer where the widths differ.
        retain_activations : bool, default=False
            Keep the activations of the forward for another ``backward``, as PyTorch's
            ``retain_graph``. By default they are consumed: the gate gradients are written
            over the gate cache, which saves memory, and a second ``backward`` needs a new
            :meth:`forward`.
        input_grad : bool, default=True
            Compute the gradient with respect to ``X``. ``False`` skips that GEMM and its
            ``(N, T, input_size)`` array (``"input"`` is then None), as a training loop whose
            input needs no gradient does (PyTorch: an input without ``requires_grad``).

        Returns
        -------
        dict
            Every ``state_dict`` key mapped to its gradient, plus ``"input"`` (dX, or
            None), ``"h0"`` and, for the LSTM, ``"c0"``. :attr:`flat_grads` holds the same
            weight gradients.
        """
        acts = self._activations
        if acts is None:
            raise RuntimeError(
                "backward() needs the activations of a forward() call first; each forward() "
                "allows one backward() unless backward(..., retain_activations=True)")
        for name, flag in (("retain_activations", retain_activations),
                           ("input_grad", input_grad)):
            if not isinstance(flag, (bool, np.bool_)):
                raise TypeError(f"{name} must be a bool, got {flag!r}")
        steps, n_seq = acts.output.shape[0], acts.output.shape[1]
        backend, workspace = self.backend, self.workspace()
        grad_output = self._check_grad(grad_output, (n_seq, steps, self.output_size),
                                       "grad_output")
        if grad_output is not None:
            grad_output = (backend.time_major(grad_output) if backend.name == "cpu" else
                           workspace.upload("grad_out", grad_output.transpose(1, 0, 2)))
        grad_h_n = self._upload_states(self._check_states(grad_h_n, n_seq, "grad_h_n"),
                                       "grad_h_n")
        if self.cell == "lstm":
            grad_c_n = self._upload_states(self._check_states(grad_c_n, n_seq, "grad_c_n"),
                                           "grad_c_n")
        elif grad_c_n is not None:
            raise ValueError(f"grad_c_n applies to cell='lstm' only, not cell={self.cell!r}")
        try:
            with backend.compute():
                grad_x, grad_h0, grad_c0 = self.run_backward(
                    acts, grad_output, grad_h_n, grad_c_n, bool(input_grad),
                    spend=not retain_activations)
        finally:
            if not retain_activations:
                self._activations = None
        self._store.pull_grads()
        result = {name: view.copy()
                  for name, view in self._store.views(self._prefix, grads=True).items()}
        result["input"] = (None if grad_x is None
                           else backend.batch_major_host(grad_x, read_only=False))
        result["h0"] = self._states_to_host(grad_h0)
        if self.cell == "lstm":
            result["c0"] = self._states_to_host(grad_c0)
        return result

    # ----------------------------------------------------------------- the layer loop
    def run_forward(self, x, lengths, h0, c0, clock=NO_CLOCK):
        """Forward through every layer and direction on the backend's arrays.

        ``x`` ``(T, N, input_size)`` time-major (on the CPU also the time-major view of a
        batch-major array), ``lengths`` int64 ``(N,)`` in ``0..T`` (0 passes the state
        through), ``h0``/``c0`` lists of ``(N, H)`` arrays per layer and direction, as
        :meth:`initial_states` makes them (``c0`` None but for the LSTM). The parameters
        are read where they are (the caller pushes host changes). ``clock(phase)`` wraps
        each phase (the profiler's). Returns the :class:`Activations`.
        """
        with compile_notice(("forward", self.cell, self.dtype.str, self.device),
                            lambda: f"the {self.cell.upper()} forward kernels for "
                                    f"{self.dtype.name} on the {self.device.upper()}"):
            return self._run_forward(x, lengths, h0, c0, clock)

    def _run_forward(self, x, lengths, h0, c0, clock):
        backend, workspace = self.backend, self.workspace()
        kernels = backend.cell(self.cell)
        params = self._store.views(self._prefix, where="device")
        steps, n_seq = x.shape[0], x.shape[1]
        dirs, act = self.num_directions, NONLINEARITIES[self.nonlinearity]
        acts = Activations(lengths, h0, c0)
        acts.h_n = self._state_list(workspace, "h_n", n_seq)
        acts.c_n = self._state_list(workspace, "c_n", n_seq) if self.cell == "lstm" else None
        placeholder = backend.placeholder(self.dtype)
        layer_input = x
        for layer, hidden in enumerate(self.hidden_sizes):
            out = workspace.empty(f"out{layer}", (steps, n_seq, dirs * hidden), self.dtype)
            caches = []
            for direction in range(dirs):
                k = layer * dirs + direction
                cache = workspace.empty(f"cache{k}", (steps, n_seq,
                                                      kernels.cache_width(hidden)), self.dtype)
                backend.forward_direction(
                    self.cell, kernels, layer_input, _layer_weights(params, layer, direction),
                    h0[k], placeholder if c0 is None else c0[k], lengths, direction == 1, act,
                    out, direction * hidden, cache, acts.h_n[k],
                    placeholder if acts.c_n is None else acts.c_n[k], workspace, clock)
                caches.append(cache)
            acts.inputs.append(layer_input)
            acts.outputs.append(out)
            acts.caches.append(caches)
            mask = None
            if layer < self.num_layers - 1 and self.training and self.dropout > 0.0:
                keep = 1.0 - self.dropout
                mask = workspace.upload(
                    f"mask{layer}",
                    (self._rng.random_sample(out.shape) < keep).astype(self.dtype) / keep)
                layer_input = workspace.empty(f"dropped{layer}", out.shape, self.dtype)
                backend.multiply(out, mask, layer_input)
            else:
                layer_input = out
            acts.masks.append(mask)
        return acts

    def run_backward(self, acts, grad_output, grad_h_n, grad_c_n, need_input_grad=True,
                     spend=True, clock=NO_CLOCK):
        """BPTT through every layer and direction on the backend's arrays.

        ``acts`` from :meth:`run_forward`; ``grad_output`` ``(T, N, D*H)`` time-major (on the
        CPU also a time-major view of batch-major storage) or None (zeros); ``grad_h_n`` and
        ``grad_c_n`` lists as :meth:`initial_states` makes them, or None (zeros). The weight
        gradients go to the device gradient buffer (overwritten). With ``spend`` the
        activations are spent (gate gradients written over the gate cache). Returns
        ``(grad_x, grad_h0, grad_c0)``: the input gradient (time-major, or None without
        ``need_input_grad``) and lists of the state gradients.
        """
        with compile_notice(("backward", self.cell, self.dtype.str, self.device),
                            lambda: f"the {self.cell.upper()} backward kernels for "
                                    f"{self.dtype.name} on the {self.device.upper()}"):
            return self._run_backward(acts, grad_output, grad_h_n, grad_c_n, need_input_grad,
                                      spend, clock)

    def _run_backward(self, acts, grad_output, grad_h_n, grad_c_n, need_input_grad, spend,
                      clock):
        backend, workspace = self.backend, self.workspace()
        kernels = backend.cell(self.cell)
        params = self._store.views(self._prefix, where="device")
        grads = self._store.views(self._prefix, where="device", grads=True)
        start, stop = self._store.segment_bounds(self._prefix)
        backend.fill(self._store.device_grads[start:stop], 0.0)
        steps, n_seq = acts.output.shape[0], acts.output.shape[1]
        dirs, act = self.num_directions, NONLINEARITIES[self.nonlinearity]
        lstm = self.cell == "lstm"
        placeholder = backend.placeholder(self.dtype)
        if grad_output is None:
            grad_output = workspace.zeros("grad_out", acts.output.shape, self.dtype)
        if grad_h_n is None:
            grad_h_n = self._state_list(workspace, "grad_h_n", n_seq, zeros=True)
        if lstm and grad_c_n is None:
            grad_c_n = self._state_list(workspace, "grad_c_n", n_seq, zeros=True)
        grad_h0 = self._state_list(workspace, "grad_h0", n_seq)
        grad_c0 = self._state_list(workspace, "grad_c0", n_seq) if lstm else None
        scratch = backend.backward_scratch(workspace, self.num_layers * dirs)
        grad_layer_out = grad_output
        grad_x = None
        for layer in reversed(range(self.num_layers)):
            hidden = self.hidden_sizes[layer]
            layer_input = acts.inputs[layer]
            grad_x = None
            if layer > 0 or need_input_grad:
                grad_x = backend.input_gradient(workspace, f"grad_in{layer}", steps, n_seq,
                                                layer_input.shape[2], self.dtype)
            for direction in range(dirs):
                k = layer * dirs + direction
                backend.backward_direction(
                    self.cell, kernels, layer_input, _layer_weights(params, layer, direction),
                    _layer_weights(grads, layer, direction), acts.h0[k],
                    acts.c0[k] if lstm else placeholder, acts.lengths, direction == 1, act,
                    acts.outputs[layer], direction * hidden, acts.caches[layer][direction],
                    grad_layer_out, grad_h_n[k], grad_c_n[k] if lstm else placeholder,
                    grad_h0[k], grad_c0[k] if lstm else placeholder, grad_x, spend, scratch,
                    clock)
            if layer > 0 and acts.masks[layer - 1] is not None:
                backend.multiply(grad_x, acts.masks[layer - 1], grad_x)
            grad_layer_out = grad_x
        scratch.clear()  # the gate-gradient buffers go before anything the caller allocates
        return grad_x, grad_h0, grad_c0

    def initial_states(self, hx, n_seq):
        """``(h0, c0)`` lists of one ``(N, H)`` device array per layer and direction from
        checked host states ``hx`` (or None: zeros); ``c0`` is None but for the LSTM."""
        workspace = self.workspace()
        if self.cell == "lstm":
            h_host, c_host = hx if hx is not None else (None, None)
        else:
            h_host, c_host = hx, None
        h0 = self._upload_states(h_host, "h0") if h_host is not None else \
            self._state_list(workspace, "h0", n_seq, zeros=True)
        if self.cell != "lstm":
            return h0, None
        c0 = self._upload_states(c_host, "c0") if c_host is not None else \
            self._state_list(workspace, "c0", n_seq, zeros=True)
        return h0, c0

    # ----------------------------------------------------------------- states
    def _uniform(self):
        return len(set(self.hidden_sizes)) == 1

    def state_shapes(self, n_seq):
        """Shapes of the arrays that hold one kind of state (``h`` or ``c``) of ``n_seq``
        sequences: one ``(num_layers*D, N, H)`` where the widths agree, else one
        ``(D, N, H_l)`` per layer."""
        dirs = self.num_directions
        if self._uniform():
            return [(self.num_layers * dirs, n_seq, self.hidden_sizes[0])]
        return [(dirs, n_seq, hidden) for hidden in self.hidden_sizes]

    def state_list(self, containers):
        """The per-layer-and-direction ``(N, H)`` views of state arrays shaped as
        :meth:`state_shapes` says (one array, or a list of one per layer)."""
        if isinstance(containers, list):
            states = _StateList(part[d] for part in containers
                                for d in range(self.num_directions))
        else:
            states = _StateList(containers[k] for k in range(containers.shape[0]))
        states.containers = containers
        return states

    def _state_list(self, workspace, name, n_seq, zeros=False):
        make = workspace.zeros if zeros else workspace.empty
        shapes = self.state_shapes(n_seq)
        if self._uniform():
            return self.state_list(make(name, shapes[0], self.dtype))
        return self.state_list([make(f"{name}{layer}", shape, self.dtype)
                                for layer, shape in enumerate(shapes)])

    def _states_to_host(self, states):
        backend = self.backend
        if isinstance(states.containers, list):
            return [np.array(backend.to_host(c)) for c in states.containers]
        return np.array(backend.to_host(states.containers))

    def _upload_states(self, host, name):
        """Checked host states (as :meth:`forward` takes them) as a device state list."""
        if host is None:
            return None
        workspace = self.workspace()
        if self._uniform():
            return self.state_list(workspace.upload(name, host))
        return self.state_list([workspace.upload(f"{name}{layer}", part)
                                for layer, part in enumerate(host)])

    # ----------------------------------------------------------------- checks
    def _check_input(self, X):
        X = numeric_array(X, "X")
        if X.ndim != 3:
            raise ValueError(f"X must be 3-D (N, T, input_size), got shape {X.shape}")
        n_seq, steps, features = X.shape
        if features != self.input_size:
            raise ValueError(f"X has {features} features per step, the network's input_size "
                             f"is {self.input_size}")
        if n_seq == 0:
            raise ValueError("X holds no sequences (N == 0)")
        if steps == 0:
            raise ValueError("X has an empty time axis (T == 0)")
        if not all_finite(X):
            raise ValueError("X contains NaN or infinity")
        return np.ascontiguousarray(X, dtype=self.dtype)

    def _check_hx(self, hx, n_seq):
        if hx is None:
            return None
        if self.cell == "lstm":
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise TypeError("hx for the LSTM must be a tuple (h0, c0)")
            return tuple(self._check_states(s, n_seq, name) for s, name in zip(hx, ("h0", "c0")))
        return self._check_states(hx, n_seq, "hx")

    def _check_states(self, value, n_seq, name):
        """Host states as :meth:`forward` takes them, checked; None stays None."""
        if value is None:
            return None
        dirs = self.num_directions
        if self._uniform():
            shape = (self.num_layers * dirs, n_seq, self.hidden_sizes[0])
            return self._check_state(value, shape, name, "(num_layers*D, N, hidden_size)")
        if not isinstance(value, (list, tuple)) or len(value) != self.num_layers:
            raise TypeError(f"{name} must be a list of {self.num_layers} arrays, one "
                            "(D, N, hidden_sizes[l]) per layer")
        return [self._check_state(part, (dirs, n_seq, hidden), f"{name}[{layer}]",
                                  "(D, N, hidden_sizes[l])")
                for layer, (part, hidden) in enumerate(zip(value, self.hidden_sizes))]

    def _check_state(self, value, shape, name, layout):
        value = numeric_array(value, name)
        if value.shape != shape:
            raise ValueError(f"{name} must have shape {shape} {layout}, got {value.shape}")
        if not all_finite(value):
            raise ValueError(f"{name} contains NaN or infinity")
        return np.ascontiguousarray(value, dtype=self.dtype)

    def _check_grad(self, value, shape, name):
        if value is None:
            return None
        return self._check_state(value, shape, name, "(N, T, D*hidden_size)")

    # ----------------------------------------------------------------- pickling
    def __getstate__(self):
        state = self.__dict__.copy()
        state.update(_workspace=None, _activations=None)
        state.pop("_workspace_backend", None)
        return state

    def __repr__(self):
        extra = f", nonlinearity={self.nonlinearity!r}" if self.cell == "rnn" else ""
        return (f"Recurrent(cell={self.cell!r}, input_size={self.input_size}, "
                f"hidden_size={self.hidden_size}, num_layers={self.num_layers}, "
                f"bidirectional={self.bidirectional}{extra}, dtype={str(self.dtype)!r}, "
                f"device={self.device!r})")


class _StateList(list):
    """A list of per-layer-and-direction states that remembers the arrays they view."""

    containers = None


def _layer_weights(views, layer, direction):
    suffix = f"_l{layer}" + ("_reverse" if direction else "")
    return {kind: views[kind + suffix] for kind in _WEIGHT_KINDS}


def _positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be a positive int, got {value!r}")
    if value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value}")
    return int(value)


def _is_dtype_like(value):
    try:
        np.dtype(value)
    except TypeError:
        return False
    return True


def check_lengths(lengths, n_seq, steps):
    """Validate ``lengths`` against a batch of ``n_seq`` sequences of ``steps`` steps."""
    if lengths is None:
        return np.full(n_seq, steps, dtype=np.int64)
    lengths = np.asarray(lengths)
    if lengths.dtype.kind not in "iu":
        raise TypeError(f"lengths must be integers, got dtype {lengths.dtype}")
    if lengths.shape != (n_seq,):
        raise ValueError(f"lengths must have one entry per sequence, shape ({n_seq},), "
                         f"got {lengths.shape}")
    if lengths.min() < 1 or lengths.max() > steps:
        raise ValueError(f"lengths must lie in 1..{steps} (the time axis of X), got values "
                         f"from {lengths.min()} to {lengths.max()}")
    return np.ascontiguousarray(lengths, dtype=np.int64)
