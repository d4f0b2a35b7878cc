"""RNNRegressor / RNNClassifier: scikit-learn's estimator checks and the behaviour the
issue asks for (input forms, targets, weights, partial_fit, warm_start, early stopping,
determinism, bad inputs)."""

import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.utils.estimator_checks import parametrize_with_checks

from rnnumba import RNNClassifier, RNNRegressor
from rnnumba.training import TrainingDivergedError

_TABULAR = ("sklearn's checks feed tabular (n_samples, n_features) arrays; rnnumba reads a "
            "2-D X as (n_samples, n_timesteps) univariate series, so n_features_in_ is 1")
EXPECTED_FAILED = {
    "check_n_features_in": _TABULAR,
    "check_n_features_in_after_fitting": _TABULAR + " and a different number of columns is a "
                                                    "different sequence length, not an error",
    "check_classifiers_train": _TABULAR + "; the check asserts that predicting on X.T (a "
                                          "valid batch of series) raises",
    "check_sample_weight_equivalence_on_dense_data": (
        "the defaults compute in float32 (a weight of k then differs from k repeated rows by "
        "rounding) and size batches and patience by the number of rows, which repeating "
        "rows changes; test_sample_weight_equivalence_in_float64 runs this check with "
        "dtype='float64' and fixed batch size, patience and epochs"),
    "check_methods_subset_invariance": (
        "the defaults compute in float32, where a GEMM over a batch of another size rounds "
        "differently (1e-7 relative); test_subset_invariance_in_float64 runs this check in "
        "float64"),
    "check_transformer_general": _TABULAR + "; the check asserts that transforming X[:, :-1] "
                                            "(a valid batch of shorter series) raises",
}


def _expected_failed(estimator):
    names = ["check_n_features_in", "check_n_features_in_after_fitting",
             "check_transformer_general", "check_sample_weight_equivalence_on_dense_data",
             "check_methods_subset_invariance"]
    if isinstance(estimator, RNNClassifier):
        names.append("check_classifiers_train")
    return {name: EXPECTED_FAILED[name] for name in names}


# A budget of 200 epochs, as scikit-learn's own common tests cap the iterations of iterative
# estimators: "auto" gives a check's 30 rows 1250 epochs, which only makes the checks slow.
@parametrize_with_checks([RNNRegressor(max_iter=200), RNNClassifier(max_iter=200)],
                         expected_failed_checks=_expected_failed)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


@pytest.mark.parametrize("cls", [RNNRegressor, RNNClassifier])
def test_sample_weight_equivalence_in_float64(cls):
    """A sample weight of k equals k repeated samples once nothing depends on the number
    of rows and the arithmetic is float64.

    The epochs are kept few: a weighted sum and a sum over repeated rows differ by
    rounding, and Adam's update ``m / sqrt(v)`` turns a rounding-sized gradient into a
    full-sized step, so over hundreds of epochs the two fits drift apart by 1e-5."""
    from sklearn.utils.estimator_checks import check_sample_weight_equivalence_on_dense_data
    est = cls(dtype="float64", batch_size=64, n_iter_no_change=10, max_iter=50)
    check_sample_weight_equivalence_on_dense_data(cls.__name__, est)


@pytest.mark.parametrize("cls", [RNNRegressor, RNNClassifier])
def test_subset_invariance_in_float64(cls):
    from sklearn.utils.estimator_checks import check_methods_subset_invariance
    check_methods_subset_invariance(cls.__name__, cls(dtype="float64"))


