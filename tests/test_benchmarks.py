"""Smoke tests of the benchmark suite: the asv modules load and run, the plain runner writes
its JSON. Nothing here checks speed or memory numbers, only that they exist."""

import importlib
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNNER = os.path.join(ROOT, "benchmarks", "run.py")


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(ROOT)
    return lambda name: importlib.import_module(f"benchmarks.{name}")


def test_asv_time_method_runs(bench):
    mod = bench("bench_recurrent")
    for cls in (mod.Forward, mod.ForwardBackward):
        obj = cls()
        obj.setup("rnnumba", "lstm", "small")
        for attr in dir(obj):
            if attr.startswith("time_"):
                getattr(obj, attr)("rnnumba", "lstm", "small")
    assert mod.ForwardBackward.param_names == ["impl", "cell", "size"]


def test_asv_torch_half_skips_or_runs(bench):
    mod = bench("bench_recurrent")
    obj = mod.ForwardBackward()
    try:
        obj.setup("torch", "gru", "small")
    except NotImplementedError:
        pytest.skip("torch not installed")
    obj.time_forward_backward("torch", "gru", "small")


def test_asv_memory_track_is_a_ratio(bench):
    mod = bench("bench_memory")
    obj = mod.TrainingStepMemory()
    obj.setup("gru", "small")
    obj.peakmem_train_step("gru", "small")
    assert obj.track_peak_over_activations("gru", "small") > 1.0


def test_asv_cold_start_code_is_python(bench):
    mod = bench("bench_coldstart")
    for cache in ("warm", "empty"):
        code = mod.ColdStart().timeraw_import_first_step("lstm", cache)
        compile(code, "<timeraw>", "exec")
        assert ("NUMBA_CACHE_DIR" in code) == (cache == "empty")


def test_runner_lists_the_suite():
    proc = subprocess.run([sys.executable, RUNNER, "--list"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    names = proc.stdout.split()
    for cell in ("rnn", "lstm", "gru"):
        for size in ("small", "medium", "large"):
            assert f"forward/{cell}/{size}" in names
            assert f"forward_backward/{cell}/{size}" in names
            assert f"peakmem/{cell}/{size}" in names
        assert f"forward_backward/{cell}/medium-2layer-bidir" in names
        assert f"coldstart/{cell}" in names
    assert "fit/RNNClassifier/digits" in names


def test_runner_quick_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, RUNNER, "--quick", "--only", "lstm/small",
                           "--output", str(out)], capture_output=True, text=True, timeout=600,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads(out.read_text())
    names = [r["name"] for r in data["results"]]
    assert names == ["forward/lstm/small", "forward_backward/lstm/small", "peakmem/lstm/small"]
    assert data["gemm"]["gflops"] > 0
    for r in data["results"][:2]:
        assert r["ours"]["median"] > 0 and r["ours"]["iqr"] >= 0
        if r["torch"] is not None:
            assert r["ratio"] == pytest.approx(r["torch"]["median"] / r["ours"]["median"])
        if data["environment"].get("torch_onednn"):  # the LSTM timed with oneDNN off too
            assert r["ratio_no_onednn"] == pytest.approx(r["torch_no_onednn"]["median"]
                                                         / r["ours"]["median"])
        else:
            assert "torch_no_onednn" not in r
    assert data["results"][2]["ratio"] > 0
    assert "ratio" in proc.stdout and "peak/activations" in proc.stdout
    assert ("no oneDNN" in proc.stdout) == bool(data["environment"].get("torch_onednn"))


def test_runner_rejects_unknown_filter(tmp_path):
    proc = subprocess.run([sys.executable, RUNNER, "--only", "no-such-benchmark"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 2


def test_realdata_suite_averages_seeds(bench):
    suite = bench("realdata_suite")
    runs = [{"accuracy": 0.5, "fit_seconds": 1.0}, {"accuracy": 1.0, "fit_seconds": 3.0}]
    mean = suite.mean_of_runs(runs)
    assert mean["accuracy"] == 0.75 and mean["fit_seconds"] == 2.0 and mean["runs"] == runs
    assert suite.mean_of_runs(runs[:1]) == runs[0]  # one seed: its numbers, as before
    row = {"digits": {"lstm": dict(mean), "gru": dict(mean)}}
    assert "mean over random_state 0-1" in suite.table(row, {}, [0, 1])
    assert "random_state=0" in suite.table(row, {})


def test_gate_census_counts_widths_and_divisions(bench):
    gates = bench("bench_gates")
    asm = """
    .text
    .LBB0_1:
        vmovups (%rdi), %ymm0
        vdivps  %ymm1, %ymm0, %ymm0
        vdivss  %xmm2, %xmm3, %xmm3
        vfmadd213ps %zmm4, %zmm5, %zmm6
        addq    $32, %rdi
        # a comment
    """
    counts = gates.census(asm)
    assert counts == {"zmm": 1, "ymm": 2, "xmm": 1, "divisions_packed": 1,
                      "divisions_scalar": 1, "instructions": 5}


def test_gate_measurement_reports_every_cell_and_size(bench):
    gates = bench("bench_gates")
    out = gates.measure([8], repeats=1)
    assert set(out["ns_per_gate_element"]) == {"8"}
    assert all(v > 0 for v in out["ns_per_gate_element"]["8"].values())
    assert set(out["small_forward_backward_ms"]) == {"rnn", "lstm", "gru"}
    assert out["forward_loop"]["instructions"] > 0
