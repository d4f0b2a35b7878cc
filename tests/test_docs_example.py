"""The hand-worked example in ``docs/worked_example.md`` agrees with :class:`Recurrent`.

The numbers are read from the page itself (the fenced block that starts with
``# worked-example values``), so the page and the code cannot drift apart.
"""

import ast
import contextlib
import io
import re
from pathlib import Path

import numpy as np
import pytest

from rnnumba import Recurrent

DOC = Path(__file__).resolve().parents[1] / "docs" / "worked_example.md"
MARKER = "# worked-example values"
ROUNDING = 5e-7 + 1e-12  # the page prints six decimals


def python_blocks(text):
    """The bodies of all fenced ```python blocks in ``text``."""
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def doc_values(text):
    """The assignments of the values block as a dict of NumPy arrays / floats."""
    blocks = [b for b in python_blocks(text) if b.startswith(MARKER)]
    assert len(blocks) == 1, f"expected one block starting with {MARKER!r}"
    values = {}
    for node in ast.parse(blocks[0]).body:
        assert isinstance(node, ast.Assign), ast.dump(node)
        values[node.targets[0].id] = np.asarray(ast.literal_eval(node.value), dtype=float)
    return values


@pytest.fixture(scope="module")
def text():
    return DOC.read_text()


@pytest.fixture(scope="module")
def values(text):
    return doc_values(text)


@pytest.fixture(scope="module")
def network(values):
    """The page's network as a float64 :class:`Recurrent`."""
    net = Recurrent(cell="rnn", input_size=1, hidden_size=2, nonlinearity="tanh",
                    dtype="float64")
    net.load_state_dict({key: values[key] for key in
                         ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")})
    return net


def test_values_block_is_complete(values):
    expected = {"weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0", "x", "a_1",
                "h_1", "a_2", "h_2", "w_out", "b_out", "y_2"}
    assert set(values) == expected


def test_hidden_states_match_recurrent(values, network):
    X = values["x"].reshape(1, -1, 1)
    output, h_n = network.forward(X)
    assert output.shape == (1, 2, 2) and h_n.shape == (1, 1, 2)
    np.testing.assert_allclose(output[0, 0], values["h_1"], rtol=0, atol=ROUNDING)
    np.testing.assert_allclose(output[0, 1], values["h_2"], rtol=0, atol=ROUNDING)
    np.testing.assert_array_equal(h_n[0, 0], output[0, 1])


def test_pre_activations_and_readout(values, network):
    w_ih, w_hh = values["weight_ih_l0"], values["weight_hh_l0"]
    bias = values["bias_ih_l0"] + values["bias_hh_l0"]
    output, h_n = network.forward(values["x"].reshape(1, -1, 1))
    a_1 = w_ih[:, 0] * values["x"][0] + bias
    a_2 = w_ih[:, 0] * values["x"][1] + w_hh @ output[0, 0] + bias
    np.testing.assert_allclose(a_1, values["a_1"], rtol=0, atol=ROUNDING)
    np.testing.assert_allclose(a_2, values["a_2"], rtol=0, atol=ROUNDING)
    np.testing.assert_allclose(np.tanh(values["a_2"]), values["h_2"], rtol=0, atol=1e-6)
    y_2 = values["w_out"] @ h_n[0, 0] + values["b_out"]
    np.testing.assert_allclose(y_2, values["y_2"], rtol=0, atol=ROUNDING)


@pytest.mark.parametrize("name", ["h_1", "a_2", "h_2", "y_2"])
def test_values_appear_in_the_working(text, values, name):
    prose = text.split(MARKER)[0]
    for value in np.atleast_1d(values[name]):
        assert f"{value:.6f}" in prose, f"{name}: {value:.6f} missing from the working"


def test_page_snippet_runs_and_prints_the_readout(text, values):
    snippets = [b for b in python_blocks(text) if not b.startswith(MARKER)]
    assert len(snippets) == 1
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        exec(compile(snippets[0], str(DOC), "exec"), {})
    assert f"{float(values['y_2']):.6f}" in stdout.getvalue()


API_PAGE = DOC.parent / "recurrent.md"
API_SNIPPETS = python_blocks(API_PAGE.read_text())


@pytest.mark.parametrize("index", range(len(API_SNIPPETS)))
def test_api_page_snippets_run(index):
    snippet = API_SNIPPETS[index]
    if "import torch" in snippet:
        pytest.importorskip("torch", reason="this snippet of docs/recurrent.md uses torch")
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        exec(compile(snippet, str(API_PAGE), "exec"), {})
    # Every "print(...)  # expected" comment in the snippet must match what was printed.
    expected = re.findall(r"^print\(.*?\)\s+# (.+)$", snippet, flags=re.M)
    printed = stdout.getvalue().splitlines()
    assert [line.strip() for line in printed[:len(expected)]] == expected