# ---------------------------------------------------------------------- data helpers
def _small(n=60, steps=5, features=2, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.randn(n, steps, features)
    y = X[:, :, 0].sum(axis=1)
    return X, y


FAST = dict(hidden_layer_sizes=(8,), max_iter=20, random_state=0)


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


# ---------------------------------------------------------------------- input forms
def test_ragged_list_equals_nan_padding():
    rng = np.random.RandomState(1)
    seqs = [rng.randn(rng.randint(2, 7), 3) for _ in range(30)]
    y = np.array([s[:, 0].sum() for s in seqs])
    padded = np.full((30, 6, 3), np.nan)
    for i, s in enumerate(seqs):
        padded[i, :len(s)] = s
    exact = dict(FAST, dtype="float64")  # float32 GEMMs round by batch size
    a = RNNRegressor(**exact).fit(seqs, y)
    b = RNNRegressor(**exact).fit(padded, y)
    assert a.n_features_in_ == b.n_features_in_ == 3
    np.testing.assert_array_equal(a.predict(seqs), b.predict(padded))
    # prediction of a sequence does not depend on the padding around it
    np.testing.assert_allclose(a.predict([seqs[0]]), a.predict(seqs)[:1], rtol=1e-12)


def test_padding_does_not_change_predictions():
    X, y = _small()
    est = RNNClassifier(**FAST).fit(X, y > 0)
    longer = np.concatenate([X, np.full((len(X), 3, 2), np.nan)], axis=1)
    np.testing.assert_allclose(est.predict_proba(X), est.predict_proba(longer), rtol=1e-12)


def test_univariate_2d_input():
    X, y = _small(features=1)
    est = RNNRegressor(**FAST).fit(X[:, :, 0], y)
    assert est.n_features_in_ == 1
    np.testing.assert_allclose(est.predict(X[:, :, 0]), est.predict(X), rtol=1e-12)


def test_multi_output_regression():
    X, y = _small()
    Y = np.column_stack([y, -y, X[:, -1, 1]])
    est = RNNRegressor(**{**FAST, "max_iter": 60}).fit(X, Y)
    assert est.n_outputs_ == 3
    assert est.predict(X).shape == (len(X), 3)
    assert est.score(X, Y) > 0.5


def test_return_sequences_regressor_and_classifier():
    X, _ = _small(n=40, steps=6)
    Y = np.cumsum(X[:, :, 0], axis=1)
    reg = RNNRegressor(return_sequences=True, **{**FAST, "max_iter": 60}).fit(X, Y)
    assert reg.predict(X).shape == (40, 6)
    assert reg.score(X, Y) > 0.5
    Y3 = np.stack([Y, -Y], axis=-1)
    reg3 = RNNRegressor(return_sequences=True, **FAST).fit(X, Y3)
    assert reg3.predict(X).shape == (40, 6, 2)
    labels = np.where(Y > 0, "up", "down")
    clf = RNNClassifier(return_sequences=True, **{**FAST, "max_iter": 60}).fit(X, labels)
    pred = clf.predict(X)
    assert pred.shape == (40, 6) and set(np.unique(pred)) <= {"up", "down"}
    assert clf.predict_proba(X).shape == (40, 6, 2)
    assert clf.score(X, labels) > 0.8


def test_return_sequences_ragged_outputs_are_lists():
    rng = np.random.RandomState(3)
    seqs = [rng.randn(n, 2) for n in (3, 5, 4, 2, 5, 3)]
    ys = [np.cumsum(s[:, 0]) for s in seqs]
    reg = RNNRegressor(return_sequences=True, **FAST).fit(seqs, ys)
    out = reg.predict(seqs)
    assert isinstance(out, list) and [len(o) for o in out] == [3, 5, 4, 2, 5, 3]
    padded = np.full((6, 5, 2), np.nan)
    for i, s in enumerate(seqs):
        padded[i, :len(s)] = s
    pad_pred = reg.predict(padded)
    assert np.isnan(pad_pred[0, 3:]).all() and np.isfinite(pad_pred[0, :3]).all()
    np.testing.assert_allclose(pad_pred[1], out[1], rtol=1e-12)


def test_string_labels_binary_and_multiclass():
    X, y = _small(n=90)
    for labels in (np.where(y > 0, "pos", "neg"),
                   np.array(["a", "b", "c"])[np.digitize(y, [-1, 1])]):
        est = RNNClassifier(**FAST).fit(X, labels)
        assert list(est.classes_) == sorted(set(labels))
        proba = est.predict_proba(X)
        assert proba.shape == (len(X), len(est.classes_))
        np.testing.assert_allclose(proba.sum(axis=1), 1.0)
        np.testing.assert_allclose(np.exp(est.predict_log_proba(X)), proba, rtol=1e-10)
        assert set(est.predict(X)) <= set(labels)


def test_sample_weight_zero_equals_removal_and_integer_equals_repeat():
    X, y = _small(n=20)
    sw = np.arange(20) % 3
    params = dict(hidden_layer_sizes=(6,), max_iter=15, random_state=0, dtype="float64",
                  batch_size=64, n_iter_no_change=10)  # nothing sized by the number of rows
    weighted = RNNRegressor(**params).fit(X, y, sample_weight=sw)
    repeated = RNNRegressor(**params).fit(np.repeat(X, sw, axis=0), np.repeat(y, sw))
    np.testing.assert_allclose(weighted.predict(X), repeated.predict(X), rtol=1e-6, atol=1e-9)


def test_class_weight_shifts_predictions():
    X, y = _small(n=80)
    labels = (y > 0).astype(int)
    base = RNNClassifier(**FAST).fit(X, labels)
    heavy = RNNClassifier(class_weight={0: 50.0, 1: 0.02}, **FAST).fit(X, labels)
    assert (heavy.predict(X) == 0).mean() > (base.predict(X) == 0).mean()
    balanced = RNNClassifier(class_weight="balanced", **FAST).fit(X, labels)
    assert balanced.score(X, labels) > 0.5


def test_partial_fit_epochs_and_classes():
    X, y = _small()
    labels = np.where(y > 0, "p", "n")
    est = RNNClassifier(hidden_layer_sizes=(8,), random_state=0)
    with pytest.raises(ValueError, match="classes must be passed"):
        est.partial_fit(X, labels)
    est.partial_fit(X[:30], labels[:30], classes=["n", "p"])
    assert est.n_iter_ == 1 and est.t_ == 30
    est.partial_fit(X[30:], labels[30:])
    assert est.n_iter_ == 2 and est.t_ == 60
    with pytest.raises(ValueError, match="classes"):
        est.partial_fit(X, np.where(y > 0, "p", "x"))
    reg = RNNRegressor(**FAST)
    for _ in range(3):
        reg.partial_fit(X, y)
    assert reg.n_iter_ == 3 and len(reg.loss_curve_) == 3
    with pytest.raises(ValueError, match="early_stopping"):
        RNNRegressor(early_stopping=True).partial_fit(X, y)


def test_partial_fit_matches_fit_epoch_by_epoch():
    X, y = _small(n=30)
    params = dict(hidden_layer_sizes=(6,), random_state=0, shuffle=False, max_iter=3,
                  tol=0.0)
    full = RNNRegressor(**params).fit(X, y)
    inc = RNNRegressor(**params)
    for _ in range(3):
        inc.partial_fit(X, y)
    np.testing.assert_allclose(full.loss_curve_, inc.loss_curve_, rtol=1e-12)
    np.testing.assert_array_equal(full.predict(X), inc.predict(X))


def test_warm_start_continues():
    X, y = _small()
    est = RNNRegressor(warm_start=True, **{**FAST, "max_iter": 5}).fit(X, y)
    first = list(est.loss_curve_)
    est.fit(X, y)
    assert est.n_iter_ == 10 and est.loss_curve_[:5] == first
    cold = RNNRegressor(**{**FAST, "max_iter": 5}).fit(X, y)
    cold.fit(X, y)
    assert cold.n_iter_ == 5
    est.set_params(hidden_layer_sizes=(4,))
    with pytest.raises(ValueError, match="warm_start"):
        est.fit(X, y)


def test_early_stopping_restores_best_epoch():
    X, y = _small(n=120)
    est = RNNRegressor(early_stopping=True, n_iter_no_change=3, validation_fraction=0.2,
                       hidden_layer_sizes=(8,), max_iter=200, learning_rate_init=0.05,
                       random_state=0).fit(X, y)
    scores = est.validation_scores_
    assert len(scores) == est.n_iter_ and est.best_validation_score_ == max(scores)
    assert est.n_iter_ < 200
    # stopped early: the last n_iter_no_change + 1 epochs did not beat the best by tol
    assert max(scores[-4:]) < max(scores[:-4]) + est.tol
    clf = RNNClassifier(early_stopping=True, **{**FAST, "max_iter": 30}).fit(
        X, np.where(y > 0, "a", "b"))
    assert clf.best_validation_score_ == max(clf.validation_scores_)


def test_early_stopping_best_weights_are_the_ones_kept(monkeypatch):
    import rnnumba.training as training
    X, y = _small(n=100)
    seen = {}
    original = training.Trainer._update_no_improvement

    def spy(self, run, validation, score):
        improved = original(self, run, validation, score)
        seen["val"] = validation
        return improved

    monkeypatch.setattr(training.Trainer, "_update_no_improvement", spy)
    est = RNNRegressor(early_stopping=True, n_iter_no_change=2, max_iter=100,
                       learning_rate_init=0.05, hidden_layer_sizes=(8,),
                       random_state=0).fit(X, y)
    assert est._validation_score(est._model, seen["val"]) == pytest.approx(
        est.best_validation_score_)


def test_determinism_bitwise():
    X, y = _small()
    for cls, target in ((RNNRegressor, y), (RNNClassifier, y > 0)):
        a = cls(dropout=0.3, hidden_layer_sizes=(8, 8), max_iter=5, random_state=7).fit(X, target)
        b = cls(dropout=0.3, hidden_layer_sizes=(8, 8), max_iter=5, random_state=7).fit(X, target)
        pa = a.predict_proba(X) if cls is RNNClassifier else a.predict(X)
        pb = b.predict_proba(X) if cls is RNNClassifier else b.predict(X)
        assert np.array_equal(pa, pb)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cells_dtypes_bidirectional_stacked(cell, dtype):
    X, y = _small(n=40)
    est = RNNRegressor(cell=cell, dtype=dtype, bidirectional=True, hidden_layer_sizes=(6, 4),
                       max_iter=3, random_state=0).fit(X, y)
    pred = est.predict(X)
    assert pred.dtype == np.float64 and np.isfinite(pred).all()
    assert est.device_ == "cpu"


def test_tbptt_runs_and_equals_full_when_long_enough():
    X, y = _small(n=30, steps=8)
    last = dict(FAST, pooling="last", bidirectional=False)  # as truncated BPTT reads
    full = RNNRegressor(**{**last, "max_iter": 3}).fit(X, y)
    same = RNNRegressor(bptt_steps=8, **{**last, "max_iter": 3}).fit(X, y)
    np.testing.assert_array_equal(full.predict(X), same.predict(X))
    with pytest.raises(ValueError, match="pooling='max'"):
        RNNRegressor(bptt_steps=3, **FAST).fit(X, y)
    chunked = RNNRegressor(bptt_steps=3, **{**last, "max_iter": 30}).fit(X, y)
    assert chunked.loss_curve_[-1] < chunked.loss_curve_[0]
    with pytest.raises(ValueError, match="bidirectional"):
        RNNRegressor(bptt_steps=3, bidirectional=True, pooling="last").fit(X, y)


def test_sgd_solver_and_schedules():
    X, y = _small()
    for lr in ("constant", "invscaling", "adaptive"):
        est = RNNRegressor(solver="sgd", learning_rate=lr, learning_rate_init=0.05,
                           **FAST).fit(X, y)
        assert np.isfinite(est.loss_)


def test_verbose_prints_progress(capsys):
    X, y = _small(n=30)
    RNNClassifier(verbose=True, early_stopping=True, **{**FAST, "max_iter": 2}).fit(X, y > 0)
    out = capsys.readouterr().out
    assert "Iteration 1, loss = " in out and "validation score = " in out and "time = " in out


def test_convergence_warning():
    X, y = _small(n=30)
    with pytest.warns(ConvergenceWarning):
        RNNRegressor(hidden_layer_sizes=(4,), max_iter=2, random_state=0).fit(X, y)


def test_divergence_is_a_clear_error_and_keeps_finite_weights():
    X, y = _small(n=30)
    est = RNNRegressor(solver="sgd", learning_rate_init=1e6, clip_norm=None, momentum=0.0,
                       cell="rnn", activation="relu", hidden_layer_sizes=(8,), max_iter=50,
                       random_state=0)
    with pytest.raises(TrainingDivergedError, match="diverged"):
        est.fit(X, y * 1e6)
    assert np.isfinite(est._model.store.host).all()


def test_keyboard_interrupt_keeps_best_weights(monkeypatch):
    X, y = _small(n=40)
    est = RNNRegressor(**{**FAST, "max_iter": 50, "batch_size": 64})
    calls = {"n": 0}
    from rnnumba.model import SequenceModel
    original = SequenceModel.loss_and_gradients

    def interrupt(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3 * 1 + 1:  # one batch per epoch: interrupt in epoch 4
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(SequenceModel, "loss_and_gradients", interrupt)
    with pytest.warns(UserWarning, match="interrupted"):
        est.fit(X, y)
    assert est.n_iter_ == 3
    best = est._trainer.best_params
    assert np.array_equal(best, est._model.store.host)
    est.predict(X)


def test_device_handling(monkeypatch):
    from rnnumba import backend
    X, y = _small(n=20)
    monkeypatch.setattr(backend, "cuda_unavailable_reason", lambda: "no GPU in this test")
    est = RNNRegressor(device="auto", **FAST).fit(X, y)
    assert est.device_ == "cpu"
    with pytest.raises(ValueError, match="device='cuda' is not available: no GPU in this test"):
        RNNRegressor(device="cuda", **FAST).fit(X, y)
    with pytest.raises(ValueError, match="no GPU in this test"):  # partial_fit/warm start too
        est.set_params(device="cuda", warm_start=True).fit(X, y)


def test_auto_device_means_a_real_gpu(monkeypatch):
    """``"auto"`` picks CUDA only for a working real device, never Numba's simulator: for
    the estimators and for ``Recurrent`` alike (one resolver)."""
    from rnnumba import Recurrent, backend
    monkeypatch.setattr(backend, "cuda_unavailable_reason", lambda: None)
    monkeypatch.setattr(backend, "simulator_enabled", lambda: True)
    assert backend.resolve_device("auto") == "cpu"
    assert backend.resolve_device("cuda") == "cuda"
    assert Recurrent("gru", input_size=2, hidden_size=3, device="auto").device == "cpu"
    monkeypatch.setattr(backend, "simulator_enabled", lambda: False)
    assert backend.resolve_device("auto") == "cuda"
    assert backend.resolve_device("cpu") == "cpu"


def test_gpu_trained_estimator_loads_on_the_cpu_where_no_gpu_works(monkeypatch, tmp_path):
    """A CUDA-trained estimator holds host arrays only: pickled or saved, it predicts on
    the CPU where no CUDA device works (``device_`` then says "cpu")."""
    import pickle

    from rnnumba import backend, load
    X, y = _small(n=20)
    est = RNNRegressor(**{**FAST, "max_iter": 2}).fit(X, y)
    expected = est.predict(X)
    # what a CUDA fit leaves behind (weights synced to the host): only the device differs
    est.set_params(device="cuda")
    est.device_ = "cuda"
    est._model.recurrent.device = "cuda"
    blob = pickle.dumps(est)
    est.save(tmp_path / "est.npz")
    monkeypatch.setattr(backend, "cuda_unavailable_reason", lambda: "no GPU in this test")
    for clone_ in (pickle.loads(blob), load(tmp_path / "est.npz")):
        assert clone_.device_ == "cpu" and clone_._model.device == "cpu"
        np.testing.assert_array_equal(clone_.predict(X), expected)


# ---------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize("bad, match", [
    ("nan_middle", "not trailing"),
    ("inf", "inf"),
    ("partial_nan", "some but not all"),
    ("empty_seq", "empty"),
    ("one_d", "2D array"),
    ("four_d", "2-D"),
    ("one_step_2d", "1 feature"),
])
def test_bad_X(bad, match):
    X, y = _small(n=10)
    X = X.copy()
    if bad == "nan_middle":
        X[2, 1, :] = np.nan
    elif bad == "inf":
        X[0, 4, 1] = np.inf
    elif bad == "partial_nan":
        X[1, 4, 0] = np.nan
    elif bad == "empty_seq":
        X[3] = np.nan
    elif bad == "one_d":
        X = X[:, 0, 0]
    elif bad == "four_d":
        X = X[..., None]
    elif bad == "one_step_2d":
        X = X[:, :1, 0]
    with pytest.raises(ValueError, match=match):
        RNNRegressor(**FAST).fit(X, y)


