"""The network the estimators train: an input layer, a recurrent stack and a head.

:class:`SequenceModel` joins the three parts on one parameter buffer
(:class:`~rnnumba.params.ParameterStore`, prefixes ``input.``, ``recurrent.``, ``head.``)
and runs them on its device's backend: a batch is prepared once (time-major arrays on the
device), then forward, loss and backward stay there. The recurrent stack is one
:class:`~rnnumba.Recurrent` whatever the widths of its layers, so the layer loop and its
dropout are the recurrent layer's own.

Which parts a model has is the estimator's choice: numeric or embedded tokens in, a summary
of each sequence (:class:`~rnnumba.heads.SequenceHead`) or every step
(:class:`~rnnumba.heads.StepHead`) out.
"""

import contextlib

import numpy as np

from .backend import NO_CLOCK
from .params import ParameterStore

__all__ = ["SequenceModel", "Batch"]


class Batch:
    """One batch, on the host (``X``, ``lengths``, ``target``, ``weights`` batch-major as the
    caller gave them, ``normalizer``) and on the model's device (``x``, ``lengths_d``,
    ``target_d``, ``weights_d``: time-major where there is a time axis)."""

    __slots__ = ("X", "lengths", "target", "weights", "normalizer", "x", "lengths_d",
                 "target_d", "weights_d")


