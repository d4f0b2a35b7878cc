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
import os
import platform
import statistics
import sys
import time

import numpy as np

from . import __version__, backend
from .backend import NO_CLOCK
from .params import GATES

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
    reported = set()  # devices whose reason for not running was printed once already
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
                    print(_progress_line(entry, reported), file=sys.stderr, flush=True)

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
    try:
        step = _Step(device, config, random_state)
    except (ValueError, TypeError, ImportError) as exc:
        raise _Unavailable(f"cannot build the network: {exc}") from None
    kernels = step.model.backend.cell(config["cell"])
    before = _jit_state(kernels)
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
        "optimizer": f"rnnumba.optim.Adam on {device}",
        "flops": {name: flops[name] for name in PHASES + TOTALS},
        "gflops": gflops,
    }


class _Step:
    """One training step of a :class:`~rnnumba.Recurrent` on its device, phase by phase.

    The layer loop is the network's own (:meth:`Recurrent.run_forward`,
    :meth:`Recurrent.run_backward`), run on arrays already on the device with a clock that
    synchronises the device and times each phase; the optimizer is
    :class:`rnnumba.optim.Adam` stepping the flat buffer where it lives.
    """

    def __init__(self, device, config, random_state):
        from .recurrent import Recurrent
        n, steps = config["batch_size"], config["seq_len"]
        model = self.model = Recurrent(
            cell=config["cell"], input_size=config["input_size"],
            hidden_size=config["hidden_size"], num_layers=config["num_layers"],
            bidirectional=config["bidirectional"], dtype=config["dtype"], device=device,
            random_state=random_state)
        backend, workspace = model.backend, model.workspace()
        rng = np.random.default_rng(random_state)
        x = rng.standard_normal((n, steps, config["input_size"])).astype(model.dtype)
        g = rng.standard_normal((n, steps, model.output_size)).astype(model.dtype)
        if backend.name == "cpu":  # batch-major storage, as Recurrent.forward reads it
            self.x, self.grad_out = backend.time_major(x), backend.time_major(g)
        else:
            self.x = workspace.upload("profile_x", x.transpose(1, 0, 2))
            self.grad_out = workspace.upload("profile_grad", g.transpose(1, 0, 2))
        self.lengths = workspace.upload("profile_lengths", np.full(n, steps, dtype=np.int64))
        self.h0, self.c0 = model.initial_states(None, n)
        model._store.push()
        self.sync = backend.sync
        self.acts = None
        from .optim import Adam
        store = model._store
        adam = Adam([store.device.shape], learning_rate_init=1e-4)
        adam.attach(backend)
        self.optimizer_step = lambda: adam.step([store.device], [store.device_grads])

    def _forward(self, clock):
        with self.model.backend.compute():
            self.acts = self.model.run_forward(self.x, self.lengths, self.h0, self.c0, clock)

    def _backward(self, clock):
        with self.model.backend.compute():
            self.grad_x, _, _ = self.model.run_backward(
                self.acts, self.grad_out, None, None, need_input_grad=True, spend=True,
                clock=clock)
        self.acts = None

    def run_phases(self):
        """One training step with the device synchronised after every phase."""
        acc = dict.fromkeys(PHASES, 0.0)
        sync = self.sync

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
        sync = self.sync
        sync()
        t0 = time.perf_counter()
        self._forward(NO_CLOCK)
        sync()
        t1 = time.perf_counter()
        self._backward(NO_CLOCK)
        sync()
        t2 = time.perf_counter()
        self.optimizer_step()
        sync()
        t3 = time.perf_counter()
        return {"forward": t1 - t0, "backward": t2 - t1, "train_step": t3 - t0}


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
    sync = step.sync

    def run(which):
        if which == "forward":
            rec.forward(X)
        else:
            rec.backward(G, retain_activations=True)  # timed again without a forward
        sync()

    return run


# --------------------------------------------------------------------------- devices


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


def _progress_line(entry, reported):
    """One progress line; a device's reason for not running is given once, on its first."""
    head = f"{entry['cell']} H={entry['hidden_size']} {entry['device']}: "
    if not entry["available"]:
        if entry["device"] in reported:
            return head + "not available (see above)"
        reported.add(entry["device"])
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