def test_bad_inputs_at_predict_and_params():
    X, y = _small(n=20)
    est = RNNRegressor(**FAST)
    with pytest.raises(NotFittedError):
        est.predict(X)
    est.fit(X, y)
    with pytest.raises(ValueError, match="features"):
        est.predict(X[:, :, :1])
    with pytest.raises(ValueError):
        RNNRegressor(cell="transformer").fit(X, y)
    with pytest.raises(ValueError, match="activation"):
        RNNRegressor(cell="lstm", activation="relu").fit(X, y)
    with pytest.raises(ValueError):
        RNNRegressor(hidden_layer_sizes=(4, 0)).fit(X, y)
    for forget_bias in (np.nan, np.inf, "1"):
        with pytest.raises(ValueError, match="forget_bias"):
            RNNRegressor(forget_bias=forget_bias, **FAST).fit(X, y)
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        RNNRegressor(**FAST).fit(X, y[:-1])
    with pytest.raises(ValueError, match="class"):
        RNNClassifier(**FAST).fit(X, np.ones(len(X)))
    with pytest.raises(ValueError, match="return_sequences=True"):
        RNNClassifier(**FAST).fit(X, np.zeros((20, 5), dtype=int))
    with pytest.raises(ValueError, match="Unknown label type"):
        RNNClassifier(**FAST).fit(X, y)
    with pytest.raises(ValueError, match="NaN"):
        RNNRegressor(**FAST).fit(X, np.where(np.arange(len(y)) == 3, np.nan, y))
    with pytest.raises(ValueError, match="time steps"):
        RNNRegressor(return_sequences=True, **FAST).fit(X, np.zeros((20, 4)))


