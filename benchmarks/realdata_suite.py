"""The real-data suite: rnnumba's estimators with their defaults against the field's anchors.

For every sequence set of :mod:`benchmarks.realdata.datasets` (scikit-learn's digits read row
by row, the adding problem at T = 100 and 500, a delayed-recall task, UCR/UEA sets that ship
with sktime, univariate, multivariate and one ragged, and time-series extrinsic regression
sets) this fits ``RNNClassifier`` / ``RNNRegressor`` with only ``cell`` and ``random_state``
set, for the LSTM and the GRU, and scores the test split: accuracy, or RMSE for regression.
The anchors run in the same process: 1-NN DTW and a plain PyTorch LSTM recipe (Adam 1e-3,
batch 16, 300 epochs) for classification, ``RidgeCV`` on the flattened series and the
training mean for regression.

Usage::

    pip install -e ".[bench]"                  # sktime and statsmodels ship the data
    python benchmarks/realdata_suite.py        # everything (about an hour on 2 cores)
    python benchmarks/realdata_suite.py --only GunPoint --only ArrowHead --no-anchors
    python benchmarks/realdata_suite.py --set batch_size=8 --set dtype=float64   # variants

``--set name=value`` overrides an estimator parameter (a Python literal) in every fit, to
compare candidate defaults; the table and the JSON written to ``benchmarks/results/`` say
which parameters were set. ``--no-anchors`` reuses each data set's anchors from the newest
result file that computed them. ``--seeds 3`` fits each estimator with ``random_state`` 0,
1 and 2 (from ``--seed``) and reports the mean of each score (every run is in the JSON):
on sets of a few dozen training series one seed moves a score by a point or more.
"""

import argparse
import glob
import json
import os
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.realdata import anchors, records  # noqa: E402
from benchmarks.realdata.datasets import SEQUENCE_DATASETS, load_sequences  # noqa: E402

CELLS = ("lstm", "gru")


