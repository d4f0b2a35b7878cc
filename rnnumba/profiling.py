"""Where a training step spends its time, per phase, on the CPU and the GPU side by side.

:func:`profile` runs a :class:`~rnnumba.Recurrent` training step through the kernel
contract of :mod:`rnnumba.kernels` -- for every layer and direction ``project_input``,
``forward_sequence``, ``backward_sequence``, ``weight_gradients`` -- plus an optimizer step
on the flat parameter buffer, and times each phase apart. For every configuration and
device it reports

- the first call (compilation or cache load included) apart from the steady state;
- the steady-state time of each phase: ``input_projection``, ``forward_recurrence``,
  ``bptt_recurrence``, ``weight_gradients``, ``optimizer_step``;
- the totals ``forward`` (projection + recurrence), ``backward`` (BPTT + weight GEMMs) and
  ``train_step`` (all of it), timed without the per-phase synchronisation;
- ``api_forward`` / ``api_backward``: :meth:`Recurrent.forward` / :meth:`Recurrent.backward`
  as a user calls them (validation and layout changes included), where the network can be
  built on that device;
- median, quartiles, IQR, min and max over the repeats, and achieved GFLOP/s.

GPU phases synchronise the device before the clock stops. A device that is not available
(no CUDA backend in this build, no driver, no GPU) is reported with the reason in the
table and in the result, never raised.

This module measures; nothing below it (kernels, ``Recurrent``, estimators) imports it.
"""

import contextlib
import datetime
import json
import math
import os
import platform
import statistics
import sys
import time

import numpy as np

from . import __version__, backend
from .params import GATES, buffer_size, make_views, parameter_shapes

__all__ = ["profile", "format_table", "flop_counts", "cuda_status", "environment",
           "PHASES", "TOTALS", "save_json", "load_json"]

SCHEMA = "rnnumba.profile/1"

#: The five phases of a training step, in execution order.
PHASES = ("input_projection", "forward_recurrence", "bptt_recurrence", "weight_gradients",
          "optimizer_step")
#: Whole passes, timed without per-phase synchronisation.
TOTALS = ("forward", "backward", "train_step")
#: The public API as a user calls it (where the network can be built on the device).
API = ("api_forward", "api_backward")

_SHORT = {"input_projection": "proj", "forward_recurrence": "fwd rec",
          "bptt_recurrence": "bptt", "weight_gradients": "w-grad", "optimizer_step": "optim",
          "forward": "forward", "backward": "backward", "train_step": "step"}

CELLS = ("rnn", "lstm", "gru")
DEVICES = ("cpu", "cuda")


# --------------------------------------------------------------------------- public API


