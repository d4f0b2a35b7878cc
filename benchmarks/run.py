"""Plain benchmark runner (no asv needed): rnnumba against PyTorch in the same process.

    python benchmarks/run.py                 # everything, writes benchmarks/results/*.json
    python benchmarks/run.py --quick --only small
    python benchmarks/run.py --list

Method: ours and torch's callables are built in one process on the same weights and data
(float32, ``torch.set_num_threads(2)``), warmed up (excluded), then timed in interleaved
repeats (ours, torch, ours, torch, ... in rotating order); each sample is long enough for
the timer (several calls where one is short). Medians and IQRs are per call. The ratio is
``torch_median / ours_median``: above 1 means rnnumba is faster. The machine's float32 GEMM
rate (``np.matmul`` on 2048x2048 matrices, 2 BLAS threads) is measured once, and every
forward+backward reports which fraction of it the GEMM FLOPs achieve. PyTorch's CPU LSTM
runs oneDNN's fused LSTM primitive where torch has it; the LSTM benchmarks also time it with
oneDNN off (``torch_no_onednn``, ``ratio_no_onednn``) in the same interleaved repeats.

Benchmarks (names are matched by ``--only``):

- ``forward/<cell>/<size>`` and ``forward_backward/<cell>/<size>`` for every cell at
  ``small`` (32, 50, 8, 32), ``medium`` (64, 100, 32, 128), ``large`` (64, 100, 256, 512);
- ``forward/<cell>/medium-2layer-bidir`` and ``forward_backward/...``: 2 layers,
  bidirectional, medium size;
- ``fit/RNNClassifier/digits``: an estimator fit end to end against the same network and
  loop written in PyTorch;
- ``peakmem/<cell>/<size>``: a training step's peak (tracemalloc) over the activations
  BPTT must keep;
- ``coldstart/<cell>``: fresh interpreters, import + first forward+backward, Numba cache
  warm and empty (compile time per cell), and PyTorch's import + first step.
"""

import argparse
import datetime
import os
import platform
import re
import sys
import time
import warnings

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from benchmarks import _common as c  # noqa: E402

RESULTS_DIR = os.path.join(REPO_ROOT, "benchmarks", "results")


# --------------------------------------------------------------------------- the benchmarks


def benchmark_names():
    """``[(name, kind, args)]`` of the whole suite, in running order."""
    out = []
    for what in ("forward", "forward_backward"):
        for cell in c.CELLS:
            for size in c.SIZES:
                out.append((f"{what}/{cell}/{size}", "time", (what, cell, size, 1, False)))
    for what in ("forward", "forward_backward"):
        for cell in c.CELLS:
            out.append((f"{what}/{cell}/medium-2layer-bidir", "time",
                        (what, cell, "medium", 2, True)))
    out.append(("fit/RNNClassifier/digits", "fit", ()))
    for cell in c.CELLS:
        for size in c.SIZES:
            out.append((f"peakmem/{cell}/{size}", "memory", (cell, size)))
    for cell in c.CELLS:
        out.append((f"coldstart/{cell}", "coldstart", (cell,)))
    return out


def run_time(args, opts, gemm):
    what, cell, size, layers, bidir = args
    rec, X, G = c.make_ours(cell, size, layers, bidir)
    fns = {"ours": (c.ours_forward(rec, X) if what == "forward"
                    else c.ours_forward_backward(rec, X, G))}
    torch_note = None
    if c.torch_available():
        module, x, g = c.make_torch(rec, X, G)
        fns["torch"] = (c.torch_forward(module, x) if what == "forward"
                        else c.torch_forward_backward(module, x, g))
        if cell in c.ONEDNN_CELLS and c.torch_onednn():
            fns["torch_no_onednn"] = c.without_onednn(fns["torch"])
    else:
        torch_note = "torch not installed"
    stats = c.interleaved(fns, repeats=opts.repeats, warmup=opts.warmup,
                          budget=opts.budget)
    batch, steps, features, hidden = c.SIZES[size]
    flop = c.flops(cell, size, layers, bidir)[what]
    rec_out = {"kind": "time", "what": what, "cell": cell, "size": size,
               "shape": {"B": batch, "T": steps, "I": features, "H": hidden},
               "num_layers": layers, "bidirectional": bidir, "flops": flop,
               "ours": stats["ours"], "torch": stats.get("torch"), "torch_note": torch_note}
    ours_rate = flop / stats["ours"]["median"] / 1e9
    rec_out["ours_gflops"] = ours_rate
    rec_out["ours_fraction_of_gemm"] = ours_rate / gemm["gflops"] if gemm else None
    if "torch" in stats:
        rec_out["ratio"] = stats["torch"]["median"] / stats["ours"]["median"]
        rec_out["torch_gflops"] = flop / stats["torch"]["median"] / 1e9
        rec_out["torch_fraction_of_gemm"] = (rec_out["torch_gflops"] / gemm["gflops"]
                                             if gemm else None)
    else:
        rec_out["ratio"] = None
    if "torch_no_onednn" in stats:
        rec_out["torch_no_onednn"] = stats["torch_no_onednn"]
        rec_out["ratio_no_onednn"] = (stats["torch_no_onednn"]["median"]
                                      / stats["ours"]["median"])
    return rec_out


