"""RNNForecaster and backtest: stepping, recursive forecasts, shapes, intervals, persistence
and the errors bad input gets. Tiny generated series and a few epochs keep it fast."""

import io
import pickle
import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from rnnumba import Recurrent
from rnnumba.forecasting import RNNForecaster, backtest, check_fh
from rnnumba.heads import StepHead
from rnnumba.inputs import NumericInput
from rnnumba.model import SequenceModel
from rnnumba.persistence import read_archive, write_archive

FAST = dict(hidden_layer_sizes=(4,), max_iter=3, n_iter_no_change=2, lookback=6, dtype="float64")


def _series(n=60, k=None, seed=0, trend=0.05):
    rng = np.random.RandomState(seed)
    t = np.arange(n)
    base = np.sin(2 * np.pi * t / 6) + trend * t
    if k is None:
        return base + 0.1 * rng.randn(n)
    return np.stack([base * (c + 1) + 0.1 * rng.randn(n) for c in range(k)], axis=1)


def _fit(y, X=None, **params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return RNNForecaster(random_state=0, **{**FAST, **params}).fit(y, X)


# --------------------------------------------------------------------------- stepping


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("hidden", [[3], [3, 2]])
def test_recurrent_step_equals_forward(cell, hidden):
    """Stepping a causal stack through a sequence in pieces gives one forward's outputs and
    final states, for every cell and stacked layers."""
    rec = Recurrent(cell, input_size=2, hidden_size=hidden, dtype="float64", random_state=0)
    X = np.random.RandomState(1).randn(3, 7, 2)
    out, states = rec.forward(X)
    pieces, st = [], None
    for start, stop in ((0, 3), (3, 4), (4, 7)):
        o, st = rec.step(X[:, start:stop], st)
        pieces.append(o)
    np.testing.assert_allclose(np.concatenate(pieces, axis=1), out, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(_flat(st), _flat(states), rtol=1e-12, atol=1e-14)


def _flat(states):
    """Every array of a (nested) state structure, flattened and concatenated."""
    if isinstance(states, (tuple, list)):
        return np.concatenate([_flat(s) for s in states])
    return np.ravel(states)


def test_bidirectional_cannot_step():
    rec = Recurrent("gru", input_size=1, hidden_size=2, bidirectional=True, dtype="float64",
                    random_state=0)
    with pytest.raises(ValueError, match="causal"):
        rec.step(np.zeros((1, 2, 1)))


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_model_step_equals_forward(cell):
    rec = Recurrent(cell, input_size=2, hidden_size=[3, 3], dtype="float64", random_state=0)
    net = SequenceModel(NumericInput(2, np.float64), rec, StepHead(3, 1, random_state=0))
    X = np.random.RandomState(2).randn(2, 6, 2)
    full = net.predict(X, np.full(2, 6, dtype=np.int64))
    with net.inference():
        a, st = net.step(X[:, :4])
        b, _ = net.step(X[:, 4:], st)
    np.testing.assert_allclose(np.concatenate([a, b], axis=1), full, rtol=1e-12, atol=1e-14)


# --------------------------------------------------------------------------- recursion


def _hand_rolled(f, y, X_hist=None, X_future=None, steps=5):
    """Forecasts by re-running the network for every step over the history window and the
    forecasts so far: the slow loop the stepping replaces."""
    y = np.asarray(y, dtype=float).reshape(len(y), -1)
    total = 0.0
    for member in f._members:
        f._activate(member)
        L, d = f.lookback_, f.difference_
        if member.model is None:  # the seasonal naive forecast: the last season repeated
            total = total + member.weight * np.stack([y[len(y) - d + j % d]
                                                      for j in range(steps)])
            continue
        levels = y.copy()
        start = len(f._transformed(levels, 0)) - L
        covs = None if X_hist is None else np.concatenate([X_hist, X_future])
        for _ in range(steps):
            n = len(levels)
            u = f._transformed(levels, 0)
            xs = None if covs is None else f._scaled_covariates(covs[:n + 1], 0)
            rows = f._rows(u, xs)[start:]
            out = member.model.predict(rows[None], np.array([len(rows)]))
            nxt = out[0, -1] * f._y_scale[0] + f._y_center[0]
            if d:
                nxt = nxt + levels[n - d]
            levels = np.concatenate([levels, nxt[None]])
        total = total + member.weight * levels[-steps:]
    return total


@pytest.mark.parametrize("difference", [0, 1, 6])
def test_recursive_forecast_equals_hand_rolled_loop(difference):
    y = _series(80)
    f = _fit(y, difference=difference)
    np.testing.assert_allclose(f.predict(5), _hand_rolled(f, y)[:, 0], rtol=1e-9, atol=1e-9)


def test_recursive_forecast_with_covariates_equals_hand_rolled_loop():
    rng = np.random.RandomState(3)
    X = rng.randn(86, 2)
    y = _series(80) + X[:80, 0]
    f = _fit(y, X[:80], difference=1)
    np.testing.assert_allclose(f.predict(6, X[80:]), _hand_rolled(f, y, X[:80], X[80:], 6)[:, 0],
                               rtol=1e-9, atol=1e-9)


# --------------------------------------------------------------------------- shapes


def test_shapes_arrays_and_lists():
    f = _fit(_series(60))
    assert f.predict(4).shape == (4,)
    assert f.predict([1, 3]).shape == (2,)
    np.testing.assert_allclose(f.predict([1, 3]), f.predict(3)[[0, 2]])
    lower, upper = f.predict_interval(4)
    assert lower.shape == upper.shape == (4,)
    f2 = _fit(_series(60, k=2))
    assert f2.predict(3).shape == (3, 2)
    assert [a.shape for a in f2.predict_interval(3)] == [(3, 2), (3, 2)]
    f3 = _fit([_series(60, seed=1), _series(50, seed=2)])
    out = f3.predict(3)
    assert isinstance(out, list) and [o.shape for o in out] == [(3,), (3,)]


def test_pandas_indices():
    pd = pytest.importorskip("pandas")
    y = pd.Series(_series(60), index=pd.period_range("2000-01", periods=60, freq="M"),
                  name="sales")
    f = _fit(y)
    pred = f.predict([1, 2, 12])
    assert isinstance(pred, pd.Series) and pred.name == "sales"
    assert list(pred.index) == list(pd.PeriodIndex(["2005-01", "2005-02", "2005-12"],
                                                   freq="M"))
    lower, upper = f.predict_interval(3)
    assert lower.index.equals(upper.index) and str(lower.index[0]) == "2005-01"
    frame = pd.DataFrame(_series(60, k=2), columns=["a", "b"],
                         index=pd.date_range("2020-01-01", periods=60, freq="D"))
    g = _fit(frame)
    out = g.predict(2)
    assert isinstance(out, pd.DataFrame) and list(out.columns) == ["a", "b"]
    assert list(out.index) == list(pd.date_range("2020-03-01", periods=2, freq="D"))
    g.update(pd.DataFrame(_series(3, k=2), columns=["a", "b"],
                          index=pd.date_range("2020-03-01", periods=3, freq="D")))
    assert g.predict(1).index[0] == pd.Timestamp("2020-03-04")
    with pytest.raises(ValueError, match="starts at"):
        g.update(pd.DataFrame(_series(2, k=2), columns=["a", "b"],
                              index=pd.date_range("2021-01-01", periods=2, freq="D")))


# --------------------------------------------------------------------------- intervals


def test_intervals_widen_with_the_horizon_and_coverage():
    """On a random walk the errors grow with the steps ahead, and so do the intervals."""
    f = _fit(np.cumsum(np.random.RandomState(0).randn(120)))
    pred = f.predict(10)
    lower, upper = f.predict_interval(10, coverage=0.9)
    width = upper - lower
    assert np.all(lower <= pred) and np.all(pred <= upper)
    assert np.all(np.diff(width) >= -1e-12) and width[-1] > width[0]
    lo50, up50 = f.predict_interval(10, coverage=0.5)
    assert np.all(up50 - lo50 <= width + 1e-12)


# --------------------------------------------------------------------------- determinism


def test_random_state_makes_fits_repeatable():
    y = _series(60)
    np.testing.assert_array_equal(_fit(y).predict(5), _fit(y).predict(5))
    assert not np.array_equal(_fit(y, naive_candidate=False).predict(5),
                              RNNForecaster(random_state=1, naive_candidate=False,
                                            **FAST).fit(y).predict(5))


# --------------------------------------------------------------------------- update


def test_update_moves_the_origin_without_refitting():
    y = _series(70)
    f = _fit(y[:60], naive_candidate=False)
    g = clone(f).set_params()  # unfitted copy
    weights = f._model.store.flat_params.copy() if hasattr(f._model.store, "flat_params") \
        else None
    f.update(y[60:])
    assert len(f._history[0].y) == 70
    np.testing.assert_allclose(f.predict(3), _hand_rolled(f, y, steps=3)[:, 0], rtol=1e-9,
                               atol=1e-9)
    if weights is not None:
        np.testing.assert_array_equal(weights, f._model.store.flat_params)
    assert not hasattr(g, "_model")


# --------------------------------------------------------------------------- bad input


def test_bad_input_errors():
    y = _series(60)
    with pytest.raises(NotFittedError):
        RNNForecaster().predict(3)
    with pytest.raises(ValueError, match="observations, fewer than lookback"):
        _fit(y[:7])
    bad = y.copy()
    bad[10] = np.nan
    with pytest.raises(ValueError, match="NaN .*position 10.*interpolate"):
        _fit(bad)
    f = _fit(y)
    for fh in (0, -2, [0, 1], [1, -1]):
        with pytest.raises(ValueError, match="fh"):
            f.predict(fh)
    for fh in (1.5, [1.0, 2.0], "3", True, None):
        with pytest.raises(TypeError, match="fh"):
            f.predict(fh)
    with pytest.raises(ValueError, match="fitted without covariates"):
        f.predict(2, np.zeros((2, 1)))
    with pytest.raises(ValueError, match="k=1"):
        f.update(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="coverage"):
        f.predict_interval(2, coverage=1.5)
    X = np.random.RandomState(0).randn(60, 2)
    g = _fit(y, X)
    with pytest.raises(ValueError, match="covariate"):
        g.predict(3)
    with pytest.raises(ValueError, match="3 rows.*needs"):
        g.predict(5, X[:3])
    with pytest.raises(ValueError, match="columns"):
        g.predict(3, X[:3, :1])
    with pytest.raises(ValueError, match="rows, but y has"):
        _fit(y, X[:50])
    with pytest.raises(ValueError, match="update needs"):
        g.update(y[:2])


def test_check_fh():
    np.testing.assert_array_equal(check_fh(3), [1, 2, 3])
    np.testing.assert_array_equal(check_fh(np.array([2, 5])), [2, 5])
    with pytest.raises(ValueError, match="repeated"):
        check_fh([1, 1])


# --------------------------------------------------------------------------- estimator API


def test_get_params_clone_pickle():
    f = _fit(_series(60))
    params = f.get_params()
    assert params["cell"] == "lstm" and params["random_state"] == 0
    assert clone(f).get_params() == params
    g = pickle.loads(pickle.dumps(f))
    np.testing.assert_array_equal(g.predict(4), f.predict(4))


def test_archive_round_trip():
    pd = pytest.importorskip("pandas")
    rng = np.random.RandomState(0)
    y = pd.Series(_series(60), index=pd.period_range("1990", periods=60, freq="Y"))
    X = rng.randn(64, 1)
    f = _fit(y, X[:60])
    buf = io.BytesIO()
    write_archive(buf, *f._to_archive())
    buf.seek(0)
    name, params, fitted, arrays = read_archive(buf)
    assert name == "RNNForecaster"
    g = RNNForecaster._from_archive(params, fitted, arrays)
    pd.testing.assert_series_equal(g.predict(4, X[60:]), f.predict(4, X[60:]))
    for a, b in zip(g.predict_interval(4, X[60:]), f.predict_interval(4, X[60:])):
        pd.testing.assert_series_equal(a, b)
    buf = io.BytesIO()
    f.save(buf)
    buf.seek(0)
    assert read_archive(buf)[0] == "RNNForecaster"
    arrays = dict(arrays)
    arrays["calibration/sigma_a"] = np.array([-1.0])
    with pytest.raises(ValueError, match="sigma_a"):
        RNNForecaster._from_archive(params, fitted, arrays)


# --------------------------------------------------------------------------- backtest, plot


@pytest.mark.parametrize("refit", [False, True])
def test_backtest(refit):
    y = _series(50)
    est = RNNForecaster(random_state=0, **FAST)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = backtest(est, y, fh=3, initial=40, step=3 if refit else 1, refit=refit,
                       coverage=0.8)
    n_origins = len(res["origins"])
    assert res["y_pred"].shape == res["y_true"].shape == (n_origins, 3)
    assert res["mae"].shape == res["rmse"].shape == res["coverage"].shape == (3,)
    np.testing.assert_array_equal(res["n"], [(res["origins"] + h <= 49).sum() for h in (1, 2, 3)])
    assert np.isnan(res["y_true"][-1, 1:]).all()
    assert not hasattr(est, "_model")


def test_plot_forecast(tmp_path):
    from rnnumba.plotting import plot_forecast
    y = _series(60)
    f = _fit(y[:50])
    lower, upper = f.predict_interval(10)
    path = tmp_path / "forecast.png"
    fig = plot_forecast(y[:50], f.predict(10), lower, upper, y_true=y[50:], coverage=0.9,
                        path=path, title="test")
    assert path.stat().st_size > 0
    assert len(fig.axes) == 1


def test_list_of_series_with_covariates_and_update():
    rng = np.random.RandomState(4)
    Xs = [rng.randn(64, 1), rng.randn(54, 1)]
    ys = [_series(60, seed=1) + Xs[0][:60, 0], _series(50, seed=2) + Xs[1][:50, 0]]
    f = _fit(ys, [X[:-4] for X in Xs], n_ensemble=2)
    assert f.n_series_ == 2 and f.n_covariates_ == 1 and len(f._members) >= 2
    out = f.predict(4, [X[-4:] for X in Xs])
    assert isinstance(out, list) and [o.shape for o in out] == [(4,), (4,)]
    with pytest.raises(ValueError, match="list of 2"):
        f.predict(4, Xs[0][-4:])
    f.update([ys[0][-2:], None], [Xs[0][60:62], None])
    assert len(f._history[0].y) == 62 and len(f._history[1].y) == 50
    assert f.predict(2, [X[-2:] for X in Xs])[0].shape == (2,)
    buf = io.BytesIO()
    write_archive(buf, *f._to_archive())
    buf.seek(0)
    g = RNNForecaster._from_archive(*read_archive(buf)[1:])
    for a, b in zip(g.predict(2, [X[-2:] for X in Xs]), f.predict(2, [X[-2:] for X in Xs])):
        np.testing.assert_array_equal(a, b)
    assert g.difference_weights_ == pytest.approx(f.difference_weights_)


def test_load_reads_a_saved_forecaster(tmp_path, monkeypatch):
    """``rnnumba.load`` reads what ``save`` wrote once the class is in its registry."""
    from rnnumba import loading
    monkeypatch.setitem(loading.ESTIMATORS, "RNNForecaster", RNNForecaster)
    f = _fit(_series(60))
    path = tmp_path / "forecaster.npz"
    f.save(path)
    g = loading.load(path)
    np.testing.assert_array_equal(g.predict(4), f.predict(4))
    assert g.get_params() == f.get_params()


# --------------------------------------------------------------------------- log, naive


def _positive(n=72, seed=0):
    """A series whose seasonal amplitude grows with its level (multiplicative)."""
    t = np.arange(n)
    rng = np.random.RandomState(seed)
    return np.exp(0.02 * t + 0.3 * np.sin(2 * np.pi * t / 6) + 0.02 * rng.randn(n)) * 10


def test_log_transform_round_trip_and_forecast():
    """The logarithm's transform and its inverse give the series back, and a log fit
    forecasts positive values with the hand-rolled loop's recursion."""
    y = _positive()
    f = _fit(y, transform="log", difference=1)
    assert f.log_weight_ == 1.0 and f.candidate_weights_ == {"log differences": 1.0}
    u = f._transformed(y[:, None], 0)
    scaled = u[None]  # what an exact network would forecast from the first observation
    back = f._to_levels(scaled, y[None, :1, None], np.array([0]))
    np.testing.assert_allclose(back[0, :, 0], y[1:], rtol=1e-10)
    pred = f.predict(8)
    lower, upper = f.predict_interval(8)
    assert np.all(pred > 0) and np.all(lower <= pred) and np.all(pred <= upper)
    np.testing.assert_allclose(pred, _hand_rolled_log(f, y, 8), rtol=1e-9)


def _hand_rolled_log(f, y, steps):
    """Forecasts of a one-network log fit, re-running the network over a growing window."""
    L, d = f.lookback_, f.difference_
    levels = y[:, None].copy()
    start = len(f._transformed(levels, 0)) - L
    for _ in range(steps):
        rows = f._transformed(levels, 0)[start:]
        out = f._model.predict(rows[None], np.array([len(rows)]))
        nxt = out[0, -1] * f._y_scale[0] + f._y_center[0]
        nxt = np.exp(nxt + (np.log(levels[len(levels) - d]) if d else 0.0))
        levels = np.concatenate([levels, nxt[None]])
    return levels[-steps:, 0]


def test_log_transform_needs_positive_values():
    y = _series(60)  # crosses zero
    with pytest.raises(ValueError, match="transform='log' needs strictly positive.*y has"):
        _fit(y, transform="log")
    with pytest.raises(ValueError, match=r"y\[1\] has"):
        _fit([_positive(60), -_positive(60)], transform="log")
    with pytest.raises(ValueError, match="transform"):
        _fit(_positive(), transform="sqrt")
    # "auto" tries the logarithm only where every value is positive
    f = _fit(y, transform="auto")
    assert f.log_weight_ == 0.0 and not any("log" in k for k in f.candidate_scores_)
    g = _fit(_positive(), transform="auto")
    assert {"levels", "differences", "log levels", "log differences"} <= set(
        g.candidate_scores_)
    assert sum(g.candidate_weights_.values()) == pytest.approx(1.0)


def test_naive_candidate_is_weighed_and_saved():
    """The seasonal naive forecast is a candidate scored on held-out data; where the tiny
    networks of a few epochs forecast worse, it gets all the weight and the forecast is the
    last season repeated, with intervals from its held-out errors."""
    y = _positive()
    f = _fit(y, naive_candidate=True, seasonal_period=6)
    assert {"levels", "differences", "seasonal naive"} == set(f.candidate_scores_)
    assert f.candidate_weights_ == {"seasonal naive": 1.0} and f.difference_weights_ == {}
    assert f.difference_ == 6 and f.n_iter_ == 0 and f.validation_epochs_ is None
    np.testing.assert_allclose(f.predict(8), np.concatenate([y[-6:], y[-6:-4]]))
    lower, upper = f.predict_interval(8)
    assert np.all(lower < f.predict(8)) and np.all(f.predict(8) < upper)
    buf = io.BytesIO()
    write_archive(buf, *f._to_archive())
    buf.seek(0)
    g = RNNForecaster._from_archive(*read_archive(buf)[1:])
    np.testing.assert_array_equal(g.predict(8), f.predict(8))
    assert g.candidate_weights_ == f.candidate_weights_
    assert g.candidate_scores_ == pytest.approx(f.candidate_scores_)
    # without held-out data there is nothing to weigh it by: networks only
    h = _fit(y, naive_candidate=True, validation_fraction=0.0)
    assert h.calibrated_on_ == "in-sample" and "seasonal naive" not in h.candidate_weights_


def test_log_and_naive_fits_are_repeatable_and_persist(tmp_path):
    y = _positive()
    params = dict(transform="auto", naive_candidate=True)
    a, b = _fit(y, **params), _fit(y, **params)
    np.testing.assert_array_equal(a.predict(5), b.predict(5))
    assert a.candidate_weights_ == b.candidate_weights_
    c = clone(a)
    assert c.get_params()["transform"] == "auto" and c.get_params()["naive_candidate"]
    p = pickle.loads(pickle.dumps(a))
    np.testing.assert_array_equal(p.predict(5), a.predict(5))
    path = tmp_path / "f.npz"
    a.save(path)
    buf = io.BytesIO()
    write_archive(buf, *a._to_archive())
    buf.seek(0)
    g = RNNForecaster._from_archive(*read_archive(buf)[1:])
    np.testing.assert_array_equal(g.predict(5), a.predict(5))
    for lo, hi in zip(g.predict_interval(5), a.predict_interval(5)):
        np.testing.assert_array_equal(lo, hi)
    assert g.log_weight_ == a.log_weight_


def test_files_without_log_or_naive_entries_still_load():
    """A file written before ``transform`` and ``naive_candidate`` (no member_logs,
    member_networks or candidate_scores) reads as networks on the series itself."""
    f = _fit(_series(60))
    name, params, fitted, arrays = f._to_archive()
    for key in ("member_logs", "member_networks", "candidate_scores"):
        fitted.pop(key)
    params = {k: v for k, v in params.items() if k not in ("transform", "naive_candidate")}
    g = RNNForecaster._from_archive(params, fitted, arrays)
    np.testing.assert_array_equal(g.predict(4), f.predict(4))
    bad = dict(fitted, member_logs=(1,) * len(f._members))
    with pytest.raises(ValueError, match="member_logs"):
        RNNForecaster._from_archive(params, bad, arrays)


@pytest.mark.parametrize("forget_bias", [None, 1.0])
def test_forget_bias_reaches_every_network(initializations, forget_bias):
    """``forget_bias`` (default None: PyTorch's draw, which forecast better) is what every
    candidate network starts from."""
    params = {} if forget_bias is None else {"forget_bias": forget_bias}
    _fit(_series(), **params)
    passed = [value for value, _ in initializations]
    assert len(passed) >= 2 and set(passed) == {forget_bias}
