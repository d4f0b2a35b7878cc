"""Devices: which backend a network runs on, and the backend objects themselves.

A backend implements the kernel contract of :mod:`rnnumba.kernels` on one device, and the
little the layers above need besides: arrays where that device keeps them, copies to and
from the host, and one layer direction's forward and backward phases. The layer loop
(:class:`rnnumba.Recurrent`), the learning parts and the training core are written once
against this object; the device shows up nowhere else.

- :class:`CpuBackend`: ``@njit`` kernels and NumPy/BLAS GEMMs on host arrays. Its extras
  stay behind the contract: projections and gate gradients written in place of the gate
  cache, the RNN's BPTT a chunk of steps at a time, batch-major arrays read and written
  through time-major views, BLAS single-threaded while rnnumba splits the work itself.
- :class:`CudaBackend`: ``numba.cuda`` kernels on device arrays; imported, with
  ``numba.cuda``, only when a CUDA path is asked for, so ``import rnnumba`` never touches
  the CUDA toolkit. Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) counts as a device
  for ``device="cuda"``, never for ``"auto"``: that is how CI runs the CUDA kernels.
"""

import contextlib

import numpy as np

from .kernels.gates import ACT_RELU, ACT_TANH
from .kernels.modes import POOL_MODES  # noqa: F401  (the heads name their pooling by it)

#: The vanilla RNN's activations, as the kernels number them.
NONLINEARITIES = {"tanh": ACT_TANH, "relu": ACT_RELU}

DEVICES = ("auto", "cpu", "cuda")

_INSTALL_HINT = ("install the CUDA backend with `pip install 'rnnumba[cuda]'` or "
                 "`pip install 'numba-cuda[cu12]'` (cu13 for CUDA 13 drivers), or use "
                 "device='cpu'")


# --------------------------------------------------------------------------- resolution


def cuda_unavailable_reason():
    """Return ``None`` when a CUDA device works, else a sentence saying why not and what to do."""
    try:
        from numba import cuda
    except ImportError as exc:  # numba without its CUDA target, or numba-cuda missing
        return f"numba-cuda is not installed ({exc}); {_INSTALL_HINT}"
    except Exception as exc:  # a broken CUDA installation can fail at import
        return f"numba.cuda could not be imported ({type(exc).__name__}: {exc}); {_INSTALL_HINT}"
    try:
        if cuda.is_available():
            return None
    except Exception as exc:
        return (f"the CUDA driver could not be initialised ({type(exc).__name__}: {exc}); "
                "check the NVIDIA driver installation, or use device='cpu'")
    return _diagnose(cuda)


def _diagnose(cuda):
    """Why ``cuda.is_available()`` said no: no driver, or a driver without devices."""
    try:
        from numba.cuda.cudadrv.driver import driver
        count = driver.get_device_count()
    except Exception as exc:
        lines = [line.strip(" :") for line in str(exc).splitlines() if line.strip(" :")]
        detail = "; ".join(lines)[:300] or type(exc).__name__
        return (f"no usable CUDA driver was found ({detail}); install the NVIDIA driver "
                "(a machine with an NVIDIA GPU is needed), or use device='cpu'")
    if count == 0:
        return ("the CUDA driver reports no GPU (is CUDA_VISIBLE_DEVICES empty, or the "
                "device busy or in an exclusive mode?); use device='cpu'")
    return "no CUDA device could be used (numba.cuda.is_available() is False); use device='cpu'"


def simulator_enabled():
    """Whether Numba's CUDA simulator is on (``NUMBA_ENABLE_CUDASIM=1`` when numba was first
    imported): CUDA kernels then run as Python threads, correct but very slow."""
    from numba import config
    return bool(config.ENABLE_CUDASIM)


def resolve_device(device):
    """Map a requested device to the one that will run: ``"cpu"`` or ``"cuda"``.

    ``"auto"`` picks ``"cuda"`` when a real CUDA device works, else ``"cpu"``; Numba's CUDA
    simulator never counts for ``"auto"`` (a test run under it would train every default
    network there). ``"cuda"`` accepts the simulator and otherwise raises a ``ValueError``
    saying why no device works and what to do.
    """
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    if device == "cpu":
        return "cpu"
    if device == "auto" and simulator_enabled():
        return "cpu"
    reason = cuda_unavailable_reason()
    if device == "auto":
        return "cpu" if reason else "cuda"
    if reason:
        raise ValueError(f"device='cuda' is not available: {reason}")
    return "cuda"


