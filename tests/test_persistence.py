"""Pickle, joblib and the safe ``save``/``load`` format."""

import io
import json
import pickle
import zipfile

import joblib
import numpy as np
import pytest

import rnnumba
from rnnumba import RNNClassifier, RNNRegressor
from rnnumba.persistence import FORMAT_VERSION

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def _data(n=40):
    rng = np.random.RandomState(0)
    X = rng.randn(n, 5, 2)
    return X, X[:, :, 0].sum(axis=1)


@pytest.fixture(scope="module")
def fitted():
    X, y = _data()
    reg = RNNRegressor(cell="gru", hidden_layer_sizes=(6, 4), bidirectional=True, max_iter=3,
                       random_state=0).fit(X, np.column_stack([y, -y]))
    clf = RNNClassifier(hidden_layer_sizes=(5,), max_iter=3, random_state=0,
                        class_weight={"neg": 2.0, "pos": 1.0}, early_stopping=True,
                        validation_fraction=0.25).fit(X, np.where(y > 0, "pos", "neg"))
    seq = RNNClassifier(cell="rnn", activation="relu", return_sequences=True,
                        hidden_layer_sizes=(4,), max_iter=2, random_state=0,
                        dtype="float32").fit(X, (np.cumsum(X[:, :, 0], axis=1) > 0))
    return X, {"reg": reg, "clf": clf, "seq": seq}


def _outputs(est, X):
    if isinstance(est, RNNClassifier):
        return est.predict_proba(X)
    return est.predict(X)


@pytest.mark.parametrize("name", ["reg", "clf", "seq"])
def test_pickle_and_joblib_round_trip_exactly(fitted, name, tmp_path):
    X, models = fitted
    est = models[name]
    again = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(_outputs(est, X), _outputs(again, X))
    joblib.dump(est, tmp_path / "m.joblib")
    loaded = joblib.load(tmp_path / "m.joblib")
    np.testing.assert_array_equal(_outputs(est, X), _outputs(loaded, X))
    # the unpickled model keeps training on its own buffers
    if name == "reg":
        before = loaded.predict(X).copy()
        loaded.partial_fit(X, np.column_stack([X[:, :, 0].sum(1), -X[:, :, 0].sum(1)]))
        assert not np.array_equal(before, loaded.predict(X))
        np.testing.assert_array_equal(_outputs(est, X), _outputs(again, X))


@pytest.mark.parametrize("name", ["reg", "clf", "seq"])
def test_save_load_round_trip(fitted, name, tmp_path):
    X, models = fitted
    est = models[name]
    path = tmp_path / "model.npz"
    est.save(path)
    loaded = rnnumba.load(path)
    assert type(loaded) is type(est)
    assert loaded.get_params() == est.get_params()
    np.testing.assert_array_equal(_outputs(est, X), _outputs(loaded, X))
    for attr in ("n_features_in_", "n_outputs_", "n_iter_", "t_", "loss_", "loss_curve_",
                 "best_loss_", "validation_scores_", "best_validation_score_", "device_"):
        assert getattr(loaded, attr) == getattr(est, attr), attr
    if hasattr(est, "classes_"):
        np.testing.assert_array_equal(loaded.classes_, est.classes_)
        assert loaded.classes_.dtype == est.classes_.dtype
    assert list(loaded.predict(X[:3]).tolist()) == list(est.predict(X[:3]).tolist())


def test_loaded_model_can_continue_training(fitted, tmp_path):
    X, models = fitted
    models["reg"].save(tmp_path / "m.npz")
    loaded = rnnumba.load(tmp_path / "m.npz")
    y2 = np.column_stack([X[:, :, 0].sum(1), -X[:, :, 0].sum(1)])
    loaded.partial_fit(X, y2)
    assert loaded.n_iter_ == models["reg"].n_iter_ + 1


def test_file_objects(fitted):
    X, models = fitted
    buf = io.BytesIO()
    models["clf"].save(buf)
    buf.seek(0)
    np.testing.assert_array_equal(rnnumba.load(buf).predict(X), models["clf"].predict(X))


def test_object_string_labels_restore(tmp_path):
    X, y = _data()
    labels = np.where(y > 0, "pos", "neg").astype(object)
    est = RNNClassifier(hidden_layer_sizes=(3,), max_iter=1, random_state=0).fit(X, labels)
    est.save(tmp_path / "m.npz")
    loaded = rnnumba.load(tmp_path / "m.npz")
    assert loaded.classes_.dtype == object
    assert loaded.predict(X[:4]).tolist() == est.predict(X[:4]).tolist()


def test_unfitted_cannot_be_saved(tmp_path):
    from sklearn.exceptions import NotFittedError
    with pytest.raises(NotFittedError):
        RNNRegressor().save(tmp_path / "x.npz")