def fit_ours(name, cell, params, seed=0):
    """Fit and score our estimator on one data set; returns a dict of numbers."""
    from rnnumba import RNNClassifier, RNNRegressor
    task = SEQUENCE_DATASETS[name]["task"]
    X_train, y_train, X_test, y_test = load_sequences(name)
    cls = RNNClassifier if task == "classification" else RNNRegressor
    est = cls(cell=cell, random_state=seed, **params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        est.fit(X_train, y_train)
        seconds = time.perf_counter() - start
    pred = est.predict(X_test)
    result = {"fit_seconds": seconds, "epochs": est.n_iter_,
              "steps": int(est.t_ / max(1, est._trainer.batch_size))}
    if task == "classification":
        result["accuracy"] = float(np.mean(pred == y_test))
    else:
        result["rmse"] = float(np.sqrt(np.mean((pred - np.asarray(y_test, float)) ** 2)))
    return result


def mean_of_runs(runs):
    """The mean of each number over the seeds' runs, with the runs themselves."""
    mean = {key: float(np.mean([run[key] for run in runs])) for key in runs[0]}
    return dict(mean, runs=runs) if len(runs) > 1 else runs[0]


def run_anchors(name, threads):
    task = SEQUENCE_DATASETS[name]["task"]
    X_train, y_train, X_test, y_test = load_sequences(name)
    epochs = SEQUENCE_DATASETS[name]["torch_epochs"]
    if task == "classification":
        dtw = anchors.dtw_1nn(X_train, y_train, X_test, y_test)
        torch = anchors.torch_lstm_classifier(X_train, y_train, X_test, y_test, epochs=epochs,
                                              threads=threads)
        return {"dtw": dtw, "torch": torch}
    ridge = anchors.ridge_anchor(X_train, y_train, X_test, y_test)
    mean = anchors.mean_anchor(y_train, y_test)
    torch = anchors.torch_lstm_regressor(X_train, y_train, X_test, y_test, epochs=epochs,
                                         threads=threads)
    return {"ridge": ridge, "mean": mean, "torch": torch}


def _latest_anchors():
    """Each data set's anchors from the newest result file that computed them (files of
    ``--no-anchors`` runs only copied theirs), and that file's name, by data set."""
    anchors_by_set, sources = {}, {}
    pattern = os.path.join(records.RESULTS, "*-realdata-*.json")
    for path in sorted(glob.glob(pattern), reverse=True):
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        if data.get("anchors_from"):
            continue
        for name, row in data["results"].items():
            if "anchors" in row and name not in anchors_by_set:
                anchors_by_set[name] = row["anchors"]
                sources[name] = os.path.basename(path)
    return anchors_by_set, sources


def table(results, params, seeds=(0,)):
    which = (f"random_state={seeds[0]}" if len(seeds) == 1
             else f"mean over random_state {seeds[0]}-{seeds[-1]}")
    lines = [f"rnnumba with only cell and random_state set{_params_text(params)}; {which}",
             "set                task  " + "  ".join(f"{c:>7}" for c in CELLS)
             + "      DTW  PyTorch   Ridge    mean   fit s (" + "/".join(CELLS) + ")"]
    for name, row in results.items():
        task = SEQUENCE_DATASETS[name]["task"]
        key = "accuracy" if task == "classification" else "rmse"
        ours = "  ".join(f"{row[c][key]:7.3f}" if c in row else "      -" for c in CELLS)
        a = row.get("anchors", {})
        if task == "classification":
            extra = (f"  {a['dtw']['accuracy']:7.3f}  {a['torch']['accuracy']:7.3f}"
                     "                 " if a else "        -        -                 ")
        else:
            extra = (f"        -  {a['torch']['rmse']:7.3f} {a['ridge']['rmse']:7.3f} "
                     f"{a['mean']['rmse']:7.3f}" if a else "        -        -       -       -")
        times = "/".join(f"{row[c]['fit_seconds']:.1f}" for c in CELLS if c in row)
        lines.append(f"{name:<18} {'acc' if key == 'accuracy' else 'rmse':<4}  {ours}{extra}"
                     f"   {times}")
    return "\n".join(lines)


def _params_text(params):
    return "" if not params else " and " + ", ".join(f"{k}={v!r}" for k, v in params.items())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", default=[],
                        help="a data set to run (repeatable; default all)")
    parser.add_argument("--cells", default=",".join(CELLS))
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="an estimator parameter for every fit (repeatable)")
    parser.add_argument("--no-anchors", action="store_true",
                        help="reuse each data set's anchors from the newest result file "
                             "that computed them")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seeds", type=int, default=1,
                        help="random_state seed..seed+n-1, scores averaged")
    parser.add_argument("--machine", default=f"{os.cpu_count()}-core-cpu")
    parser.add_argument("--output", help="JSON path (default benchmarks/results/...)")
    args = parser.parse_args(argv)
    params = records.parse_params(args.set)
    names = args.only or list(SEQUENCE_DATASETS)
    unknown = [n for n in names if n not in SEQUENCE_DATASETS]
    if unknown:
        parser.error(f"unknown data sets {unknown}; choose among {list(SEQUENCE_DATASETS)}")
    cells = [c for c in args.cells.split(",") if c]
    if args.seeds < 1:
        parser.error("--seeds must be at least 1")
    seeds = list(range(args.seed, args.seed + args.seeds))
    from threadpoolctl import threadpool_limits
    reused, sources = ({}, None) if not args.no_anchors else _latest_anchors()
    results = {}
    with threadpool_limits(limits=args.threads, user_api="blas"):
        for name in names:
            row = results[name] = {}
            for cell in cells:
                row[cell] = mean_of_runs([fit_ours(name, cell, params, seed)
                                          for seed in seeds])
                print(f"{name} {cell}: {row[cell]}", file=sys.stderr, flush=True)
            if args.no_anchors:
                if name in reused:
                    row["anchors"] = reused[name]
            else:
                row["anchors"] = run_anchors(name, args.threads)
                print(f"{name} anchors: {json.dumps(row['anchors'])}", file=sys.stderr,
                      flush=True)
    print(table(results, params, seeds))
    if sources is not None:
        sources = {name: sources[name] for name in names if name in sources}
    records.write_record("realdata", args.machine, args.output, {
        "params": params, "threads": args.threads, "seed": args.seed, "seeds": seeds,
        "anchors_from": sources,
        "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
