"""Structure of :func:`rnnumba.profile` results (never speed: that is benchmarks/' job)."""

import json
import os
import subprocess
import sys

import pytest

import rnnumba
from rnnumba import backend, profiling
from rnnumba.backend import NO_CLOCK
from rnnumba.profiling import PHASES, TOTALS, flop_counts, format_table, profile

TINY = dict(batch_size=2, seq_len=3, input_size=3, repeat=2, warmup=0)


@pytest.fixture
def no_cuda(monkeypatch):
    """Make CUDA unavailable whatever the machine has."""
    def refuse(device):
        if device == "cuda":
            raise ValueError("device='cuda' is not available: test says no")
        return "cpu"
    monkeypatch.setattr(backend, "resolve_device", refuse)


@pytest.fixture(scope="module")
def result():
    return profile(cells=("rnn", "lstm", "gru"), hidden_sizes=(4, 5), devices=("cpu",),
                   num_layers=2, bidirectional=True, **TINY)


def test_public_name():
    assert rnnumba.profile is profile


def test_top_level_keys(result):
    assert result["schema"] == profiling.SCHEMA
    for key in ("created", "environment", "settings", "devices", "phases", "totals",
                "results", "crossover"):
        assert key in result
    assert result["phases"] == list(PHASES)
    assert result["totals"] == list(TOTALS)
    assert result["devices"]["cpu"]["available"] is True
    assert result["settings"]["num_layers"] == 2
    assert result["settings"]["bidirectional"] is True
    assert {"rnnumba", "numpy", "numba", "python"} <= set(result["environment"])


def test_one_entry_per_configuration(result):
    configs = [(r["cell"], r["hidden_size"], r["device"]) for r in result["results"]]
    assert configs == [(c, h, "cpu") for c in ("rnn", "lstm", "gru") for h in (4, 5)]


def test_phases_present_and_positive(result):
    for r in result["results"]:
        assert r["available"] is True
        timings = r["timings"]
        for name in PHASES + TOTALS + ("api_forward", "api_backward"):
            stats = timings[name]
            assert len(stats["times"]) == TINY["repeat"]
            assert all(t > 0 for t in stats["times"])
            assert stats["min"] <= stats["q1"] <= stats["median"] <= stats["q3"] <= stats["max"]
            assert stats["iqr"] == pytest.approx(stats["q3"] - stats["q1"])
        for name in PHASES + TOTALS:
            assert r["first_call"][name] > 0
        assert r["compile_s"] >= 0
        assert isinstance(r["jit"], str) and r["jit"]
        assert r["optimizer"]


def test_gflops_follow_flop_counts(result):
    r = result["results"][0]
    counts = flop_counts(r["cell"], 2, 3, 3, r["hidden_size"], 2, True)
    assert r["flops"]["train_step"] == counts["train_step"]
    expected = counts["train_step"] / r["timings"]["train_step"]["median"] / 1e9
    assert r["gflops"]["train_step"] == pytest.approx(expected)
    assert r["gflops"]["optimizer_step"] is None


def test_flop_counts_add_up():
    counts = flop_counts("lstm", 64, 100, 32, 128)
    gh = 4 * 128
    assert counts["input_projection"] == 2 * 6400 * 32 * gh
    assert counts["forward_recurrence"] == 2 * 6400 * 128 * gh
    assert counts["forward"] == counts["input_projection"] + counts["forward_recurrence"]
    assert counts["train_step"] == counts["forward"] + counts["backward"]
    deep = flop_counts("gru", 4, 5, 3, 6, num_layers=2, bidirectional=True)
    assert deep["input_projection"] == 2 * 20 * 3 * 18 * 2 + 2 * 20 * 12 * 18 * 2


def test_json_round_trip(result, tmp_path):
    path = tmp_path / "profile.json"
    profiling.save_json(result, path)
    assert profiling.load_json(path) == json.loads(json.dumps(result))
    assert profiling.load_json(path)["results"][0]["timings"]["train_step"]["median"] > 0


def test_unavailable_device_is_reported_not_raised(no_cuda):
    out = profile(cells="lstm", hidden_sizes=4, devices=("cpu", "cuda"), **TINY)
    assert out["devices"]["cuda"] == {"available": False,
                                      "reason": "device='cuda' is not available: test says no"}
    cuda_rows = [r for r in out["results"] if r["device"] == "cuda"]
    assert len(cuda_rows) == 1
    assert cuda_rows[0]["available"] is False
    assert "test says no" in cuda_rows[0]["reason"]
    assert "timings" not in cuda_rows[0]
    assert out["crossover"]["lstm"]["hidden_size"] is None
    table = format_table(out)
    assert "cuda: not available (device='cuda' is not available: test says no)" in table
    assert any(line.startswith("lstm") and "cuda" in line and line.endswith("not available")
               for line in table.splitlines())
    json.dumps(out, allow_nan=False)


def test_cuda_only_still_returns(no_cuda):
    out = profile(cells="gru", hidden_sizes=(4,), devices="cuda", **TINY)
    assert [r["available"] for r in out["results"]] == [False]


def test_cuda_status_without_cuda_build():
    ok, text = profiling.cuda_status()
    assert isinstance(ok, bool) and isinstance(text, str) and text