def runnable_device(device):
    """Where something trained on ``device`` can run now: that device, or the CPU when it was
    ``"cuda"`` and no CUDA device works here (weights are host arrays either way)."""
    if device == "cuda" and cuda_unavailable_reason() is not None:
        return "cpu"
    return device


def cell_kernels(device, cell):
    """Return ``(common, cell_module)``: the GEMM phases and the cell's recurrence kernels."""
    if device == "cpu":
        from .kernels.cpu import CELLS, common
        return common, CELLS[cell]
    if device == "cuda":
        from .kernels.cuda import CELLS, common
        return common, CELLS[cell]
    raise ValueError(f"no kernels for device {device!r}")


_BACKENDS = {}


def get_backend(device):
    """The backend object of ``"cpu"`` or ``"cuda"`` (``"auto"`` resolved first); CUDA raises
    a ``ValueError`` saying why where no device works."""
    device = resolve_device(device)
    backend = _BACKENDS.get(device)
    if backend is None:
        backend = _BACKENDS[device] = CpuBackend() if device == "cpu" else CudaBackend()
    return backend


class _NoClock:
    """``with NO_CLOCK(phase):`` measures nothing (a plain context manager: a generator-based
    one costs microseconds per phase, which a small network's call notices)."""

    def __call__(self, name):
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


#: A clock that measures nothing: ``with clock(phase): ...``.
NO_CLOCK = _NoClock()


# --------------------------------------------------------------------------- the CPU


class _HostWorkspace:
    """Named arrays for the CPU: new ones every time (a caller may keep what it was given,
    such as the read-only output view that :meth:`rnnumba.Recurrent.forward` returns)."""

    def empty(self, name, shape, dtype):
        return np.empty(shape, dtype=dtype)

    def zeros(self, name, shape, dtype):
        return np.zeros(shape, dtype=dtype)

    def upload(self, name, host, dtype=None):
        return np.ascontiguousarray(host, dtype=dtype)


