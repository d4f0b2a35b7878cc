"""The forecasting suite: ``RNNForecaster`` with only ``random_state`` set against seasonal
naive and ETS.

For every series of :mod:`benchmarks.realdata.datasets` (monthly, quarterly and yearly
series that ship with sktime and statsmodels, seasonal and not, two with covariates) this
fits ``RNNForecaster(random_state=seed)`` on all but the last ``h`` observations, forecasts
those ``h`` steps with a 90% interval, and scores the forecast by MASE (the mean absolute
error over the in-sample MAE of the seasonal naive forecast of period ``m``) and the
interval by its coverage. The anchors run on the same split: seasonal naive (with its
normal-theory interval) and statsmodels' damped-trend additive ETS (seasonal where
``m > 1``). It also times ``predict`` of 100 steps (one pass over the history, then one cell
step per step ahead) against re-running the network over a rebuilt window for every step.

Usage::

    pip install statsmodels==0.15.0 && pip install --no-deps sktime==1.2.0
    python benchmarks/forecast_suite.py                   # the table (a few minutes)
    python benchmarks/forecast_suite.py --seeds 3         # mean over seeds 0, 1, 2
    python benchmarks/forecast_suite.py --split dev       # the development split
    python benchmarks/forecast_suite.py --set hidden_layer_sizes="(64,)" --only airline

``--split dev`` scores the ``h`` observations before the held-out tail instead (the tail is
not used at all), ``--split dev2`` the ``h`` before those: the splits on which the defaults
were chosen. Raw results go to ``benchmarks/results/<UTC time>-forecast-<machine>.json``.
"""

import argparse
import json
import os
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.realdata import anchors, records  # noqa: E402
from benchmarks.realdata.datasets import FORECAST_DATASETS, forecast_split  # noqa: E402

LEVEL = 0.9


def split(name, which="test"):
    """``(y_train, y_test, X_train, X_test, m)`` of one series; ``"dev"``/``"dev2"`` move the
    origin back by one/two horizons (the held-out tail dropped)."""
    y_train, y_test, X_train, X_test = forecast_split(name)
    back = {"test": 0, "dev": 1, "dev2": 2}[which]
    h = len(y_test)
    if back:
        stop = len(y_train) - (back - 1) * h
        y_train, y_test = y_train.iloc[:stop - h], y_train.iloc[stop - h:stop]
        if X_train is not None:
            X_train, X_test = X_train.iloc[:stop - h], X_train.iloc[stop - h:stop]
    return y_train, y_test, X_train, X_test, FORECAST_DATASETS[name]["m"]


