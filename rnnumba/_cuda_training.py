"""The training step of :func:`rnnumba.training.run_epochs` for networks on ``device="cuda"``.

Imported only when a network on the CUDA backend is trained (it imports ``numba.cuda``).

Where the truth lives during a fit
----------------------------------
:class:`DeviceSession` opens when ``run_epochs`` starts and closes (in a ``finally``) when it
returns or raises:

- **open**: every recurrent layer's runner is put in resident mode (one host-to-device copy
  of its flat parameter buffer) and the optimizer state of those buffers (Adam ``m``/``v``,
  SGD velocities, float64) is copied to the device once. From then on the *device* buffers
  are the record of truth; the host ``flat_params`` of the recurrent layers are stale.
- **each batch**: forward and backward run on the device without touching the host
  parameters; the weight gradients stay on the device; the L2 term, the global-norm
  clipping, the finiteness checks, the divergence backup (device-to-device copy) and the
  SGD/Adam update all run on the device (:mod:`rnnumba.kernels.cuda.optim`). Per batch only
  the data (``X``), the last hidden state or outputs for the head, the head's gradient and
  three float64 scalars (penalty, norm, finiteness) cross the bus.
- **the dense head** stays on the host (its input is the small ``(N, D*H)`` last state, or
  the per-step outputs with ``return_sequences``): its weights, gradients and optimizer
  state are NumPy arrays updated by the host optimizer's own code, in the same step.
- **snapshots**: early-stopping's best weights and the divergence backup are device copies
  (device-to-device); restoring them is a device-to-device copy too.
- **close**: the device parameters and optimizer state are copied back into the host
  arrays once, and device snapshots in ``est._best_weights`` become host arrays, so the
  estimator pickles and saves with host arrays only. Because close runs in ``finally``, a
  ``KeyboardInterrupt`` or a :class:`~rnnumba.training.TrainingDivergedError` still leaves
  correct host weights.

Results equal the CPU loop up to floating-point rounding (the device reductions sum in a
different order and may fuse multiply-adds); the random streams (shuffling, dropout) are
the same host streams.
"""

import numpy as np

from .kernels.cuda import optim as device_optim
from .kernels.cuda._jit import device_empty, to_device
from .optim import SGD, Adam

__all__ = ["DeviceSession"]


def _is_device(array):
    return hasattr(array, "copy_to_host")


