"""The ``rnnumba`` command line: ``profile``, ``info`` and ``demo``.

``python -m rnnumba`` (or the ``rnnumba`` console script) with no subcommand runs
``demo``. Exit codes: 0 on success, 1 when the work itself fails, 2 for bad arguments.
"""

import argparse
import os
import platform
import sys

__all__ = ["main", "build_parser", "info_lines"]

CELLS = ("rnn", "lstm", "gru")
DEVICES = ("cpu", "cuda")


def main(argv=None):
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        return _demo(args)
    return args.handler(args)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="rnnumba",
        description="RNN, LSTM and GRU networks with Numba kernels. With no command, "
                    "runs the demo.")
    from . import __version__
    parser.add_argument("--version", action="version", version=f"rnnumba {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="{profile,info,demo}")

    prof = sub.add_parser(
        "profile", help="time the phases of a training step on the CPU and the GPU",
        description="Time the phases of a training step (input projection, forward "
                    "recurrence, BPTT recurrence, weight-gradient GEMMs, optimizer step) and "
                    "the forward, backward and whole step, per cell, hidden size and device. "
                    "A device that is not available is reported, not an error.")
    prof.add_argument("--cell", type=_choices_list(CELLS), default=["lstm", "gru"],
                      help="comma-separated cells among rnn,lstm,gru (default lstm,gru)")
    prof.add_argument("--hidden", type=_int_list, default=[32, 128],
                      help="comma-separated hidden sizes (default 32,128)")
    prof.add_argument("--batch", type=_positive_int, default=64, help="batch size (64)")
    prof.add_argument("--seq", type=_positive_int, default=100, help="sequence length (100)")
    prof.add_argument("--input", type=_positive_int, default=32,
                      help="input features per step (32)")
    prof.add_argument("--layers", type=_positive_int, default=1, help="stacked layers (1)")
    prof.add_argument("--bidirectional", action="store_true", help="two directions per layer")
    prof.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    prof.add_argument("--devices", type=_choices_list(DEVICES), default=["cpu", "cuda"],
                      help="comma-separated devices among cpu,cuda (default cpu,cuda)")
    prof.add_argument("--repeat", type=_positive_int, default=5,
                      help="timed repeats per configuration (5)")
    prof.add_argument("--warmup", type=_nonnegative_int, default=1,
                      help="untimed runs after the first call (1)")
    prof.add_argument("--seed", type=_nonnegative_int, default=0, help="weights and data seed")
    prof.add_argument("--json", metavar="PATH", help="write the full result as JSON")
    prof.add_argument("--plot", metavar="PATH",
                      help="write a figure (.png, .pdf, .svg): time per phase and CPU vs "
                           "GPU across hidden sizes")
    prof.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    prof.set_defaults(handler=_profile)

    info = sub.add_parser("info", help="versions, threading, cache directory, CUDA",
                          description="Print versions, the threading layer and thread "
                                      "counts, the kernel cache directory, and the CUDA "
                                      "driver and device, or why there is none.")
    info.set_defaults(handler=_info)

    demo = sub.add_parser("demo", help="fit an RNNClassifier on scikit-learn's digits",
                          description="Fit an RNNClassifier on scikit-learn's digits (rows as "
                                      "time steps) and print the test accuracy.")
    demo.set_defaults(handler=_demo)
    return parser


# --------------------------------------------------------------------------- commands


def _profile(args):
    from .profiling import format_table, profile, save_json
    result = profile(cells=args.cell, hidden_sizes=args.hidden, batch_size=args.batch,
                     seq_len=args.seq, input_size=args.input, num_layers=args.layers,
                     bidirectional=args.bidirectional, dtype=args.dtype, devices=args.devices,
                     repeat=args.repeat, warmup=args.warmup, random_state=args.seed,
                     verbose=not args.quiet)
    print(format_table(result))
    status = 0
    if args.json:
        try:
            save_json(result, args.json)
            print(f"\nJSON written to {args.json}")
        except OSError as exc:
            print(f"rnnumba profile: cannot write {args.json}: {exc}", file=sys.stderr)
            status = 1
    if args.plot:
        try:
            from .plotting import plot_profile
            plot_profile(result, args.plot)
            print(f"figure written to {args.plot}")
        except ImportError as exc:
            print(f"rnnumba profile: no figure, matplotlib is missing: {exc}",
                  file=sys.stderr)
            status = 1
        except (OSError, ValueError) as exc:
            print(f"rnnumba profile: cannot write {args.plot}: {exc}", file=sys.stderr)
            status = 1
    return status


def _info(args):
    for line in info_lines():
        print(line)
    return 0


def _demo(args):
    try:
        from . import _demo as demo
    except ModuleNotFoundError as exc:
        if exc.name != "rnnumba._demo":
            raise
        print("rnnumba demo: this build has no demo module (rnnumba._demo)", file=sys.stderr)
        return 1
    result = demo.main()
    return result if isinstance(result, int) else 0


def info_lines():
    """The lines ``rnnumba info`` prints."""
    import numba
    import numpy as np

    from . import __version__, _config
    lines = [f"rnnumba     {__version__}",
             f"python      {platform.python_version()} ({sys.executable})",
             f"platform    {platform.platform()}",
             f"numpy       {np.__version__}",
             f"numba       {numba.__version__}"]
    for name in ("scipy", "sklearn", "matplotlib", "numba_cuda"):
        lines.append(f"{name:<11} {_version_of(name)}")
    from .profiling import _cpu_name
    lines.append(f"cpu         {_cpu_name()}")
    lines.append("")
    lines += _threading_lines(numba)
    lines.append(f"numba threads          {numba.get_num_threads()} "
                 f"(NUMBA_NUM_THREADS={numba.config.NUMBA_NUM_THREADS})")
    lines.append(f"BLAS                   {_blas_line()}")
    lines.append(f"fastmath               {_config.FASTMATH} (RNNUMBA_FASTMATH)")
    lines.append(f"kernel cache           {'on' if _config.CACHE else 'off'} (RNNUMBA_CACHE)")
    lines.append(f"cache directory        {_cache_dir(numba)}")
    lines.append("")
    lines += _cuda_lines()
    return lines


# --------------------------------------------------------------------------- info helpers


def _version_of(module):
    from importlib import metadata
    dist = {"sklearn": "scikit-learn", "numba_cuda": "numba-cuda"}.get(module, module)
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _threading_lines(numba):
    from .kernels.cpu import _threads
    tbb = _threads.load_tbb()  # as the kernels do before their first parallel loop
    configured = numba.config.THREADING_LAYER
    try:
        active = numba.threading_layer()
    except ValueError:
        active = None
    layers = []
    for name, module in (("tbb", "tbbpool"), ("omp", "omppool"), ("workqueue", "workqueue")):
        try:
            __import__(f"numba.np.ufunc.{module}")
            layers.append(name)
        except Exception:
            pass
    text = f"{active} (active)" if active else f"{configured!r} requested, none started yet"
    uses = ("Numba's TBB layer (a prange over row blocks)" if _threads.prange_loops() else
            "Python threads (no TBB layer here: each hand-off costs 65-100 us)")
    return [f"numba threading layer  {text}; importable: {', '.join(layers) or 'none'}",
            f"TBB runtime            {tbb or 'not found'}",
            f"time loops split by    {uses}"]


def _blas_line():
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "unknown (threadpoolctl missing)"
    pools = [p for p in threadpool_info() if p.get("user_api") == "blas"]
    if not pools:
        return "none found"
    return "; ".join(f"{p.get('internal_api')} {p.get('version')}, {p.get('num_threads')} "
                     f"threads ({p.get('threading_layer')})" for p in pools)


def _cache_dir(numba):
    if numba.config.CACHE_DIR:
        where = f"{numba.config.CACHE_DIR} (NUMBA_CACHE_DIR)"
        path = numba.config.CACHE_DIR
    else:
        try:
            from .kernels.cpu import lstm
            path = lstm.forward_sequence._cache.cache_path
        except Exception:
            path = os.path.join(os.path.dirname(__file__), "kernels", "cpu", "__pycache__")
        where = path
    try:
        count = sum(1 for _, _, files in os.walk(path) for f in files if f.endswith(".nbi"))
        where += f" ({count} cached kernel index files)"
    except OSError:
        pass
    return where


def _cuda_lines():
    from .profiling import cuda_status
    ok, text = cuda_status()
    lines = [f"cuda backend           {'available: ' + text if ok else 'not available: ' + text}"]
    try:
        from numba import cuda
    except Exception as exc:
        return lines + [f"cuda driver            numba.cuda cannot be imported: {exc}"]
    try:
        if not cuda.is_available():
            err = cuda.cuda_error()
            reason = " ".join(str(err).split()) if err else "no CUDA driver or GPU found"
            return lines + [f"cuda driver/device     none: {reason}"]
        from numba.cuda.cudadrv.driver import driver
        major, minor = driver.get_version()
        lines.append(f"cuda driver            {major}.{minor}")
        for gpu in cuda.gpus:
            name = gpu.name.decode() if isinstance(gpu.name, bytes) else gpu.name
            cc = ".".join(map(str, gpu.compute_capability))
            lines.append(f"cuda device {gpu.id}          {name} (compute capability {cc})")
    except Exception as exc:
        lines.append(f"cuda driver/device     error while querying: {exc}")
    return lines


# --------------------------------------------------------------------------- argument types


def _int_at_least(minimum, description):
    """An argparse type: an integer of at least ``minimum``, else an error naming the text."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"expected {description}, got {text!r}")
        return value
    return parse


_positive_int = _int_at_least(1, "a positive integer")
_nonnegative_int = _int_at_least(0, "an integer >= 0")


def _int_list(text):
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise argparse.ArgumentTypeError("expected comma-separated positive integers")
    return [_positive_int(t) for t in items]


def _choices_list(choices):
    def parse(text):
        items = [t.strip().lower() for t in text.split(",") if t.strip()]
        bad = [t for t in items if t not in choices]
        if not items or bad:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated values among {','.join(choices)}, got {text!r}")
        return list(dict.fromkeys(items))
    parse.__name__ = "list"
    return parse


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