def test_crossover_from_synthetic_results():
    def row(device, h, t):
        return {"cell": "lstm", "hidden_size": h, "device": device, "available": True,
                "timings": {"train_step": {"median": t}}}
    rows = [row("cpu", 8, 1.0), row("cuda", 8, 2.0), row("cpu", 64, 4.0), row("cuda", 64, 2.0),
            row("cpu", 512, 40.0), row("cuda", 512, 4.0)]
    cross = profiling._crossover(rows, ("lstm",))["lstm"]
    assert cross["hidden_size"] == 64
    assert cross["speedup"]["512"] == pytest.approx(10.0)
    assert "H=64" in cross["note"]


def test_table_lists_every_row(result):
    table = format_table(result)
    lines = table.splitlines()
    header = next(line for line in lines if line.startswith("cell"))
    for word in ("proj", "fwd rec", "bptt", "w-grad", "optim", "forward", "backward", "step",
                 "GFLOP/s"):
        assert word in header
    assert sum(line.startswith(("rnn ", "lstm ", "gru ")) for line in lines) == 6


@pytest.mark.parametrize("kwargs, match", [
    (dict(cells="conv"), "cells"),
    (dict(hidden_sizes=0), "hidden_sizes"),
    (dict(devices="tpu"), "devices"),
    (dict(dtype="float16"), "dtype"),
    (dict(repeat=0), "repeat"),
])
def test_bad_arguments(kwargs, match):
    args = dict(cells="lstm", hidden_sizes=4, devices="cpu", **TINY)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        profile(**args)


def test_float64_and_single_layer():
    import numpy as np
    out = profile(cells="rnn", hidden_sizes=np.int64(3), devices="cpu", dtype=np.float64,
                  **TINY)
    (r,) = out["results"]
    assert r["dtype"] == "float64" and r["available"]


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_cpu_phases_compute_what_recurrent_computes(cell):
    """The phases the profiler times are Recurrent's training step, in its memory layout."""
    import numpy as np

    config = dict(cell=cell, hidden_size=4, batch_size=3, seq_len=5, input_size=2,
                  num_layers=2, bidirectional=True, dtype="float64")
    step = profiling._Step("cpu", config, random_state=0)
    assert not step.grad_out.flags.c_contiguous  # the view of a batch-major array
    rec = rnnumba.Recurrent(cell=cell, input_size=2, hidden_size=4, num_layers=2,
                            bidirectional=True, dtype="float64")
    rec.flat_params = step.model.flat_params
    X = step.x.transpose(1, 0, 2)
    G = step.grad_out.transpose(1, 0, 2)
    out, _ = rec.forward(X)
    want = rec.backward(G)
    step._forward(NO_CLOCK)
    np.testing.assert_allclose(step.acts.output.transpose(1, 0, 2), out, rtol=1e-12)
    step._backward(NO_CLOCK)
    np.testing.assert_allclose(step.model.flat_grads, rec.flat_grads, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(step.grad_x.transpose(1, 0, 2), want["input"], rtol=1e-10,
                               atol=1e-12)
    assert np.any(step.model.flat_grads)


def test_layers_below_never_import_the_profiler():
    code = ("import sys, numpy as np; import rnnumba; from rnnumba import Recurrent;"
            "import rnnumba.estimators;"
            "r = Recurrent('lstm', 2, 3); r.forward(np.zeros((1, 2, 2)));"
            "bad = [m for m in ('rnnumba.profiling', 'rnnumba.cli', 'rnnumba.plotting')"
            " if m in sys.modules];"
            "print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_no_lower_module_names_the_profiler():
    import ast
    root = os.path.dirname(rnnumba.__file__)
    top = {"profiling.py", "cli.py", "plotting.py", "__main__.py", "__init__.py"}
    banned = {"profiling", "plotting", "cli"}
    for folder, _, files in os.walk(root):
        for name in files:
            if not name.endswith(".py") or (folder == root and name in top):
                continue
            with open(os.path.join(folder, name), encoding="utf-8") as fh:
                tree = ast.parse(fh.read())
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    modules = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom):
                    modules = [node.module or ""] + [f"{node.module or ''}.{alias.name}"
                                                     for alias in node.names]
                else:
                    continue
                for module in modules:
                    assert not banned & set(module.split(".")), f"{name} imports {module}"


@pytest.mark.cudasim
def test_cuda_phases_under_the_simulator():
    """With NUMBA_ENABLE_CUDASIM=1 the CUDA kernels run through the same four phases."""
    out = profile(cells="rnn", hidden_sizes=2, batch_size=1, seq_len=2, input_size=1,
                  repeat=1, warmup=0, devices=("cpu", "cuda"))
    assert out["devices"]["cuda"]["available"], out["devices"]["cuda"]
    (gpu,) = [r for r in out["results"] if r["device"] == "cuda"]
    assert gpu["available"]
    for name in PHASES + TOTALS:
        assert gpu["timings"][name]["median"] > 0
    assert "cuda" in gpu["optimizer"].lower()
    assert out["crossover"]["rnn"]["speedup"]


@pytest.mark.gpu
def test_cuda_phases_on_a_gpu():
    out = profile(cells=("lstm", "gru"), hidden_sizes=(8, 64), devices=("cpu", "cuda"),
                  **TINY)
    assert out["devices"]["cuda"]["available"], out["devices"]["cuda"]
    for r in out["results"]:
        assert r["available"]
        assert all(r["timings"][name]["median"] > 0 for name in PHASES + TOTALS)
