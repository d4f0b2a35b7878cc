"""rnnumba.training: the network's gradients by central differences (float64), the
sequence-level wiring (forward-last, backward-first), truncated BPTT and the epoch loop."""

import numpy as np
import pytest

from rnnumba.losses import softmax_cross_entropy, squared_error
from rnnumba.training import SequenceNetwork, TrainingData


def _net(cell="lstm", sizes=(3,), bidirectional=False, return_sequences=False, n_out=2,
         n_features=2, seed=0):
    return SequenceNetwork(cell, n_features, list(sizes), n_out, bidirectional=bidirectional,
                           return_sequences=return_sequences, dtype="float64",
                           random_state=np.random.RandomState(seed))


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


def _fd_check(net, X, lengths, target, weights, loss_fn, bptt=None, n_checks=25):
    norm = float(weights.sum())
    net.loss_and_gradients(X, lengths, target, weights, norm, loss_fn, bptt)
    grads = [g.copy() for g in net.grads]
    rng = np.random.RandomState(0)
    eps = 1e-6
    for buf, grad in zip(net.params, grads):
        for i in rng.choice(buf.size, size=min(n_checks, buf.size), replace=False):
            old = buf[i]
            buf[i] = old + eps
            up = loss_fn(net.forward(X, lengths)[0], target, weights, norm)[0]
            buf[i] = old - eps
            down = loss_fn(net.forward(X, lengths)[0], target, weights, norm)[0]
            buf[i] = old
            assert grad[i] == pytest.approx((up - down) / (2 * eps), rel=1e-5, abs=1e-8)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("return_sequences", [False, True])
def test_gradients_match_finite_differences(cell, bidirectional, return_sequences):
    net = _net(cell, (3, 2), bidirectional, return_sequences)
    X, lengths, target, weights = _data(return_sequences)
    _fd_check(net, X, lengths, target, weights, squared_error)


def test_classification_gradients():
    net = _net("gru", (4,), n_out=3)
    X, lengths, _, weights = _data(False)
    labels = np.array([0, 2, 1, 2])
    _fd_check(net, X, lengths, labels, weights, softmax_cross_entropy)


def test_sequence_features_are_forward_last_and_backward_first():
    net = _net("gru", (3,), bidirectional=True, n_out=1)
    X, lengths, _, _ = _data(False)
    net.forward(X, lengths)
    features = net._cache[1]
    layer = net.layers[0]
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
    norm = float(weights.sum())
    l_full = net.loss_and_gradients(X, lengths, target, weights, norm, squared_error, None)
    g_full = [g.copy() for g in net.grads]
    l_chunk = net.loss_and_gradients(X, lengths, target, weights, norm, squared_error, 5)
    assert l_chunk == pytest.approx(l_full)
    for a, b in zip(g_full, net.grads):
        np.testing.assert_array_equal(a, b)
    # chunks of 2: same loss (the forward pass carries the state), other gradient
    l_2 = net.loss_and_gradients(X, lengths, target, weights, norm, squared_error, 2)
    assert l_2 == pytest.approx(l_full, rel=1e-12)
    assert not np.allclose(g_full[0], net.grads[0])
    # chunks of 1 on a sequence-level loss: only the last step of each sequence gets gradient
    seq = _net("rnn", (3,), return_sequences=True)
    X, lengths, target, weights = _data(True)
    norm = float(weights.sum())
    full = seq.loss_and_gradients(X, lengths, target, weights, norm, squared_error, None)
    chunked = seq.loss_and_gradients(X, lengths, target, weights, norm, squared_error, 2)
    assert chunked == pytest.approx(full, rel=1e-12)


def test_dropout_only_in_training_and_reproducible():
    net = SequenceNetwork("lstm", 2, [4, 4], 1, dropout=0.5, dtype="float64",
                          random_state=np.random.RandomState(0))
    X, lengths, _, _ = _data(False)
    net.train(False)
    a, _ = net.forward(X, lengths)
    b, _ = net.forward(X, lengths)
    np.testing.assert_array_equal(a, b)
    net.train(True)
    c, _ = net.forward(X, lengths)
    assert not np.allclose(a, c)
    assert net.predict(X, lengths).shape == (4, 1)
    assert net.training  # predict restores the mode


def test_training_data_batches_trim_padding():
    X = np.zeros((3, 6, 1))
    lengths = np.array([2, 6, 3])
    data = TrainingData(X, lengths, np.zeros((3, 1)), np.ones(3), np.ones(3))
    xb, lb, tb, wb, norm = data.batch(np.array([0, 2]), np.float32)
    assert xb.shape == (2, 3, 1) and xb.dtype == np.float32 and norm == 2.0
    np.testing.assert_array_equal(lb, [2, 3])


def test_weight_masks_exclude_biases():
    net = _net("lstm", (3,), n_out=2)
    masks = net.weight_masks()
    layer = net.layers[0]
    sd = layer.state_dict()
    n_bias = sd["bias_ih_l0"].size + sd["bias_hh_l0"].size
    assert masks[0].size == layer.flat_params.size
    assert (~masks[0]).sum() == n_bias
    assert (~masks[-1]).sum() == 2
