"""Device-side state of a :class:`rnnumba.Recurrent` with ``device="cuda"``.

Where things live
-----------------
- **Parameters**: outside training, the host flat buffer (``Recurrent.flat_params``) is the
  record of truth, so ``state_dict``, ``load_state_dict``, in-place host edits and pickling
  keep working unchanged and a pickled CUDA network holds only NumPy arrays (it loads on a
  machine without a GPU). The runner keeps a device mirror of the whole buffer with named
  device views and refreshes it with *one* contiguous host-to-device copy
  (:meth:`CudaRunner.push_params`, counted in ``uploads``) at the start of every forward.
  During an estimator fit the runner is **resident** (:meth:`CudaRunner.hold`): the device
  buffer is the truth, forwards do not upload, the device optimizer updates it in place, and
  :meth:`CudaRunner.release` copies it back to the host once at the end.
- **Gradients**: accumulated into one device flat buffer by the GEMM kernels and copied to the
  host ``flat_grads`` with one device-to-host copy per backward, except when resident: then
  they stay on the device for the device optimizer.
- **Activations** (layer inputs, outputs, caches, dropout masks, lengths, initial states) stay
  on the device from ``forward`` to ``backward``; only the user-facing results
  (``output``, ``h_n``, ``c_n`` and the gradient dict) are copied to the host.
- **Workspace**: every device array is cached by name and shape and reused by the next call of
  the same shape, so a training loop over equal batches allocates nothing after its first
  step. Allocation failures raise :class:`~._jit.DeviceMemoryError` naming the bytes.

Runners are kept in a weak dictionary keyed by the network, so they never enter a pickle and
die with their network.
"""

import weakref

import numpy as np

from ...params import make_views
from . import CELLS, common
from ._jit import DeviceMemoryError, device_empty, fill, multiply, multiply_inplace

__all__ = ["CudaRunner", "DeviceMemoryError", "runner_for"]

_RUNNERS = weakref.WeakKeyDictionary()


def runner_for(model):
    """The :class:`CudaRunner` of ``model`` (created on first use)."""
    runner = _RUNNERS.get(model)
    if runner is None or runner.key != _key(model):
        runner = _RUNNERS[model] = CudaRunner(model)
    return runner


def _key(model):
    return (model.cell, model.dtype.str, model._flat_params.size, tuple(model._shapes))


