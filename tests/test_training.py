"""rnnumba.model and rnnumba.training: the network's gradients by central differences
(float64), the sequence-level wiring (forward-last, backward-first), truncated BPTT, dropout
and the batches of the training core."""

import numpy as np
import pytest

from rnnumba import Recurrent
from rnnumba.heads import SequenceHead, StepHead
from rnnumba.inputs import NumericInput
from rnnumba.losses import CrossEntropy, SquaredError
from rnnumba.model import SequenceModel
from rnnumba.training import SequenceData


def _net(cell="lstm", sizes=(3,), bidirectional=False, return_sequences=False, n_out=2,
         n_features=2, seed=0, dropout=0.0):
    rng = np.random.RandomState(seed)
    directions = 2 if bidirectional else 1
    recurrent = Recurrent(cell, n_features, list(sizes), bidirectional=bidirectional,
                          dropout=dropout, dtype="float64", random_state=rng)
    n_in = directions * sizes[-1]
    head = (StepHead(n_in, n_out, random_state=rng) if return_sequences
            else SequenceHead(n_in, n_out, directions, random_state=rng))
    return SequenceModel(NumericInput(n_features, np.float64), recurrent, head)


def _data(return_sequences, n=4, steps=5, n_features=2, n_out=2, seed=1):
    rng = np.random.RandomState(seed)
    X = rng.randn(n, steps, n_features)
    lengths = np.array([5, 3, 1, 4][:n], dtype=np.int64)
    for i, length in enumerate(lengths):
        X[i, length:] = 0.0
    if return_sequences:
        target = rng.randn(n, steps, n_out)
        weights = (np.arange(steps)[None, :] < lengths[:, None]).astype(float)
        weights *= rng.rand(n, 1) + 0.5
    else:
        target = rng.randn(n, n_out)
        weights = rng.rand(n) + 0.5
    return X, lengths, target, weights


def _loss_and_grads(net, X, lengths, target, weights, loss_fn, bptt=None):
    stats = np.zeros(4)
    batch = net.prepare(X, lengths, target, weights, float(weights.sum()))
    net.loss_and_gradients(batch, loss_fn, stats, bptt)
    return stats[0], net.store.host_grads.copy()


def _loss_only(net, X, lengths, target, weights, loss_fn):
    stats = np.zeros(4)
    batch = net.prepare(X, lengths, target, weights, float(weights.sum()))
    pred = net.forward(batch)
    grad = np.empty_like(pred)
    loss_fn(net.backend, pred, batch.target_d, batch.weights_d, batch.normalizer, grad,
            stats[:1])
    net.forget()
    return stats[0]


def _fd_check(net, X, lengths, target, weights, loss_fn, n_checks=25):
    _, grads = _loss_and_grads(net, X, lengths, target, weights, loss_fn)
    rng = np.random.RandomState(0)
    eps = 1e-6
    buf = net.store.host
    for i in rng.choice(buf.size, size=min(n_checks * 4, buf.size), replace=False):
        old = buf[i]
        buf[i] = old + eps
        up = _loss_only(net, X, lengths, target, weights, loss_fn)
        buf[i] = old - eps
        down = _loss_only(net, X, lengths, target, weights, loss_fn)
        buf[i] = old
        assert grads[i] == pytest.approx((up - down) / (2 * eps), rel=1e-5, abs=1e-8)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("return_sequences", [False, True])
def test_gradients_match_finite_differences(cell, bidirectional, return_sequences):
    net = _net(cell, (3, 2), bidirectional, return_sequences)
    X, lengths, target, weights = _data(return_sequences)
    _fd_check(net, X, lengths, target, weights, SquaredError())


def test_classification_gradients():
    net = _net("gru", (4,), n_out=3)
    X, lengths, _, weights = _data(False)
    labels = np.array([0, 2, 1, 2])
    _fd_check(net, X, lengths, labels, weights, CrossEntropy())


def test_sequence_features_are_forward_last_and_backward_first():
    net = _net("gru", (3,), bidirectional=True, n_out=1)
    X, lengths, _, _ = _data(False)
    net.forward(net.prepare(X, lengths))
    features = net.head._saved[2].copy()
    layer = net.recurrent
    out, _ = layer.forward(X, lengths)
    for i, length in enumerate(lengths):
        np.testing.assert_allclose(features[i, :3], out[i, length - 1, :3], rtol=1e-12)
        np.testing.assert_allclose(features[i, 3:], out[i, 0, 3:], rtol=1e-12)