def _rewrite(src, dst, mutate):
    with np.load(src, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    mutate(arrays)
    with open(dst, "wb") as fh:
        np.savez(fh, **arrays)


def _meta(arrays):
    return json.loads(str(arrays["__metadata__"]))


def _set_meta(arrays, meta):
    arrays["__metadata__"] = np.array(json.dumps(meta))


@pytest.mark.parametrize("damage", [
    "truncated", "garbage", "empty", "foreign_npz", "wrong_format", "future_version",
    "pickled_object", "bad_shape", "nan_weights", "unknown_param", "bad_param",
    "missing_layer", "pickle_file", "bad_json",
])
def test_corrupt_or_foreign_files_are_value_errors(fitted, tmp_path, damage):
    X, models = fitted
    good = tmp_path / "good.npz"
    models["reg"].save(good)
    bad = tmp_path / "bad.npz"
    raw = good.read_bytes()
    if damage == "truncated":
        bad.write_bytes(raw[: len(raw) // 2])
    elif damage == "garbage":
        bad.write_bytes(b"\x00\x01garbage" * 50)
    elif damage == "empty":
        bad.write_bytes(b"")
    elif damage == "foreign_npz":
        np.savez(bad, a=np.arange(3))
    elif damage == "pickle_file":
        bad.write_bytes(pickle.dumps(models["reg"]))
    elif damage == "pickled_object":
        with zipfile.ZipFile(bad, "w") as zf:
            buf = io.BytesIO()
            np.save(buf, np.array([{"evil": 1}], dtype=object), allow_pickle=True)
            zf.writestr("__metadata__.npy", buf.getvalue())
    else:
        def mutate(arrays):
            meta = _meta(arrays)
            if damage == "wrong_format":
                meta["format"] = "something-else"
            elif damage == "future_version":
                meta["format_version"] = FORMAT_VERSION + 1
            elif damage == "unknown_param":
                meta["params"]["evil"] = 1
            elif damage == "bad_param":
                meta["params"]["cell"] = "transformer"
            elif damage == "bad_json":
                arrays["__metadata__"] = np.array("{not json")
                return
            elif damage == "bad_shape":
                arrays["model/recurrent.weight_hh_l0"] = \
                    arrays["model/recurrent.weight_hh_l0"][:, :2]
            elif damage == "nan_weights":
                arrays["model/head.weight"] = np.full_like(arrays["model/head.weight"], np.nan)
            elif damage == "missing_layer":
                del arrays["model/recurrent.bias_ih_l1"]
            _set_meta(arrays, meta)
        _rewrite(good, bad, mutate)
    with pytest.raises(ValueError):
        rnnumba.load(bad)


@pytest.mark.parametrize("content", [bytes(range(256)) * 4, b"", b"\x80\x04garbage",
                                     b"\x93NUMPY garbage"])
def test_foreign_bytes_never_suggest_unsafe_loading(tmp_path, content):
    """A safe loader names the problem and never repeats NumPy's hint to load with
    ``allow_pickle``."""
    path = tmp_path / "random.npz"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="not an rnnumba estimator file") as info:
        rnnumba.load(path)
    assert "allow_pickle" not in str(info.value) and "pickle" not in str(info.value)


def test_version_1_files_still_load():
    """A file written by rnnumba 0.1 (format version 1: one archive prefix per recurrent
    layer, the head as one flat array) loads and predicts as it did."""
    import pathlib
    data = pathlib.Path(__file__).parent / "data"
    reference = np.load(data / "v1_expected.npz")
    for name in ("regressor", "classifier"):
        est = rnnumba.load(data / f"v1_{name}.npz")
        X = reference["X"]
        got = est.predict_proba(X) if name == "classifier" else est.predict(X)
        np.testing.assert_allclose(got, reference[name], rtol=1e-12, atol=1e-14)


def test_files_from_before_a_parameter_keep_its_former_value(fitted, tmp_path):
    """A file saved before ``forget_bias`` existed loads with ``forget_bias=None`` (the
    uniform draw that estimator was initialised with), not with today's default."""
    X, models = fitted
    path, old = tmp_path / "new.npz", tmp_path / "old.npz"
    models["clf"].save(path)
    assert rnnumba.load(path).forget_bias == 1.0

    def drop_forget_bias(arrays):
        meta = _meta(arrays)
        del meta["params"]["forget_bias"]
        _set_meta(arrays, meta)

    _rewrite(path, old, drop_forget_bias)
    loaded = rnnumba.load(old)
    assert loaded.forget_bias is None
    np.testing.assert_array_equal(loaded.predict_proba(X), models["clf"].predict_proba(X))


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        rnnumba.load(tmp_path / "nope.npz")
