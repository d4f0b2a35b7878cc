"""Forecasting: :class:`RNNForecaster` and :func:`backtest`.

A forecaster is one more estimator on the training core. It cuts the observed series into
windows of ``lookback`` steps, trains a :class:`~rnnumba.model.SequenceModel` (numeric input
over the series' channels and the covariates, a :class:`~rnnumba.Recurrent` stack, a
:class:`~rnnumba.heads.StepHead`) with a :class:`~rnnumba.training.Trainer` to predict
every step's next value (teacher forcing), and forecasts by stepping: one pass over the
last ``lookback`` observations, then one cell step per step ahead, each fed the previous
prediction, the hidden state carried throughout (:meth:`SequenceModel.step
<rnnumba.model.SequenceModel.step>`).

Prediction intervals are calibrated on held-out data: networks are trained without the
last part of every series and stopped on their multi-step forecast error over the first
half of it; their forecast errors per step ahead from every origin of the second half set
the interval widths. The networks are then refitted on all the data for the epochs that
were best.
"""

import json
import math
import numbers
import re
import warnings

import numpy as np
from sklearn.base import BaseEstimator, _fit_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from . import persistence
from ._validation import check_hidden_layer_sizes
from .backend import resolve_device, runnable_device
from .heads import StepHead
from .inputs import NumericInput
from .losses import SquaredError
from .model import SequenceModel
from .optim import make_optimizer
from .recurrent import Recurrent
from .training import SequenceData, Trainer

__all__ = ["RNNForecaster", "backtest"]

#: Training windows per fit at most (a longer history is sampled with a stride, the latest
#: window always kept), so that an epoch's cost does not grow without bound with the data.
MAX_WINDOWS = 4096

#: Seasonal periods of pandas frequency aliases (multiples such as "2M" are not mapped).
_FREQ_PERIODS = {
    **dict.fromkeys(("Y", "A", "YS", "AS", "YE", "BA", "BY", "BYS", "BAS", "BYE"), 1),
    **dict.fromkeys(("Q", "QS", "QE", "BQ", "BQS", "BQE"), 4),
    **dict.fromkeys(("M", "MS", "ME", "BM", "BMS", "BME", "CBMS", "CBME"), 12),
    "W": 52, "D": 7, "C": 5, "B": 5,
    **dict.fromkeys(("H", "h", "BH", "bh", "CBH", "cbh"), 24),
    **dict.fromkeys(("T", "min"), 60), **dict.fromkeys(("S", "s"), 60),
}


#: How sharply the held-out errors weight the candidate networks (first differences and
#: levels) in the forecast: ``(min(mse) / mse) ** 4`` (selection of the best alone and
#: the inverse-error weights of ``** 1`` both forecast worse on the development splits).
COMBINATION_POWER = 4.0

#: Fitted integers written to a file.
_FITTED_INTS = ("n_series_", "n_channels_", "n_covariates_", "seasonal_period_", "lookback_",
                "horizon_", "difference_", "n_iter_")

# --------------------------------------------------------------------------- input checks


def _is_pandas(obj):
    return type(obj).__module__.split(".")[0] == "pandas" and hasattr(obj, "index")


def _is_series_list(y):
    """A list (or tuple) of series, as opposed to one series given as a list of numbers."""
    if not isinstance(y, (list, tuple)) or len(y) == 0:
        return False
    return all(_is_pandas(v) or np.ndim(v) >= 1 for v in y)


class _Series:
    """One observed series: ``y`` (T, k) and covariates ``X`` (T, m) or None, float64,
    and ``meta``, what gives results back in the caller's form (a dict of JSON values)."""

    __slots__ = ("y", "X", "meta")

    def __init__(self, y, X, meta):
        self.y, self.X, self.meta = y, X, meta


def _index_meta(index):
    """What is needed to continue ``index`` into the future, or None (results as arrays)."""
    import pandas as pd
    if len(index) == 0:
        return None
    if isinstance(index, pd.PeriodIndex):
        return {"index": "period", "freq": index.freqstr, "last": str(index[-1])}
    if isinstance(index, pd.DatetimeIndex):
        freq = index.freqstr if index.freq is not None else (
            pd.infer_freq(index) if len(index) >= 3 else None)
        if freq is None:
            return None
        return {"index": "datetime", "freq": freq, "last": index[-1].isoformat()}
    if isinstance(index, pd.RangeIndex) or pd.api.types.is_integer_dtype(index.dtype):
        values = np.asarray(index, dtype=np.int64)
        step = int(values[1] - values[0]) if len(values) > 1 else 1
        if step > 0 and np.all(np.diff(values) == step):
            return {"index": "integer", "freq": step, "last": int(values[-1])}
    return None


def _future_index(meta, steps):
    """The pandas index of ``steps`` (positive ints) after the series' last observation."""
    import pandas as pd
    steps = np.asarray(steps, dtype=np.int64)
    kind = meta.get("index")
    if kind == "period":
        last = pd.Period(meta["last"], freq=meta["freq"])
        return pd.PeriodIndex([last + int(s) for s in steps], freq=meta["freq"])
    if kind == "datetime":
        full = pd.date_range(pd.Timestamp(meta["last"]), periods=int(steps.max()) + 1,
                             freq=meta["freq"])
        return full[steps]
    return pd.Index(meta["last"] + meta["freq"] * steps)


def _advance_meta(meta, n):
    """``meta`` after ``n`` more observations (its index moved on)."""
    kind = meta.get("index")
    if kind is None or n == 0:
        return meta
    if kind == "integer":
        return dict(meta, last=meta["last"] + meta["freq"] * n)
    return dict(meta, last=_future_index(meta, [n])[0].isoformat() if kind == "datetime"
                else str(_future_index(meta, [n])[0]))


def _check_values(values, name, allow_nan=False):
    """A finite float64 array (1-D or 2-D), with an error naming the problem."""
    if hasattr(values, "toarray") or hasattr(values, "tocsr"):
        raise TypeError(f"{name} is sparse; RNNForecaster needs a dense array")
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must hold numbers: {exc}") from None
    if arr.ndim not in (1, 2):
        raise ValueError(f"{name} must be 1-D (T,) or 2-D (T, k), got shape {arr.shape}")
    if arr.shape[0] == 0 or (arr.ndim == 2 and arr.shape[1] == 0):
        raise ValueError(f"{name} is empty (shape {arr.shape})")
    bad = ~np.isfinite(arr)
    if bad.any():
        row = int(np.argwhere(bad)[0][0])
        what = "NaN" if np.isnan(arr).any() else "infinity"
        raise ValueError(
            f"{name} contains {what} (first at position {row}); RNNForecaster does not impute "
            "missing values: fill or interpolate them first (e.g. pandas' "
            "Series.interpolate())")
    return arr


def _one_series(y, name):
    """``(values (T, k), meta)`` of one series."""
    meta = {"kind": "array", "ndim": 1}
    if _is_pandas(y):
        import pandas as pd
        if isinstance(y, pd.DataFrame):
            meta.update(kind="frame", ndim=2, columns=[_json_label(c) for c in y.columns])
        else:
            meta.update(kind="series", name=_json_label(y.name))
        meta.update(_index_meta(y.index) or {})
        values = y.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        values = y
    values = _check_values(values, name)
    if values.ndim == 2:
        meta["ndim"] = 2
    else:
        values = values[:, None]
    return values, meta


def _json_label(label):
    if label is None or isinstance(label, (str, bool)):
        return label
    if isinstance(label, numbers.Integral):
        return int(label)
    if isinstance(label, numbers.Real):
        return float(label)
    return str(label)


def _covariates(X, length, name):
    """Covariates as (T, m) float64 checked to have ``length`` rows, or None."""
    if X is None:
        return None
    if _is_pandas(X):
        X = X.to_numpy(dtype=np.float64, na_value=np.nan)
    X = _check_values(X, name)
    if X.ndim == 1:
        X = X[:, None]
    if X.shape[0] != length:
        raise ValueError(f"{name} has {X.shape[0]} rows, but y has {length} observations; "
                         "X must have one row per observation of y")
    return X


def _series_list(y, X, name="y"):
    """``(list of _Series, was_list)`` from what :meth:`RNNForecaster.fit` accepts."""
    if y is None:
        raise ValueError(f"{name} is required; got None")
    was_list = _is_series_list(y)
    ys = list(y) if was_list else [y]
    if X is None:
        Xs = [None] * len(ys)
    elif was_list:
        if not isinstance(X, (list, tuple)) or len(X) != len(ys):
            raise ValueError(f"{name} is a list of {len(ys)} series, so X must be a list of "
                             f"as many covariate arrays (or None), got {type(X).__name__}"
                             + (f" of length {len(X)}" if isinstance(X, (list, tuple))
                                else ""))
        Xs = list(X)
    else:
        Xs = [X]
    out = []
    for i, (yi, Xi) in enumerate(zip(ys, Xs)):
        label = f"{name}[{i}]" if was_list else name
        values, meta = _one_series(yi, label)
        cov = _covariates(Xi, values.shape[0], f"X[{i}]" if was_list else "X")
        out.append(_Series(values, cov, meta))
    widths = {s.y.shape[1] for s in out}
    if len(widths) > 1:
        raise ValueError(f"every series must have the same number of channels k, got "
                         f"{sorted(widths)}")
    cov_widths = {None if s.X is None else s.X.shape[1] for s in out}
    if len(cov_widths) > 1:
        raise ValueError("X must be given for every series or for none, with the same number "
                         "of columns for all")
    return out, was_list


