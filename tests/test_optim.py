"""rnnumba.optim against scikit-learn's MLP optimizers and hand-computed steps."""

import pickle

import numpy as np
import pytest
from sklearn.neural_network._stochastic_optimizers import AdamOptimizer, SGDOptimizer

from rnnumba.backend import get_backend
from rnnumba.optim import SGD, Adam, make_optimizer


def _problem(seed=0):
    rng = np.random.RandomState(seed)
    params = [rng.randn(5), rng.randn(3)]
    grads_seq = [[rng.randn(5), rng.randn(3)] for _ in range(6)]
    return params, grads_seq


@pytest.mark.parametrize("nesterov", [True, False])
@pytest.mark.parametrize("schedule", ["constant", "invscaling", "adaptive"])
def test_sgd_matches_sklearn(nesterov, schedule):
    params, grads_seq = _problem()
    ours = [p.copy() for p in params]
    theirs = [p.copy() for p in params]
    opt = SGD([p.shape for p in ours], 0.1, schedule, momentum=0.8, nesterov=nesterov,
              power_t=0.3)
    ref = SGDOptimizer(theirs, 0.1, schedule, momentum=0.8, nesterov=nesterov, power_t=0.3)
    for step, grads in enumerate(grads_seq):
        opt.step(ours, grads)
        ref.update_params(theirs, grads)
        opt.iteration_ends(10 * (step + 1))
        ref.iteration_ends(10 * (step + 1))
        for a, b in zip(ours, theirs):
            np.testing.assert_allclose(a, b, rtol=1e-13)
    assert opt.learning_rate == pytest.approx(ref.learning_rate)


def test_adam_matches_sklearn():
    params, grads_seq = _problem(1)
    ours = [p.copy() for p in params]
    theirs = [p.copy() for p in params]
    opt = Adam([p.shape for p in ours], 0.01, 0.8, 0.95, 1e-7)
    ref = AdamOptimizer(theirs, 0.01, 0.8, 0.95, 1e-7)
    for grads in grads_seq:
        opt.step(ours, grads)
        ref.update_params(theirs, grads)
        for a, b in zip(ours, theirs):
            np.testing.assert_allclose(a, b, rtol=1e-12)


def test_adam_first_step_by_hand():
    p = np.array([1.0, -2.0])
    g = np.array([0.5, -0.25])
    Adam([p.shape], 0.1).step([p], [g])
    # first step: m_hat = g, v_hat = g^2 -> update = -lr * sign(g) (up to eps)
    np.testing.assert_allclose(p, [0.9, -1.9], rtol=1e-6)


def test_sgd_plain_step_by_hand():
    p = np.array([1.0])
    SGD([p.shape], 0.5, momentum=0.0, nesterov=False).step([p], [np.array([2.0])])
    assert p[0] == 0.0


def test_updates_are_in_place_and_float32():
    p = np.ones(4, dtype=np.float32)
    view = p[:2]
    for opt in (SGD([p.shape], 0.1), Adam([p.shape], 0.1)):
        opt.step([p], [np.ones(4, dtype=np.float32)])
    assert p.dtype == np.float32 and view[0] == p[0] and p[0] < 1


def test_adaptive_divides_by_five_then_stops():
    opt = Adam([(1,)], 1e-5, lr_schedule="adaptive")
    assert not opt.trigger_stopping("stall", False)
    assert opt.learning_rate == pytest.approx(2e-6)
    assert not opt.trigger_stopping("stall", False)
    assert opt.trigger_stopping("stall", False)
    assert SGD([(1,)], 0.1).trigger_stopping("stall", False)


def _clip(grads, max_norm):
    """The training core's clipping (the CPU kernel) on one flat buffer; returns the norm."""
    stats = np.zeros(4)
    get_backend("cpu").optim.clip_grad_norm(grads, max_norm, stats)
    return stats[1]


def test_clipping():
    grads = np.array([3.0, 0.0, 4.0])
    norm = _clip(grads, 1.0)
    assert norm == pytest.approx(5.0)
    assert np.linalg.norm(grads) == pytest.approx(1.0, rel=1e-9)
    np.testing.assert_allclose(grads[:2], [0.6, 0.0], rtol=1e-9)
    small = np.array([0.1])
    _clip(small, 1.0)
    assert small[0] == 0.1
    assert not np.isfinite(_clip(np.array([np.nan]), 1.0))


def test_pickle_and_factory():
    opt = make_optimizer("adam", [(3,)], learning_rate_init=0.1)
    p = np.zeros(3)
    opt.step([p], [np.ones(3)])
    clone = pickle.loads(pickle.dumps(opt))
    q = p.copy()
    opt.step([p], [np.ones(3)])
    clone.step([q], [np.ones(3)])
    np.testing.assert_array_equal(p, q)
    assert isinstance(make_optimizer("sgd", [(1,)], learning_rate_init=0.1), SGD)
    with pytest.raises(ValueError):
        make_optimizer("lbfgs", [(1,)], learning_rate_init=0.1)
    with pytest.raises(ValueError):
        SGD([(1,)], 0.1, lr_schedule="cosine")