class CpuBackend:
    """The kernel contract on host arrays (``@njit`` kernels, NumPy/BLAS GEMMs)."""

    name = "cpu"

    def __init__(self):
        from .kernels import cpu
        self._kernels = cpu
        self.common = cpu.common

    @property
    def layers(self):
        """Dense and pooling kernels."""
        from .kernels.cpu import layers
        return layers

    @property
    def losses(self):
        """Loss kernels."""
        from .kernels.cpu import losses
        return losses

    @property
    def optim(self):
        """Optimizer, clipping and L2 kernels on flat buffers."""
        from .kernels.cpu import optim
        return optim

    @property
    def embedding(self):
        """Embedding lookup and its deterministic backward."""
        from .kernels.cpu import embedding
        return embedding

    def cell(self, cell):
        """The recurrence kernels of ``cell``."""
        return self._kernels.CELLS[cell]

    def compute(self):
        """Context of a computation: BLAS single-threaded while rnnumba splits the work."""
        return self._kernels.single_threaded_blas()

    def sync(self):
        """Wait for the device (nothing to wait for on the CPU)."""

    # ---------------------------------------------------------------- arrays
    def workspace(self):
        return _HostWorkspace()

    def mirror(self, host, copy=True):
        """``host`` where this device keeps arrays: on the CPU the array itself."""
        return host

    def copy_to_device(self, host, device):
        if device is not host:
            device[...] = host

    def copy_to_host(self, device, host):
        if device is not host:
            host[...] = device

    def to_host(self, array):
        return array

    def upload(self, host, dtype=None):
        return np.ascontiguousarray(host, dtype=dtype)

    def fill(self, array, value):
        array[...] = value

    def multiply(self, a, b, out):
        np.multiply(a, b, out=out)

    def placeholder(self, dtype, ndim=2):
        return np.empty((0,) * ndim, dtype=dtype)

    def time_major(self, batch_major):
        """A batch-major ``(N, T, K)`` array as the kernels take it: its time-major view
        (the CPU kernels read and write batch-major storage through it, kernel contract)."""
        return batch_major.transpose(1, 0, 2)

    def batch_major_host(self, time_major, read_only):
        """A time-major ``(T, N, K)`` result as a batch-major host array: a view (the
        output, made read-only, as PyTorch's ``batch_first`` output is a view of its own: a
        copy would add a whole layer's outputs to the peak)."""
        view = time_major.transpose(1, 0, 2)
        if read_only:
            view.flags.writeable = False
        return view

    def input_gradient(self, workspace, name, steps, batch, features, dtype):
        """Zeros for a layer's input gradient: batch-major storage seen time-major, so that
        the first layer's, which the caller gets, needs no copy."""
        return np.zeros((batch, steps, features), dtype=dtype).transpose(1, 0, 2)

    def backward_scratch(self, workspace, layer_directions):
        """What one backward pass over ``layer_directions`` layers and directions shares:
        gate-gradient buffers, kept for that pass only (the RNN's chunk buffer is a share of
        the activations of all of them)."""
        return {"layer_directions": layer_directions}

    # ---------------------------------------------------------------- one layer direction
    def forward_direction(self, cell, kernels, x, weights, h0, c0, lengths, reverse, act, out,
                          col, cache, h_n, c_n, workspace, clock):
        """Input projection and recurrence of one layer and direction (kernel contract); the
        projection goes straight into what the recurrence writes over it."""
        proj, _, _ = self.common.in_place_buffers(cell, cache, out, col, h0.shape[1])
        with clock("input_projection"):
            self.common.project_input(x, weights["weight_ih"], weights["bias_ih"], proj)
        with clock("forward_recurrence"):
            kernels.forward_sequence(proj, weights["weight_hh"], weights["bias_hh"], h0, c0,
                                     lengths, reverse, act, out, col, cache, h_n, c_n)

    def backward_direction(self, cell, kernels, x, weights, grads, h0, c0, lengths, reverse,
                           act, out, col, cache, grad_out, grad_h_n, grad_c_n, grad_h0,
                           grad_c0, grad_x, spend, scratch, clock):
        """BPTT and weight gradients of one layer and direction (kernel contract).

        With ``spend`` the gate gradients go over the spent gate cache; the RNN, which has
        none, runs its BPTT a chunk of steps at a time (``kernels/cpu/chunks.py``).
        ``scratch`` is a dict that lives for one backward pass: gate-gradient buffers
        allocated there serve every layer of the same width.
        """
        steps, batch = out.shape[0], out.shape[1]
        hidden = h0.shape[1]
        if cell == "rnn":
            buffer = _scratch(scratch, "chunk",
                              (self._kernels.chunk_steps(steps, scratch["layer_directions"]),
                               batch, hidden), out.dtype)
            self._kernels.backward_in_chunks(weights, grads, x, out, col, h0, lengths, reverse,
                                             act, grad_out, grad_h_n, grad_h0, grad_x, buffer,
                                             clock)
            return
        if spend:
            _, d_ih, d_hh = self.common.in_place_buffers(cell, cache, out, col, hidden)
        else:
            width = kernels.GATES * hidden
            d_ih = _scratch(scratch, "d_ih", (steps, batch, width), out.dtype)
            d_hh = (_scratch(scratch, "d_hh", (steps, batch, width), out.dtype)
                    if cell == "gru" else d_ih)
        with clock("bptt_recurrence"):
            kernels.backward_sequence(weights["weight_hh"], weights["bias_hh"], h0, c0, lengths,
                                      reverse, act, out, col, cache, grad_out, grad_h_n,
                                      grad_c_n, d_ih, d_hh, grad_h0, grad_c0)
        with clock("weight_gradients"):
            self.common.weight_gradients(x, out, col, h0, lengths, reverse, d_ih, d_hh,
                                         weights["weight_ih"], grads["weight_ih"],
                                         grads["weight_hh"], grads["bias_ih"],
                                         grads["bias_hh"], grad_x)

    def __reduce__(self):
        return get_backend, ("cpu",)

    def __repr__(self):
        return "CpuBackend()"


def _scratch(scratch, name, shape, dtype):
    """A buffer kept in ``scratch`` under ``name``, replaced (the old one released first)
    when the shape changes."""
    array = scratch.get(name)
    if array is None or array.shape != shape:
        scratch.pop(name, None)
        array = scratch[name] = np.empty(shape, dtype=dtype)
    return array


# --------------------------------------------------------------------------- CUDA


class _DeviceWorkspace:
    """Named device arrays kept between calls and reallocated only when the shape changes,
    so a loop over equal batches allocates nothing after its first step."""

    def __init__(self, backend):
        self._backend = backend
        self._arrays = {}

    def empty(self, name, shape, dtype):
        dtype = np.dtype(dtype)
        shape = tuple(int(s) for s in shape)
        array = self._arrays.get(name)
        if array is None or tuple(array.shape) != shape or array.dtype != dtype:
            self._arrays.pop(name, None)  # free the old one before asking for the new
            array = self._arrays[name] = self._backend.device_empty(shape, dtype, name)
        return array

    def zeros(self, name, shape, dtype):
        array = self.empty(name, shape, dtype)
        self._backend.fill(array, 0)
        return array

    def upload(self, name, host, dtype=None):
        host = np.ascontiguousarray(host, dtype=dtype)
        array = self.empty(name, host.shape, host.dtype)
        self._backend.copy_to_device(host, array)
        return array


