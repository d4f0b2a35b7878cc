"""``Recurrent``: a stack of RNN, LSTM or GRU layers that mirrors PyTorch's layers."""

import numbers
from collections.abc import Mapping

import numpy as np
from sklearn.utils import assert_all_finite, check_random_state

from .backend import cell_kernels, resolve_device
from .kernels.cpu._threads import single_threaded_blas
from .kernels.cpu.chunks import backward_in_chunks, gate_gradient_buffer
from .kernels.gates import ACT_RELU, ACT_TANH
from .params import buffer_size, init_uniform, make_views, parameter_shapes

CELLS = ("rnn", "lstm", "gru")
NONLINEARITIES = {"tanh": ACT_TANH, "relu": ACT_RELU}
DTYPES = ("float32", "float64")


class Recurrent:
    """Stacked, optionally bidirectional RNN/LSTM/GRU with Numba kernels.

    Weights, shapes, gate order and results equal ``torch.nn.RNN/LSTM/GRU(batch_first=True)``.

    Parameters
    ----------
    cell : {"rnn", "lstm", "gru"}, default="lstm"
    input_size : int
        Features per time step.
    hidden_size : int
        Units per layer and direction.
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
        CUDA device works.
    random_state : int, RandomState or None
        Seeds the initialisation (uniform in ``±1/sqrt(hidden_size)``) and dropout masks.

    Attributes
    ----------
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
        self.hidden_size = _positive_int(hidden_size, "hidden_size")
        self.num_layers = _positive_int(num_layers, "num_layers")
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
        self._shapes = parameter_shapes(cell, self.input_size, self.hidden_size,
                                        self.num_layers, self.bidirectional)
        size = buffer_size(self._shapes)
        self._flat_params = np.empty(size, dtype=self.dtype)
        self._flat_grads = np.zeros(size, dtype=self.dtype)
        self._bind_views()
        self.reset_parameters()

    # ----------------------------------------------------------------- parameters
    @property
    def num_directions(self):
        """1, or 2 when bidirectional."""
        return 2 if self.bidirectional else 1

    @property
    def flat_params(self):
        return self._flat_params

    @flat_params.setter
    def flat_params(self, values):
        values = np.asarray(values)
        if values.shape != self._flat_params.shape:
            raise ValueError(f"flat_params must have shape {self._flat_params.shape}, "
                             f"got {values.shape}")
        self._flat_params[...] = values

    @property
    def flat_grads(self):
        return self._flat_grads

    def reset_parameters(self):
        """Draw new weights, uniform in ``±1/sqrt(hidden_size)`` as PyTorch does."""
        init_uniform(self._flat_params, self.hidden_size, self._rng)

    def state_dict(self):
        """Return copies of the weights under PyTorch's names, shapes and gate order."""
        return {name: view.copy() for name, view in self._params.items()}

    def load_state_dict(self, state_dict):
        """Copy weights from a PyTorch-style dict of array-likes; every key and shape is checked."""
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"state_dict must be a mapping, got {type(state_dict).__name__}")
        expected = dict(self._shapes)
        missing = [name for name in expected if name not in state_dict]
        extra = [str(name) for name in state_dict if name not in expected]
        if missing or extra:
            raise ValueError(f"state_dict does not match this network: missing keys {missing}, "
                             f"unexpected keys {extra}")
        arrays = {}
        for name, shape in expected.items():
            value = _numeric_array(state_dict[name], f"state_dict[{name!r}]")
            if value.shape != shape:
                raise ValueError(f"state_dict[{name!r}] has shape {value.shape}, "
                                 f"expected {shape}")
            if not _all_finite(value):
                raise ValueError(f"state_dict[{name!r}] contains NaN or infinity")
            arrays[name] = value
        for name, value in arrays.items():
            self._params[name][...] = value

    def train(self, mode=True):
        """Switch dropout on (``mode=True``) or off; returns ``self``."""
        self.training = bool(mode)
        return self

    def eval(self):
        """Switch dropout off; returns ``self``."""
        return self.train(False)

    # ----------------------------------------------------------------- forward
    def forward(self, X, lengths=None, hx=None):
        """Run the network over a padded batch.

        Parameters
        ----------
        X : array-like of shape (N, T, input_size)
        lengths : array-like of N ints in 1..T, optional
            Sequence ``n`` uses its first ``lengths[n]`` steps, as PyTorch's
            ``pack_padded_sequence(..., enforce_sorted=False)``.
        hx : array of shape (num_layers*D, N, hidden_size), or ``(h0, c0)`` for the LSTM

        Returns
        -------
        output : ndarray of shape (N, T, D*hidden_size)
            Zero past each sequence's end. A read-only view of the activations that
            :meth:`backward` uses (not a copy, as PyTorch's ``batch_first`` output is a
            transposed view); copy it to modify it.
        h_n : ndarray of shape (num_layers*D, N, hidden_size), or ``(h_n, c_n)`` for the LSTM
        """
        X = self._check_input(X)
        n_seq, steps, _ = X.shape
        lengths = _check_lengths(lengths, n_seq, steps)
        hx = self._check_hx(hx, n_seq)
        return self._forward_unchecked(X, lengths, hx)

    __call__ = forward

    def _forward_unchecked(self, X, lengths, hx=None):
        """:meth:`forward` without validation: ``X`` of the network dtype, C-contiguous or an
        output of :meth:`forward` (time-major storage),
        ``lengths`` int64 in ``0..T`` (0 passes the state through), ``hx`` checked or None."""
        if self.device == "cuda":
            return self._cuda_forward(X, lengths, hx)
        return self._cpu_forward(X, lengths, hx)

    def _cpu_forward(self, X, lengths, hx):
        with single_threaded_blas():  # once here rather than in each phase
            return self._cpu_forward_phases(X, lengths, hx)

    def _cpu_forward_phases(self, X, lengths, hx):
        common, kernels = cell_kernels(self.device, self.cell)
        self._activations = None  # release the previous batch's before allocating new ones
        n_seq, steps, _ = X.shape
        layers, dirs, hidden = self.num_layers, self.num_directions, self.hidden_size
        h0, c0 = self._initial_states(hx, n_seq)
        lstm = self.cell == "lstm"
        h_n = np.empty((layers * dirs, n_seq, hidden), dtype=self.dtype)
        c_n = np.empty_like(h_n) if lstm else None
        act = NONLINEARITIES[self.nonlinearity]
        # The time-major view of X, not a copy: project_input and weight_gradients copy it
        # a chunk of steps at a time (kernel contract). A previous layer's output, as
        # forward returns it, is already time-major.
        layer_input = X.transpose(1, 0, 2)
        inputs, outputs, caches, masks = [], [], [], []
        for layer in range(layers):
            out = np.empty((steps, n_seq, dirs * hidden), dtype=self.dtype)
            caches.append([])
            for direction in range(dirs):
                k = layer * dirs + direction
                weights = self._layer_weights(layer, direction)
                cache = np.empty((steps, n_seq, kernels.cache_width(hidden)), dtype=self.dtype)
                # The input is projected straight into what the recurrence writes over it.
                layer_proj, _, _ = common.in_place_buffers(self.cell, cache, out,
                                                           direction * hidden, hidden)
                common.project_input(layer_input, weights["weight_ih"], weights["bias_ih"],
                                     layer_proj)
                kernels.forward_sequence(
                    layer_proj, weights["weight_hh"], weights["bias_hh"], h0[k],
                    self._cell_state(c0, k), lengths, direction == 1, act, out, direction * hidden,
                    cache, h_n[k], self._cell_state(c_n, k))
                caches[-1].append(cache)
            inputs.append(layer_input)
            outputs.append(out)
            mask = None
            if layer < layers - 1 and self.training and self.dropout > 0.0:
                keep = 1.0 - self.dropout
                mask = (self._rng.random_sample(out.shape) < keep).astype(self.dtype) / keep
                layer_input = out * mask
            else:
                layer_input = out
            masks.append(mask)
        self._activations = {"lengths": lengths, "h0": h0, "c0": c0, "inputs": inputs,
                             "outputs": outputs, "caches": caches, "masks": masks}
        # A read-only view of the activations, as PyTorch's batch_first output is a
        # transposed view of its own: a copy would add a whole layer's outputs to the peak.
        output = outputs[-1].transpose(1, 0, 2)
        output.flags.writeable = False
        return output, ((h_n, c_n) if lstm else h_n)

    # ----------------------------------------------------------------- backward
    def backward(self, grad_output=None, grad_h_n=None, grad_c_n=None,
                 retain_activations=False, input_grad=True):
        """Backpropagate through time from the latest :meth:`forward`.

        Parameters
        ----------
        grad_output : array of shape (N, T, D*hidden_size), optional (zeros)
        grad_h_n, grad_c_n : array of shape (num_layers*D, N, hidden_size), optional (zeros)
            ``grad_c_n`` is for the LSTM only.
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
        acts = getattr(self, "_activations", None)
        if acts is None:
            raise RuntimeError(
                "backward() needs the activations of a forward() call first; each forward() "
                "allows one backward() unless backward(..., retain_activations=True)")
        for name, flag in (("retain_activations", retain_activations),
                           ("input_grad", input_grad)):
            if not isinstance(flag, (bool, np.bool_)):
                raise TypeError(f"{name} must be a bool, got {flag!r}")
        n_seq = acts["h0"].shape[1]
        steps = acts["outputs"][0].shape[0]
        out_shape = (n_seq, steps, self.num_directions * self.hidden_size)
        state_shape = acts["h0"].shape
        grad_output = self._check_grad(grad_output, out_shape, "grad_output")
        grad_h_n = self._check_grad(grad_h_n, state_shape, "grad_h_n")
        if self.cell == "lstm":
            grad_c_n = self._check_grad(grad_c_n, state_shape, "grad_c_n")
        elif grad_c_n is not None:
            raise ValueError(f"grad_c_n applies to cell='lstm' only, not cell={self.cell!r}")
        return self._backward_unchecked(grad_output, grad_h_n, grad_c_n, bool(input_grad),
                                        retain_activations=bool(retain_activations))

    def _backward_unchecked(self, grad_output, grad_h_n, grad_c_n, need_input_grad=True,
                            retain_activations=False):
        """:meth:`backward` on checked arrays; ``grad_output`` (N, T, D*H) C-contiguous.

        With ``need_input_grad=False`` the result's ``"input"`` is None (not computed).
        Without ``retain_activations`` the activations are spent and released.
        """
        try:
            if self.device == "cuda":
                return self._cuda_runner().backward(self, grad_output, grad_h_n, grad_c_n,
                                                    need_input_grad)
            return self._cpu_backward(grad_output, grad_h_n, grad_c_n, need_input_grad,
                                      over_cache=not retain_activations)
        finally:
            if not retain_activations:
                self._activations = None

    def _cpu_backward(self, grad_output, grad_h_n, grad_c_n, need_input_grad, over_cache):
        with single_threaded_blas():  # once here rather than in each phase
            return self._cpu_backward_phases(grad_output, grad_h_n, grad_c_n, need_input_grad,
                                             over_cache)

    def _cpu_backward_phases(self, grad_output, grad_h_n, grad_c_n, need_input_grad,
                             over_cache):
        common, kernels = cell_kernels(self.device, self.cell)
        acts = self._activations
        lengths, h0, c0 = acts["lengths"], acts["h0"], acts["c0"]
        n_seq, steps, _ = grad_output.shape
        dirs, hidden = self.num_directions, self.hidden_size
        act = NONLINEARITIES[self.nonlinearity]
        self._flat_grads[:] = 0.0
        grad_h0 = np.empty_like(h0)
        grad_c0 = np.empty_like(h0) if self.cell == "lstm" else None
        width = kernels.GATES * hidden
        # Spent activations take the gate gradients over their gate cache (kernel contract;
        # the GRU's n-gate recurrent gradient over its last columns). The RNN has none: its
        # BPTT runs a chunk of steps at a time into a buffer of that chunk (chunks module).
        chunked = self.cell == "rnn"
        over_cache = over_cache and not chunked
        if chunked:
            d_ih = gate_gradient_buffer(steps, n_seq, hidden, self.num_layers * dirs,
                                        self.dtype)
        else:
            d_ih = None if over_cache else np.empty((steps, n_seq, width), dtype=self.dtype)
        d_hh = (np.empty((steps, n_seq, width), dtype=self.dtype)
                if self.cell == "gru" and not over_cache else d_ih)
        # The kernels take time-major views of batch-major gradients (any strides, kernel
        # contract): the caller's grad_output and the returned input gradient are not copied.
        grad_layer_out = grad_output.transpose(1, 0, 2)
        grad_input = None
        for layer in reversed(range(self.num_layers)):
            layer_input = acts["inputs"][layer]
            # The first layer's input gradient is one more GEMM; training loops skip it.
            grad_input = (np.zeros((n_seq, steps, layer_input.shape[2]), dtype=self.dtype)
                          .transpose(1, 0, 2) if layer > 0 or need_input_grad else None)
            out = acts["outputs"][layer]
            for direction in range(dirs):
                k = layer * dirs + direction
                col = direction * hidden
                weights = self._layer_weights(layer, direction)
                grads = self._layer_weights(layer, direction, self._grads)
                if chunked:
                    backward_in_chunks(weights, grads, layer_input, out, col, h0[k],
                                       lengths, direction == 1, act, grad_layer_out,
                                       grad_h_n[k], grad_h0[k], grad_input, d_ih)
                    continue
                cache = acts["caches"][layer][direction]
                _, d_in, d_rec = (common.in_place_buffers(self.cell, cache, out, col, hidden)
                                  if over_cache else (None, d_ih, d_hh))
                kernels.backward_sequence(
                    weights["weight_hh"], weights["bias_hh"], h0[k], self._cell_state(c0, k),
                    lengths, direction == 1, act, out, col, cache, grad_layer_out, grad_h_n[k],
                    self._cell_state(grad_c_n, k), d_in, d_rec, grad_h0[k],
                    self._cell_state(grad_c0, k))
                common.weight_gradients(layer_input, out, col, h0[k], lengths, direction == 1,
                                        d_in, d_rec, weights["weight_ih"], grads["weight_ih"],
                                        grads["weight_hh"], grads["bias_ih"], grads["bias_hh"],
                                        grad_input)
            if layer > 0 and acts["masks"][layer - 1] is not None:
                grad_input *= acts["masks"][layer - 1]
            grad_layer_out = grad_input
        del d_ih, d_hh  # before the copies below: not both at the peak
        result = {name: view.copy() for name, view in self._grads.items()}
        result["input"] = None if grad_input is None else grad_input.transpose(1, 0, 2)
        result["h0"] = grad_h0
        if self.cell == "lstm":
            result["c0"] = grad_c0
        return result

    # ----------------------------------------------------------------- cuda
    def _cuda_runner(self):
        """The device-side state of this network (see :mod:`rnnumba.kernels.cuda.runner`)."""
        resolve_device("cuda")  # a clear error where no device works (e.g. after unpickling)
        from .kernels.cuda.runner import runner_for
        return runner_for(self)

    def _cuda_forward(self, X, lengths, hx):
        """Forward on the device: weights, activations and workspace stay there; the
        results come back as host arrays."""
        result = self._cuda_runner().forward(self, X, lengths, hx)
        # The activations live in the runner; backward() only needs their shapes here.
        n_seq, steps, _ = X.shape
        zero = np.zeros((), dtype=self.dtype)
        states = (self.num_layers * self.num_directions, n_seq, self.hidden_size)
        self._activations = {
            "device": "cuda", "lengths": lengths, "h0": np.broadcast_to(zero, states),
            "outputs": [np.broadcast_to(zero, (steps, n_seq, self.num_directions
                                               * self.hidden_size))]}
        return result

    # ----------------------------------------------------------------- helpers
    def _bind_views(self):
        self._params = make_views(self._flat_params, self._shapes)
        self._grads = make_views(self._flat_grads, self._shapes)

    def _layer_weights(self, layer, direction, views=None):
        views = self._params if views is None else views
        suffix = f"_l{layer}" + ("_reverse" if direction else "")
        return {kind: views[kind + suffix]
                for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}

    def _placeholder(self):
        return np.empty((0, 0), dtype=self.dtype)

    def _cell_state(self, states, k):
        return self._placeholder() if states is None else states[k]

    def _initial_states(self, hx, n_seq):
        shape = (self.num_layers * self.num_directions, n_seq, self.hidden_size)
        if self.cell == "lstm":
            h0, c0 = hx if hx is not None else (None, None)
            c0 = np.zeros(shape, dtype=self.dtype) if c0 is None else c0
        else:
            h0, c0 = hx, None
        h0 = np.zeros(shape, dtype=self.dtype) if h0 is None else h0
        return h0, c0

    def _check_input(self, X):
        X = _numeric_array(X, "X")
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
        if not _all_finite(X):
            raise ValueError("X contains NaN or infinity")
        return np.ascontiguousarray(X, dtype=self.dtype)

    def _check_hx(self, hx, n_seq):
        if hx is None:
            return None
        shape = (self.num_layers * self.num_directions, n_seq, self.hidden_size)
        if self.cell == "lstm":
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise TypeError("hx for the LSTM must be a tuple (h0, c0)")
            return tuple(self._check_state(s, shape, name) for s, name in zip(hx, ("h0", "c0")))
        return self._check_state(hx, shape, "hx")

    def _check_state(self, value, shape, name):
        value = _numeric_array(value, name)
        if value.shape != shape:
            raise ValueError(f"{name} must have shape {shape} (num_layers*D, N, hidden_size), "
                             f"got {value.shape}")
        if not _all_finite(value):
            raise ValueError(f"{name} contains NaN or infinity")
        return np.ascontiguousarray(value, dtype=self.dtype)

    def _check_grad(self, value, shape, name):
        if value is None:
            return np.zeros(shape, dtype=self.dtype)
        return self._check_state(value, shape, name)

    def __getstate__(self):
        state = self.__dict__.copy()
        for transient in ("_params", "_grads", "_activations"):
            state.pop(transient, None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._bind_views()

    def __repr__(self):
        extra = f", nonlinearity={self.nonlinearity!r}" if self.cell == "rnn" else ""
        return (f"Recurrent(cell={self.cell!r}, input_size={self.input_size}, "
                f"hidden_size={self.hidden_size}, num_layers={self.num_layers}, "
                f"bidirectional={self.bidirectional}{extra}, dtype={str(self.dtype)!r}, "
                f"device={self.device!r})")


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


def _numeric_array(value, name):
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a numeric array: {exc}") from None
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be a numeric array, got dtype {array.dtype}")
    return array


def _all_finite(array):
    """Whether ``array`` holds no NaN or infinity, checked without a flag per element (a
    flag array as large as a gradient was a quarter of the activations at the peak).

    A NaN or infinity makes the sum NaN or infinite, so a finite sum settles it; a sum that
    is not finite (a NaN, an infinity, or finite values that overflow) goes to
    scikit-learn's check, which looks at the elements. Summing here first skips
    scikit-learn's per-call set-up: 8-10 us a check, where a small forward+backward takes
    about 1 ms.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        if np.isfinite(np.add.reduce(array, axis=None)):
            return True
    try:
        assert_all_finite(array, allow_nan=False)
    except ValueError:
        return False
    return True


def _check_lengths(lengths, n_seq, steps):
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