def profile(cells=("lstm", "gru"), hidden_sizes=(32, 128), batch_size=64, seq_len=100,
            input_size=32, num_layers=1, bidirectional=False, dtype="float32",
            devices=("cpu", "cuda"), repeat=5, warmup=1, random_state=0, verbose=False):
    """Time the phases of a training step for every cell × hidden size × device.

    Parameters
    ----------
    cells : str or sequence of {"rnn", "lstm", "gru"}, default=("lstm", "gru")
    hidden_sizes : int or sequence of int, default=(32, 128)
    batch_size, seq_len, input_size, num_layers : int
        The workload ``(B, T, I)`` and the depth of the stack.
    bidirectional : bool, default=False
    dtype : {"float32", "float64"}, default="float32"
    devices : str or sequence of {"cpu", "cuda"}, default=("cpu", "cuda")
        A device that cannot run is reported as not available, with the reason.
    repeat : int, default=5
        Timed repeats per configuration (after the first call and ``warmup`` more).
    warmup : int, default=1
        Untimed steady-state runs after the first call.
    random_state : int, default=0
        Seeds the weights and the data.
    verbose : bool, default=False
        Print one line per configuration while running (to stderr).

    Returns
    -------
    dict
        JSON-serialisable: ``schema``, ``created``, ``environment``, ``settings``,
        ``devices`` (``{name: {"available": bool, "name" or "reason": str}}``), ``phases``,
        ``totals``, ``results`` (one entry per cell × hidden size × device) and
        ``crossover`` (per cell, the smallest hidden size at which the GPU's training
        step beats the CPU's, or ``None``). Each available result holds ``timings``
        (``{name: {"median", "q1", "q3", "iqr", "min", "max", "times"}}`` in seconds),
        ``first_call`` (seconds per phase, compilation included), ``compile_s``,
        ``jit`` (where the kernels came from), ``flops`` and ``gflops``.
    """
    cells = _as_tuple(cells)
    for cell in cells:
        if cell not in CELLS:
            raise ValueError(f"cells must be among {CELLS}, got {cell!r}")
    hidden_sizes = tuple(_positive(h, "hidden_sizes") for h in _as_tuple(hidden_sizes))
    if not cells or not hidden_sizes:
        raise ValueError("cells and hidden_sizes must not be empty")
    batch_size = _positive(batch_size, "batch_size")
    seq_len = _positive(seq_len, "seq_len")
    input_size = _positive(input_size, "input_size")
    num_layers = _positive(num_layers, "num_layers")
    repeat = _positive(repeat, "repeat")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup must be an int >= 0, got {warmup!r}")
    try:
        name = np.dtype(dtype).name
    except TypeError:
        name = None
    if name not in ("float32", "float64"):
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    dtype = np.dtype(name)
    devices = _as_tuple(devices)
    for device in devices:
        if device not in DEVICES:
            raise ValueError(f"devices must be among {DEVICES}, got {device!r}")
    if not devices:
        raise ValueError("devices must not be empty")
    bidirectional = bool(bidirectional)

    settings = {"cells": list(cells), "hidden_sizes": list(hidden_sizes),
                "batch_size": batch_size, "seq_len": seq_len, "input_size": input_size,
                "num_layers": num_layers, "bidirectional": bidirectional,
                "dtype": str(dtype), "devices": list(devices), "repeat": repeat,
                "warmup": warmup, "random_state": random_state}
    device_info = {}
    for device in devices:
        if device == "cpu":
            device_info[device] = {"available": True, "name": _cpu_name()}
        else:
            ok, text = cuda_status()
            device_info[device] = ({"available": True, "name": text} if ok
                                   else {"available": False, "reason": text})

    results = []
    for cell in cells:
        for hidden in hidden_sizes:
            config = {"cell": cell, "hidden_size": hidden, "batch_size": batch_size,
                      "seq_len": seq_len, "input_size": input_size, "num_layers": num_layers,
                      "bidirectional": bidirectional, "dtype": str(dtype)}
            flops = flop_counts(cell, batch_size, seq_len, input_size, hidden, num_layers,
                                bidirectional)
            for device in devices:
                entry = dict(config, device=device)
                info = device_info[device]
                if not info["available"]:
                    entry.update(available=False, reason=info["reason"])
                else:
                    try:
                        entry.update(_profile_one(device, config, flops, repeat, warmup,
                                                  random_state))
                    except _Unavailable as exc:
                        entry.update(available=False, reason=str(exc))
                results.append(entry)
                if verbose:
                    print(_progress_line(entry), file=sys.stderr, flush=True)

    return {
        "schema": SCHEMA,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "environment": environment(),
        "settings": settings,
        "devices": device_info,
        "phases": list(PHASES),
        "totals": list(TOTALS),
        "flop_note": "GEMM FLOPs (2*m*n*k per matrix product); elementwise gate work is "
                     "not counted",
        "results": results,
        "crossover": _crossover(results, cells),
    }


def flop_counts(cell, batch_size, seq_len, input_size, hidden_size, num_layers=1,
                bidirectional=False):
    """GEMM FLOPs (``2*m*n*k`` per product) of each phase of one training step.

    Elementwise gate work and the optimizer are not counted (``optimizer_step`` is 0).
    """
    gh = GATES[cell] * hidden_size
    rows = batch_size * seq_len
    dirs = 2 if bidirectional else 1
    counts = dict.fromkeys(PHASES, 0)
    for layer in range(num_layers):
        layer_in = input_size if layer == 0 else dirs * hidden_size
        for _ in range(dirs):
            counts["input_projection"] += 2 * rows * layer_in * gh
            counts["forward_recurrence"] += 2 * rows * hidden_size * gh
            counts["bptt_recurrence"] += 2 * rows * gh * hidden_size
            # dW_ih, dW_hh and dX, as weight_gradients computes them.
            counts["weight_gradients"] += 2 * rows * gh * (2 * layer_in + hidden_size)
    counts["forward"] = counts["input_projection"] + counts["forward_recurrence"]
    counts["backward"] = counts["bptt_recurrence"] + counts["weight_gradients"]
    counts["train_step"] = counts["forward"] + counts["backward"]
    counts["api_forward"] = counts["forward"]
    counts["api_backward"] = counts["backward"]
    return counts


