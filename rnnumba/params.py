"""Parameters: PyTorch's names, shapes and gate order, and one flat buffer per network.

A :class:`ParameterStore` keeps every parameter of a network in one flat buffer and their
gradients in a second buffer of the same layout, with named views into both, so that an
optimizer, the L2 penalty and clipping treat the whole network as one vector and conversion
to and from PyTorch is exact. Each part of a network (input layer, recurrent stack, head)
owns a contiguous segment of the buffer under a name prefix.

Where the network runs on a device whose arrays are not host arrays, the store keeps a mirror
of both buffers there (made by the backend object it is attached to: this module imports
nothing but NumPy). The host buffer is the record of truth, copied to the device in one
piece (:meth:`ParameterStore.push`), except while the store is :attr:`resident` (a fit on
the device): the device buffer is then the truth, and :meth:`ParameterStore.pull` copies it
back once.
"""

import math
import numbers
from collections.abc import Mapping

import numpy as np

GATES = {"rnn": 1, "lstm": 4, "gru": 3}


def parameter_shapes(cell, input_size, hidden_sizes, bidirectional):
    """``[(name, shape), ...]`` of a recurrent stack in PyTorch's ``state_dict`` order.

    ``hidden_sizes`` has one width per layer (PyTorch's layers all have the same one).
    """
    directions = 2 if bidirectional else 1
    shapes = []
    layer_input = input_size
    for layer, hidden in enumerate(hidden_sizes):
        gate_rows = GATES[cell] * hidden
        for direction in range(directions):
            suffix = f"l{layer}" + ("_reverse" if direction else "")
            shapes += [
                (f"weight_ih_{suffix}", (gate_rows, layer_input)),
                (f"weight_hh_{suffix}", (gate_rows, hidden)),
                (f"bias_ih_{suffix}", (gate_rows,)),
                (f"bias_hh_{suffix}", (gate_rows,)),
            ]
        layer_input = directions * hidden
    return shapes


def make_views(flat, shapes):
    """Split the 1-D ``flat`` into named views with the given shapes."""
    views = {}
    offset = 0
    for name, shape in shapes:
        size = math.prod(shape)
        views[name] = flat[offset:offset + size].reshape(shape)
        offset += size
    if offset != flat.size:
        raise ValueError(f"parameter buffer has {flat.size} values, the layout needs {offset}")
    return views


def buffer_size(shapes):
    """Number of scalars in a buffer with these shapes."""
    return sum(math.prod(shape) for _, shape in shapes)


def check_random_state(seed):
    """A ``numpy.random.RandomState`` from None (NumPy's global one), an int or an instance,
    as scikit-learn's function of that name (the layers below the estimators do not import
    scikit-learn)."""
    if seed is None or seed is np.random:
        return np.random.mtrand._rand
    if isinstance(seed, numbers.Integral) and not isinstance(seed, bool):
        return np.random.RandomState(seed)
    if isinstance(seed, np.random.RandomState):
        return seed
    raise ValueError(f"{seed!r} cannot be used to seed a numpy.random.RandomState instance")


def init_uniform(flat, hidden_size, rng):
    """PyTorch's default: every weight and bias uniform in ``±1/sqrt(hidden_size)``."""
    bound = 1.0 / math.sqrt(hidden_size)
    flat[:] = rng.uniform(-bound, bound, size=flat.size)


class ParameterStore:
    """One flat parameter buffer and one flat gradient buffer with named views.

    Parameters
    ----------
    shapes : list of (str, tuple)
        Every parameter's name (with its part's prefix) and shape, in buffer order.
    dtype : numpy dtype
    backend : backend object or None
        Where the network computes (see :mod:`rnnumba.backend`); None until
        :meth:`attach` is called (a store is pickled without it).
    """

    def __init__(self, shapes, dtype, backend=None):
        self.shapes = [(name, tuple(int(s) for s in shape)) for name, shape in shapes]
        self.dtype = np.dtype(dtype)
        size = buffer_size(self.shapes)
        self.host = np.zeros(size, dtype=self.dtype)
        self.host_grads = np.zeros(size, dtype=self.dtype)
        self._offsets = {}
        offset = 0
        for name, shape in self.shapes:
            self._offsets[name] = offset
            offset += math.prod(shape)
        self.backend = None
        self.resident = False
        self.attach(backend)

    def attach(self, backend):
        """Compute on ``backend`` (None: host only, no views on a device yet)."""
        self.backend = backend
        self.resident = False
        if backend is None:
            self.device = self.device_grads = None
        else:
            # Whoever computes pushes the parameters first (a forward, a prediction, a fit),
            # so the mirror is only allocated here; gradients are written before read.
            self.device = backend.mirror(self.host, copy=False)
            self.device_grads = backend.mirror(self.host_grads, copy=False)
        self._views = {}

    @property
    def size(self):
        return self.host.size

    def views(self, prefix="", where="host", grads=False):
        """``{name without prefix: array}`` for the parameters under ``prefix``: host or
        device (``where``), parameters or gradients (``grads``); cached."""
        key = (prefix, where, grads)
        views = self._views.get(key)
        if views is None:
            if where == "host":
                flat = self.host_grads if grads else self.host
            else:
                flat = self.device_grads if grads else self.device
            start, stop = self.segment_bounds(prefix)
            shapes = [(name[len(prefix):], shape) for name, shape in self.shapes
                      if name.startswith(prefix)]
            views = self._views[key] = make_views(flat[start:stop], shapes)
        return views

    def segment_bounds(self, prefix=""):
        """``(start, stop)`` of the contiguous segment holding the names under ``prefix``."""
        names = [name for name, _ in self.shapes if name.startswith(prefix)]
        if not names:
            return 0, 0
        last = names[-1]
        return (self._offsets[names[0]],
                self._offsets[last] + math.prod(dict(self.shapes)[last]))

    def push(self):
        """Copy the host parameters to the device (one contiguous copy; none on the CPU)."""
        if self.device is not self.host:
            self.backend.copy_to_device(self.host, self.device)

    def pull(self):
        """Copy the device parameters into the host buffer (none on the CPU)."""
        if self.device is not self.host:
            self.backend.copy_to_host(self.device, self.host)

    def pull_grads(self):
        """Copy the device gradients into the host gradient buffer (none on the CPU)."""
        if self.device_grads is not self.host_grads:
            self.backend.copy_to_host(self.device_grads, self.host_grads)

    def hold(self):
        """Make the device buffer the record of truth (a fit): one upload, then none per
        forward until :meth:`release`."""
        self.push()
        self.resident = True

    def release(self):
        """End of :meth:`hold`: the device parameters come back to the host once."""
        if self.resident:
            self.resident = False
            self.pull()

    def __getstate__(self):
        state = self.__dict__.copy()
        state.update(backend=None, device=None, device_grads=None, resident=False, _views={})
        return state