def test_padding_is_ignored():
    net = _net("lstm", (3,), n_out=1)
    X, lengths, _, _ = _data(False)
    a = net.predict(X, lengths)
    X2 = X.copy()
    X2[1, 3:] = 99.0  # beyond length 3
    np.testing.assert_array_equal(a, net.predict(X2, lengths))


def test_tbptt_full_chunk_equals_bptt_and_short_chunks_cut_the_gradient():
    net = _net("rnn", (3,))
    X, lengths, target, weights = _data(False)
    loss = SquaredError()
    l_full, g_full = _loss_and_grads(net, X, lengths, target, weights, loss, None)
    l_chunk, g_chunk = _loss_and_grads(net, X, lengths, target, weights, loss, 5)
    assert l_chunk == pytest.approx(l_full)
    np.testing.assert_array_equal(g_full, g_chunk)
    # chunks of 2: same loss (the forward pass carries the state), other gradient
    l_2, g_2 = _loss_and_grads(net, X, lengths, target, weights, loss, 2)
    assert l_2 == pytest.approx(l_full, rel=1e-12)
    assert not np.allclose(g_full, g_2)
    # chunks of 2 on a per-step loss: the same loss
    seq = _net("rnn", (3,), return_sequences=True)
    X, lengths, target, weights = _data(True)
    full, _ = _loss_and_grads(seq, X, lengths, target, weights, loss, None)
    chunked, _ = _loss_and_grads(seq, X, lengths, target, weights, loss, 2)
    assert chunked == pytest.approx(full, rel=1e-12)


def test_dropout_only_in_training_and_reproducible():
    X, lengths, _, _ = _data(False)

    def outputs(train):
        net = _net("lstm", (4, 4), n_out=1, dropout=0.5)
        net.train(train)
        first = np.array(net.forward(net.prepare(X, lengths)))
        second = np.array(net.forward(net.prepare(X, lengths)))
        return first, second

    a, b = outputs(False)
    np.testing.assert_array_equal(a, b)
    c, d = outputs(True)
    assert not np.allclose(a, c) and not np.allclose(c, d)
    np.testing.assert_array_equal(c, outputs(True)[0])  # the same seed, the same masks
    net = _net("lstm", (4, 4), n_out=1, dropout=0.5)
    net.train(True)
    assert net.predict(X, lengths).shape == (4, 1)
    assert net.recurrent.training  # predict restores the mode


def test_training_data_batches_trim_padding():
    X = np.zeros((3, 6, 1))
    lengths = np.array([2, 6, 3])
    data = SequenceData(X, lengths, np.zeros((3, 1)), np.ones(3), np.ones(3))
    xb, lb, tb, wb, norm = data.batch(np.array([0, 2]), np.float32)
    assert xb.shape == (2, 3, 1) and xb.dtype == np.float32 and norm == 2.0
    np.testing.assert_array_equal(lb, [2, 3])


def test_weight_masks_exclude_biases():
    net = _net("lstm", (3,), n_out=2)
    mask = net.weight_mask()
    sd = net.recurrent.state_dict()
    n_bias = sd["bias_ih_l0"].size + sd["bias_hh_l0"].size
    assert mask.size == net.store.size
    assert (~mask).sum() == n_bias + 2  # and the head's two biases


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("return_sequences", [False, True])
def test_model_step_equals_one_forward(cell, return_sequences):
    """Stepping a causal network through a sequence in pieces gives one forward's result."""
    net = _net(cell, (3, 2), return_sequences=return_sequences, n_out=2)
    X = np.random.RandomState(3).randn(2, 5, 2)
    full = net.predict(X, np.full(2, 5, dtype=np.int64))
    with net.inference():
        first, states = net.step(X[:, :2])
        second, states = net.step(X[:, 2:3], states)
        third, _ = net.step(X[:, 3:], states)
    if return_sequences:
        np.testing.assert_allclose(np.concatenate([first, second, third], axis=1), full,
                                   rtol=1e-12, atol=1e-14)
    else:
        np.testing.assert_allclose(third, full, rtol=1e-12, atol=1e-14)
    bidirectional = _net(cell, (3,), bidirectional=True)
    with pytest.raises(ValueError, match="causal"), bidirectional.inference():
        bidirectional.step(X)


def test_parts_build_without_a_seed():
    """``random_state=None`` draws from NumPy's global generator, as scikit-learn's
    ``check_random_state`` does (it used to crash the network's constructor)."""
    recurrent = Recurrent("lstm", 2, [3, 2], random_state=None, dtype="float64")
    head = SequenceHead(2, 1, 1, random_state=None)
    net = SequenceModel(NumericInput(2, np.float64), recurrent, head)
    X, lengths, _, _ = _data(False)
    assert np.isfinite(net.predict(X, lengths)).all()