def save_json(result, path):
    """Write a :func:`profile` result as JSON (UTF-8, indented)."""
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(result, fh, indent=1, allow_nan=False)
        fh.write("\n")


def load_json(path):
    """Read a result written by :func:`save_json`."""
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def format_table(result):
    """The result as a plain-text table: one row per configuration and device.

    Times are steady-state medians in milliseconds with the IQR after ``±``; ``first``
    is the first training step (compilation or cache load included); ``GFLOP/s`` is the
    training step's GEMM FLOPs over its median time.
    """
    s = result["settings"]
    lines = [
        f"rnnumba {result['environment'].get('rnnumba', '?')} profile: "
        f"B={s['batch_size']} T={s['seq_len']} I={s['input_size']} layers={s['num_layers']}"
        f"{' bidirectional' if s['bidirectional'] else ''} {s['dtype']}, "
        f"{s['repeat']} repeats (median ± IQR, ms)",
    ]
    for name, info in result["devices"].items():
        if info["available"]:
            lines.append(f"{name}: {info['name']}")
        else:
            lines.append(f"{name}: not available ({info['reason']})")
    names = PHASES + TOTALS
    header = ["cell", "H", "device", "first"] + [_SHORT[n] for n in names] + ["GFLOP/s"]
    rows = []
    for r in result["results"]:
        row = [r["cell"], str(r["hidden_size"]), r["device"]]
        if not r["available"]:
            row += ["not available"] + [""] * (len(header) - 4)
        else:
            row.append(_ms(r["first_call"]["train_step"]))
            for n in names:
                t = r["timings"][n]
                row.append(f"{_ms(t['median'])}±{_ms(t['iqr'])}")
            gf = r["gflops"].get("train_step")
            row.append("-" if gf is None else f"{gf:.1f}")
        rows.append(row)
    widths = [max(len(header[i]), *(len(row[i]) for row in rows)) for i in range(len(header))]
    fmt_row = lambda row: "  ".join(  # noqa: E731
        cell.ljust(w) if i < 3 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
    lines.append(fmt_row(header))
    lines.append("  ".join("-" * w for w in widths))
    for row in rows:
        if row[3] == "not available":
            lines.append("  ".join(c.ljust(w) for c, w in zip(row[:3], widths[:3]))
                         + "  not available")
        else:
            lines.append(fmt_row(row))
    api = [r for r in result["results"] if r["available"] and "api_forward" in r["timings"]]
    if api:
        lines.append("")
        lines.append("Recurrent.forward / .backward as called by a user (validation and "
                     "layout included), ms:")
        for r in api:
            t = r["timings"]
            lines.append(f"  {r['cell']:<4} H={r['hidden_size']:<5} {r['device']:<4}  "
                         f"forward {_ms(t['api_forward']['median'])}  "
                         f"backward {_ms(t['api_backward']['median'])}")
    jit = [r for r in result["results"] if r["available"]]
    if jit:
        lines.append("")
        lines.append("first call (compile or cache load) apart from steady state:")
        for r in jit:
            lines.append(f"  {r['cell']:<4} H={r['hidden_size']:<5} {r['device']:<4}  "
                         f"compile ≈ {r['compile_s']:.3f} s  (kernels {r['jit']}; "
                         f"optimizer: {r['optimizer']})")
    lines.append("")
    for cell, cross in result["crossover"].items():
        lines.append(f"GPU vs CPU ({cell}): {cross['note']}")
    return "\n".join(lines)


def cuda_status(cell="lstm"):
    """``(True, device name)`` when the CUDA kernels can run, else ``(False, reason)``.

    Never raises: a build without a CUDA backend, a missing driver or GPU all come back as
    a reason. ``numba.cuda`` is imported only when the backend accepts ``"cuda"``.
    """
    try:
        backend.resolve_device("cuda")
    except ValueError as exc:
        return False, str(exc)
    except Exception as exc:  # pragma: no cover - a backend bug must not stop profiling
        return False, f"{type(exc).__name__}: {exc}"
    try:
        backend.cell_kernels("cuda", cell)
    except Exception as exc:
        return False, f"no CUDA kernels for {cell!r}: {exc}"
    try:
        from numba import cuda
        if not cuda.is_available():
            return False, _cuda_error_text(cuda)
        return True, _cuda_device_name(cuda)
    except Exception as exc:
        return False, f"{type(exc).__name__}: {exc}"


def environment():
    """Versions and machine facts recorded with every result."""
    import numba
    env = {
        "rnnumba": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "numba_threads": numba.get_num_threads(),
    }
    try:
        from threadpoolctl import threadpool_info
        blas = [p for p in threadpool_info() if p.get("user_api") == "blas"]
        if blas:
            env["blas"] = (f"{blas[0].get('internal_api')} {blas[0].get('version')} "
                           f"({blas[0].get('num_threads')} threads)")
    except Exception:  # pragma: no cover - threadpoolctl is optional
        pass
    return env


# --------------------------------------------------------------------------- one profile


class _Unavailable(Exception):
    """The device passed the probe but cannot run this configuration."""


def _profile_one(device, config, flops, repeat, warmup, random_state):
    ops = _CpuOps() if device == "cpu" else _CudaOps()
    try:
        common, kernels = backend.cell_kernels(device, config["cell"])
    except Exception as exc:
        raise _Unavailable(f"no kernels: {exc}") from None
    before = _jit_state(kernels)
    step = _Step(ops, common, kernels, config, random_state)
    api = _api_runner(device, config, step)

    # First call: compilation (or cache load) included.
    first = step.run_phases()
    first_total = sum(first.values())
    first_call = dict(first, forward=first["input_projection"] + first["forward_recurrence"],
                      backward=first["bptt_recurrence"] + first["weight_gradients"],
                      train_step=first_total)
    jit = _jit_source(before, _jit_state(kernels))
    if api is not None:
        t0 = time.perf_counter()
        api("forward")
        first_call["api_forward"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        api("backward")
        first_call["api_backward"] = time.perf_counter() - t0

    for _ in range(warmup):
        step.run_phases()
        step.run_totals()
        if api is not None:
            api("forward")
            api("backward")

    samples = {name: [] for name in PHASES + TOTALS + (API if api is not None else ())}
    for _ in range(repeat):
        for name, seconds in step.run_phases().items():
            samples[name].append(seconds)
        for name, seconds in step.run_totals().items():
            samples[name].append(seconds)
        if api is not None:
            for name in ("forward", "backward"):
                t0 = time.perf_counter()
                api(name)
                samples["api_" + name].append(time.perf_counter() - t0)

    timings = {name: spread(values) for name, values in samples.items()}
    gflops = {}
    for name, stats in timings.items():
        count = flops.get(name, 0)
        gflops[name] = (count / stats["median"] / 1e9) if count and stats["median"] > 0 else None
    steady = timings["train_step"]["median"]
    return {
        "available": True,
        "timings": timings,
        "first_call": first_call,
        "compile_s": max(0.0, first_total - steady),
        "jit": jit,
        "optimizer": step.optimizer_name,
        "flops": {name: flops[name] for name in PHASES + TOTALS},
        "gflops": gflops,
    }


class _Step:
    """One training step of a ``Recurrent``-shaped network, driven phase by phase.

    Mirrors ``Recurrent._forward_unchecked`` / ``_backward_unchecked`` (no dropout) on
    preallocated buffers of the chosen device, so that each phase can be timed apart.
    """

    def __init__(self, ops, common, kernels, config, random_state):
        from .recurrent import NONLINEARITIES
        self.ops, self.common, self.kernels = ops, common, kernels
        cell, hidden = config["cell"], config["hidden_size"]
        n, steps, features = config["batch_size"], config["seq_len"], config["input_size"]
        layers, dirs = config["num_layers"], 2 if config["bidirectional"] else 1
        dtype = np.dtype(config["dtype"])
        self.cell, self.layers, self.dirs, self.hidden = cell, layers, dirs, hidden
        self.act = NONLINEARITIES["tanh"]
        rng = np.random.default_rng(random_state)

        shapes = parameter_shapes(cell, features, hidden, layers, dirs == 2)
        size = buffer_size(shapes)
        bound = 1.0 / math.sqrt(hidden)
        self.flat_params = ops.to_device(rng.uniform(-bound, bound, size).astype(dtype))
        self.flat_grads = ops.zeros(size, dtype)
        self.params = make_views(self.flat_params, shapes)
        self.grads = make_views(self.flat_grads, shapes)

        gh = kernels.GATES * hidden
        # On the CPU, the layout Recurrent uses: the LSTM's and GRU's projection and gate
        # gradients in their gate cache, the RNN's projection in its output, the output and
        # input gradients batch-major.
        batch_major = ops.name == "cpu"
        self.in_cache = batch_major and cell != "rnn"
        self.proj_in_output = batch_major and cell == "rnn"
        x = rng.standard_normal((steps, n, features)).astype(dtype)
        g = rng.standard_normal((n, steps, dirs * hidden)).astype(dtype)
        self.x = ops.to_device(x)
        self.grad_out = (g.transpose(1, 0, 2) if batch_major
                         else ops.to_device(g.transpose(1, 0, 2)))
        self.lengths = ops.to_device(np.full(n, steps, dtype=np.int64))
        states = (layers * dirs, n, hidden)
        lstm = cell == "lstm"
        self.h0 = ops.zeros(states, dtype)
        self.c0 = ops.zeros(states, dtype) if lstm else None
        self.h_n = ops.empty(states, dtype)
        self.c_n = ops.empty(states, dtype) if lstm else None
        self.grad_h_n = ops.zeros(states, dtype)
        self.grad_c_n = ops.zeros(states, dtype) if lstm else None
        self.grad_h0 = ops.empty(states, dtype)
        self.grad_c0 = ops.empty(states, dtype) if lstm else None
        self.placeholder = ops.empty((0, 0), dtype)
        self.outputs = [ops.empty((steps, n, dirs * hidden), dtype) for _ in range(layers)]
        self.caches = [[ops.empty((steps, n, kernels.cache_width(hidden)), dtype)
                        for _ in range(dirs)] for _ in range(layers)]
        self.inputs = [self.x] + self.outputs[:-1]
        if batch_major:
            self.grad_inputs = [np.empty((n, steps, inp.shape[2]), dtype).transpose(1, 0, 2)
                                for inp in self.inputs]
        else:
            self.grad_inputs = [ops.empty(inp.shape, dtype) for inp in self.inputs]
        self.proj = self.d_ih = self.d_hh = None
        if not self.in_cache:
            if not self.proj_in_output:
                self.proj = ops.empty((steps, n, gh), dtype)
            self.d_ih = ops.empty((steps, n, gh), dtype)
            self.d_hh = ops.empty((steps, n, gh), dtype) if cell == "gru" else self.d_ih
        self.optimizer_step, self.optimizer_name = _optimizer(ops, self.flat_params,
                                                              self.flat_grads)

    def _state(self, states, k):
        return self.placeholder if states is None else states[k]

    def _gate_buffers(self, layer, direction):
        """``(proj, d_ih, d_hh)`` of one layer and direction: on the CPU where
        :class:`~rnnumba.Recurrent` keeps them when it spends its activations, else (and for
        the RNN's gate gradients) buffers of their own."""
        if not (self.in_cache or self.proj_in_output):
            return self.proj, self.d_ih, self.d_hh
        proj, d_ih, d_hh = self.common.in_place_buffers(
            self.cell, self.caches[layer][direction], self.outputs[layer],
            direction * self.hidden, self.hidden)
        return proj, self.d_ih if d_ih is None else d_ih, self.d_hh if d_hh is None else d_hh

    def _weights(self, views, layer, direction):
        suffix = f"_l{layer}" + ("_reverse" if direction else "")
        return [views[kind + suffix]
                for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]

    def _forward(self, clock):
        for layer in range(self.layers):
            for direction in range(self.dirs):
                k = layer * self.dirs + direction
                w_ih, w_hh, b_ih, b_hh = self._weights(self.params, layer, direction)
                proj, _, _ = self._gate_buffers(layer, direction)
                with clock("input_projection"):
                    self.common.project_input(self.inputs[layer], w_ih, b_ih, proj)
                with clock("forward_recurrence"):
                    self.kernels.forward_sequence(
                        proj, w_hh, b_hh, self.h0[k], self._state(self.c0, k),
                        self.lengths, direction == 1, self.act, self.outputs[layer],
                        direction * self.hidden, self.caches[layer][direction], self.h_n[k],
                        self._state(self.c_n, k))

    def _backward(self, clock):
        grad_layer_out = self.grad_out
        with clock("weight_gradients"):
            self.ops.fill_zero(self.flat_grads)
        for layer in reversed(range(self.layers)):
            grad_input = self.grad_inputs[layer]
            with clock("weight_gradients"):
                self.ops.fill_zero(grad_input)
            for direction in range(self.dirs):
                k = layer * self.dirs + direction
                w_ih, w_hh, _, b_hh = self._weights(self.params, layer, direction)
                gw_ih, gw_hh, gb_ih, gb_hh = self._weights(self.grads, layer, direction)
                _, d_ih, d_hh = self._gate_buffers(layer, direction)
                with clock("bptt_recurrence"):
                    self.kernels.backward_sequence(
                        w_hh, b_hh, self.h0[k], self._state(self.c0, k), self.lengths,
                        direction == 1, self.act, self.outputs[layer], direction * self.hidden,
                        self.caches[layer][direction], grad_layer_out, self.grad_h_n[k],
                        self._state(self.grad_c_n, k), d_ih, d_hh,
                        self.grad_h0[k], self._state(self.grad_c0, k))
                with clock("weight_gradients"):
                    self.common.weight_gradients(
                        self.inputs[layer], self.outputs[layer], direction * self.hidden,
                        self.h0[k], self.lengths, direction == 1, d_ih, d_hh, w_ih,
                        gw_ih, gw_hh, gb_ih, gb_hh, grad_input)
            grad_layer_out = grad_input

    def run_phases(self):
        """One training step with the device synchronised after every phase."""
        acc = dict.fromkeys(PHASES, 0.0)
        sync = self.ops.sync

        @contextlib.contextmanager
        def clock(name):
            t0 = time.perf_counter()
            yield
            sync()
            acc[name] += time.perf_counter() - t0

        sync()
        self._forward(clock)
        self._backward(clock)
        with clock("optimizer_step"):
            self.optimizer_step()
        return acc

    def run_totals(self):
        """The same step timed per pass, synchronised at the pass boundaries only:
        ``forward``, ``backward`` and ``train_step`` (forward + backward + optimizer)."""
        sync = self.ops.sync
        sync()
        t0 = time.perf_counter()
        self._forward(_no_clock)
        sync()
        t1 = time.perf_counter()
        self._backward(_no_clock)
        sync()
        t2 = time.perf_counter()
        self.optimizer_step()
        sync()
        t3 = time.perf_counter()
        return {"forward": t1 - t0, "backward": t2 - t1, "train_step": t3 - t0}


@contextlib.contextmanager
def _no_clock(name):
    yield


def _api_runner(device, config, step):
    """``run("forward")`` / ``run("backward")`` through the public ``Recurrent``, or None
    where no ``Recurrent`` can be built on ``device``."""
    from .recurrent import Recurrent
    try:
        rec = Recurrent(cell=config["cell"], input_size=config["input_size"],
                        hidden_size=config["hidden_size"], num_layers=config["num_layers"],
                        bidirectional=config["bidirectional"], dtype=config["dtype"],
                        device=device, random_state=0)
    except (ValueError, TypeError, ImportError):
        return None
    rng = np.random.default_rng(1)
    n, steps = config["batch_size"], config["seq_len"]
    X = rng.standard_normal((n, steps, config["input_size"])).astype(config["dtype"])
    G = rng.standard_normal((n, steps, rec.num_directions * config["hidden_size"])
                            ).astype(config["dtype"])
    sync = step.ops.sync

    def run(which):
        if which == "forward":
            rec.forward(X)
        else:
            rec.backward(G, retain_activations=True)  # timed again without a forward
        sync()

    return run


# --------------------------------------------------------------------------- optimizer


def _optimizer(ops, flat_params, flat_grads):
    """``(step, name)``: an in-place Adam step on the flat buffers of ``ops``'s device.

    The one place that decides how the optimizer phase is timed: ``rnnumba.optim.Adam``
    where it runs on the device's arrays, else an equivalent NumPy (or CUDA) Adam.
    """
    if ops.name == "cpu":
        try:
            from .optim import Adam
            adam = Adam([flat_params.shape], learning_rate_init=1e-4)
            return (lambda: adam.step([flat_params], [flat_grads])), "rnnumba.optim.Adam"
        except (ImportError, AttributeError, TypeError):  # pragma: no cover - fallback
            return _numpy_adam(flat_params, flat_grads), "NumPy Adam (in place)"
    try:
        from .kernels.cuda import optim as cuda_optim
        adam_step = cuda_optim.adam_step
    except (ImportError, AttributeError):  # pragma: no cover - an older CUDA backend
        return ops.adam(flat_params, flat_grads), "CUDA Adam kernel (in place)"
    moments = [ops.zeros(flat_params.shape, np.float64) for _ in range(2)]
    count = [0]

    def step():
        count[0] += 1
        adam_step([flat_params], [flat_grads], [moments[0]], [moments[1]], count[0], 1e-4)

    return step, "rnnumba.kernels.cuda.optim.adam_step"


def _numpy_adam(params, grads, lr=1e-4, beta_1=0.9, beta_2=0.999, eps=1e-8):
    """In-place Adam on flat NumPy arrays, moments in float64 as scikit-learn keeps them."""
    m = np.zeros(params.shape)
    v = np.zeros(params.shape)
    t = [0]

    def step():
        t[0] += 1
        size = lr * math.sqrt(1.0 - beta_2 ** t[0]) / (1.0 - beta_1 ** t[0])
        m[...] *= beta_1
        m[...] += (1.0 - beta_1) * grads
        v[...] *= beta_2
        v[...] += (1.0 - beta_2) * np.square(grads, dtype=np.float64)
        update = m / (np.sqrt(v) + eps)
        update *= size
        params[...] -= update.astype(params.dtype, copy=False)

    return step


# --------------------------------------------------------------------------- devices


class _CpuOps:
    name = "cpu"

    def to_device(self, array):
        return np.ascontiguousarray(array)

    def empty(self, shape, dtype):
        return np.empty(shape, dtype=dtype)

    def zeros(self, shape, dtype):
        return np.zeros(shape, dtype=dtype)

    def fill_zero(self, array):
        array[...] = 0

    def sync(self):
        pass


class _CudaOps:
    """Device arrays through ``numba.cuda``; imported only when CUDA is asked for."""

    name = "cuda"

    def __init__(self):
        try:
            from numba import cuda
        except Exception as exc:
            raise _Unavailable(f"numba.cuda cannot be imported: {exc}") from None
        self.cuda = cuda

    def to_device(self, array):
        return self.cuda.to_device(np.ascontiguousarray(array))

    def empty(self, shape, dtype):
        return self.cuda.device_array(shape, dtype=dtype)

    def zeros(self, shape, dtype):
        return self.cuda.to_device(np.zeros(shape, dtype=dtype))

    def fill_zero(self, array):
        if array.size == 0:
            return
        try:
            from .kernels.cuda._jit import fill
            fill(array, 0)
            return
        except (ImportError, AttributeError):  # pragma: no cover - an older CUDA backend
            pass
        try:
            from numba.cuda.cudadrv.driver import device_memset
            device_memset(array, 0, array.nbytes)
        except Exception:  # pragma: no cover - simulator or older numba
            array.copy_to_device(np.zeros(array.shape, dtype=array.dtype))

    def sync(self):
        self.cuda.synchronize()

    def adam(self, params, grads, lr=1e-4, beta_1=0.9, beta_2=0.999, eps=1e-8):
        cuda = self.cuda

        @cuda.jit
        def adam_kernel(p, g, m, v, size, b1, b2, eps):
            i = cuda.grid(1)
            if i < p.size:
                gi = g[i]
                m[i] = b1 * m[i] + (1.0 - b1) * gi
                v[i] = b2 * v[i] + (1.0 - b2) * gi * gi
                p[i] -= size * m[i] / (math.sqrt(v[i]) + eps)

        m = self.zeros(params.shape, params.dtype)
        v = self.zeros(params.shape, params.dtype)
        threads = 256
        blocks = max(1, (params.size + threads - 1) // threads)
        t = [0]

        def step():
            t[0] += 1
            size = lr * math.sqrt(1.0 - beta_2 ** t[0]) / (1.0 - beta_1 ** t[0])
            adam_kernel[blocks, threads](params, grads, m, v, size, beta_1, beta_2, eps)

        return step


def _cuda_error_text(cuda):
    try:
        err = cuda.cuda_error()
    except Exception:  # pragma: no cover
        err = None
    text = " ".join(str(err).split()) if err else "no CUDA driver or GPU found"
    return f"numba.cuda: {text}"


def _cuda_device_name(cuda):
    try:
        from numba import config
        if getattr(config, "ENABLE_CUDASIM", False):
            return "Numba CUDA simulator (NUMBA_ENABLE_CUDASIM=1): timings are not a GPU's"
    except Exception:  # pragma: no cover
        pass
    try:
        dev = cuda.get_current_device()
        name = dev.name.decode() if isinstance(dev.name, bytes) else str(dev.name)
        cc = ".".join(map(str, dev.compute_capability))
        return f"{name} (compute capability {cc})"
    except Exception as exc:  # pragma: no cover
        return f"CUDA device ({exc})"


def _cpu_name():
    name = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    name = name or platform.processor() or platform.machine()
    return f"{name}, {os.cpu_count()} logical cores"


# --------------------------------------------------------------------------- helpers


def _jit_state(kernels):
    state = {}
    for fname in ("forward_sequence", "backward_sequence"):
        disp = getattr(kernels, fname, None)
        try:
            stats = disp.stats
            hits = sum(stats.cache_hits.values())
            misses = sum(stats.cache_misses.values())
        except Exception:
            hits = misses = None
        try:
            sigs = len(disp.signatures)
        except Exception:
            sigs = None
        state[fname] = (sigs, hits, misses)
    return state


def _jit_source(before, after):
    """Where this configuration's kernels came from on its first call."""
    if any(b[0] is None for b in before.values()):
        return "compiled or loaded on first call (launchers: no cache statistics)"
    if all(after[k][0] == before[k][0] for k in before):
        return "already in memory"
    hits = sum((after[k][1] or 0) - (before[k][1] or 0) for k in before)
    misses = sum((after[k][2] or 0) - (before[k][2] or 0) for k in before)
    if hits and not misses:
        return "loaded from the on-disk cache"
    if hits:
        return "partly compiled, partly loaded from cache"
    return "compiled"


def spread(values):
    """Median, quartiles, IQR, extremes and count of a list of timing samples (seconds)."""
    values = [float(v) for v in values]
    if len(values) >= 2:
        q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    else:
        q1 = q3 = values[0]
    return {"median": statistics.median(values), "q1": q1, "q3": q3, "iqr": q3 - q1,
            "min": min(values), "max": max(values), "n": len(values), "times": values}


def _crossover(results, cells):
    out = {}
    for cell in cells:
        cpu = {r["hidden_size"]: r for r in results
               if r["cell"] == cell and r["device"] == "cpu" and r["available"]}
        gpu = {r["hidden_size"]: r for r in results
               if r["cell"] == cell and r["device"] == "cuda" and r["available"]}
        common = sorted(set(cpu) & set(gpu))
        if not common:
            reason = next((r["reason"] for r in results if r["cell"] == cell
                           and r["device"] == "cuda" and not r["available"]), None)
            note = ("not measured: " + ("cuda not available" if reason else
                                        "needs both cpu and cuda in --devices"))
            out[cell] = {"hidden_size": None, "speedup": {}, "note": note}
            continue
        speedup = {str(h): cpu[h]["timings"]["train_step"]["median"]
                   / gpu[h]["timings"]["train_step"]["median"] for h in common}
        wins = [h for h in common if speedup[str(h)] > 1.0]
        first = wins[0] if wins else None
        if first is None:
            note = f"CPU faster at every hidden size measured (up to H={common[-1]})"
        else:
            note = (f"GPU training step faster from H={first} "
                    f"({speedup[str(first)]:.2f}x)")
        out[cell] = {"hidden_size": first, "speedup": speedup, "note": note}
    return out


def _progress_line(entry):
    head = f"{entry['cell']} H={entry['hidden_size']} {entry['device']}: "
    if not entry["available"]:
        return head + f"not available ({entry['reason']})"
    return head + f"step {_ms(entry['timings']['train_step']['median'])} ms"


def _ms(seconds):
    ms = seconds * 1e3
    if ms >= 100:
        return f"{ms:.0f}"
    if ms >= 10:
        return f"{ms:.1f}"
    if ms >= 1:
        return f"{ms:.2f}"
    return f"{ms:.3f}"


def _as_tuple(value):
    """A name, a number or a sequence of them, as a tuple without repeats."""
    if isinstance(value, (str, int, np.integer)) and not isinstance(value, bool):
        return (value,)
    return tuple(dict.fromkeys(value))


def _positive(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name} must be positive ints, got {value!r}")
    return int(value)
