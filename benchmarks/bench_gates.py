"""The LSTM's gate arithmetic compiled for each instruction set: the generated code and its
speed, side by side on this machine.

Numba compiles for the host CPU unless ``NUMBA_CPU_NAME`` and ``NUMBA_CPU_FEATURES`` name
another target. For each target this script starts a fresh interpreter with its own kernel
cache, compiles the LSTM's row kernels (the elementwise forward and backward of one batch
row, ``rnnumba.kernels.cpu.lstm``) inside a loop over rows, and reports

- the instructions of that loop by register width (``zmm`` 512-bit, ``ymm`` 256-bit,
  ``xmm`` 128-bit or scalar) and its divisions, read from ``inspect_asm``;
- nanoseconds per gate element (one of the ``4 * hidden`` pre-activations of a row) of each
  row kernel at several hidden sizes;
- the small ``Recurrent`` forward+backward of every cell, 1 thread, in milliseconds.

The targets: ``host`` (what Numba compiles for by default), ``haswell`` (AVX2 and FMA, no
AVX-512) and ``host-512`` (the host with LLVM's preference for 256-bit vectors turned off,
so that an AVX-512 CPU gets 512-bit loops). Code compiled for an older target runs on a
newer CPU, so on an AVX-512 machine this shows whether the AVX2 code is vectorised as
widely and runs as fast; it does not show another CPU's microarchitecture.

Usage::

    python benchmarks/bench_gates.py [--targets host haswell host-512] [--hidden 32 64 256]
        [--repeats 7] [--output PATH]
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

#: Targets by name: ``NUMBA_CPU_NAME`` and ``NUMBA_CPU_FEATURES`` (``None``: the host's; a
#: feature list without a name is added to the host's features).
#: ``haswell`` is AVX2 with FMA and no AVX-512, the instruction set of the AMD EPYC machine
#: without AVX-512 these benchmarks have run on.
TARGETS = {
    "host": (None, None),
    "haswell": ("haswell", ",".join(
        ["+64bit", "+avx", "+avx2", "+bmi", "+bmi2", "+cmov", "+cx16", "+f16c", "+fma",
         "+lzcnt", "+movbe", "+popcnt", "+sse", "+sse2", "+sse3", "+sse4.1", "+sse4.2",
         "+ssse3", "-avx512f", "-avx512bw", "-avx512cd", "-avx512dq", "-avx512vl"])),
    "host-512": (None, "-prefer-256-bit"),
}


def census(asm):
    """Counts of the instructions in ``asm`` (AT&T syntax) by the widest register they name,
    and of the divisions."""
    counts = {"zmm": 0, "ymm": 0, "xmm": 0, "divisions_packed": 0, "divisions_scalar": 0,
              "instructions": 0}
    for line in asm.splitlines():
        line = line.strip()
        if not line or line.startswith((".", "#")) or line.endswith(":"):
            continue
        counts["instructions"] += 1
        for width in ("zmm", "ymm", "xmm"):
            if f"%{width}" in line:
                counts[width] += 1
                break
        opcode = line.split()[0]
        if re.fullmatch(r"v?div[ps]s", opcode):
            counts["divisions_packed" if opcode.endswith("ps") else "divisions_scalar"] += 1
    return counts


def measure(hidden_sizes, repeats):
    """Run in the child: compile for this process's target, time, count; returns a dict."""
    import numpy as np
    from numba import config, njit
    from threadpoolctl import threadpool_limits

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from benchmarks import _common as c
    from rnnumba.kernels.cpu._state import unmanaged
    from rnnumba.kernels.cpu.lstm import _backward_row, _forward_row

    @njit(nogil=True, error_model="numpy")
    def forward_rows(proj, rec, b_hh, keep, cell, h, reps):
        proj, rec, keep, cell, h = (unmanaged(proj), unmanaged(rec), unmanaged(keep),
                                    unmanaged(cell), unmanaged(h))
        for _ in range(reps):
            for n in range(proj.shape[0]):
                _forward_row(proj[n], rec[n], b_hh, keep[n], cell[n], h[n])

    @njit(nogil=True, error_model="numpy")
    def backward_rows(dh, g, dc, keep, c_prev, d, reps):
        dh, g, dc, keep, c_prev, d = (unmanaged(dh), unmanaged(g), unmanaged(dc),
                                      unmanaged(keep), unmanaged(c_prev), unmanaged(d))
        for _ in range(reps):
            for n in range(dh.shape[0]):
                _backward_row(dh[n], g[n], dc[n], keep[n], c_prev[n], d[n])

    def median_seconds(fn, n=repeats):
        fn()
        times = []
        for _ in range(n):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return float(np.median(times))

    import llvmlite.binding as llvm
    out = {"target_cpu": config.CPU_NAME or llvm.get_host_cpu_name(),
           "ns_per_gate_element": {}}
    rng = np.random.default_rng(0)
    f32 = np.float32
    reps = 100
    for hid in hidden_sizes:
        rows = max(64, 32768 // hid)
        proj = rng.standard_normal((rows, 4 * hid)).astype(f32)
        rec = proj.copy()
        b_hh = rng.standard_normal(4 * hid).astype(f32)
        keep = rng.uniform(0.0, 1.0, (rows, 5 * hid)).astype(f32)
        cell = rng.standard_normal((rows, hid)).astype(f32)
        h = np.zeros((rows, hid), f32)
        dh, g, dc = (rng.standard_normal((rows, hid)).astype(f32) for _ in range(3))
        d = np.zeros((rows, 4 * hid), f32)
        elements = reps * rows * 4 * hid
        fwd = median_seconds(lambda: forward_rows(proj, rec, b_hh, keep, cell, h, reps))
        keep[:] = rng.uniform(0.0, 1.0, keep.shape)
        bwd = median_seconds(lambda: backward_rows(dh, g, dc, keep, cell, d, reps))
        out["ns_per_gate_element"][str(hid)] = {"forward": fwd / elements * 1e9,
                                                "backward": bwd / elements * 1e9}
    out["forward_loop"] = census(next(iter(forward_rows.inspect_asm().values())))
    out["backward_loop"] = census(next(iter(backward_rows.inspect_asm().values())))
    out["small_forward_backward_ms"] = {}
    with threadpool_limits(1):
        for cell_name in c.CELLS:
            layer, X, G = c.make_ours(cell_name, "small")
            step = c.ours_forward_backward(layer, X, G)
            out["small_forward_backward_ms"][cell_name] = median_seconds(step, 5 * repeats) * 1e3
    return out


def run_target(name, hidden_sizes, repeats):
    """Measure in a fresh interpreter compiled for ``name``, with an empty kernel cache."""
    cpu_name, features = TARGETS[name]
    env = dict(os.environ)
    for var in ("NUMBA_CPU_NAME", "NUMBA_CPU_FEATURES"):
        env.pop(var, None)
    if features and not cpu_name:
        import llvmlite.binding as llvm
        env["NUMBA_CPU_NAME"] = llvm.get_host_cpu_name()
        env["NUMBA_CPU_FEATURES"] = llvm.get_host_cpu_features().flatten() + "," + features
    elif cpu_name:
        env["NUMBA_CPU_NAME"], env["NUMBA_CPU_FEATURES"] = cpu_name, features
    with tempfile.TemporaryDirectory() as cache:
        env["NUMBA_CACHE_DIR"] = cache
        code = (f"import json, sys; sys.path.insert(0, {os.path.dirname(__file__)!r}); "
                f"from bench_gates import measure; "
                f"print(json.dumps(measure({list(hidden_sizes)!r}, {repeats})))")
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                              text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", nargs="+", default=list(TARGETS), choices=list(TARGETS))
    parser.add_argument("--hidden", nargs="+", type=int, default=[32, 64, 256])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--output", default=None, help="JSON path (default: print only)")
    args = parser.parse_args(argv)
    results = {name: run_target(name, args.hidden, args.repeats) for name in args.targets}
    print(f"{'target':<10} {'cpu':<12} {'loop':<9} {'zmm':>5} {'ymm':>5} {'xmm':>5} "
          f"{'div ps':>6} {'div ss':>6}")
    for name, res in results.items():
        for loop in ("forward", "backward"):
            k = res[f"{loop}_loop"]
            print(f"{name:<10} {res['target_cpu']:<12} {loop:<9} {k['zmm']:>5} {k['ymm']:>5} "
                  f"{k['xmm']:>5} {k['divisions_packed']:>6} {k['divisions_scalar']:>6}")
    print("ns per gate element (forward / backward row kernels):")
    for name, res in results.items():
        cells = "  ".join(f"H={hid}: {v['forward']:.3f} / {v['backward']:.3f}"
                          for hid, v in res["ns_per_gate_element"].items())
        print(f"  {name:<10} {cells}")
    print("small Recurrent forward+backward, 1 thread, ms:")
    for name, res in results.items():
        cells = "  ".join(f"{cell} {ms:.3f}"
                          for cell, ms in res["small_forward_backward_ms"].items())
        print(f"  {name:<10} {cells}")
    if args.output:
        from rnnumba.profiling import environment
        record = {"created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                  "environment": environment(), "targets": results}
        with open(args.output, "w") as fh:
            json.dump(record, fh, indent=1)
        print(f"written to {args.output}")


if __name__ == "__main__":
    main()