class SequenceModel:
    """An input layer, a :class:`~rnnumba.Recurrent` stack and a head on one buffer.

    Parameters
    ----------
    input_layer : NumericInput or EmbeddingInput
    recurrent : Recurrent
        Its ``input_size`` is the input layer's ``output_size``.
    head : SequenceHead or StepHead
        Its ``n_in`` is the recurrent stack's ``output_size``.
    """

    PARTS = ("input", "recurrent", "head")

    def __init__(self, input_layer, recurrent, head):
        self.input = input_layer
        self.recurrent = recurrent
        self.head = head
        self.dtype = recurrent.dtype
        shapes = [(f"{part}.{name}", shape) for part in self.PARTS
                  for name, shape in getattr(self, part).parameter_shapes]
        self.store = ParameterStore(shapes, self.dtype)
        for part in self.PARTS:
            getattr(self, part).bind(self.store, f"{part}.")
        self._state = None

    # ------------------------------------------------------------------ placement
    @property
    def device(self):
        return self.recurrent.device

    @property
    def backend(self):
        return self.recurrent.backend

    def to_device(self, device):
        """Run on ``device`` from now on (host weights are kept); returns ``self``."""
        self.recurrent.to_device(device)
        return self

    def train(self, mode=True):
        self.recurrent.train(mode)
        return self

    @property
    def per_step(self):
        """Whether the head predicts every step (else one prediction per sequence)."""
        return self.head.per_step

    def weight_mask(self):
        """Per parameter, True where L2 applies: every weight, no bias."""
        return np.array([not name.split(".")[-1].startswith("bias")
                         for name, shape in self.store.shapes
                         for _ in range(int(np.prod(shape)))], dtype=bool)

    # ------------------------------------------------------------------ batches
    def prepare(self, X, lengths, target=None, weights=None, normalizer=None):
        """A :class:`Batch` from host arrays: ``X`` ``(N, T, F)`` of the network dtype (or
        token ids ``(N, T)``), ``lengths`` int64, per-sequence ``target`` ``(N, ...)`` or
        per-step ``(N, T, ...)``, ``weights`` ``(N,)`` or ``(N, T)`` float64."""
        backend, workspace = self.backend, self.recurrent.workspace()
        batch = Batch()
        batch.X, batch.lengths, batch.target, batch.weights = X, lengths, target, weights
        batch.normalizer = normalizer
        batch.x = self.input.prepare(backend, workspace, X, lengths)
        batch.lengths_d = workspace.upload("lengths", lengths, np.int64)
        batch.target_d = batch.weights_d = None
        if target is not None:
            if self.per_step:
                target = np.swapaxes(target, 0, 1)
                weights = np.swapaxes(weights, 0, 1)
            batch.target_d = workspace.upload("target", target)
            batch.weights_d = workspace.upload("weights", weights, np.float64)
        return batch

    # ------------------------------------------------------------------ passes
    def forward(self, batch, states=None, clock=NO_CLOCK):
        """Predictions on the device: ``(N, n_out)``, or ``(T, N, n_out)`` per step.
        ``states`` are ``(h0, c0)`` state lists (:meth:`Recurrent.initial_states`) or None
        (zeros); :meth:`final_states` returns the new ones."""
        backend, workspace = self.backend, self.recurrent.workspace()
        x = self.input.forward(backend, batch.x, workspace)
        n_seq = batch.lengths.shape[0]
        h0, c0 = states if states is not None else self.recurrent.initial_states(None, n_seq)
        acts = self.recurrent.run_forward(x, batch.lengths_d, h0, c0, clock)
        self._state = (batch, acts)
        return self.head.forward(backend, acts.output, batch.lengths_d, workspace)

    def forget(self):
        """Drop what the latest :meth:`forward` kept for a backward."""
        self._state = None
        self.head.forget()

    def final_states(self):
        """``(h_n, c_n)`` state lists of the latest :meth:`forward`."""
        acts = self._state[1]
        return acts.h_n, acts.c_n

    def backward(self, grad_pred, clock=NO_CLOCK):
        """Fill the gradient buffer from ``d loss / d predictions`` (spends the forward)."""
        batch, acts = self._state
        self._state = None
        backend, workspace = self.backend, self.recurrent.workspace()
        for part in ("input", "head"):
            start, stop = self.store.segment_bounds(f"{part}.")
            if stop > start:
                backend.fill(self.store.device_grads[start:stop], 0.0)
        grad_out = self.head.backward(backend, grad_pred, workspace)
        grad_x, _, _ = self.recurrent.run_backward(
            acts, grad_out, None, None, self.input.needs_input_gradient, spend=True,
            clock=clock)
        self.input.backward(backend, batch.x, grad_x, workspace)

    def loss_and_gradients(self, batch, loss_fn, stats, bptt_steps=None):
        """The batch's loss into ``stats[0]`` and its gradients into the gradient buffer
        (device arrays); with ``bptt_steps`` truncated BPTT: chunks of that many steps, the
        state carried forward, the gradient cut at chunk boundaries and summed over them."""
        steps = batch.X.shape[1]
        if bptt_steps is None or bptt_steps >= steps:
            pred = self.forward(batch)
            self._loss_and_backward(loss_fn, pred, batch.target_d, batch.weights_d,
                                    batch.normalizer, stats[0:1])
            return
        self._truncated(batch, loss_fn, stats, bptt_steps)

    def _loss_and_backward(self, loss_fn, pred, target, weights, normalizer, loss):
        backend, workspace = self.backend, self.recurrent.workspace()
        grad = workspace.empty("grad_pred", pred.shape, self.dtype)
        loss_fn(backend, pred, target, weights, normalizer, grad, loss)
        self.backward(grad)

    def _truncated(self, batch, loss_fn, stats, bptt_steps):
        backend, workspace = self.backend, self.recurrent.workspace()
        optim = backend.optim
        grads = self.store.device_grads
        accumulated = workspace.empty("grad_sum", grads.shape, self.dtype)
        chunk_loss = workspace.empty("chunk_loss", (1,), np.float64)
        backend.fill(stats[0:1], 0.0)
        states = None
        first = True
        lengths = batch.lengths
        for start in range(0, batch.X.shape[1], bptt_steps):
            stop = min(start + bptt_steps, batch.X.shape[1])
            inside = np.clip(lengths - start, 0, stop - start).astype(np.int64)
            if self.per_step:
                target, weights = batch.target[:, start:stop], batch.weights[:, start:stop]
            else:
                ends = (lengths > start) & (lengths <= stop)
                target, weights = batch.target, batch.weights * ends
            chunk = self.prepare(np.ascontiguousarray(batch.X[:, start:stop]), inside,
                                 np.ascontiguousarray(target), np.ascontiguousarray(weights),
                                 batch.normalizer)
            pred = self.forward(chunk, states)
            final = self.final_states()
            if weights.any():
                self._loss_and_backward(loss_fn, pred, chunk.target_d, chunk.weights_d,
                                        chunk.normalizer, chunk_loss)
                optim.accumulate(stats[0:1], chunk_loss)
                if first:
                    optim.copy(accumulated, grads)
                    first = False
                else:
                    optim.accumulate(accumulated, grads)
            else:
                self.forget()  # this chunk ends no sequence: nothing to learn from it
            # after the backward, which reads this chunk's initial states where the next
            # chunk's are written (the device keeps one buffer per name)
            states = self._carry(final)
        if first:
            backend.fill(grads, 0.0)
        else:
            optim.copy(grads, accumulated)

    def _carry(self, states):
        """Copies of the final states, as the next chunk's initial states."""
        backend, workspace = self.backend, self.recurrent.workspace()
        carried = []
        for kind, state in zip(("h", "c"), states):
            if state is None:
                carried.append(None)
                continue
            parts = state.containers if isinstance(state.containers, list) \
                else [state.containers]
            copies = []
            for i, part in enumerate(parts):
                copy = workspace.empty(f"carried_{kind}{i}", part.shape, self.dtype)
                backend.optim.copy(copy.reshape(-1), part.reshape(-1))
                copies.append(copy)
            carried.append(self.recurrent.state_list(
                copies if isinstance(state.containers, list) else copies[0]))
        return tuple(carried)

    # ------------------------------------------------------------------ inference
    @contextlib.contextmanager
    def inference(self):
        """Evaluation mode with the host weights on the device (one copy, none while a fit
        holds them there), for :meth:`predict` and :meth:`step` calls inside it."""
        backend = self.backend
        was_training = self.recurrent.training
        self.train(False)
        if not self.store.resident:
            self.store.push()
        try:
            with backend.compute():
                yield self
        finally:
            self.forget()
            self.train(was_training)

    def predict(self, X, lengths, batch_size=1024):
        """Raw outputs on the host: ``(N, n_out)``, or ``(N, T, n_out)`` per step (zeros past
        each end), in evaluation mode. ``X`` is host data as :meth:`prepare` takes it."""
        return self._batched(X, lengths, batch_size, self.forward)

    def transform(self, X, lengths, batch_size=1024):
        """What the head's dense layer reads, on the host: each sequence's summary
        ``(N, n_in)``, or every step's output ``(N, T, n_in)`` (zeros past each end)."""
        return self._batched(X, lengths, batch_size, self._summary)

    def _summary(self, batch):
        backend, workspace = self.backend, self.recurrent.workspace()
        x = self.input.forward(backend, batch.x, workspace)
        h0, c0 = self.recurrent.initial_states(None, batch.lengths.shape[0])
        acts = self.recurrent.run_forward(x, batch.lengths_d, h0, c0)
        return self.head.summarize(backend, acts.output, batch.lengths_d, workspace)

    def _batched(self, X, lengths, batch_size, run):
        backend = self.backend
        parts = []
        with self.inference():
            for start in range(0, X.shape[0], batch_size):
                stop = min(start + batch_size, X.shape[0])
                lb = lengths[start:stop]
                steps = int(lb.max())
                batch = self.prepare(np.ascontiguousarray(X[start:stop, :steps]), lb)
                pred = np.asarray(backend.to_host(run(batch)))
                self.forget()
                if self.per_step:
                    pred = pred.transpose(1, 0, 2)
                    if steps < X.shape[1]:
                        full = np.zeros((stop - start, X.shape[1], pred.shape[2]),
                                        dtype=pred.dtype)
                        full[:, :steps] = pred
                        pred = full
                parts.append(pred)
        return np.concatenate(parts, axis=0)

    def step(self, X, states=None):
        """Advance ``N`` sequences by the ``k`` steps of ``X`` (host data as :meth:`prepare`
        takes it, every row ``k`` steps long) from ``states`` (None: zeros), inside
        :meth:`inference`; causal networks only.

        Returns ``(pred, states)``: the head's output on the host (per step ``(N, k, n_out)``;
        per sequence ``(N, n_out)``, after the last of the ``k`` steps) and the new states,
        to pass to the next call. Feeding a sequence in pieces this way gives what one
        forward over all of it gives.
        """
        if self.recurrent.bidirectional:
            raise ValueError("step() needs a causal network: a bidirectional one reads each "
                             "sequence from its end")
        n_seq, steps = X.shape[0], X.shape[1]
        batch = self.prepare(X, np.full(n_seq, steps, dtype=np.int64))
        pred = np.array(self.backend.to_host(self.forward(batch, states)))
        states = self._carry(self.final_states())
        self.forget()
        return (pred.transpose(1, 0, 2) if self.per_step else pred), states

    # ------------------------------------------------------------------ weights
    def state_dict(self):
        """Host copies of every parameter, named ``part.name`` (PyTorch's names for the
        recurrent stack and the dense head: ``recurrent.weight_ih_l0``, ``head.weight``)."""
        return {f"{part}.{name}": value for part in self.PARTS
                for name, value in getattr(self, part).state_dict().items()}

    def load_state_dict(self, state_dict):
        """Copy parameters named as :meth:`state_dict` names them (keys, shapes and
        finiteness checked)."""
        names = {name for name, _ in self.store.shapes}
        extra = sorted(str(k) for k in state_dict if k not in names)
        if extra:
            raise ValueError(f"state_dict does not match this network: unexpected keys {extra}")
        for part in self.PARTS:
            prefix = f"{part}."
            getattr(self, part).load_state_dict(
                {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)})

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_state"] = None
        return state
