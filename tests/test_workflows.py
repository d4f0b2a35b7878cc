"""The estimators inside scikit-learn workflows: GridSearchCV, cross_val_score, Pipeline,
clone, joblib's dask backend on a two-process LocalCluster, and the digits quick-start."""

import time
import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from rnnumba import RNNClassifier, RNNRegressor


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


def _sequences(n=60, steps=6, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.randn(n, steps, 2)
    y = X[:, :, 0].sum(axis=1)
    return X, y


SMALL = dict(hidden_layer_sizes=(6,), max_iter=8, random_state=0)


def test_grid_search_over_cell():
    X, y = _sequences()
    labels = np.where(y > 0, "up", "down")
    search = GridSearchCV(RNNClassifier(**SMALL), {"cell": ["rnn", "lstm", "gru"]}, cv=3)
    search.fit(X, labels)
    assert search.best_params_["cell"] in {"rnn", "lstm", "gru"}
    assert len(search.cv_results_["mean_test_score"]) == 3
    assert search.best_estimator_.cell == search.best_params_["cell"]
    assert set(search.predict(X)) <= {"up", "down"}


def test_cross_val_score_with_ragged_lists():
    rng = np.random.RandomState(1)
    X = [rng.randn(rng.randint(3, 8), 2) for _ in range(45)]
    y = np.array([x[:, 0].sum() for x in X])
    scores = cross_val_score(RNNRegressor(**SMALL), X, y, cv=KFold(3))
    assert scores.shape == (3,) and np.isfinite(scores).all()


def test_pipeline_with_function_transformer():
    X, y = _sequences()
    flat = X.reshape(len(X), -1)  # a user's tabular layout

    def to_sequences(A):
        return np.asarray(A).reshape(len(A), -1, 2)

    pipe = make_pipeline(FunctionTransformer(to_sequences), RNNRegressor(**SMALL))
    pipe.fit(flat, y)
    direct = RNNRegressor(**SMALL).fit(X, y)
    np.testing.assert_array_equal(pipe.predict(flat), direct.predict(X))
    assert pipe.score(flat, y) == pytest.approx(direct.score(X, y))


def test_clone_gives_identical_refit():
    X, y = _sequences()
    est = RNNRegressor(cell="gru", bidirectional=True, **SMALL).fit(X, y)
    twin = clone(est)
    assert not hasattr(twin, "n_iter_")
    np.testing.assert_array_equal(twin.fit(X, y).predict(X), est.predict(X))


@pytest.mark.slow
def test_grid_search_on_dask_cluster():
    distributed = pytest.importorskip("dask.distributed")
    import joblib

    X, y = _sequences(n=48)
    labels = (y > 0).astype(int)
    grid = {"cell": ["rnn", "gru"], "hidden_layer_sizes": [(4,), (6,)]}
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        assert len(client.scheduler_info()["workers"]) == 2
        with joblib.parallel_backend("dask"):
            search = GridSearchCV(RNNClassifier(max_iter=5, random_state=0), grid, cv=2,
                                  n_jobs=-1).fit(X, labels)
    local = GridSearchCV(RNNClassifier(max_iter=5, random_state=0), grid, cv=2).fit(X, labels)
    np.testing.assert_allclose(search.cv_results_["mean_test_score"],
                               local.cv_results_["mean_test_score"])
    assert search.best_params_ == local.best_params_


@pytest.mark.slow
def test_digits_quick_start_accuracy():
    """The README quick-start: defaults with only ``cell`` and ``hidden_layer_sizes``."""
    digits = load_digits()
    X = digits.images / 16  # (1797, 8, 8): each image read row by row
    X_train, X_test, y_train, y_test = train_test_split(
        X, digits.target, test_size=0.25, random_state=0, stratify=digits.target)
    clf = RNNClassifier(cell="lstm", hidden_layer_sizes=(64,), random_state=0)
    start = time.perf_counter()
    clf.fit(X_train, y_train)
    elapsed = time.perf_counter() - start
    accuracy = clf.score(X_test, y_test)
    print(f"digits LSTM-64: test accuracy {accuracy:.4f}, fit {elapsed:.1f} s, "
          f"{clf.n_iter_} epochs")
    assert accuracy >= 0.97