class DeviceSession:
    """Device-resident parameters, gradients and optimizer state of one fit."""

    def __init__(self, net, optimizer):
        if not isinstance(optimizer, (SGD, Adam)):
            raise TypeError(f"no device step for optimizer {type(optimizer).__name__}")
        self.net = net
        self.optimizer = optimizer
        self.layers = list(net.layers)
        self.head = net.head
        self.head_index = len(self.layers)
        self.runners = [layer._cuda_runner() for layer in self.layers]
        self._opened = []
        try:
            for runner, layer in zip(self.runners, self.layers):
                runner.hold(layer)
                self._opened.append((runner, layer))
            self.params = [runner.params for runner in self.runners]
            self.grads = [runner.grads for runner in self.runners]
            n = self.head_index
            if isinstance(optimizer, Adam):
                self.state = {"ms": [to_device(m, "Adam first moments")
                                     for m in optimizer.ms[:n]],
                              "vs": [to_device(v, "Adam second moments")
                                     for v in optimizer.vs[:n]]}
            else:
                self.state = {"velocities": [to_device(v, "SGD velocities")
                                             for v in optimizer.velocities[:n]]}
            self._backup = [device_empty(p.size, p.dtype, "weight backup") for p in self.params]
            self._partials = device_empty(
                max(device_optim.reduce_blocks(p.size) for p in self.params), np.float64,
                "reduction partial sums")
            self._masks = None
            self._work = None
            self._acc = None
        except BaseException:
            self._release()
            raise
        net._device_session = self

    # ------------------------------------------------------------------ weights
    def get_weights(self):
        """Copies of every buffer: device copies for the recurrent layers, host for the head."""
        out = []
        for p in self.params:
            copy = device_empty(p.size, p.dtype, "weight snapshot")
            copy.copy_to_device(p)
            out.append(copy)
        out.append(self.head.flat_params.copy())
        return out

    def set_weights(self, weights):
        """Restore from :meth:`get_weights` (device copies) or host arrays."""
        for runner, layer, w in zip(self.runners, self.layers, weights):
            if _is_device(w):
                runner.params.copy_to_device(w)
            else:
                layer.flat_params[...] = w
                runner.push_params(layer)
        self.head.flat_params[...] = weights[-1]

    # ------------------------------------------------------------------ one batch
    def train_step(self, est, X, lengths, target, weights, normalizer, loss_fn, bptt_steps,
                   alpha, clip_norm, position, diverged):
        """Loss, gradients, L2, clipping and the optimizer step of one batch, on the device.

        ``diverged(backup)`` is called (and raises) when the loss, the gradients or the new
        weights are not finite; ``backup`` None means the current weights are still finite.
        """
        head = self.head
        loss = self._loss_and_gradients(X, lengths, target, weights, normalizer, loss_fn,
                                        bptt_steps)
        if alpha > 0.0:
            if self._masks is None:
                masks = self.net.weight_masks()
                self._masks = [to_device(m.astype(p.dtype), "L2 mask")
                               for m, p in zip(masks, self.params)]
                self._head_mask = masks[-1].astype(head.flat_params.dtype)
                self._work = [device_empty(p.size, p.dtype, "L2 workspace")
                              for p in self.params]
            coef = alpha / normalizer
            penalty = device_optim.add_l2(self.params, self.grads, self._masks, self._work,
                                          coef, self._partials)
            pm = head.flat_params * self._head_mask
            penalty += float(np.einsum("i,i->", pm, pm, dtype=np.float64))
            pm *= coef
            head.flat_grads += pm
            loss += 0.5 * alpha * penalty / normalizer
        norm = self._clip(clip_norm)
        if not (np.isfinite(loss) and np.isfinite(norm)):
            diverged(None)
        for b, p in zip(self._backup, self.params):
            b.copy_to_device(p)
        head_backup = head.flat_params.copy()
        self._step()
        if not (device_optim.all_finite(self.params, self._partials)
                and np.isfinite(float(np.einsum("i->", head.flat_params)))):
            diverged(self._backup + [head_backup])
        return loss

    def _loss_and_gradients(self, X, lengths, target, weights, normalizer, loss_fn,
                            bptt_steps):
        """:meth:`SequenceNetwork.loss_and_gradients` with the truncated-BPTT accumulation
        of the recurrent gradients done on the device."""
        net = self.net
        steps = X.shape[1]
        if bptt_steps is None or bptt_steps >= steps:
            return net.loss_and_gradients(X, lengths, target, weights, normalizer, loss_fn)
        if self._acc is None:
            self._acc = [device_empty(g.size, g.dtype, "gradient accumulator")
                         for g in self.grads]
        total = 0.0
        head_acc = None
        for loss in net.truncated_chunks(X, lengths, target, weights, normalizer, loss_fn,
                                         bptt_steps):
            total += loss
            if head_acc is None:
                for acc, g in zip(self._acc, self.grads):
                    acc.copy_to_device(g)
                head_acc = self.head.flat_grads.copy()
            else:
                device_optim.add(self._acc, self.grads)
                head_acc += self.head.flat_grads
        for g, acc in zip(self.grads, self._acc):
            g.copy_to_device(acc)
        self.head.flat_grads[...] = head_acc
        return total

    def _clip(self, max_norm):
        """:func:`rnnumba.optim.clip_grad_norm` over the device and head gradients."""
        head_grad = self.head.flat_grads
        total = 0.0
        for g in self.grads:
            total += device_optim.sum_of_squares(g, self._partials)
        total += float(np.einsum("i,i->", head_grad, head_grad, dtype=np.float64))
        norm = float(np.sqrt(total))
        if max_norm is not None and np.isfinite(norm) and norm > max_norm:
            factor = max_norm / (norm + 1e-12)
            device_optim.scale(self.grads, factor)
            head_grad *= factor
        return norm

    def _step(self):
        opt = self.optimizer
        host_params = [None] * self.head_index + [self.head.flat_params]
        host_grads = [None] * self.head_index + [self.head.flat_grads]
        if isinstance(opt, Adam):
            opt.t += 1
            device_optim.adam_step(self.params, self.grads, self.state["ms"], self.state["vs"],
                                   opt.t, opt.learning_rate, opt.beta_1, opt.beta_2,
                                   opt.epsilon)
        else:
            device_optim.sgd_step(self.params, self.grads, self.state["velocities"],
                                  opt.learning_rate, opt.momentum, opt.nesterov)
        opt._update(host_params, host_grads, [self.head_index])

    # ------------------------------------------------------------------ end of fit
    def close(self, est):
        """Copy parameters and optimizer state back to the host (once); host snapshots."""
        try:
            best = getattr(est, "_best_weights", None)
            if best is not None and any(_is_device(w) for w in best):
                est._best_weights = [w.copy_to_host() if _is_device(w) else w for w in best]
            for name, arrays in self.state.items():
                host = getattr(self.optimizer, name)
                for dev, h in zip(arrays, host):
                    if h.size:
                        dev.copy_to_host(h)
        finally:
            self._release()

    def _release(self):
        self.net._device_session = None
        for runner, layer in self._opened:
            runner.release(layer)
        self._opened = []