class CudaRunner:
    """Device mirrors of one network's parameters, gradients, activations and workspace."""

    def __init__(self, model):
        self.key = _key(model)
        self.dtype = model.dtype
        size = model._flat_params.size
        self.params = device_empty(size, self.dtype, "parameters")
        self.grads = device_empty(size, self.dtype, "parameter gradients")
        self.param_views = make_views(self.params, model._shapes)
        self.grad_views = make_views(self.grads, model._shapes)
        self._buffers = {}
        self._acts = None
        #: True while the device parameters are the record of truth (see :meth:`hold`).
        self.resident = False
        #: Host-to-device copies of the whole parameter buffer so far (tests and profiling).
        self.uploads = 0

    # ----------------------------------------------------------------- parameters
    def push_params(self, model):
        """Copy the host parameters to the device (one contiguous copy)."""
        self.params.copy_to_device(model._flat_params)
        self.uploads += 1

    def pull_params(self, model):
        """Copy the device parameters into the host ``flat_params`` (in place)."""
        self.params.copy_to_host(model._flat_params)

    def hold(self, model):
        """Make the device parameters the truth: upload once, then no upload per forward and
        no gradient download per backward until :meth:`release`."""
        self.push_params(model)
        self.resident = True

    def release(self, model):
        """End of :meth:`hold`: copy the device parameters back to the host once."""
        if self.resident:
            self.resident = False
            self.pull_params(model)

    # ----------------------------------------------------------------- memory
    def buffer(self, name, shape, dtype=None):
        """A cached device array for ``name``, reallocated only when the shape changes."""
        dtype = np.dtype(self.dtype if dtype is None else dtype)
        shape = tuple(int(s) for s in shape)
        array = self._buffers.get(name)
        if array is None or array.shape != shape or array.dtype != dtype:
            self._buffers.pop(name, None)  # free the old one before asking for the new
            array = self._buffers[name] = device_empty(shape, dtype, name)
        return array

    def upload(self, name, host, dtype=None):
        """Copy a host array into the cached device buffer ``name``."""
        host = np.ascontiguousarray(host, dtype=self.dtype if dtype is None else dtype)
        array = self.buffer(name, host.shape, host.dtype)
        if host.size:
            array.copy_to_device(host)
        return array

    def placeholder(self):
        return self.buffer("placeholder", (0, 0))

    # ----------------------------------------------------------------- forward
    def forward(self, model, X, lengths, hx):
        """:meth:`Recurrent._forward_unchecked` on the device; returns host arrays."""
        from ...recurrent import NONLINEARITIES

        kernels = CELLS[model.cell]
        n_seq, steps, _ = X.shape
        layers, dirs, hid = model.num_layers, model.num_directions, model.hidden_size
        lstm = model.cell == "lstm"
        gates = kernels.GATES
        if not self.resident:
            self.push_params(model)
        act = NONLINEARITIES[model.nonlinearity]
        state_shape = (layers * dirs, n_seq, hid)

        x_tm = self.upload("x", X.transpose(1, 0, 2))
        lengths_dev = self.upload("lengths", lengths, np.int64)
        h0, c0 = self._initial_state(hx, state_shape, lstm)
        h_n = self.buffer("h_n", state_shape)
        c_n = self.buffer("c_n", state_shape) if lstm else None
        proj = self.buffer("proj", (steps, n_seq, gates * hid))
        placeholder = self.placeholder()

        layer_input = x_tm
        inputs, outputs, caches, masks = [], [], [], []
        for layer in range(layers):
            out = self.buffer(f"out{layer}", (steps, n_seq, dirs * hid))
            caches.append([])
            for direction in range(dirs):
                k = layer * dirs + direction
                w = self._weights(layer, direction, self.param_views)
                cache = self.buffer(f"cache{layer}_{direction}",
                                    (steps, n_seq, kernels.cache_width(hid)))
                common.project_input(layer_input, w["weight_ih"], w["bias_ih"], proj)
                kernels.forward_sequence(
                    proj, w["weight_hh"], w["bias_hh"], h0[k], c0[k] if lstm else placeholder,
                    lengths_dev, direction == 1, act, out, direction * hid, cache, h_n[k],
                    c_n[k] if lstm else placeholder)
                caches[-1].append(cache)
            inputs.append(layer_input)
            outputs.append(out)
            mask = None
            if layer < layers - 1 and model.training and model.dropout > 0.0:
                keep = 1.0 - model.dropout
                host_mask = ((model._rng.random_sample(out.shape) < keep).astype(model.dtype)
                             / keep)
                mask = self.upload(f"mask{layer}", host_mask)
                layer_input = self.buffer(f"dropped{layer}", out.shape)
                multiply(out, mask, layer_input)
            else:
                layer_input = out
            masks.append(mask)
        self._acts = {"lengths": lengths_dev, "h0": h0, "c0": c0, "inputs": inputs,
                      "outputs": outputs, "caches": caches, "masks": masks}
        output = np.ascontiguousarray(outputs[-1].copy_to_host().transpose(1, 0, 2))
        h_host = h_n.copy_to_host()
        if lstm:
            return output, (h_host, c_n.copy_to_host())
        return output, h_host

    def _initial_state(self, hx, shape, lstm):
        h_init, c_init = (hx if hx is not None else (None, None)) if lstm else (hx, None)
        h0 = self._state("h0", h_init, shape)
        c0 = self._state("c0", c_init, shape) if lstm else None
        return h0, c0

    def _state(self, name, host, shape):
        if host is None:
            array = self.buffer(name, shape)
            fill(array, 0.0)
            return array
        return self.upload(name, host)

    # ----------------------------------------------------------------- backward
    def backward(self, model, grad_output, grad_h_n, grad_c_n, need_input_grad=True):
        """:meth:`Recurrent._backward_unchecked` on the device (``grad_output`` batch-major,
        as there); returns the host dict.

        With ``need_input_grad=False`` the first layer's input gradient is neither computed
        nor copied back, and ``result["input"]`` is None. While :attr:`resident`, the weight
        gradients stay in :attr:`grads` (the dict holds only ``"input"``, ``"h0"``, ``"c0"``).
        """
        from ...recurrent import NONLINEARITIES

        if self._acts is None:
            raise RuntimeError("backward() needs the activations of a forward() call first")
        kernels = CELLS[model.cell]
        acts = self._acts
        lstm = model.cell == "lstm"
        grad_out_tm = np.ascontiguousarray(grad_output.transpose(1, 0, 2))
        steps, n_seq, _ = grad_out_tm.shape
        dirs, hid = model.num_directions, model.hidden_size
        gates = kernels.GATES
        act = NONLINEARITIES[model.nonlinearity]
        placeholder = self.placeholder()
        fill(self.grads, 0.0)

        grad_layer_out = self.upload("grad_out", grad_out_tm)
        grad_h_n = self.upload("grad_h_n", grad_h_n)
        grad_c_n = self.upload("grad_c_n", grad_c_n) if lstm else None
        state_shape = grad_h_n.shape
        grad_h0 = self.buffer("grad_h0", state_shape)
        grad_c0 = self.buffer("grad_c0", state_shape) if lstm else None
        d_ih = self.buffer("d_ih", (steps, n_seq, gates * hid))
        d_hh = self.buffer("d_hh", d_ih.shape) if model.cell == "gru" else d_ih
        for layer in reversed(range(model.num_layers)):
            layer_input = acts["inputs"][layer]
            grad_input = None
            if layer > 0 or need_input_grad:
                grad_input = self.buffer(f"grad_in{layer}", layer_input.shape)
                fill(grad_input, 0.0)
            for direction in range(dirs):
                k = layer * dirs + direction
                w = self._weights(layer, direction, self.param_views)
                g = self._weights(layer, direction, self.grad_views)
                kernels.backward_sequence(
                    w["weight_hh"], w["bias_hh"], acts["h0"][k],
                    acts["c0"][k] if lstm else placeholder, acts["lengths"], direction == 1,
                    act, acts["outputs"][layer], direction * hid, acts["caches"][layer][direction],
                    grad_layer_out, grad_h_n[k], grad_c_n[k] if lstm else placeholder, d_ih,
                    d_hh, grad_h0[k], grad_c0[k] if lstm else placeholder)
                states = (acts["outputs"][layer], direction * hid, acts["h0"][k],
                          acts["lengths"], direction == 1)
                if grad_input is None:
                    common.parameter_gradients(layer_input, *states, d_ih, d_hh,
                                               g["weight_ih"], g["weight_hh"], g["bias_ih"],
                                               g["bias_hh"])
                else:
                    common.weight_gradients(layer_input, *states, d_ih, d_hh, w["weight_ih"],
                                            g["weight_ih"], g["weight_hh"], g["bias_ih"],
                                            g["bias_hh"], grad_input)
            if layer > 0 and acts["masks"][layer - 1] is not None:
                multiply_inplace(grad_input, acts["masks"][layer - 1])
            grad_layer_out = grad_input
        if self.resident:
            result = {}
        else:
            self.grads.copy_to_host(model._flat_grads)
            result = {name: view.copy() for name, view in model._grads.items()}
        result["input"] = (None if grad_layer_out is None else np.ascontiguousarray(
            grad_layer_out.copy_to_host().transpose(1, 0, 2)))
        result["h0"] = grad_h0.copy_to_host()
        if lstm:
            result["c0"] = grad_c0.copy_to_host()
        return result

    @staticmethod
    def _weights(layer, direction, views):
        suffix = f"_l{layer}" + ("_reverse" if direction else "")
        return {kind: views[kind + suffix]
                for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
