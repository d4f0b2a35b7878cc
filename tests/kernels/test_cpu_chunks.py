"""Tests for ``kernels/cpu/chunks.py`` (the RNN's BPTT a chunk of steps at a time) and the
chunked staging of a batch-major input in ``common.project_input``."""

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from rnnumba.kernels.cpu import _threads, chunks, common, rnn

T, N, I, H = 7, 6, 3, 5
# rows ending at, before and inside chunk boundaries, one with no steps (allowed internally)
LENGTHS = np.array([7, 1, 3, 4, 6, 0], dtype=np.int64)


def _data(seed=0):
    rng = np.random.default_rng(seed)
    x = np.ascontiguousarray(rng.standard_normal((N, T, I))).transpose(1, 0, 2)  # batch-major
    weights = {"weight_ih": rng.standard_normal((H, I)) * 0.5,
               "weight_hh": rng.standard_normal((H, H)) * 0.5,
               "bias_ih": rng.standard_normal(H) * 0.1, "bias_hh": rng.standard_normal(H) * 0.1}
    h0 = rng.standard_normal((N, H))
    grad_out = np.ascontiguousarray(rng.standard_normal((N, T, H))).transpose(1, 0, 2)
    grad_h_n = rng.standard_normal((N, H))
    return x, weights, h0, grad_out, grad_h_n


def _forward(x, weights, h0, reverse, act):
    out, h_n = np.zeros((T, N, H)), np.empty((N, H))
    proj = np.empty((T, N, H))
    common.project_input(x, weights["weight_ih"], weights["bias_ih"], proj)
    rnn.forward_sequence(proj, weights["weight_hh"], weights["bias_hh"], h0, np.zeros((0, 0)),
                         LENGTHS, reverse, act, out, 0, None, h_n, np.zeros((0, 0)))
    return out


def _zero_grads():
    return {"weight_ih": np.zeros((H, I)), "weight_hh": np.zeros((H, H)),
            "bias_ih": np.zeros(H), "bias_hh": np.zeros(H)}


@pytest.mark.parametrize("act", [0, 1], ids=["tanh", "relu"])
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("chunk", [1, 2, 3, T])
@pytest.mark.parametrize("column_block", [None, 2], ids=["gates-whole", "gates-by-2"])
def test_chunks_give_the_gradients_of_the_whole_sequence(reverse, act, chunk, column_block,
                                                         monkeypatch):
    if column_block is not None:  # each chunk's products a few gate columns at a time
        monkeypatch.setattr(chunks, "chunk_column_block", lambda features, hidden: column_block)
    x, weights, h0, grad_out, grad_h_n = _data()
    out = _forward(x, weights, h0, reverse, act)
    # the whole sequence at once: BPTT into a buffer of every step, then the GEMMs
    d = np.empty((T, N, H))
    expected_h0 = np.empty((N, H))
    rnn.backward_sequence(weights["weight_hh"], weights["bias_hh"], h0, np.zeros((0, 0)),
                          LENGTHS, reverse, act, out, 0, None, grad_out, grad_h_n,
                          np.zeros((0, 0)), d, d, expected_h0, np.zeros((0, 0)))
    expected = _zero_grads()
    expected_x = np.zeros((N, T, I)).transpose(1, 0, 2)
    common.weight_gradients(np.ascontiguousarray(x), out, 0, h0, LENGTHS, reverse, d, d,
                            weights["weight_ih"], expected["weight_ih"], expected["weight_hh"],
                            expected["bias_ih"], expected["bias_hh"], expected_x)

    grads = _zero_grads()
    grad_x = np.zeros((N, T, I)).transpose(1, 0, 2)
    grad_h0 = np.full((N, H), np.nan)
    buffer = np.full((chunk, N, H), np.nan)
    chunks.backward_in_chunks(weights, grads, x, out, 0, h0, LENGTHS, reverse, act, grad_out,
                              grad_h_n, grad_h0, grad_x, buffer)
    for name in expected:
        np.testing.assert_allclose(grads[name], expected[name], rtol=0, atol=1e-12,
                                   err_msg=name)
    np.testing.assert_allclose(grad_x, expected_x, rtol=0, atol=1e-12)
    np.testing.assert_allclose(grad_h0, expected_h0, rtol=0, atol=1e-12)
    assert np.any(expected["weight_hh"] != 0.0)