def run_fit(args, opts, gemm):
    try:
        from rnnumba import RNNClassifier
    except (ImportError, AttributeError) as exc:
        return {"kind": "fit", "skipped": f"rnnumba.RNNClassifier is not available: {exc}"}
    import numpy as np
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    X = (digits.images / 16.0).astype("float32")  # (1797, 8, 8): rows as time steps
    y = digits.target
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25,
                                                        random_state=0, stratify=y)
    epochs, hidden, batch, lr = (3 if opts.quick else 10), 64, 64, 0.01
    config = {"cell": "lstm", "hidden": hidden, "epochs": epochs, "batch_size": batch,
              "learning_rate_init": lr, "solver": "adam", "clip_norm": 5.0,
              "n_train": len(X_train), "n_test": len(X_test), "T": 8, "I": 8}
    accuracy = {}

    def ours():
        clf = RNNClassifier(cell="lstm", hidden_layer_sizes=(hidden,), max_iter=epochs,
                            batch_size=batch, learning_rate_init=lr, n_iter_no_change=epochs,
                            tol=0.0, clip_norm=5.0, dtype="float32", device="cpu",
                            learning_rate="constant", alpha=1e-4, pooling="last",
                            scale=False, patch_size=1, bidirectional=False, forget_bias=None,
                            random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            clf.fit(X_train, y_train)
        accuracy["ours"] = float(clf.score(X_test, y_test))

    fns = {"ours": ours}
    torch_note = None
    if c.torch_available():
        import torch
        torch.set_num_threads(c.TORCH_THREADS)
        xt, yt = torch.from_numpy(X_train), torch.from_numpy(y_train.astype("int64"))
        xs = torch.from_numpy(X_test)

        def torch_fit():
            torch.manual_seed(0)
            lstm = torch.nn.LSTM(8, hidden, batch_first=True)
            head = torch.nn.Linear(hidden, 10)
            params = list(lstm.parameters()) + list(head.parameters())
            opt = torch.optim.Adam(params, lr=lr)
            gen = torch.Generator().manual_seed(0)
            for _ in range(epochs):
                order = torch.randperm(len(xt), generator=gen)
                for start in range(0, len(xt), batch):
                    idx = order[start:start + batch]
                    opt.zero_grad(set_to_none=True)
                    _, (h, _) = lstm(xt[idx])
                    loss = torch.nn.functional.cross_entropy(head(h[-1]), yt[idx])
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(params, 5.0)
                    opt.step()
            with torch.no_grad():
                _, (h, _) = lstm(xs)
                pred = head(h[-1]).argmax(1).numpy()
            accuracy["torch"] = float(np.mean(pred == y_test))

        fns["torch"] = torch_fit
    else:
        torch_note = "torch not installed"
    stats = c.interleaved(fns, repeats=max(1, opts.repeats // 4), warmup=1, min_sample=0.0,
                          settle=0)  # a sample is a whole fit
    out = {"kind": "fit", "config": config, "ours": stats["ours"],
           "torch": stats.get("torch"), "torch_note": torch_note, "accuracy": accuracy}
    out["ratio"] = (stats["torch"]["median"] / stats["ours"]["median"]
                    if "torch" in stats else None)
    return out


def run_memory(args, opts, gemm):
    cell, size = args
    mem = c.peak_training_memory(cell, size)
    batch, steps, features, hidden = c.SIZES[size]
    return dict(mem, kind="memory", cell=cell, size=size,
                shape={"B": batch, "T": steps, "I": features, "H": hidden},
                torch_note="not measured: PyTorch's CPU allocator does not report to "
                           "tracemalloc")


def run_coldstart(args, opts, gemm):
    (cell,) = args
    warm_repeats = 1 if opts.quick else 3
    c.cold_start(cell, "warm")  # fill the on-disk cache
    warm = [c.cold_start(cell, "warm") for _ in range(warm_repeats)]
    empty = [c.cold_start(cell, "empty") for _ in range(1)]
    out = {"kind": "coldstart", "cell": cell, "shape": {"B": 32, "T": 50, "I": 8, "H": 32},
           "warm": _cold_summary(warm), "empty": _cold_summary(empty)}
    out["compile_s"] = out["empty"]["first_step_s"] - out["warm"]["first_step_s"]
    if c.torch_available():
        tor = [c.cold_start(cell, impl="torch") for _ in range(warm_repeats)]
        out["torch"] = _cold_summary(tor)
        out["ratio_warm"] = out["torch"]["process_s"] / out["warm"]["process_s"]
        out["ratio_empty"] = out["torch"]["process_s"] / out["empty"]["process_s"]
    else:
        out["torch"], out["torch_note"] = None, "torch not installed"
    return out


def _cold_summary(runs):
    keys = runs[0].keys()
    summary = {k: c.spread([r[k] for r in runs])["median"] for k in keys}
    summary["runs"] = runs
    return summary


RUNNERS = {"time": run_time, "fit": run_fit, "memory": run_memory, "coldstart": run_coldstart}


# --------------------------------------------------------------------------- reporting


def _ms(seconds):
    if seconds is None:
        return "-"
    ms = 1e3 * seconds
    return f"{ms:.3g}" if ms < 100 else f"{ms:.0f}"


def _iqr_pct(stats):
    return f"{100 * stats['iqr'] / stats['median']:.0f}%" if stats["median"] else "-"


def format_report(data):
    lines = []
    env = data["environment"]
    gemm = data.get("gemm")
    lines.append(f"machine: {data['machine']}  |  rnnumba {env['rnnumba']}, torch "
                 f"{env.get('torch', '-')}, numpy {env['numpy']}, numba {env['numba']}")
    if gemm:
        lines.append(f"float32 GEMM rate: {gemm['gflops']:.1f} GFLOP/s "
                     f"(np.matmul {gemm['n']}x{gemm['n']}, {gemm['threads']} threads)")
    lines.append(f"threads: {data['method']['threads']} for torch and for our BLAS/Numba; "
                 f"float32; interleaved repeats, warm-up excluded")
    pools = data.get("thread_pools_after")
    if pools:
        lines.append("thread pools: " + ", ".join(f"{lib} {n}" for lib, n in pools))
    lines.append(f"load average before/after: {data['load_before']} / {data['load_after']}")
    lines.append("")
    timed = [r for r in data["results"] if r.get("kind") == "time"]
    if timed:
        header = ["benchmark", "ours ms", "IQR", "torch ms", "IQR", "ratio",
                  "ours GFLOP/s", "% GEMM"]
        rows = []
        for r in timed:
            t = r["torch"]
            rows.append([r["name"], _ms(r["ours"]["median"]), _iqr_pct(r["ours"]),
                         _ms(t["median"]) if t else "-", _iqr_pct(t) if t else "-",
                         f"{r['ratio']:.2f}" if r["ratio"] else "-",
                         f"{r['ours_gflops']:.1f}",
                         (f"{100 * r['ours_fraction_of_gemm']:.0f}%"
                          if r.get("ours_fraction_of_gemm") is not None else "-")])
        lines += _table(header, rows)
        lines.append("ratio = torch median / ours median (>1: rnnumba faster); IQR as % of "
                     "the median; GFLOP/s counts GEMM FLOPs only")
        lines.append("")
        native = [r for r in timed if r.get("torch_no_onednn")]
        if native:
            rows = [[r["name"], _ms(r["ours"]["median"]), _ms(r["torch"]["median"]),
                     _ms(r["torch_no_onednn"]["median"]), _iqr_pct(r["torch_no_onednn"]),
                     f"{r['ratio']:.2f}", f"{r['ratio_no_onednn']:.2f}"] for r in native]
            lines += _table(["torch.nn.LSTM with and without oneDNN", "ours ms", "torch ms",
                             "no oneDNN ms", "IQR", "ratio", "ratio no oneDNN"], rows)
            lines.append("PyTorch's CPU LSTM runs oneDNN's fused LSTM primitive; with "
                         "oneDNN off it runs its own per-step kernels, as its RNN and GRU do")
            lines.append("")
    for r in data["results"]:
        if r.get("kind") == "fit" and not r.get("error"):
            if r.get("skipped"):
                lines.append(f"{r['name']}: skipped ({r['skipped']})")
            else:
                cfg = r["config"]
                acc = r["accuracy"]
                lines.append(
                    f"{r['name']}: LSTM H={cfg['hidden']}, {cfg['epochs']} epochs, batch "
                    f"{cfg['batch_size']}, Adam: ours {r['ours']['median']:.2f} s "
                    f"(acc {acc.get('ours', float('nan')):.3f}), torch "
                    + (f"{r['torch']['median']:.2f} s (acc {acc.get('torch', float('nan')):.3f})"
                       f", ratio {r['ratio']:.2f}" if r["torch"] else r["torch_note"]))
            lines.append("")
    mem = [r for r in data["results"] if r.get("kind") == "memory"]
    if mem:
        rows = [[r["name"], f"{r['peak_bytes'] / 2**20:.2f}",
                 f"{r['activation_bytes'] / 2**20:.2f}", f"{r['ratio']:.2f}"] for r in mem]
        lines += _table(["training step memory", "peak MiB", "activations MiB",
                         "peak/activations"], rows)
        lines.append("peak: tracemalloc over forward+backward+Adam; activations: hidden "
                     "states + gate cache that BPTT must keep")
        lines.append("")
    cold = [r for r in data["results"] if r.get("kind") == "coldstart"]
    if cold:
        rows = []
        for r in cold:
            t = r.get("torch")
            rows.append([r["name"], f"{r['warm']['import_s']:.2f}",
                         f"{r['warm']['first_step_s']:.2f}", f"{r['warm']['process_s']:.2f}",
                         f"{r['empty']['first_step_s']:.2f}", f"{r['empty']['process_s']:.2f}",
                         f"{r['compile_s']:.2f}",
                         f"{t['process_s']:.2f}" if t else "-",
                         f"{r['ratio_warm']:.2f}" if t else "-",
                         f"{r['ratio_empty']:.2f}" if t else "-"])
        lines += _table(["cold start (s)", "import", "1st step warm", "process warm",
                         "1st step empty", "process empty", "compile", "torch process",
                         "ratio warm", "ratio empty"], rows)
        lines.append("fresh interpreter, (32, 50, 8, 32), import + first forward+backward; "
                     "compile = first step with an empty NUMBA_CACHE_DIR - with a warm cache")
        lines.append("")
    for r in data["results"]:
        if r.get("error"):
            lines.append(f"{r['name']}: ERROR {r['error']}")
    return "\n".join(lines)


def _table(header, rows):
    widths = [max(len(str(header[i])), *(len(str(row[i])) for row in rows))
              for i in range(len(header))]
    fmt = lambda row: "  ".join(  # noqa: E731
        str(v).ljust(w) if i == 0 else str(v).rjust(w)
        for i, (v, w) in enumerate(zip(row, widths)))
    return [fmt(header), "  ".join("-" * w for w in widths)] + [fmt(row) for row in rows]


# --------------------------------------------------------------------------- main


def _environment():
    import numba
    import numpy as np

    import rnnumba
    env = {"rnnumba": rnnumba.__version__, "python": platform.python_version(),
           "numpy": np.__version__, "numba": numba.__version__,
           "platform": platform.platform(), "cpu_count": os.cpu_count()}
    try:
        from rnnumba.profiling import environment
        env.update({k: v for k, v in environment().items() if k not in env})
    except Exception:  # pragma: no cover
        pass
    if c.torch_available():
        import torch
        env["torch"] = torch.__version__
        env["torch_threads"] = c.TORCH_THREADS
        env["torch_onednn"] = c.torch_onednn()
    return env


def _default_machine():
    gpu = "GPU unknown"
    if c.torch_available():
        import torch
        gpu = (f"GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available()
               else "no GPU")
    return f"{os.cpu_count()}-core CPU, {gpu}"


def _slug(text):
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "machine"


def _load():
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:  # pragma: no cover
        return None


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="rnnumba benchmarks against PyTorch, no asv needed.")
    parser.add_argument("--quick", action="store_true",
                        help="few repeats (a smoke run; numbers are rough)")
    parser.add_argument("--only", action="append", metavar="SUBSTRING",
                        help="run only benchmarks whose name contains SUBSTRING (repeatable)")
    parser.add_argument("--list", action="store_true", help="list the benchmark names and exit")
    parser.add_argument("--repeats", type=int, help="timed repeats (default 15; --quick 3)")
    parser.add_argument("--threads", type=int, default=2,
                        help="threads for torch (torch.set_num_threads) and for our BLAS "
                             "and Numba calls (default 2)")
    parser.add_argument("--machine", help="machine description stored in the JSON and its "
                                          "file name (default: cores and GPU detected)")
    parser.add_argument("--output", metavar="PATH",
                        help="JSON file (default benchmarks/results/<UTC time>-<machine>.json)")
    opts = parser.parse_args(argv)
    opts.repeats = opts.repeats or (3 if opts.quick else 15)
    opts.warmup = 1 if opts.quick else 3
    opts.budget = 10.0 if opts.quick else 25.0

    selected = [b for b in benchmark_names()
                if not opts.only or any(s in b[0] for s in opts.only)]
    if opts.list:
        for name, _, _ in selected:
            print(name)
        return 0
    if not selected:
        print(f"no benchmark matches {opts.only}", file=sys.stderr)
        return 2

    c.set_threads(opts.threads)
    load = _load()
    if opts.threads > 1 and load and load[0] > (os.cpu_count() or 1):
        print(f"WARNING: load average {load[0]} on {os.cpu_count()} cores: other processes "
              f"compete for the CPU, and multi-threaded timings (OpenMP/BLAS threads that "
              f"wait for each other) are distorted; consider a quiet machine or --threads 1",
              file=sys.stderr, flush=True)
    started = datetime.datetime.now(datetime.timezone.utc)
    machine = opts.machine or _default_machine()
    data = {"schema": "rnnumba.benchmarks/1", "machine": machine,
            "created": started.isoformat(timespec="seconds"), "quick": opts.quick,
            "only": opts.only, "environment": _environment(), "load_before": _load(),
            "method": {"repeats": opts.repeats, "warmup": opts.warmup,
                       "budget_s_per_benchmark": opts.budget, "interleaved": True,
                       "pause_s_before_sample": c.PAUSE_BEFORE_SAMPLE,
                       "untimed_calls_before_sample": c.SETTLE_CALLS,
                       "dtype": c.DTYPE, "threads": c.TORCH_THREADS,
                       "threads_note": "torch.set_num_threads and our BLAS/Numba threads",
                       "statistic": "median and IQR of per-call seconds",
                       "ratio": "torch median / ours median"},
            "sizes": {k: dict(zip("BTIH", v)) for k, v in c.SIZES.items()}}
    print(f"rnnumba benchmarks on {machine}: {len(selected)} benchmarks", flush=True)
    gemm = None
    if any(kind == "time" for _, kind, _ in selected):
        gemm = c.gemm_rate(repeats=3 if opts.quick else 7)
        print(f"  float32 GEMM rate {gemm['gflops']:.1f} GFLOP/s", flush=True)
    data["gemm"] = gemm
    results = []
    for name, kind, args in selected:
        t0 = time.perf_counter()
        try:
            record = RUNNERS[kind](args, opts, gemm)
        except Exception as exc:  # one failing benchmark must not lose the others
            record = {"kind": kind, "error": f"{type(exc).__name__}: {exc}"}
        record = dict({"name": name}, **record)
        record["elapsed_s"] = time.perf_counter() - t0
        results.append(record)
        print(f"  {name}: {_progress(record)} ({record['elapsed_s']:.1f} s)", flush=True)
    data["results"] = results
    data["thread_pools_after"] = c.thread_pools()
    data["load_after"] = _load()
    data["elapsed_s"] = (datetime.datetime.now(datetime.timezone.utc) - started).total_seconds()

    path = opts.output
    if path is None:
        os.makedirs(RESULTS_DIR, exist_ok=True)
        path = os.path.join(RESULTS_DIR,
                            f"{started:%Y%m%dT%H%M%SZ}-{_slug(machine)}"
                            f"{'-quick' if opts.quick else ''}.json")
    c.write_json(data, path)
    print()
    print(format_report(data))
    print(f"JSON written to {path}")
    return 1 if any(r.get("error") for r in results) else 0


def _progress(r):
    if r.get("error"):
        return "ERROR " + r["error"]
    if r.get("skipped"):
        return "skipped: " + r["skipped"]
    if r["kind"] in ("time", "fit"):
        ratio = f"ratio {r['ratio']:.2f}" if r.get("ratio") else r.get("torch_note", "")
        return f"ours {_ms(r['ours']['median'])} ms, {ratio}"
    if r["kind"] == "memory":
        return f"peak/activations {r['ratio']:.2f}"
    if r["kind"] == "coldstart":
        return f"compile {r['compile_s']:.1f} s"
    return ""


if __name__ == "__main__":
    sys.exit(main())
