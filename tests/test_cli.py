"""The ``rnnumba`` command line: exit codes and output (tiny sizes, no speed checks)."""

import json
import subprocess
import sys
import types

import pytest

from rnnumba import backend, cli

TINY = ["--batch", "2", "--seq", "3", "--input", "3", "--repeat", "2", "--warmup", "0",
        "--quiet"]


@pytest.fixture
def no_cuda(monkeypatch):
    def refuse(device):
        if device == "cuda":
            raise ValueError("no CUDA here (test)")
        return "cpu"
    monkeypatch.setattr(backend, "resolve_device", refuse)


@pytest.fixture
def fake_demo(monkeypatch):
    calls = []
    module = types.ModuleType("rnnumba._demo")
    module.main = lambda: calls.append("demo") or print("test accuracy: 0.99")
    monkeypatch.setitem(sys.modules, "rnnumba._demo", module)
    import rnnumba
    monkeypatch.setattr(rnnumba, "_demo", module, raising=False)
    return calls


def test_profile_table_json_and_unavailable_device(no_cuda, tmp_path, capsys):
    path = tmp_path / "out.json"
    code = cli.main(["profile", "--cell", "lstm,gru", "--hidden", "4,6", "--devices",
                     "cpu,cuda", "--json", str(path)] + TINY)
    out = capsys.readouterr().out
    assert code == 0
    assert "cuda: not available (no CUDA here (test))" in out
    for cell in ("lstm", "gru"):
        for h in ("4", "6"):
            assert any(line.split()[:3] == [cell, h, "cpu"] for line in out.splitlines())
            assert any(line.split()[:3] == [cell, h, "cuda"] and "not available" in line
                       for line in out.splitlines())
    assert f"JSON written to {path}" in out
    data = json.loads(path.read_text())
    assert data["settings"]["cells"] == ["lstm", "gru"]
    assert data["settings"]["hidden_sizes"] == [4, 6]
    assert data["devices"]["cuda"]["available"] is False
    assert len(data["results"]) == 8


def test_progress_names_an_unavailable_device_once(no_cuda, capsys):
    args = [a for a in TINY if a != "--quiet"]
    assert cli.main(["profile", "--cell", "lstm,gru", "--hidden", "4,6", "--devices",
                     "cpu,cuda"] + args) == 0
    err = capsys.readouterr().err
    assert err.count("no CUDA here (test)") == 1
    assert err.count("cuda: not available (see above)") == 3


def test_profile_options_reach_the_profiler(tmp_path, capsys):
    path = tmp_path / "o.json"
    code = cli.main(["profile", "--cell", "rnn", "--hidden", "3", "--devices", "cpu",
                     "--layers", "2", "--bidirectional", "--dtype", "float64", "--json",
                     str(path)] + TINY)
    assert code == 0
    s = json.loads(path.read_text())["settings"]
    assert (s["num_layers"], s["bidirectional"], s["dtype"], s["batch_size"], s["seq_len"],
            s["input_size"], s["repeat"]) == (2, True, "float64", 2, 3, 3, 2)
    assert s["devices"] == ["cpu"]


def test_profile_plot_written(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    path = tmp_path / "fig.png"
    code = cli.main(["profile", "--cell", "lstm", "--hidden", "3", "--devices", "cpu",
                     "--plot", str(path)] + TINY)
    assert code == 0
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_profile_unwritable_json_is_exit_1(tmp_path, capsys):
    code = cli.main(["profile", "--cell", "rnn", "--hidden", "3", "--devices", "cpu",
                     "--json", str(tmp_path / "missing" / "x.json")] + TINY)
    assert code == 1
    assert "cannot write" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [
    ["profile", "--cell", "transformer"],
    ["profile", "--hidden", "0"],
    ["profile", "--hidden", "a,b"],
    ["profile", "--devices", "tpu"],
    ["profile", "--dtype", "float16"],
    ["profile", "--repeat", "-1"],
    ["nonsense"],
])
def test_bad_arguments_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    assert "error" in capsys.readouterr().err


def test_info(capsys):
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    for word in ("rnnumba", "numpy", "numba", "threading layer", "numba threads", "BLAS",
                 "cache directory", "cuda backend", "cuda driver"):
        assert word in out, word


def test_info_reports_why_no_cuda(no_cuda, capsys):
    assert cli.main(["info"]) == 0
    assert "cuda backend           not available: no CUDA here (test)" in capsys.readouterr().out


def test_demo_subcommand_and_default(fake_demo, capsys):
    assert cli.main(["demo"]) == 0
    assert cli.main([]) == 0
    assert fake_demo == ["demo", "demo"]
    assert "test accuracy" in capsys.readouterr().out


def test_help_and_version(capsys):
    for argv in (["--help"], ["profile", "--help"], ["--version"]):
        with pytest.raises(SystemExit) as exc:
            cli.main(argv)
        assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "--bidirectional" in out and "--plot" in out


def test_python_dash_m():
    proc = subprocess.run([sys.executable, "-m", "rnnumba", "profile", "--cell", "rnn",
                           "--hidden", "3", "--devices", "cpu,cuda"] + TINY,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "rnn   3  cpu" in proc.stdout
    assert "cuda:" in proc.stdout
    help_proc = subprocess.run([sys.executable, "-m", "rnnumba", "--help"],
                               capture_output=True, text=True, timeout=120)
    assert help_proc.returncode == 0
    assert "profile" in help_proc.stdout and "info" in help_proc.stdout