def test_clone_keeps_params_not_state():
    X, y = _small(n=20)
    est = RNNClassifier(cell="gru", hidden_layer_sizes=(5,), class_weight="balanced",
                        max_iter=2).fit(X, y > 0)
    twin = clone(est)
    assert twin.get_params() == est.get_params()
    assert not hasattr(twin, "classes_")


# ---------------------------------------------------------------------- real-data defaults
@pytest.mark.parametrize("pooling", ["last", "mean", "max", "attention", "last+max"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_every_pooling_fits_and_transforms(pooling, bidirectional):
    X, y = _small(n=40)
    est = RNNClassifier(pooling=pooling, bidirectional=bidirectional, **FAST).fit(X, y > 0)
    features = est.transform(X)
    width = (2 if bidirectional else 1) * 8 * len(pooling.split("+"))
    assert features.shape == (40, width)
    names = est.get_feature_names_out()
    assert len(names) == width and names[0] == "rnnclassifier0"
    assert est.score(X, y > 0) > 0.5


def test_transform_feeds_any_estimator_in_a_pipeline():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    X, y = _small(n=60)
    pipe = make_pipeline(RNNRegressor(**FAST), LogisticRegression())
    # the regressor learns the sum; logistic regression reads its features for the sign
    pipe.fit(X, y > 0)
    assert pipe.score(X, y > 0) > 0.8
    reg = RNNRegressor(return_sequences=True, **FAST).fit(X, np.cumsum(X[:, :, 0], axis=1))
    assert reg.transform(X).shape == (60, 5, 8)


def test_regressor_scales_targets_and_predicts_in_their_units():
    X, y = _small(n=60)
    big = 1000.0 * y + 5000.0
    scaled = RNNRegressor(**{**FAST, "max_iter": 60}).fit(X, big)
    assert scaled._y_scaling is not None
    pred = scaled.predict(X)
    assert abs(pred.mean() - big.mean()) < 0.2 * big.std()
    assert scaled.score(X, big) > 0.5
    raw = RNNRegressor(scale=False, **{**FAST, "max_iter": 60}).fit(X, big)
    assert raw._y_scaling is None and raw._x_scaling is None


def test_input_scaling_ignores_padding_and_is_sample_weighted():
    X, y = _small(n=30)
    X[0, 3:] = np.nan  # trailing padding
    est = RNNRegressor(**FAST).fit(X, y, sample_weight=np.r_[5.0, np.ones(29)])
    mean, scale = est._x_scaling
    valid = ~np.isnan(X[:, :, 0])
    weights = np.repeat(np.r_[5.0, np.ones(29)][:, None], 5, axis=1)[valid]
    np.testing.assert_allclose(mean, np.average(X[valid], axis=0, weights=weights))
    assert np.isfinite(est.predict(X)).all()


def test_patch_size_reads_steps_in_groups():
    rng = np.random.RandomState(0)
    X = rng.randn(30, 150)
    y = (X[:, :75].mean(axis=1) > X[:, 75:].mean(axis=1)).astype(int)
    auto = RNNClassifier(**FAST).fit(X, y)
    assert auto.patch_size_ == 3  # 150 steps in at most 64 patches
    assert auto._model.recurrent.input_size == 3
    one = RNNClassifier(patch_size=1, **FAST).fit(X, y)
    assert one.patch_size_ == 1
    ragged = [rng.randn(n) for n in (7, 150, 40)]
    assert auto.predict(ragged).shape == (3,)
    seq = RNNRegressor(return_sequences=True, **FAST).fit(X[:, :10], np.cumsum(X[:, :10], 1))
    assert seq.patch_size_ == 1


def test_auto_batches_and_patience_follow_the_optimizer_steps():
    """Small data gets several steps per epoch and a patience of about 500 steps, so the
    stopping rule does not end training inside a plateau after a few dozen steps."""
    from rnnumba import estimators
    est = RNNClassifier()
    assert est._batch_size(50) == estimators.AUTO_BATCH_MIN
    assert est._batch_size(3000) == 30 and est._batch_size(10 ** 5) == 64
    assert est._batch_size(5) == 5
    X, y = _small(n=40)
    est = RNNClassifier(hidden_layer_sizes=(4,), random_state=0, max_iter=3).fit(X, y > 0)
    assert est._trainer.batch_size == 8
    assert est._trainer.n_iter_no_change == 100  # 5 steps an epoch: 500 steps


def test_stopping_waits_out_a_plateau_counted_in_steps(monkeypatch):
    """On a synthetic plateau (a training loss stuck for a while, then falling) the auto
    patience keeps training where a 10-epoch patience stopped."""
    from rnnumba.model import SequenceModel
    X, y = _small(n=16)
    calls = {"n": 0}
    original = SequenceModel.loss_and_gradients

    def plateau(self, batch, loss_fn, stats, bptt_steps=None):
        original(self, batch, loss_fn, stats, bptt_steps)
        calls["n"] += 1
        stats[0] = 1.0 if calls["n"] < 60 else 1.0 / calls["n"]  # flat for 60 steps

    monkeypatch.setattr(SequenceModel, "loss_and_gradients", plateau)
    short = RNNRegressor(n_iter_no_change=10, learning_rate="constant", max_iter=500,
                         alpha=0.0, hidden_layer_sizes=(4,), random_state=0).fit(X, y)
    assert short.n_iter_ < 30 and min(short.loss_curve_) == 1.0
    calls["n"] = 0
    auto = RNNRegressor(hidden_layer_sizes=(4,), random_state=0, max_iter=300, alpha=0.0,
                        learning_rate="constant").fit(X, y)
    assert min(auto.loss_curve_) < 0.1  # trained past the plateau


def test_token_classification_learns_an_order_dependent_rule():
    """With ``embedding_dim``, integer tokens are looked up, not read as numbers: class 1
    when token 3 comes before token 4 in a ragged sequence."""
    rng = np.random.RandomState(0)
    X, y = [], []
    for _ in range(300):
        seq = list(rng.randint(0, 3, size=rng.randint(4, 12)))
        first, second = (3, 4) if rng.rand() < 0.5 else (4, 3)
        i, j = sorted(rng.choice(len(seq) + 1, size=2, replace=False))
        seq.insert(i, first)
        seq.insert(j + 1, second)
        X.append(np.array(seq))
        y.append(int(first == 3))
    clf = RNNClassifier(embedding_dim=8, hidden_layer_sizes=(16,), random_state=0)
    clf.fit(X[:200], y[:200])
    assert clf.vocabulary_size_ == 5
    assert clf._model.input.params("host")["weight"].shape == (5, 8)
    assert clf.score(X[200:], y[200:]) > 0.9


@pytest.mark.parametrize("bad, error, match", [
    ([np.array([0, 1, 7])], ValueError, "beyond the vocabulary"),
    ([np.array([0, -1, 2])], ValueError, "negative"),
    ([np.array([0.5, 1.0])], TypeError, "integer token ids"),
    ([np.array([], dtype=int)], ValueError, "empty sequence"),
    (np.array([["a", "b"]]), TypeError, "integer token ids"),
])
def test_bad_tokens_are_named(bad, error, match):
    X = [np.array([0, 1, 2]), np.array([2, 1]), np.array([1, 1, 0, 2])] * 4
    clf = RNNClassifier(embedding_dim=4, **FAST).fit(X, [0, 1, 0] * 4)
    with pytest.raises(error, match=match):
        clf.predict(bad)


def test_new_parameters_travel_with_save_and_load(tmp_path):
    import rnnumba
    X, y = _small(n=30)
    est = RNNRegressor(pooling="attention", patch_size=2, **FAST).fit(X, y)
    est.save(tmp_path / "m.npz")
    loaded = rnnumba.load(tmp_path / "m.npz")
    assert loaded.patch_size_ == 2 and loaded.pooling == "attention"
    np.testing.assert_array_equal(loaded.predict(X), est.predict(X))
    tokens = [np.array([0, 1, 2]), np.array([2, 1])] * 10
    clf = RNNClassifier(embedding_dim=3, **FAST).fit(tokens, [0, 1] * 10)
    clf.save(tmp_path / "t.npz")
    again = rnnumba.load(tmp_path / "t.npz")
    assert again.vocabulary_size_ == 3
    np.testing.assert_array_equal(again.predict_proba(tokens), clf.predict_proba(tokens))


@pytest.mark.parametrize("forget_bias", [1.0, -0.5, None])
@pytest.mark.parametrize("cls", [RNNRegressor, RNNClassifier])
def test_forget_bias_is_where_the_lstm_starts(initializations, cls, forget_bias):
    """The estimators' LSTM starts with its forget-gate rows at ``forget_bias`` (``bias_ih``)
    and 0 (``bias_hh``) in every layer and direction; None leaves PyTorch's uniform draw."""
    X, y = _small(n=30)
    cls(hidden_layer_sizes=(4, 4), max_iter=1, random_state=0,
        forget_bias=forget_bias).fit(X, y if cls is RNNRegressor else y > 0)
    ((_, weights),) = initializations
    biases = [key for key in weights if key.startswith("bias_")]
    assert len(biases) == 8  # two layers, two directions
    for key in biases:
        forget = weights[key][4:8]
        if forget_bias is None:
            assert np.all(np.abs(forget) <= 0.5) and np.unique(forget).size == 4
        else:
            np.testing.assert_array_equal(
                forget, forget_bias if key.startswith("bias_ih") else 0.0)


def test_bidirectional_auto_reads_both_ways_only_for_whole_sequence_outputs():
    X, y = _small(n=20, steps=6)
    per_sequence = RNNRegressor(**{**FAST, "max_iter": 2}).fit(X, y)
    assert per_sequence.bidirectional_ is True
    assert per_sequence.transform(X).shape == (20, 16)  # both directions' 8 units
    per_step = RNNRegressor(return_sequences=True, **{**FAST, "max_iter": 2}).fit(
        X, X[:, :, 0])
    assert per_step.bidirectional_ is False
    later_changed = X.copy()
    later_changed[:, -1] += 1.0  # causal: a step's output sees no later step
    np.testing.assert_array_equal(per_step.predict(later_changed)[:, :-1],
                                  per_step.predict(X)[:, :-1])
    truncated = RNNRegressor(bptt_steps=3, pooling="last", **{**FAST, "max_iter": 2}).fit(X, y)
    assert truncated.bidirectional_ is False
    forced = RNNRegressor(bidirectional=False, **{**FAST, "max_iter": 2}).fit(X, y)
    assert forced.bidirectional_ is False and forced.transform(X).shape == (20, 8)
    with pytest.raises(ValueError, match="bidirectional"):
        RNNRegressor(bidirectional="both").fit(X, y)