class CudaBackend:
    """The kernel contract on ``numba.cuda`` device arrays."""

    name = "cuda"

    def __init__(self):
        from .kernels import cuda
        from .kernels.cuda import _jit
        self._kernels = cuda
        self._jit = _jit
        self.common = cuda.common

    @property
    def layers(self):
        from .kernels.cuda import layers
        return layers

    @property
    def losses(self):
        from .kernels.cuda import losses
        return losses

    @property
    def optim(self):
        from .kernels.cuda import optim
        return optim

    @property
    def embedding(self):
        from .kernels.cuda import embedding
        return embedding

    def cell(self, cell):
        return self._kernels.CELLS[cell]

    def compute(self):
        return contextlib.nullcontext()

    def sync(self):
        from numba import cuda
        cuda.synchronize()

    # ---------------------------------------------------------------- arrays
    def device_empty(self, shape, dtype, what="array"):
        return self._jit.device_empty(shape, dtype, what)

    def workspace(self):
        return _DeviceWorkspace(self)

    def mirror(self, host, copy=True):
        array = self.device_empty(host.shape, host.dtype, "mirror of a host array")
        if copy:
            self.copy_to_device(host, array)
        return array

    def copy_to_device(self, host, device):
        if host.size:
            device.copy_to_device(host)

    def copy_to_host(self, device, host):
        if host.size:
            device.copy_to_host(host)

    def to_host(self, array):
        return array.copy_to_host()

    def upload(self, host, dtype=None):
        host = np.ascontiguousarray(host, dtype=dtype)
        array = self.device_empty(host.shape, host.dtype, "array")
        self.copy_to_device(host, array)
        return array

    def fill(self, array, value):
        self._jit.fill(array, value)

    def multiply(self, a, b, out):
        if out is a:
            self._jit.multiply_inplace(out, b)
        else:
            self._jit.multiply(a, b, out)

    def placeholder(self, dtype, ndim=2):
        return self.device_empty((0,) * ndim, dtype, "placeholder")

    def time_major(self, batch_major):
        raise TypeError("the CUDA kernels take time-major device arrays")

    def batch_major_host(self, time_major, read_only):
        return np.ascontiguousarray(time_major.copy_to_host().transpose(1, 0, 2))

    def input_gradient(self, workspace, name, steps, batch, features, dtype):
        return workspace.zeros(name, (steps, batch, features), dtype)

    def backward_scratch(self, workspace, layer_directions):
        return {"workspace": workspace}

    # ---------------------------------------------------------------- one layer direction
    def forward_direction(self, cell, kernels, x, weights, h0, c0, lengths, reverse, act, out,
                          col, cache, h_n, c_n, workspace, clock):
        steps, batch = out.shape[0], out.shape[1]
        proj = workspace.empty("proj", (steps, batch, weights["weight_ih"].shape[0]), out.dtype)
        with clock("input_projection"):
            self.common.project_input(x, weights["weight_ih"], weights["bias_ih"], proj)
        with clock("forward_recurrence"):
            kernels.forward_sequence(proj, weights["weight_hh"], weights["bias_hh"], h0, c0,
                                     lengths, reverse, act, out, col, cache, h_n, c_n)

    def backward_direction(self, cell, kernels, x, weights, grads, h0, c0, lengths, reverse,
                           act, out, col, cache, grad_out, grad_h_n, grad_c_n, grad_h0,
                           grad_c0, grad_x, spend, scratch, clock):
        steps, batch = out.shape[0], out.shape[1]
        shape = (steps, batch, weights["weight_hh"].shape[0])
        workspace = scratch["workspace"]
        d_ih = workspace.empty("d_ih", shape, out.dtype)
        d_hh = workspace.empty("d_hh", shape, out.dtype) if cell == "gru" else d_ih
        with clock("bptt_recurrence"):
            kernels.backward_sequence(weights["weight_hh"], weights["bias_hh"], h0, c0, lengths,
                                      reverse, act, out, col, cache, grad_out, grad_h_n,
                                      grad_c_n, d_ih, d_hh, grad_h0, grad_c0)
        with clock("weight_gradients"):
            self.common.weight_gradients(x, out, col, h0, lengths, reverse, d_ih, d_hh,
                                         weights["weight_ih"], grads["weight_ih"],
                                         grads["weight_hh"], grads["bias_ih"],
                                         grads["bias_hh"], grad_x)

    def __reduce__(self):
        return get_backend, ("cuda",)

    def __repr__(self):
        return "CudaBackend()"