def fit_ours(name, params, seed, which):
    """Fit and score RNNForecaster on one series; a dict of numbers."""
    from rnnumba.forecasting import RNNForecaster
    y_train, y_test, X_train, X_test, m = split(name, which)
    h = len(y_test)
    forecaster = RNNForecaster(random_state=seed, **params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        forecaster.fit(y_train, X_train)
        seconds = time.perf_counter() - start
    pred = forecaster.predict(h, X_test)
    lower, upper = forecaster.predict_interval(h, X_test, coverage=LEVEL)
    pred, lower, upper = (np.asarray(v, dtype=float) for v in (pred, lower, upper))
    return {"mase": anchors.mase(y_test, pred, y_train, m),
            "coverage": anchors.interval_coverage(y_test, lower, upper),
            "interval_width": float(np.mean(upper - lower)), "fit_seconds": seconds,
            "difference": forecaster.difference_, "lookback": forecaster.lookback_,
            "seasonal_period": forecaster.seasonal_period_, "epochs": forecaster.n_iter_,
            "forecast": pred.tolist(), "lower": lower.tolist(), "upper": upper.tolist()}


def run_anchors(name, which):
    y_train, y_test, _, _, m = split(name, which)
    out = {"seasonal_naive": anchors.seasonal_naive_anchor(y_train, y_test, m, level=LEVEL)}
    try:
        out["ets"] = anchors.ets_anchor(y_train, y_test, m, level=LEVEL)
    except Exception as exc:  # pragma: no cover - reported, not fatal
        out["ets"] = {"error": f"{type(exc).__name__}: {exc}"}
    return out


def predict_timing(name="co2", steps=100, repeats=5, lookback="auto"):
    """Seconds to forecast ``steps`` ahead: stepping vs re-running a rebuilt window for every
    step (the loop a user writes around a sequence regressor)."""
    from rnnumba.forecasting import RNNForecaster
    y_train, _, _, _, _ = split(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f = RNNForecaster(random_state=0, lookback=lookback, difference=1, transform="none",
                          naive_candidate=False).fit(y_train)
    f.predict(steps)
    _rerun_windows(f, np.asarray(y_train, dtype=float), 2)

    def best(fn):
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return min(times)

    y = np.asarray(y_train, dtype=float)
    stepping = best(lambda: f.predict(steps))
    rerun = best(lambda: _rerun_windows(f, y, steps))
    drift = float(np.max(np.abs(np.asarray(f.predict(steps)) - _rerun_windows(f, y, steps))))
    return {"series": name, "steps": steps, "lookback": f.lookback_,
            "stepping_seconds": stepping, "rerun_windows_seconds": rerun,
            "speedup": rerun / stepping, "max_abs_difference": drift}


def _rerun_windows(f, y, steps):
    """Forecasts by rebuilding the last ``lookback`` window and re-running the network over
    it for every step (the state thrown away each time)."""
    levels = y.reshape(len(y), 1).copy()
    L, lag = f.lookback_, f.difference_
    for _ in range(steps):
        u = f._transformed(levels[-(L + lag):], 0)
        out = f._model.predict(np.ascontiguousarray(u[None], dtype=f.dtype), np.array([L]))
        value = out[0, -1] * f._y_scale[0] + f._y_center[0]
        if lag:
            value = value + levels[len(levels) - lag]
        levels = np.concatenate([levels, value[None]])
    return levels[-steps:, 0]


def _mean_runs(runs):
    keys = ("mase", "coverage", "interval_width", "fit_seconds", "epochs")
    out = {key: float(np.mean([r[key] for r in runs])) for key in keys}
    out["mase_sd"] = float(np.std([r["mase"] for r in runs]))
    out["difference"] = [r["difference"] for r in runs]
    out["lookback"] = runs[0]["lookback"]
    out["seasonal_period"] = runs[0]["seasonal_period"]
    return out


def table(results, params, seeds, which):
    lines = [f"RNNForecaster with only random_state set{_params_text(params)}: {which} split, "
             f"{'seed 0' if seeds == 1 else f'mean of seeds 0-{seeds - 1}'}; "
             "MASE (lower is better), 90% interval coverage",
             f"{'series':<10} {'m':>2} {'h':>3} {'ours':>6} {'snaive':>7} {'ETS':>6} "
             f"{'ours/ETS':>8} {'cov':>5} {'cov SN':>6} {'cov ETS':>7} {'fit s':>6} "
             f"{'d':>5} {'L':>3}"]
    ratios_ets, ratios_sn, cover, fits = [], [], [], []
    for name, row in results.items():
        ours, sn, ets = row["ours"], row["anchors"]["seasonal_naive"], row["anchors"]["ets"]
        entry = FORECAST_DATASETS[name]
        ratio = ours["mase"] / ets["mase"] if "mase" in ets else float("nan")
        ratios_ets.append(ratio)
        ratios_sn.append(ours["mase"] / sn["mase"])
        cover.append(ours["coverage"])
        fits.append(ours["fit_seconds"])
        lags = "/".join(str(d) for d in sorted(set(ours["difference"])))
        lines.append(
            f"{name:<10} {entry['m']:>2} {entry['h']:>3} {ours['mase']:6.3f} "
            f"{sn['mase']:7.3f} {ets.get('mase', float('nan')):6.3f} {ratio:8.3f} "
            f"{ours['coverage']:5.2f} {sn['coverage']:6.2f} {ets.get('coverage', np.nan):7.2f} "
            f"{ours['fit_seconds']:6.1f} {lags:>5} {ours['lookback']:>3}")
    beat = sum(r < 1 for r in ratios_sn)
    summary = {"geomean_ratio_ets": float(np.exp(np.mean(np.log(ratios_ets)))),
               "geomean_ratio_snaive": float(np.exp(np.mean(np.log(ratios_sn)))),
               "beats_snaive": f"{beat}/{len(ratios_sn)}",
               "mean_coverage": float(np.mean(cover)), "max_fit_seconds": float(max(fits))}
    lines.append(f"geometric mean of MASE ratios: ours/ETS {summary['geomean_ratio_ets']:.3f}, "
                 f"ours/seasonal naive {summary['geomean_ratio_snaive']:.3f}; beats seasonal "
                 f"naive on {summary['beats_snaive']}; mean 90% coverage "
                 f"{summary['mean_coverage']:.3f}; slowest fit {summary['max_fit_seconds']:.1f} s")
    return "\n".join(lines), summary


def _params_text(params):
    return "" if not params else " and " + ", ".join(f"{k}={v!r}" for k, v in params.items())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", default=[],
                        help="a series to run (repeatable; default all)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="a forecaster parameter for every fit (repeatable)")
    parser.add_argument("--seeds", type=int, default=1, help="seeds 0..n-1, results averaged")
    parser.add_argument("--split", default="test", choices=("test", "dev", "dev2"))
    parser.add_argument("--no-timing", action="store_true",
                        help="skip the predict-100-steps timing")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--machine", default=f"{os.cpu_count()}-core-cpu")
    parser.add_argument("--output", help="JSON path (default benchmarks/results/...)")
    args = parser.parse_args(argv)
    params = records.parse_params(args.set)
    names = args.only or list(FORECAST_DATASETS)
    unknown = [n for n in names if n not in FORECAST_DATASETS]
    if unknown:
        parser.error(f"unknown series {unknown}; choose among {list(FORECAST_DATASETS)}")
    from threadpoolctl import threadpool_limits
    results = {}
    with threadpool_limits(limits=args.threads, user_api="blas"):
        for name in names:
            runs = [fit_ours(name, params, seed, args.split) for seed in range(args.seeds)]
            results[name] = {"ours": _mean_runs(runs), "runs": runs,
                             "anchors": run_anchors(name, args.split)}
            print(f"{name}: {json.dumps(results[name]['ours'])}", file=sys.stderr, flush=True)
        timing = None if args.no_timing else [predict_timing(), predict_timing(lookback=96)]
    text, summary = table(results, params, args.seeds, args.split)
    print(text)
    for row in timing or ():
        print(f"predict {row['steps']} steps ({row['series']}, lookback {row['lookback']}): "
              f"stepping {1e3 * row['stepping_seconds']:.1f} ms, re-running windows "
              f"{1e3 * row['rerun_windows_seconds']:.1f} ms ({row['speedup']:.1f}x); largest "
              f"difference between the two forecasts {row['max_abs_difference']:.3g}")
    records.write_record("forecast", args.machine, args.output, {
        "params": params, "seeds": args.seeds, "split": args.split, "threads": args.threads,
        "summary": summary, "predict_timing": timing, "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