def check_fh(fh):
    """Steps ahead as a sorted-as-given int64 array of positive ints, from an int ``h``
    (the next ``h`` steps) or an array-like of positive ints."""
    if isinstance(fh, (bool, np.bool_)):
        raise TypeError(f"fh must be a positive int or an array-like of positive ints, got "
                        f"{fh!r}")
    if np.ndim(fh) == 0 and not isinstance(fh, numbers.Integral):
        raise TypeError(f"fh must be a positive int or an array-like of positive ints, got "
                        f"{fh!r}")
    if isinstance(fh, numbers.Integral):
        if fh <= 0:
            raise ValueError(f"fh must be >= 1 (steps ahead), got {fh}")
        return np.arange(1, int(fh) + 1, dtype=np.int64)
    if isinstance(fh, (str, bytes)) or fh is None:
        raise TypeError(f"fh must be a positive int or an array-like of positive ints, got "
                        f"{fh!r}")
    try:
        arr = np.asarray(fh)
    except (TypeError, ValueError):
        raise TypeError(f"fh must be a positive int or an array-like of positive ints, got "
                        f"{fh!r}") from None
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"fh must be a non-empty 1-D array-like of steps ahead, got shape "
                         f"{arr.shape}")
    if arr.dtype.kind not in "iu":
        raise TypeError(f"fh must hold integers (steps ahead), got dtype {arr.dtype}: "
                        f"{arr.tolist()!r}")
    if arr.min() <= 0:
        raise ValueError(f"fh must hold steps ahead >= 1, got {arr.tolist()!r}")
    if np.unique(arr).size != arr.size:
        raise ValueError(f"fh holds repeated steps: {arr.tolist()!r}")
    return arr.astype(np.int64)


# --------------------------------------------------------------------------- seasonality


def _period_from_freq(freq):
    if not isinstance(freq, str):
        return None
    match = re.match(r"^([A-Za-z]+)(?:-[A-Za-z]+)?$", freq)
    return _FREQ_PERIODS.get(match.group(1)) if match else None


def _period_from_acf(values, max_lag):
    """The lag of the highest local peak of the autocorrelation of the linearly detrended
    series above ``2/sqrt(T)`` (lags 2..max_lag), or 1."""
    x = np.asarray(values, dtype=np.float64)
    n = x.shape[0]
    if n < 8 or max_lag < 2:
        return 1
    t = np.arange(n)
    x = x - np.polyval(np.polyfit(t, x, 1), t)
    denom = float(x @ x)
    if denom <= 0.0:
        return 1
    lags = np.arange(1, max_lag + 2)
    acf = np.array([float(x[:-lag] @ x[lag:]) / denom for lag in lags])
    best, best_value = 1, 2.0 / math.sqrt(n)
    for i in range(1, len(acf) - 1):
        lag = lags[i]
        if acf[i] > acf[i - 1] and acf[i] >= acf[i + 1] and acf[i] > best_value:
            best, best_value = int(lag), acf[i]
    return best


# --------------------------------------------------------------------------- the estimator


