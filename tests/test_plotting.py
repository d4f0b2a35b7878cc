"""The profile figure: a file is written, with and without a GPU in the result."""

import copy

import pytest

pytest.importorskip("matplotlib")

from rnnumba import profile  # noqa: E402
from rnnumba.plotting import plot_profile  # noqa: E402
from rnnumba.profiling import _crossover  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def cpu_result():
    return profile(cells=("lstm", "gru"), hidden_sizes=(3, 6), batch_size=2, seq_len=3,
                   input_size=2, repeat=2, warmup=0, devices=("cpu",))


def with_fake_gpu(result):
    """Copy the CPU rows as 'cuda' rows, slower at H=3 and faster at H=6."""
    out = copy.deepcopy(result)
    rows = []
    for r in out["results"]:
        rows.append(r)
        g = copy.deepcopy(r)
        g["device"] = "cuda"
        factor = 3.0 if r["hidden_size"] == 3 else 0.25
        for stats in g["timings"].values():
            for key in ("median", "q1", "q3", "min", "max"):
                stats[key] *= factor
        rows.append(g)
    out["results"] = rows
    out["settings"]["devices"] = ["cpu", "cuda"]
    out["devices"]["cuda"] = {"available": True, "name": "Fake GPU"}
    out["crossover"] = _crossover(rows, out["settings"]["cells"])
    return out


def test_png_written(cpu_result, tmp_path):
    path = tmp_path / "profile.png"
    fig = plot_profile(cpu_result, path)
    assert path.read_bytes()[:8] == PNG
    assert len(fig.axes) >= 3


def test_unavailable_gpu_is_written_on_the_figure(cpu_result, tmp_path):
    result = copy.deepcopy(cpu_result)
    result["devices"]["cuda"] = {"available": False, "reason": "no driver (test)"}
    result["settings"]["devices"] = ["cpu", "cuda"]
    fig = plot_profile(result, tmp_path / "p.svg")
    texts = [t.get_text() for ax in fig.axes for t in ax.texts] + [fig._suptitle.get_text()]
    assert any("no driver (test)" in t for t in texts)
    assert (tmp_path / "p.svg").read_text().lstrip().startswith("<?xml")


def test_panel_titles_promise_no_gpu_that_was_not_measured(cpu_result, tmp_path):
    fig = plot_profile(cpu_result, tmp_path / "cpu.png")
    titles = [ax.get_title() for ax in fig.axes]
    assert "Training step vs hidden size" in titles
    assert not any("GPU" in title for title in titles)
    fig = plot_profile(with_fake_gpu(cpu_result), tmp_path / "gpu.png")
    assert any("where the GPU starts to win" in ax.get_title() for ax in fig.axes)


def test_crossover_marked(cpu_result, tmp_path):
    result = with_fake_gpu(cpu_result)
    assert result["crossover"]["lstm"]["hidden_size"] == 6
    fig = plot_profile(result, tmp_path / "gpu.pdf")
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert any("GPU wins from H=6" in t for t in texts)
    assert (tmp_path / "gpu.pdf").read_bytes()[:4] == b"%PDF"


def test_json_round_tripped_result_plots(cpu_result, tmp_path):
    import json
    plot_profile(json.loads(json.dumps(cpu_result)), tmp_path / "rt.png")
    assert (tmp_path / "rt.png").stat().st_size > 1000


def test_no_available_device(tmp_path, cpu_result):
    result = copy.deepcopy(cpu_result)
    result["devices"] = {"cuda": {"available": False, "reason": "none"}}
    result["settings"]["devices"] = ["cuda"]
    for r in result["results"]:
        r.clear()
        r.update(cell="lstm", hidden_size=3, device="cuda", available=False, reason="none")
    plot_profile(result, tmp_path / "empty.png")
    assert (tmp_path / "empty.png").read_bytes()[:8] == PNG