def test_chunk_column_block_bounds_each_products_temporary():
    """Gate columns per product on a chunk: about ``CHUNK_PRODUCT_ELEMENTS`` elements of
    temporary per thread, within ``[16, _GATE_COLUMNS]``."""
    assert common.chunk_column_block(256, 512) == common.CHUNK_PRODUCT_ELEMENTS // 512 == 64
    assert common.chunk_column_block(512, 128) == 64  # the wider of input and hidden
    assert common.chunk_column_block(8, 32) == common._GATE_COLUMNS
    assert common.chunk_column_block(1 << 20, 32) == 16


def test_backward_chunks_yield_each_chunk_in_bptt_order():
    x, weights, h0, grad_out, grad_h_n = _data()
    for reverse, order in ((False, [(6, 7), (3, 6), (0, 3)]), (True, [(0, 3), (3, 6), (6, 7)])):
        out = _forward(x, weights, h0, reverse, 0)
        seen = list(rnn.backward_chunks(weights["weight_hh"], LENGTHS, reverse, 0, out, 0,
                                        grad_out, grad_h_n, np.empty((3, N, H)),
                                        np.empty((N, H))))
        assert seen == order


@pytest.mark.parametrize("shape", [(0, N, H), (2, N + 1, H), (2, N, H + 1)])
def test_backward_chunks_reject_a_buffer_that_does_not_fit(shape):
    x, weights, h0, grad_out, grad_h_n = _data()
    out = _forward(x, weights, h0, False, 0)
    with pytest.raises(ValueError, match="gate gradient buffer"):
        next(rnn.backward_chunks(weights["weight_hh"], LENGTHS, False, 0, out, 0, grad_out,
                                 grad_h_n, np.empty(shape), np.empty((N, H))))


def test_the_buffer_is_a_share_of_the_activations_of_every_layer_and_direction(monkeypatch):
    monkeypatch.setattr(common, "TIME_CHUNKS", 10)
    assert common.chunk_steps(100) == 10
    assert common.chunk_steps(5) == 1
    assert common.chunk_steps(100, layers=4) == 40
    assert common.chunk_steps(100, layers=20) == 100   # never more than the sequence
    assert chunks.gate_gradient_buffer(100, 3, 4, 2, np.float32).shape == (20, 3, 4)


def test_a_staged_chunk_holds_a_share_of_the_steps_or_up_to_the_minimum(monkeypatch):
    monkeypatch.setattr(common, "TIME_CHUNKS", 10)
    monkeypatch.setattr(common, "STAGE_MIN_ELEMENTS", 1 << 14)
    assert common.stage_steps(100, 64, 256, 2048) == 10   # the share: 164k elements a chunk
    assert common.stage_steps(100, 64, 32, 512) == 10     # 8 steps would reach the minimum
    assert common.stage_steps(100, 32, 8, 128) == 64      # the minimum: 16k elements a chunk
    assert common.stage_steps(50, 32, 8, 128) == 50       # never more than the sequence
    assert common.stage_steps(50, 32, 8, 32) == 20        # a tenth of a narrow projection
    assert common.stage_steps(7, 1, 1 << 20, 4) == 1


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("time_chunks", [1, 3, T])
def test_project_input_stages_a_batch_major_input_a_chunk_at_a_time(time_chunks, threads,
                                                                    monkeypatch):
    monkeypatch.setattr(common, "TIME_CHUNKS", time_chunks)
    monkeypatch.setattr(common, "STAGE_MIN_ELEMENTS", 1)
    monkeypatch.setattr(_threads, "GEMM_MIN_BLOCK_MACS", 1)
    x, weights, _, _, _ = _data(1)
    assert not x.flags.c_contiguous
    expected = np.einsum("tni,gi->tng", x, weights["weight_ih"]) + weights["bias_ih"]
    proj = np.full((T, N, H), np.nan)
    with threadpool_limits(limits=threads, user_api="blas"):
        common.project_input(x, weights["weight_ih"], weights["bias_ih"], proj)
    np.testing.assert_allclose(proj, expected, rtol=0, atol=1e-12)