class RNNForecaster(BaseEstimator):
    """Recurrent-network forecaster: several steps ahead, covariates, prediction intervals.

    One network (global over a list of series) is trained on windows of ``lookback`` steps
    to predict every step's next value, then forecasts recursively: one pass over the last
    ``lookback`` observations, then one cell step per step ahead, the hidden state carried
    and each prediction fed back as the next input. Every setting has a default chosen from
    the data or measured on the forecasting suite (``benchmarks/forecast_suite.py``, see
    ``docs/forecasting.md``); ``random_state`` is the only one to set.

    What the network models is chosen on held-out data (``difference="auto"``): the last
    ``validation_fraction`` of every series is held out, and one network per candidate
    (scaled levels, scaled first differences) is trained on the rest and stopped on its
    multi-step forecast error over the origins of the first half of the held-out part. The
    candidates' forecasts are averaged with weights ``(min(mse) / mse) ** 4`` of those
    errors (a candidate under 5% is dropped); ``transform="auto"`` and
    ``naive_candidate`` add networks on the logarithm of the series and the seasonal naive
    forecast as candidates. Covariates are transformed as the series is, so a relation
    between levels holds between differences. The forecast errors of the weighted
    candidates per step ahead over the origins of the second half, data that chose
    nothing, set the prediction intervals; each network is then refitted on all the data
    for the epochs its held-out error chose (``refit``).

    Names follow scikit-learn's MLP where one exists, sktime's words where scikit-learn has
    none (``fh``, ``coverage``).

    Parameters
    ----------
    cell : {"rnn", "lstm", "gru"}, default="lstm"
        The recurrent cell.
    hidden_layer_sizes : array-like of int, default=(32,)
        Units of each stacked recurrent layer.
    forget_bias : float or None, default=None
        LSTM only: the forget gate's bias starts at this value (``bias_ih``'s forget rows;
        ``bias_hh``'s start at 0), as the classifier's and regressor's ``forget_bias``.
        None keeps PyTorch's uniform draw: 1.0 forecast worse on the development splits.
    lookback : int or "auto", default="auto"
        Steps of history a training window holds and a forecast starts from. ``"auto"``:
        twice the seasonal period, at least 16, at most a third of the shortest series.
    seasonal_period : int or "auto", default="auto"
        ``"auto"``: from a pandas index's frequency (12 for months, 4 for quarters, 7 for
        days, ...), else the lag of the strongest peak of the autocorrelation function of
        the detrended series (1 when there is none). It sets the default lookback and
        horizon.
    difference : int >= 0 or "auto", default="auto"
        What the network models: 0 the scaled levels, ``d > 0`` the scaled differences
        ``y[t] - y[t-d]`` (``d = seasonal_period`` for seasonal differences). ``"auto"``
        weights levels and first differences by their held-out errors (without held-out
        data: first differences where a KPSS-type test finds a series non-stationary,
        else levels).
    transform : {"none", "log", "auto"}, default="none"
        What the levels or differences are taken of: ``"none"`` the series itself,
        ``"log"`` its natural logarithm (Box-Cox with lambda 0: a seasonal pattern whose
        amplitude grows with the level becomes additive; every value must be positive, a
        ``ValueError`` otherwise), the forecast being the exponential of the network's (a
        forecast of the median). ``"auto"``: where every value of every series is positive,
        networks on the series and on its logarithm are both trained and weighted by their
        held-out errors, as the ``difference`` candidates are (twice the fit time; without
        held-out data, or with a value <= 0: ``"none"``). Neither forecast better than
        ``"none"`` on the development splits of the forecasting suite.
    naive_candidate : bool, default=False
        Also weigh the seasonal naive forecast (the last ``seasonal_period_`` observations
        repeated; the last observation where the period is 1) by its held-out error, along
        with the networks: the forecast leans on it where the networks forecast the
        held-out part worse. Needs held-out data (ignored without). The same scores as
        without on the development splits.
    strategy : {"recursive", "direct"}, default="recursive"
        ``"recursive"``: one step ahead per cell step, predictions fed back.
        ``"direct"``: every step outputs the next ``horizon`` values at once (fed back in
        blocks for longer forecasts).
    horizon : int or "auto", default="auto"
        Steps ahead the held-out forecast error is measured over (and the block length of
        ``"direct"``). ``"auto"``: the seasonal period, at least 8.
    validation_fraction : float in [0, 1), default=0.2
        Share of every series held out to weight the ``difference`` candidates, stop
        training (first half) and calibrate the intervals (second half). 0, or series too
        short to spare it, trains on everything for up to ``max_iter`` epochs (stopping on
        the training loss) and calibrates on in-sample forecast errors, which gives
        intervals that are too narrow.
    refit : bool, default=True
        Refit the networks on all the data (the held-out part too) for the number of
        epochs their held-out error chose; False keeps the networks trained without it.
    n_ensemble : int, default=1
        Networks (seeds) per candidate, their forecasts averaged.
    alpha : float, default=1e-4
        L2 penalty on the weights.
    batch_size : int, default=32
        Windows per optimizer step.
    learning_rate_init : float, default=0.005
        Adam's step size.
    max_iter : int, default=200
        Most epochs per network.
    n_iter_no_change : int, default=20
        Epochs without a lower held-out error before training stops (the best epoch's
        weights are kept).
    tol : float, default=0.0
        Least improvement of the held-out error that counts.
    clip_norm : float or None, default=1.0
        Clip the global gradient norm to this value.
    random_state : int, RandomState or None, default=None
        Seeds the initialisation and the shuffling.
    verbose : bool, default=False
        Print one line per epoch.
    device : {"cpu", "cuda", "auto"}, default="cpu"
        Where the networks train and forecast. Forecasting networks are small and a forecast
        is a loop of single steps, which the CPU runs faster than a GPU.
    dtype : {"float32", "float64"}, default="float32"
        Precision of the network (float32 forecast as well as float64 on the suite, in half
        the time).

    Attributes
    ----------
    n_series_ : int
        Series fitted (1 unless ``y`` was a list).
    n_channels_ : int
        Values per step of each series (``k``).
    n_covariates_ : int
        Covariates per step (``m``; 0 without ``X``).
    seasonal_period_ : int
        The seasonal period used.
    lookback_ : int
        Steps per window.
    horizon_ : int
        Steps ahead of the held-out error (and of a ``"direct"`` block).
    difference_ : int
        The lag of the differences the heaviest network models (0: levels).
    difference_weights_ : dict
        Weight of the networks of every lag in the forecast (``{lag: weight}``; with the
        naive forecast's weight, ``candidate_weights_["seasonal naive"]`` or ``["naive"]``,
        they sum to 1).
    difference_scores_ : dict
        Held-out mean squared error of every candidate lag of the networks on the series
        itself (not its logarithm), in units of each series' step-to-step standard
        deviation; empty without held-out data.
    candidate_weights_ : dict
        Weight of every candidate in the forecast, by name (``"levels"``,
        ``"differences"``, ``"log levels"``, ``"log differences"``, ``"seasonal naive"``
        or ``"naive"``; summing to 1).
    candidate_scores_ : dict
        Held-out mean squared error of every candidate, by name, in the units of
        ``difference_scores_``; empty without held-out data.
    log_weight_ : float
        Weight of the networks that model the logarithm (0 where none does).
    validation_epochs_ : int or None
        Epochs of the heaviest network's best held-out error (its refit's epochs).
    calibrated_on_ : {"holdout", "in-sample"}
        Where the interval widths come from.
    n_iter_ : int
        Epochs the heaviest final network trained.
    loss_curve_ : list of float
        Its training loss per epoch (scaled units).
    device_ : str
        Where the network runs.

    See Also
    --------
    backtest : Rolling-origin errors per step ahead.
    rnnumba.plotting.plot_forecast : History, forecast and interval band in one figure.

    Examples
    --------
    >>> import numpy as np
    >>> from rnnumba import RNNForecaster
    >>> t = np.arange(120)
    >>> y = 10 + np.sin(2 * np.pi * t / 12) + 0.02 * t
    >>> f = RNNForecaster(random_state=0).fit(y)
    >>> f.predict(6).shape
    (6,)
    >>> lower, upper = f.predict_interval(6, coverage=0.9)
    """

    _parameter_constraints = {
        "cell": [StrOptions({"rnn", "lstm", "gru"})],
        "hidden_layer_sizes": ["array-like", Interval(numbers.Integral, 1, None,
                                                      closed="left")],
        "lookback": [StrOptions({"auto"}), Interval(numbers.Integral, 1, None, closed="left")],
        "seasonal_period": [StrOptions({"auto"}), Interval(numbers.Integral, 1, None,
                                                           closed="left")],
        "difference": [StrOptions({"auto"}), Interval(numbers.Integral, 0, None,
                                                      closed="left")],
        "transform": [StrOptions({"auto", "none", "log"})],
        "naive_candidate": ["boolean"],
        "strategy": [StrOptions({"recursive", "direct"})],
        "horizon": [StrOptions({"auto"}), Interval(numbers.Integral, 1, None, closed="left")],
        "validation_fraction": [Interval(numbers.Real, 0, 1, closed="left")],
        "refit": ["boolean"],
        "n_ensemble": [Interval(numbers.Integral, 1, None, closed="left")],
        "forget_bias": [Interval(numbers.Real, None, None, closed="neither"), None],
        "alpha": [Interval(numbers.Real, 0, None, closed="left")],
        "batch_size": [Interval(numbers.Integral, 1, None, closed="left")],
        "learning_rate_init": [Interval(numbers.Real, 0, None, closed="neither")],
        "max_iter": [Interval(numbers.Integral, 1, None, closed="left")],
        "n_iter_no_change": [Interval(numbers.Integral, 1, None, closed="left")],
        "tol": [Interval(numbers.Real, 0, None, closed="left")],
        "clip_norm": [Interval(numbers.Real, 0, None, closed="neither"), None],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "device": [StrOptions({"auto", "cpu", "cuda"})],
        "dtype": [StrOptions({"float32", "float64"})],
    }

    def __init__(self, cell="lstm", hidden_layer_sizes=(32,), *, forget_bias=None,
                 lookback="auto", seasonal_period="auto", difference="auto", transform="none",
                 naive_candidate=False, strategy="recursive", horizon="auto",
                 validation_fraction=0.2, refit=True, n_ensemble=1, alpha=1e-4, batch_size=32,
                 learning_rate_init=0.005, max_iter=200, n_iter_no_change=20, tol=0.0,
                 clip_norm=1.0, random_state=None, verbose=False, device="cpu", dtype="float32"):
        self.cell = cell
        self.hidden_layer_sizes = hidden_layer_sizes
        self.forget_bias = forget_bias
        self.lookback = lookback
        self.seasonal_period = seasonal_period
        self.difference = difference
        self.transform = transform
        self.naive_candidate = naive_candidate
        self.strategy = strategy
        self.horizon = horizon
        self.validation_fraction = validation_fraction
        self.refit = refit
        self.n_ensemble = n_ensemble
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate_init = learning_rate_init
        self.max_iter = max_iter
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.clip_norm = clip_norm
        self.random_state = random_state
        self.verbose = verbose
        self.device = device
        self.dtype = dtype

    # ------------------------------------------------------------------ settings from data
    def _detect_period(self, series):
        if self.seasonal_period != "auto":
            return int(self.seasonal_period)
        periods = []
        for s in series:
            m = _period_from_freq(s.meta.get("freq")) if s.meta.get("index") in (
                "period", "datetime") else None
            if m is None or m == 1:
                m = _period_from_acf(s.y[:, 0], min(len(s.y) // 3, 400))
            periods.append(m)
        return int(max(periods))

    def _choose_lookback(self, period, min_length):
        if self.lookback != "auto":
            return int(self.lookback)
        lookback = max(2 * period, 16)
        return int(max(4, min(lookback, min_length // 3)))

    def _difference_candidates(self):
        """The difference lags to try: first differences and levels, or the one asked for.
        (Seasonal differences were tried too, and chosen on held-out data where they then
        forecast worse, with intervals that held far less than asked: see
        docs/forecasting.md.)"""
        if self.difference != "auto":
            return (int(self.difference),)
        return (1, 0)

    def _log_candidates(self, series):
        """Whether the networks model the logarithm of the series: ``(False,)``,
        ``(True,)``, or ``(False, True)``, both to be weighted on held-out data
        (``transform="auto"`` where every value of every series is positive)."""
        positive = all(float(s.y.min()) > 0 for s in series)
        if self.transform == "log":
            if not positive:
                where = next(i for i, s in enumerate(series) if float(s.y.min()) <= 0)
                label = f"y[{where}]" if self._was_list else "y"
                raise ValueError(
                    f"transform='log' needs strictly positive series, but {label} has the "
                    f"value {float(series[where].y.min())!r}; use transform='none' (or "
                    "'auto', which tries the logarithm only where every value is positive)")
            return (True,)
        if self.transform == "none" or not positive:
            return (False,)
        return (False, True)

    def _candidates(self, series):
        """``(difference lag, log)`` of every network to weigh on held-out data."""
        return [(lag, log) for log in self._log_candidates(series)
                for lag in self._difference_candidates()]

    def _fallback_difference(self, series):
        """Without held-out data: first differences where a series looks non-stationary."""
        if self.difference != "auto":
            return int(self.difference)
        return int(any(_trending(s.y[:, c]) for s in series for c in range(s.y.shape[1])))

    # ------------------------------------------------------------------ transforms
    def _scaling_of(self, s):
        """``(center, scale)`` of the modelled values (levels or differences) and of the
        covariates of one series."""
        u = _lagged_difference(self._log_of(s.y), self.difference_)
        center, scale = u.mean(axis=0), u.std(axis=0)
        scale = np.where(scale > 1e-12 * np.maximum(1.0, np.abs(center)), scale, 1.0)
        if s.X is None:
            return center, scale, None, None
        cx = _lagged_difference(s.X, self.difference_)
        xc, xs = cx.mean(axis=0), cx.std(axis=0)
        xs = np.where(xs > 1e-12 * np.maximum(1.0, np.abs(xc)), xs, 1.0)
        return center, scale, xc, xs

    def _transformed(self, y, i):
        """The modelled values of ``y`` (T, k) of series ``i``: scaled levels (T, k) or
        scaled differences (T-1, k)."""
        center, scale = self._y_center[i], self._y_scale[i]
        u = _lagged_difference(self._log_of(y), self.difference_)
        return (u - center) / scale

    def _log_of(self, y):
        """``y``, or its logarithm where the active network models that."""
        return np.log(y) if self._log else y

    def _scaled_covariates(self, X, i):
        """Covariates transformed as the series is (differenced at the same lag, so that a
        relation between levels holds between the differences) and scaled; aligned with
        :meth:`_transformed` of the series over the same times."""
        if X is None:
            return None
        return (_lagged_difference(X, self.difference_) - self._x_center[i]) / self._x_scale[i]

    def _rows(self, u, xs):
        """Input rows ``[u_j, xs_(j+1)]``: each modelled value with the covariates of the
        step it helps predict; ``xs`` (from :meth:`_scaled_covariates` over the same times
        as ``u``) must reach one step past the last ``u``."""
        if xs is None:
            return u
        return np.concatenate([u, xs[1:1 + u.shape[0]]], axis=1)

    def _targets(self, u):
        """Per row ``j`` the next ``horizon_`` values ``u_(j+1..j+hd)`` flattened, for the
        rows that have them."""
        hd = self.horizon_ if self.strategy == "direct" else 1
        n = u.shape[0] - hd
        return np.concatenate([u[1 + d:1 + d + n] for d in range(hd)], axis=1)

    # ------------------------------------------------------------------ fit
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, y, X=None):
        """Fit the forecaster to the series ``y`` (and covariates ``X``).

        Parameters
        ----------
        y : array-like of shape (T,) or (T, k), pandas Series or DataFrame, or a list of them
            The observed series, oldest first, without missing values (fill them first). A
            list of series fits one global network over all of them (each scaled on its
            own); then ``predict`` returns a list. A pandas input with a regular
            ``DatetimeIndex``/``PeriodIndex`` (or an evenly spaced integer index) gets its
            forecasts on the future index.
        X : array-like of shape (T, m), pandas DataFrame, or a list of them, optional
            Exogenous covariates known for the past and the future, one row per
            observation.

        Returns
        -------
        self : RNNForecaster
        """
        series, was_list = _series_list(y, X)
        self._was_list = was_list
        self.n_series_ = len(series)
        self.n_channels_ = series[0].y.shape[1]
        self.n_covariates_ = 0 if series[0].X is None else series[0].X.shape[1]
        min_length = min(len(s.y) for s in series)
        self.seasonal_period_ = self._detect_period(series)
        self.lookback_ = self._choose_lookback(self.seasonal_period_, min_length)
        self.horizon_ = (max(self.seasonal_period_, 8) if self.horizon == "auto"
                         else int(self.horizon))
        hd = self.horizon_ if self.strategy == "direct" else 1
        lag = 1 if self.difference == "auto" else int(self.difference)
        need = self.lookback_ + hd + lag
        for i, s in enumerate(series):
            if len(s.y) < need:
                where = f"y[{i}]" if was_list else "y"
                raise ValueError(
                    f"{where} has {len(s.y)} observations, fewer than lookback + {hd + lag} = "
                    f"{need} needed to train on one window (lookback={self.lookback_}); pass "
                    "a longer series or a smaller lookback")
        # forecast errors are measured in units of each channel's step-to-step variation,
        # whatever the network models
        self._e_scale = [_positive_scale(np.diff(s.y, axis=0).std(axis=0)) for s in series]
        self._history = series
        self.device_ = resolve_device(self.device)
        rng = check_random_state(self.random_state)
        # per network of the ensemble: the seeds of its weights and of its shuffling
        seeds = [(rng.randint(np.iinfo(np.int32).max), rng.randint(np.iinfo(np.int32).max))
                 for _ in range(self.n_ensemble)]

        holdout = self._holdout_sizes(series, lag)
        self.calibrated_on_ = "holdout" if any(v > 0 for v in holdout) else "in-sample"
        self.difference_scores_ = {}
        if self.calibrated_on_ == "holdout":
            cut = [_Series(s.y[:len(s.y) - v], None if s.X is None else s.X[:len(s.y) - v],
                           s.meta) for s, v in zip(series, holdout)]
            # the first half of the held-out part stops training and picks the candidate,
            # the second half calibrates the intervals: errors on the data that chose the
            # network would make them too narrow (85% of the truth in 90% intervals,
            # against 91% so, on the development splits)
            late = [v - v // 2 for v in holdout]
            validation = ([_Series(s.y[:len(s.y) - b], None if s.X is None else
                                   s.X[:len(s.y) - b], s.meta) for s, b in zip(series, late)],
                          [v // 2 for v in holdout])
            calibration = (series, late)
            trials = []
            for lag, log in self._candidates(series):
                self._set_mode(lag, series, log)
                runs = []
                for init_seed, shuffle_seed in seeds:
                    model, trainer = self._train(cut, init_seed, shuffle_seed,
                                                 validation=validation)
                    best = max(1, int(np.argmax(trainer.validation_scores_)) + 1)
                    runs.append((_Member.of(self, model), best, init_seed, shuffle_seed,
                                 self._origin_errors(model, *validation),
                                 self._origin_errors(model, *calibration)))
                # the networks of one lag forecast together: their mean is scored
                held_out = np.mean([run[4] for run in runs], axis=0)
                trials.append((runs[0][0].name, runs, float(np.nanmean(held_out ** 2)),
                               np.mean([run[5] for run in runs], axis=0)))
            period = self.seasonal_period_
            if self.naive_candidate and all(len(s.y) - v >= period
                                            for s, v in zip(series, holdout)):
                naive = _Member.naive(period, self.n_series_, self.n_channels_,
                                      self.n_covariates_)
                held_out = self._naive_errors(period, *validation)
                trials.append((naive.name, [(naive, None, None, None, held_out, None)],
                               float(np.nanmean(held_out ** 2)),
                               self._naive_errors(period, *calibration)))
            mse = np.array([trial[2] for trial in trials])
            weights = _combination_weights(mse)
            self.candidate_scores_ = {trial[0]: float(v) for trial, v in zip(trials, mse)}
            self.difference_scores_ = {runs[0][0].difference: v for (_, runs, v, _) in trials
                                       if runs[0][0].model is not None
                                       and not runs[0][0].log}
            errors = sum(w * trial[3] for trial, w in zip(trials, weights) if w > 0)
            members, epochs, trainers = [], [], []
            for (_, runs, _, _), weight in zip(trials, weights):
                if weight == 0:
                    continue
                for member, n_epochs, init_seed, shuffle_seed, _, _ in runs:
                    member.weight = float(weight) / len(runs)
                    if self.refit and member.model is not None:
                        self._activate(member)
                        member.model, trainer = self._train(series, init_seed, shuffle_seed,
                                                            epochs=n_epochs)
                        trainers.append(trainer)
                    members.append(member)
                    epochs.append(n_epochs)
        else:
            self.candidate_scores_ = {}
            self._set_mode(self._fallback_difference(series), series,
                           self._log_candidates(series)[0] if self.transform == "log"
                           else False)
            members, trainers, epochs, errors = [], [], [], 0.0
            for init_seed, shuffle_seed in seeds:
                model, trainer = self._train(series, init_seed, shuffle_seed)
                members.append(_Member.of(self, model, 1.0 / len(seeds)))
                trainers.append(trainer)
                epochs.append(None)
                errors = errors + self._origin_errors(model, series, None) / len(seeds)
        self._members = members
        self._summarize_members()
        main = self._main_member()
        self.validation_epochs_ = epochs[main]
        self.n_iter_, self.loss_curve_ = 0, []
        if trainers:
            # trainers are in the order of the refitted networks
            nets = [j for j, m in enumerate(members) if m.model is not None]
            if main in nets:
                trainer = trainers[nets.index(main)]
                self.n_iter_, self.loss_curve_ = trainer.n_iter_, list(trainer.loss_curve_)
        self._calibrate(errors)
        return self

    def _main_member(self):
        """The index of the heaviest network (of the heaviest member where none is a
        network), activated: the transform attributes describe it."""
        weights = [m.weight if m.model is not None else -1.0 for m in self._members]
        main = int(np.argmax(weights))
        self._activate(self._members[main])
        return main

    def _summarize_members(self):
        """``candidate_weights_``, ``difference_weights_`` and ``log_weight_`` from the
        members."""
        self.candidate_weights_, self.difference_weights_ = {}, {}
        for m in self._members:
            self.candidate_weights_[m.name] = self.candidate_weights_.get(m.name, 0.0) + m.weight
            if m.model is not None:
                self.difference_weights_[m.difference] = self.difference_weights_.get(
                    m.difference, 0.0) + m.weight
        self.log_weight_ = float(sum(m.weight for m in self._members
                                     if m.model is not None and m.log))

    def _naive_errors(self, period, series, holdout):
        """The seasonal naive forecast's errors (N, H, k) from the origins in each series'
        held-out tail (``holdout[i]`` last observations), in the order and units of
        :meth:`_origin_errors`."""
        H, k = self.horizon_, self.n_channels_
        out = []
        for i, s in enumerate(series):
            n = len(s.y)
            v = holdout[i]
            if v <= 0:
                continue
            for origin in range(n - v - 1, n - 1):
                steps = min(H, n - 1 - origin)
                e = np.full((H, k), np.nan)
                e[:steps] = (s.y[origin + 1:origin + 1 + steps]
                             - _seasonal_naive(s.y, origin, period, steps)) / self._e_scale[i]
                out.append(e)
        return np.stack(out) if out else np.empty((0, H, k))

    def _set_mode(self, difference, series, log=False):
        """Model levels (0) or differences at lag ``difference`` (of the logarithm with
        ``log``) from now on, with the scaling that goes with it."""
        self.difference_ = int(difference)
        self._log = bool(log)
        scalings = [self._scaling_of(s) for s in series]
        self._y_center = [c for c, _, _, _ in scalings]
        self._y_scale = [s for _, s, _, _ in scalings]
        self._x_center = [c for _, _, c, _ in scalings]
        self._x_scale = [s for _, _, _, s in scalings]

    def _activate(self, member):
        """Transform as ``member`` does and forecast with its network from now on (the
        transform methods read the active member's lag and scaling)."""
        self.difference_ = member.difference
        self._log = member.log
        self._y_center, self._y_scale = member.y_center, member.y_scale
        self._x_center, self._x_scale = member.x_center, member.x_scale
        self._model = member.model

    def _holdout_sizes(self, series, lag):
        """Observations of each series held out to stop the first network and calibrate the
        intervals (0 where the series is too short to spare them)."""
        if self.validation_fraction == 0:
            return [0] * len(series)
        hd = self.horizon_ if self.strategy == "direct" else 1
        sizes = []
        for s in series:
            n = len(s.y)
            # what stays must hold as many training windows as a window has steps
            room = n - (2 * self.lookback_ + hd + lag)
            v = min(max(int(round(self.validation_fraction * n)), 2), room)
            sizes.append(v if v >= 2 else 0)
        return sizes

    def _windows(self, series):
        """:class:`SequenceData` of every training window of every series."""
        L = self.lookback_
        Xw, Yw = [], []
        for i, s in enumerate(series):
            u = self._transformed(s.y, i)
            targets = self._targets(u)
            rows = self._rows(u[:len(targets)], self._scaled_covariates(s.X, i))
            starts = np.arange(targets.shape[0] - L + 1)
            Xw.append(np.stack([rows[j:j + L] for j in starts]))
            Yw.append(np.stack([targets[j:j + L] for j in starts]))
        X = np.concatenate(Xw)
        Y = np.concatenate(Yw)
        if len(X) > MAX_WINDOWS:
            keep = np.unique(np.linspace(len(X) - 1, 0, MAX_WINDOWS).round().astype(int))
            X, Y = X[keep], Y[keep]
        dtype = np.dtype(self.dtype)
        n = len(X)
        weights = np.ones((n, L))
        return SequenceData(np.ascontiguousarray(X, dtype=dtype), np.full(n, L, np.int64),
                            np.ascontiguousarray(Y, dtype=dtype), weights, weights.copy())

    def _build_model(self, seed):
        rng = np.random.RandomState(seed)
        sizes = check_hidden_layer_sizes(self.hidden_layer_sizes)
        dtype = np.dtype(self.dtype)
        hd = self.horizon_ if self.strategy == "direct" else 1
        n_in = self.n_channels_ + self.n_covariates_
        seeds = [rng.randint(np.iinfo(np.int32).max) for _ in sizes]
        head = StepHead(sizes[-1], self.n_channels_ * hd, dtype=dtype, random_state=rng)
        recurrent = Recurrent(self.cell, input_size=n_in, hidden_size=list(sizes), dtype=self.dtype,
                              device=self.device_, random_state=np.random.RandomState(
                                  rng.randint(np.iinfo(np.int32).max)))
        recurrent.initialize_layers([np.random.RandomState(s) for s in seeds],
                                    forget_bias=self.forget_bias)
        return SequenceModel(NumericInput(n_in, dtype), recurrent, head)

    def _train(self, series, init_seed, shuffle_seed, validation=None, epochs=None):
        data = self._windows(series)
        model = self._build_model(init_seed)
        optimizer = make_optimizer("adam", [(model.store.size,)],
                                   learning_rate_init=self.learning_rate_init)
        trainer = Trainer(model, SquaredError(), optimizer,
                          batch_size=min(self.batch_size, len(data)),
                          random_state=np.random.RandomState(shuffle_seed),
                          alpha=self.alpha, clip_norm=self.clip_norm, tol=self.tol,
                          n_iter_no_change=self.n_iter_no_change,
                          early_stopping=validation is not None, verbose=self.verbose)
        score = None
        if validation is not None:
            origins = self._origins(*validation)
            score = _ValidationScore(self, origins)
        with warnings.catch_warnings():
            if epochs is not None:
                warnings.simplefilter("ignore", ConvergenceWarning)
            trainer.fit(data, origins if validation is not None else None, score=score,
                        max_epochs=epochs if epochs is not None else self.max_iter)
        model.train(False)
        return model, trainer

    # ------------------------------------------------------------------ rolling origins
    def _origins(self, series, holdout):
        """Forecast origins in each series' held-out tail (``holdout[i]`` last observations;
        None: every origin with a full lookback), batched for :meth:`_rollout`."""
        L, H = self.lookback_, self.horizon_
        offset = self.difference_
        hist, cov, truth, last, mask, owner = [], [], [], [], [], []
        for i, s in enumerate(series):
            n = len(s.y)
            v = holdout[i] if holdout is not None else n - L - offset - 1
            if v <= 0:
                continue
            u = self._transformed(s.y, i)
            # covariates past the end repeat the last row (those steps are not scored)
            xs = None if s.X is None else self._scaled_covariates(
                np.concatenate([s.X, np.repeat(s.X[-1:], H + 1, axis=0)]), i)
            rows = self._rows(u, xs)
            for origin in range(n - v - 1, n - 1):
                j = origin - offset  # the row of u at the origin
                hist.append(rows[j - L + 1:j + 1])
                if xs is not None:
                    cov.append(xs[origin + 1 - offset:origin + 1 - offset + H])
                steps = min(H, n - 1 - origin)
                t = np.full((H, s.y.shape[1]), np.nan)
                t[:steps] = s.y[origin + 1:origin + 1 + steps]
                truth.append(t)
                last.append(s.y[origin - offset + 1:origin + 1])
                mask.append(np.arange(H) < steps)
                owner.append(i)
        if not hist:
            return None
        return _Origins(np.stack(hist), np.stack(cov) if cov else None, np.stack(truth),
                        np.stack(last), np.stack(mask), np.asarray(owner))

    def _rollout(self, model, hist, cov, steps):
        """Scaled forecasts (N, steps, k) from history rows ``hist`` (N, L, F) (the last row
        holds the covariates of step 1) and covariates ``cov`` (N, >= steps, m) of steps
        1.. (scaled; None without covariates): one pass over the history, then one cell
        step per step ahead (a block of ``horizon_`` steps per pass for ``"direct"``)."""
        n, k = hist.shape[0], self.n_channels_
        hd = self.horizon_ if self.strategy == "direct" else 1
        dtype = np.dtype(self.dtype)
        out = np.empty((n, steps, k))
        with model.inference():
            pred, states = model.step(np.ascontiguousarray(hist, dtype=dtype))
            block = pred[:, -1].reshape(n, hd, k)
            done = 0
            while True:
                take = min(hd, steps - done)
                out[:, done:done + take] = block[:, :take]
                done += take
                if done >= steps:
                    break
                rows = block
                if cov is not None:  # each value with the covariates of the next step
                    rows = np.concatenate([block, cov[:, done - hd + 1:done + 1]], axis=2)
                pred, states = model.step(np.ascontiguousarray(rows, dtype=dtype), states)
                block = pred[:, -1].reshape(n, hd, k)
        return out

    def _to_levels(self, scaled, past, owner):
        """Forecasts in the series' units from scaled ones (N, steps, k); ``past``
        (N, difference_, k) holds each origin's last observations, ``owner`` (N,) its
        series."""
        center = np.stack([self._y_center[i] for i in owner])[:, None, :]
        scale = np.stack([self._y_scale[i] for i in owner])[:, None, :]
        values = scaled * scale + center
        lag = self.difference_
        if lag == 0:
            out = values
        else:
            past = self._log_of(past)
            out = np.empty_like(values)
            for j in range(values.shape[1]):
                out[:, j] = (past[:, j] if j < lag else out[:, j - lag]) + values[:, j]
        # the exponential of a forecast of the logarithm: a forecast of the median
        return np.exp(np.minimum(out, 700.0)) if self._log else out

    def _origin_errors(self, model, series, holdout):
        """Forecast errors (N, H, k) in units of each series' scale, NaN where the truth is
        past the end, from the rolling origins of :meth:`_origins`."""
        origins = self._origins(series, holdout)
        if origins is None:
            return np.empty((0, self.horizon_, self.n_channels_))
        scaled = self._rollout(model, origins.hist, origins.cov, self.horizon_)
        levels = self._to_levels(scaled, origins.last, origins.owner)
        scale = np.stack([self._e_scale[i] for i in origins.owner])[:, None, :]
        return (origins.truth - levels) / scale

    # ------------------------------------------------------------------ intervals
    def _calibrate(self, errors):
        """Interval widths per step ahead: ``sigma_h = a * h**b`` per channel fitted to the
        RMS error of each step (weighted by its count), and the standardized absolute
        errors pooled, whose quantile scales ``sigma_h`` at :meth:`predict_interval`."""
        k = self.n_channels_
        H = errors.shape[1]
        a = np.ones(k)
        b = np.full(k, 0.5)
        for c in range(k):
            e = errors[:, :, c]
            count = np.sum(np.isfinite(e), axis=0)
            ok = count > 0
            if not ok.any():
                continue
            rms = np.sqrt(np.nanmean(np.where(np.isfinite(e), e, np.nan)[:, ok] ** 2, axis=0))
            h = np.arange(1, H + 1)[ok]
            good = rms > 0
            if good.sum() >= 2:
                w = count[ok][good]
                A = np.stack([np.ones(good.sum()), np.log(h[good])], axis=1)
                sw = np.sqrt(w)
                coef = np.linalg.lstsq(A * sw[:, None], np.log(rms[good]) * sw, rcond=None)[0]
                b[c] = float(np.clip(coef[1], 0.0, 1.0))
                a[c] = float(np.exp(np.average(np.log(rms[good]) - b[c] * np.log(h[good]),
                                               weights=w)))
            elif good.any():
                a[c] = float(rms[good][0] / h[good][0] ** b[c])
        self._sigma_a, self._sigma_b = a, b
        sigma = a[None, :] * np.arange(1, H + 1)[:, None] ** b[None, :]
        scores = np.abs(errors) / sigma[None]
        self._scores = np.sort(scores[np.isfinite(scores)])

    def _half_width(self, steps, coverage):
        """Half-widths (len(steps), k) in scaled units at ``coverage``."""
        n = self._scores.size
        if n == 0:
            raise ValueError("no calibration errors")
        level = min(1.0, math.ceil((n + 1) * coverage) / n)
        q = float(np.quantile(self._scores, level, method="higher"))
        h = np.asarray(steps, dtype=np.float64)[:, None]
        return q * self._sigma_a[None, :] * h ** self._sigma_b[None, :]

    # ------------------------------------------------------------------ predict
    def _check_future_covariates(self, X, fh_max):
        """Future covariates, one (fh_max, m) array per series, or Nones."""
        m = self.n_covariates_
        if m == 0:
            if X is not None:
                raise ValueError("X was given to predict, but the forecaster was fitted "
                                 "without covariates")
            return [None] * self.n_series_
        if X is None:
            raise ValueError(f"the forecaster was fitted with {m} covariate(s): predict needs "
                             f"X with their values for steps 1..{fh_max} ahead")
        if self._was_list:
            if not isinstance(X, (list, tuple)) or len(X) != self.n_series_:
                raise ValueError(f"X must be a list of {self.n_series_} covariate arrays, one "
                                 "per series")
            Xs = list(X)
        else:
            Xs = [X]
        out = []
        for i, Xi in enumerate(Xs):
            name = f"X[{i}]" if self._was_list else "X"
            if _is_pandas(Xi):
                Xi = Xi.to_numpy(dtype=np.float64, na_value=np.nan)
            Xi = _check_values(Xi, name)
            if Xi.ndim == 1:
                Xi = Xi[:, None]
            if Xi.shape[1] != m:
                raise ValueError(f"{name} has {Xi.shape[1]} columns, the forecaster was "
                                 f"fitted with {m} covariate(s)")
            if Xi.shape[0] < fh_max:
                raise ValueError(f"{name} has {Xi.shape[0]} rows, but forecasting "
                                 f"{fh_max} steps ahead needs the covariates of steps "
                                 f"1..{fh_max}")
            out.append(Xi[:fh_max])
        return out

    def _forecast(self, fh, X):
        """Level forecasts per series, (fh_max, k) each, for steps 1..fh_max: the members'
        forecasts averaged with their weights."""
        steps = int(fh.max())
        future = self._check_future_covariates(X, steps)
        active = self._model
        total = 0.0
        try:
            for member in self._members:
                self._activate(member)
                total = total + member.weight * self._member_forecast(steps, future)
        finally:
            self._activate(next(m for m in self._members if m.model is active))
        return total

    def _member_forecast(self, steps, future):
        """The active member's level forecasts (n_series, steps, k)."""
        L, offset = self.lookback_, self.difference_
        if self._model is None:
            return np.stack([_seasonal_naive(s.y, len(s.y) - 1, offset, steps)
                             for s in self._history])
        hist, cov, last = [], [], []
        for i, s in enumerate(self._history):
            u = self._transformed(s.y[-(L + offset):], i)
            xs = None
            if s.X is not None:
                # from the time of the first value used to the last step ahead
                xs = self._scaled_covariates(
                    np.concatenate([s.X[-(L + offset):], future[i]]), i)
                cov.append(xs[L:L + steps])
            hist.append(self._rows(u, xs))
            last.append(s.y[len(s.y) - offset:])
        owner = np.arange(self.n_series_)
        scaled = self._rollout(self._model, np.stack(hist), np.stack(cov) if cov else None,
                               steps)
        return self._to_levels(scaled, np.stack(last), owner)

    def predict(self, fh, X=None):
        """Forecast the steps ``fh`` ahead of the last observation.

        Parameters
        ----------
        fh : int or array-like of int
            ``h``: the next ``h`` steps; an array-like: those steps ahead (positive ints).
        X : array-like of shape (>= max(fh), m), optional
            The covariates of steps ``1..max(fh)`` ahead (a list, one per series, for a
            list fit); required when the forecaster was fitted with covariates.

        Returns
        -------
        ndarray of shape (len(fh),) or (len(fh), k), pandas Series/DataFrame, or a list
            Shaped as ``y`` was: 1-D for a 1-D series, pandas on the future index for a
            pandas series with a regular index, a list for a list of series.
        """
        check_is_fitted(self, "_model")
        fh = check_fh(fh)
        levels = self._forecast(fh, X)
        return self._wrap([lv[fh - 1] for lv in levels], fh)

    def predict_interval(self, fh, X=None, coverage=0.9):
        """Prediction intervals at ``coverage`` around :meth:`predict`'s forecast.

        The half-width at ``h`` steps ahead is ``q * sigma_h``: ``sigma_h = a * h**b``
        (per channel) fitted to the root mean squared forecast error of every step ahead
        over the held-out origins, and ``q`` the conformal quantile at ``coverage`` of the
        absolute errors divided by ``sigma_h``, pooled over steps and origins. The
        intervals widen with the horizon as the held-out errors did.

        Parameters
        ----------
        fh, X
            As :meth:`predict`.
        coverage : float in (0, 1), default=0.9
            The share of future values the interval should hold.

        Returns
        -------
        lower, upper
            Each shaped as :meth:`predict`'s result.
        """
        check_is_fitted(self, "_model")
        fh = check_fh(fh)
        if (isinstance(coverage, bool) or not isinstance(coverage, numbers.Real)
                or not 0 < coverage < 1):
            raise ValueError(f"coverage must be a number in (0, 1), got {coverage!r}")
        levels = self._forecast(fh, X)
        half = self._half_width(fh, coverage)
        lower = [lv[fh - 1] - half * self._e_scale[i] for i, lv in enumerate(levels)]
        upper = [lv[fh - 1] + half * self._e_scale[i] for i, lv in enumerate(levels)]
        return self._wrap(lower, fh), self._wrap(upper, fh)

    def update(self, y_new, X_new=None):
        """Append new observations: the forecast origin moves to the last of them.

        The network is not refitted: later forecasts start from the new observations, with
        the weights, scaling and interval calibration of the last :meth:`fit`.

        Parameters
        ----------
        y_new : array-like of shape (n,) or (n, k), pandas Series or DataFrame
            The observations that follow the series' last one (a list of such arrays, one
            per series, for a forecaster fitted on a list; None entries add nothing). A
            pandas index must continue the fitted one.
        X_new : array-like of shape (n, m), optional
            The covariates of those observations: required when the forecaster was fitted
            with covariates.

        Returns
        -------
        self : RNNForecaster
        """
        check_is_fitted(self, "_model")
        if self._was_list:
            if not _is_series_list(y_new) and not (
                    isinstance(y_new, (list, tuple)) and len(y_new) == self.n_series_):
                raise ValueError(f"the forecaster was fitted on a list of {self.n_series_} "
                                 "series: y_new must be a list of as many arrays (None for "
                                 "a series without new observations)")
            ys = list(y_new)
            if len(ys) != self.n_series_:
                raise ValueError(f"y_new has {len(ys)} series, the forecaster was fitted on "
                                 f"{self.n_series_}")
            if X_new is not None and (not isinstance(X_new, (list, tuple))
                                      or len(X_new) != self.n_series_):
                raise ValueError(f"X_new must be a list of {self.n_series_} covariate arrays")
            Xs = list(X_new) if X_new is not None else [None] * self.n_series_
        else:
            if y_new is None:
                raise ValueError("y_new is required; got None")
            ys, Xs = [y_new], [X_new]
        updates = []
        for i, (yi, Xi) in enumerate(zip(ys, Xs)):
            name = f"y_new[{i}]" if self._was_list else "y_new"
            xname = f"X_new[{i}]" if self._was_list else "X_new"
            if yi is None:
                if Xi is not None:
                    raise ValueError(f"{xname} is given without observations in {name}")
                updates.append(None)
                continue
            hist = self._history[i]
            values, meta = _one_series(yi, name)
            if values.shape[1] != self.n_channels_:
                raise ValueError(f"{name} has {values.shape[1]} channel(s) per step, the "
                                 f"forecaster was fitted on k={self.n_channels_}")
            if self.n_covariates_ == 0 and Xi is not None:
                raise ValueError(f"{xname} was given, but the forecaster was fitted without "
                                 "covariates")
            if self.n_covariates_ and Xi is None:
                raise ValueError(f"the forecaster was fitted with {self.n_covariates_} "
                                 f"covariate(s): update needs {xname} for the new "
                                 "observations")
            cov = _covariates(Xi, values.shape[0], xname)
            if cov is not None and cov.shape[1] != self.n_covariates_:
                raise ValueError(f"{xname} has {cov.shape[1]} columns, the forecaster was "
                                 f"fitted with {self.n_covariates_} covariate(s)")
            if hist.meta.get("index") is not None and _is_pandas(yi) and len(yi.index):
                expected = _future_index(hist.meta, [1])[0]
                if yi.index[0] != expected:
                    raise ValueError(f"{name} starts at {yi.index[0]}, but the series' next "
                                     f"observation is at {expected}")
            updates.append((values, cov))
        for i, upd in enumerate(updates):
            if upd is None:
                continue
            values, cov = upd
            hist = self._history[i]
            X = None if hist.X is None else np.concatenate([hist.X, cov])
            self._history[i] = _Series(np.concatenate([hist.y, values]), X,
                                       _advance_meta(hist.meta, len(values)))
        return self

    def _wrap(self, values, fh):
        out = []
        for s, v in zip(self._history, values):
            meta = s.meta
            if meta["ndim"] == 1:
                v = v[:, 0]
            if meta["kind"] != "array" and meta.get("index") is not None:
                import pandas as pd
                index = _future_index(meta, fh)
                if meta["kind"] == "frame":
                    v = pd.DataFrame(v, index=index, columns=meta["columns"])
                else:
                    v = pd.Series(v, index=index, name=meta.get("name"))
            out.append(v)
        return out if self._was_list else out[0]

    # ------------------------------------------------------------------ persistence
    def save(self, path):
        """Write the fitted forecaster (network, history, scaling, calibration) to one
        ``.npz`` file (no pickle); read it back with :func:`rnnumba.load`."""
        check_is_fitted(self, "_model")
        persistence.write_archive(path, *self._to_archive())

    def _to_archive(self):
        """``(class name, params, fitted, arrays)`` for :mod:`rnnumba.persistence`."""
        fitted = {name: getattr(self, name) for name in _FITTED_INTS}
        fitted.update(device_=self.device_, calibrated_on_=self.calibrated_on_,
                      was_list=bool(self._was_list), validation_epochs_=self.validation_epochs_,
                      series_meta=json.dumps([s.meta for s in self._history]),
                      candidate_scores=json.dumps(self.candidate_scores_),
                      member_differences=tuple(m.difference for m in self._members),
                      member_weights=tuple(m.weight for m in self._members),
                      member_logs=tuple(m.log for m in self._members),
                      member_networks=tuple(m.model is not None for m in self._members))
        arrays = {}
        for j, member in enumerate(self._members):
            if member.model is not None:
                for name, value in member.model.state_dict().items():
                    arrays[f"model/{j}/{name}"] = value
            for i in range(self.n_series_):
                arrays[f"scaling/{j}/y_center{i}"] = member.y_center[i]
                arrays[f"scaling/{j}/y_scale{i}"] = member.y_scale[i]
                if self.n_covariates_:
                    arrays[f"scaling/{j}/x_center{i}"] = member.x_center[i]
                    arrays[f"scaling/{j}/x_scale{i}"] = member.x_scale[i]
        for i, s in enumerate(self._history):
            arrays[f"history/y{i}"] = s.y
            if s.X is not None:
                arrays[f"history/X{i}"] = s.X
            arrays[f"scaling/e_scale{i}"] = self._e_scale[i]
        arrays["calibration/sigma_a"] = self._sigma_a
        arrays["calibration/sigma_b"] = self._sigma_b
        arrays["calibration/scores"] = self._scores
        arrays["loss_curve_"] = np.asarray(self.loss_curve_, dtype=np.float64)
        arrays["difference_scores_"] = np.array(sorted(self.difference_scores_.items()),
                                                dtype=np.float64).reshape(-1, 2)
        return type(self).__name__, self.get_params(deep=False), fitted, arrays

    @classmethod
    def _from_archive(cls, params, fitted, arrays):
        """The forecaster :meth:`_to_archive` described (checked: a corrupt file is a
        ``ValueError``)."""
        est = persistence.estimator_from_params(cls, params)
        persistence.set_fitted_counts(est, fitted, _FITTED_INTS)
        if min(est.n_series_, est.n_channels_, est.lookback_, est.horizon_,
               est.seasonal_period_) < 1:
            raise ValueError("the file describes a forecaster without series, channels, "
                             "lookback or horizon")
        if not isinstance(fitted.get("was_list"), bool):
            raise ValueError("fitted attribute was_list must be a bool")
        est._was_list = fitted["was_list"]
        if fitted.get("device_") not in ("cpu", "cuda"):
            raise ValueError(f"unknown device_ {fitted.get('device_')!r} in file")
        est.device_ = runnable_device(fitted["device_"])
        if fitted.get("calibrated_on_") not in ("holdout", "in-sample"):
            raise ValueError("unknown calibrated_on_ in file")
        est.calibrated_on_ = fitted["calibrated_on_"]
        epochs = fitted.get("validation_epochs_")
        if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, int)
                                   or epochs < 1):
            raise ValueError("validation_epochs_ must be a positive int")
        est.validation_epochs_ = epochs
        lags, weights = fitted.get("member_differences"), fitted.get("member_weights")
        if (not isinstance(lags, tuple) or not isinstance(weights, tuple) or not lags
                or len(lags) != len(weights)
                or any(isinstance(d, bool) or not isinstance(d, int) or d < 0 for d in lags)
                or any(not isinstance(w, float) or not 0 < w <= 1 for w in weights)):
            raise ValueError("the file's member_differences and member_weights do not "
                             "describe the networks")
        # files written before the log transform and the naive candidate: networks only
        logs = fitted.get("member_logs", (False,) * len(lags))
        networks = fitted.get("member_networks", (True,) * len(lags))
        if (not isinstance(logs, tuple) or not isinstance(networks, tuple)
                or len(logs) != len(lags) or len(networks) != len(lags)
                or not all(isinstance(v, bool) for v in logs + networks)):
            raise ValueError("the file's member_logs and member_networks do not describe the "
                             "networks")
        try:
            metas = json.loads(fitted.get("series_meta"))
        except (TypeError, ValueError):
            raise ValueError("series_meta in the file is not valid JSON") from None
        if not isinstance(metas, list) or len(metas) != est.n_series_ or not all(
                isinstance(m, dict) and m.get("ndim") in (1, 2) for m in metas):
            raise ValueError("series_meta in the file does not describe the series")
        k, m = est.n_channels_, est.n_covariates_
        est._history, est._e_scale = [], []
        for i, meta in enumerate(metas):
            y = _stored(arrays, f"history/y{i}", (None, k))
            X = _stored(arrays, f"history/X{i}", (len(y), m)) if m else None
            est._history.append(_Series(y, X, meta))
            est._e_scale.append(_stored(arrays, f"scaling/e_scale{i}", (k,), positive=True))
        est._members = []
        for j, (lag, weight, log, network) in enumerate(zip(lags, weights, logs, networks)):
            def series_arrays(name, width, positive=False):
                return [_stored(arrays, f"scaling/{j}/{name}{i}", (width,), positive)
                        for i in range(est.n_series_)]
            x_center = series_arrays("x_center", m) if m else [None] * est.n_series_
            x_scale = series_arrays("x_scale", m, True) if m else [None] * est.n_series_
            est._members.append(_Member(lag, series_arrays("y_center", k),
                                        series_arrays("y_scale", k, True), x_center, x_scale,
                                        None, weight, log))
            if not network:
                continue
            est._activate(est._members[-1])
            model = est._build_model(0)
            prefix = f"model/{j}/"
            model.load_state_dict({name[len(prefix):]: value for name, value in arrays.items()
                                   if name.startswith(prefix)})
            model.train(False)
            est._members[-1].model = model
        main = est._main_member()
        if est.difference_ != lags[main]:
            raise ValueError("difference_ does not match the file's heaviest network")
        est._summarize_members()
        est._sigma_a = _stored(arrays, "calibration/sigma_a", (k,), positive=True)
        est._sigma_b = _stored(arrays, "calibration/sigma_b", (k,))
        est._scores = _stored(arrays, "calibration/scores", (None,))
        est.loss_curve_ = [float(v) for v in persistence.float_array(arrays, "loss_curve_")]
        scores = arrays.get("difference_scores_", np.empty((0, 2)))
        if scores.ndim != 2 or scores.shape[1] != 2 or not np.isfinite(scores).all():
            raise ValueError("difference_scores_ in the file is malformed")
        est.difference_scores_ = {int(lag): float(v) for lag, v in scores}
        try:
            candidate_scores = json.loads(fitted.get("candidate_scores", "{}"))
        except (TypeError, ValueError):
            raise ValueError("candidate_scores in the file is not valid JSON") from None
        if not isinstance(candidate_scores, dict) or not all(
                isinstance(v, (int, float)) for v in candidate_scores.values()):
            raise ValueError("candidate_scores in the file does not map names to scores")
        est.candidate_scores_ = {str(name): float(v) for name, v in candidate_scores.items()}
        return est


def _stored(arrays, name, shape, positive=False):
    """A finite float64 array of the file, checked against ``shape`` (None: any length)."""
    value = arrays.get(name)
    if (value is None or value.dtype.kind not in "fiu" or value.ndim != len(shape)
            or any(want is not None and got != want for got, want in zip(value.shape, shape))
            or not np.isfinite(value).all() or (positive and (value <= 0).any())):
        raise ValueError(f"{name} in the file is missing or malformed (shape {shape} of "
                         f"finite{' positive' if positive else ''} numbers expected)")
    return value.astype(np.float64)


class _Member:
    """One candidate forecast of the forecaster and its weight: a network with the transform
    it models (logarithm or not, difference lag, the scaling of every series), or, with
    ``model`` None, the seasonal naive forecast (``difference`` is its period)."""

    __slots__ = ("difference", "log", "y_center", "y_scale", "x_center", "x_scale", "model",
                 "weight")

    def __init__(self, difference, y_center, y_scale, x_center, x_scale, model, weight=1.0,
                 log=False):
        self.difference = int(difference)
        self.log = bool(log)
        self.y_center, self.y_scale = y_center, y_scale
        self.x_center, self.x_scale = x_center, x_scale
        self.model, self.weight = model, weight

    @classmethod
    def of(cls, forecaster, model, weight=1.0):
        """The forecaster's current transform with ``model``."""
        return cls(forecaster.difference_, forecaster._y_center, forecaster._y_scale,
                   forecaster._x_center, forecaster._x_scale, model, weight, forecaster._log)

    @classmethod
    def naive(cls, period, n_series, k, m, weight=1.0):
        """The seasonal naive forecast of ``period`` (no network, identity scaling)."""
        return cls(period, [np.zeros(k)] * n_series, [np.ones(k)] * n_series,
                   [np.zeros(m)] * n_series if m else [None] * n_series,
                   [np.ones(m)] * n_series if m else [None] * n_series, None, weight)

    @property
    def name(self):
        """How the candidate is called in ``candidate_weights_``."""
        if self.model is None:
            return "seasonal naive" if self.difference > 1 else "naive"
        what = "levels" if self.difference == 0 else (
            "differences" if self.difference == 1 else f"differences at lag {self.difference}")
        return f"log {what}" if self.log else what


def _combination_weights(mse):
    """Weights of the candidates from their held-out mean squared errors:
    ``(min(mse) / mse) ** COMBINATION_POWER``, normalised, those under 5% dropped."""
    weights = (np.min(mse) / np.maximum(mse, 1e-300)) ** COMBINATION_POWER
    weights = weights / weights.sum()
    weights[weights < 0.05] = 0.0
    return weights / weights.sum()


class _Origins:
    """Forecast origins batched for :meth:`RNNForecaster._rollout`."""

    __slots__ = ("hist", "cov", "truth", "last", "mask", "owner")

    def __init__(self, hist, cov, truth, last, mask, owner):
        self.hist, self.cov, self.truth = hist, cov, truth
        self.last, self.mask, self.owner = last, mask, owner


class _ValidationScore:
    """The early-stopping score: minus the mean squared multi-step forecast error over the
    held-out origins, in units of each series' scale."""

    def __init__(self, forecaster, origins):
        self.forecaster = forecaster

    def __call__(self, model, origins):
        f = self.forecaster
        scaled = f._rollout(model, origins.hist, origins.cov, f.horizon_)
        levels = f._to_levels(scaled, origins.last, origins.owner)
        scale = np.stack([f._e_scale[i] for i in origins.owner])[:, None, :]
        err = ((origins.truth - levels) / scale)[origins.mask]
        return -float(np.mean(err ** 2))


def _lagged_difference(y, lag):
    """``y[t] - y[t - lag]`` for ``t >= lag`` (``lag`` 0: ``y`` itself)."""
    return y if lag == 0 else y[lag:] - y[:-lag]


def _seasonal_naive(y, origin, period, steps):
    """The seasonal naive forecast (steps, k) of ``y`` from ``origin`` (the index of the last
    observation it sees): the last ``period`` observations repeated."""
    return y[origin + 1 - period + np.arange(steps) % period]


def _positive_scale(scale):
    """Scales with 1 where a channel is constant."""
    scale = np.asarray(scale, dtype=np.float64)
    return np.where(scale > 1e-12, scale, 1.0)


def _trending(values):
    """Whether a series looks non-stationary: a KPSS-style level-stationarity statistic
    above its 5% critical value (0.463)."""
    x = np.asarray(values, dtype=np.float64)
    n = x.shape[0]
    if n < 10:
        return False
    e = x - x.mean()
    s = np.cumsum(e)
    lags = int(math.floor(4 * (n / 100.0) ** 0.25))
    gamma0 = float(e @ e) / n
    var = gamma0
    for lag in range(1, lags + 1):
        w = 1.0 - lag / (lags + 1.0)
        var += 2.0 * w * float(e[lag:] @ e[:-lag]) / n
    if var <= 0:
        return False
    stat = float(s @ s) / (n * n * var)
    return stat > 0.463


# --------------------------------------------------------------------------- backtesting


def backtest(forecaster, y, X=None, *, fh=1, initial=None, step=1, refit=False,
             coverage=None):
    """Rolling-origin evaluation of a forecaster on one series: errors per step ahead.

    The forecaster (a clone: the one passed is left as it is) is fitted on the first
    ``initial`` observations and forecasts ``fh`` from there; the origin then moves
    ``step`` observations on, either by :meth:`RNNForecaster.update` (``refit=False``: one
    fit, the deployment setting) or by fitting a fresh clone on everything up to the
    origin (``refit=True``: one fit per origin), until no step ahead is left to score.

    Parameters
    ----------
    forecaster : RNNForecaster
        Or any estimator with ``fit(y, X)``, ``predict(fh, X)``, ``update(y, X)`` and, with
        ``coverage``, ``predict_interval(fh, X, coverage)``.
    y : array-like of shape (T,) or (T, k), pandas Series or DataFrame
        One series (its values are used; pandas indices are not needed).
    X : array-like of shape (T, m), optional
        Covariates of every observation; each forecast is given the true future ones.
    fh : int or array-like of int, default=1
        Steps ahead to score, as :meth:`RNNForecaster.predict` takes them.
    initial : int, optional
        Observations in the first fit; by default half the series.
    step : int, default=1
        Observations between consecutive origins.
    refit : bool, default=False
        Refit at every origin instead of updating.
    coverage : float in (0, 1), optional
        Also compute prediction intervals at this coverage and how often they hold the
        truth.

    Returns
    -------
    dict
        ``"origins"`` (n_origins,): index of the last observation each forecast saw;
        ``"fh"`` (h,); ``"y_true"``, ``"y_pred"``, ``"errors"`` (``y_true - y_pred``) of
        shape (n_origins, h) or (n_origins, h, k), NaN where the step lies past the end;
        ``"mae"``, ``"rmse"``, ``"n"`` (the number of scored forecasts) per step ahead,
        shape (h,) or (h, k); with ``coverage`` also ``"lower"``, ``"upper"`` and
        ``"coverage"`` (per step ahead, the fraction of the truth inside the interval).
    """
    from sklearn.base import clone
    values, _ = _one_series(y, "y")
    one_d = np.ndim(y) == 1 if not _is_pandas(y) else y.ndim == 1
    cov = _covariates(X, values.shape[0], "X")
    fh = check_fh(fh)
    h_max = int(fh.max())
    n = values.shape[0]
    if initial is None:
        initial = n // 2
    if isinstance(initial, bool) or not isinstance(initial, numbers.Integral) or \
            not 1 <= initial < n:
        raise ValueError(f"initial must be an int in [1, {n - 1}] (observations in the first "
                         f"fit), got {initial!r}")
    if isinstance(step, bool) or not isinstance(step, numbers.Integral) or step < 1:
        raise ValueError(f"step must be a positive int, got {step!r}")
    if coverage is not None and (isinstance(coverage, bool) or not isinstance(
            coverage, numbers.Real) or not 0 < coverage < 1):
        raise ValueError(f"coverage must be a number in (0, 1), got {coverage!r}")

    def part(array, stop, start=0):
        if array is None:
            return None
        chunk = array[start:stop]
        return chunk[:, 0] if one_d and array is values else chunk

    def future(origin):
        if cov is None:
            return None
        rows = cov[origin + 1:origin + 1 + h_max]
        if len(rows) < h_max:  # past the end: not scored, any values do
            rows = np.concatenate([rows, np.repeat(cov[-1:], h_max - len(rows), axis=0)])
        return rows

    origins = np.arange(initial - 1, n - 1, step)
    k = values.shape[1]
    shape = (len(origins), len(fh), k)
    y_true, y_pred = np.full(shape, np.nan), np.full(shape, np.nan)
    lower, upper = np.full(shape, np.nan), np.full(shape, np.nan)
    model = None
    seen = 0
    for r, origin in enumerate(origins):
        if model is None or refit:
            model = clone(forecaster).fit(part(values, origin + 1), part(cov, origin + 1))
        elif origin + 1 > seen:
            model.update(part(values, origin + 1, seen), part(cov, origin + 1, seen))
        seen = origin + 1
        pred = np.asarray(model.predict(fh, future(origin)), dtype=np.float64)
        y_pred[r] = pred.reshape(len(fh), k)
        if coverage is not None:
            lo, up = model.predict_interval(fh, future(origin), coverage=coverage)
            lower[r] = np.asarray(lo, dtype=np.float64).reshape(len(fh), k)
            upper[r] = np.asarray(up, dtype=np.float64).reshape(len(fh), k)
        inside = origin + fh <= n - 1
        y_true[r, inside] = values[origin + fh[inside]]
    errors = y_true - y_pred
    scored = np.isfinite(errors)
    count = scored.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        result = {
            "origins": origins, "fh": fh, "y_true": y_true, "y_pred": y_pred,
            "errors": errors, "n": count,
            "mae": np.nansum(np.abs(errors), axis=0) / np.where(count, count, np.nan),
            "rmse": np.sqrt(np.nansum(errors ** 2, axis=0) / np.where(count, count, np.nan)),
        }
        if coverage is not None:
            hit = (y_true >= lower) & (y_true <= upper)
            result.update(lower=lower, upper=upper, coverage=np.where(
                count, np.sum(hit & scored, axis=0) / np.where(count, count, 1), np.nan))
    if one_d:
        for key in ("y_true", "y_pred", "errors", "lower", "upper"):
            if key in result:
                result[key] = result[key][:, :, 0]
        for key in ("mae", "rmse", "n", "coverage"):
            if key in result:
                result[key] = result[key][:, 0]
    return result