class ParameterOwner:
    """A part of a network (input layer, recurrent stack, head) whose parameters live in a
    :class:`ParameterStore` under a prefix: its own store when it stands alone, a
    network's shared one once :meth:`bind` has placed it there."""

    def _own_store(self, shapes, dtype):
        self._shapes = [(name, tuple(shape)) for name, shape in shapes]
        self._store = ParameterStore(self._shapes, dtype)
        self._prefix = ""

    @property
    def parameter_shapes(self):
        """``[(name, shape), ...]`` in buffer order."""
        return list(self._shapes)

    @property
    def flat_params(self):
        """This part's segment of the parameter buffer (host); assigning copies into it."""
        start, stop = self._store.segment_bounds(self._prefix)
        return self._store.host[start:stop]

    @flat_params.setter
    def flat_params(self, values):
        values = np.asarray(values)
        target = self.flat_params
        if values.shape != target.shape:
            raise ValueError(f"flat_params must have shape {target.shape}, got {values.shape}")
        target[...] = values

    @property
    def flat_grads(self):
        """This part's segment of the gradient buffer (host)."""
        start, stop = self._store.segment_bounds(self._prefix)
        return self._store.host_grads[start:stop]

    def bind(self, store, prefix):
        """Keep the parameters in ``store`` under ``prefix`` (a network's one buffer); the
        current values are copied there."""
        views = store.views(prefix)
        for name, value in self._store.views(self._prefix).items():
            views[name][...] = value
        self._store, self._prefix = store, prefix

    def attach(self, backend):
        """Compute on ``backend``: the store gets its device mirror there (once)."""
        if self._store.backend is not backend:
            self._store.attach(backend)

    def params(self, where="device"):
        """``{name: array}`` of the parameters, on the device (``where="device"``, host views
        on the CPU) or the host."""
        return self._store.views(self._prefix, where=where)

    def grads(self, where="device"):
        """``{name: array}`` of the gradients, as :meth:`params`."""
        return self._store.views(self._prefix, where=where, grads=True)

    def state_dict(self):
        """Copies of the parameters by name."""
        return {name: view.copy() for name, view in self._store.views(self._prefix).items()}

    def load_state_dict(self, state_dict):
        """Copy parameters from a dict of array-likes; every key and shape is checked, and
        every value must be finite."""
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
            value = numeric_array(state_dict[name], f"state_dict[{name!r}]")
            if value.shape != shape:
                raise ValueError(f"state_dict[{name!r}] has shape {value.shape}, "
                                 f"expected {shape}")
            if not all_finite(value):
                raise ValueError(f"state_dict[{name!r}] contains NaN or infinity")
            arrays[name] = value
        views = self._store.views(self._prefix)
        for name, value in arrays.items():
            views[name][...] = value


def numeric_array(value, name):
    """``value`` as a NumPy array of numbers, else a ``TypeError`` naming it."""
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a numeric array: {exc}") from None
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be a numeric array, got dtype {array.dtype}")
    return array


def all_finite(array):
    """Whether ``array`` holds no NaN or infinity.

    A NaN or infinity makes the sum NaN or infinite, so a finite sum settles it without a
    flag per element (a flag array as large as a gradient was a quarter of the
    activations at the peak); only a sum that is not finite (a NaN, an infinity, or
    finite float32 values that overflow) looks at the elements.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        if np.isfinite(np.add.reduce(array, axis=None)):
            return True
    return bool(np.isfinite(array).all())
