"""Smoke tests of the real-data benchmark suites' data tools and anchors (benchmarks/realdata)
on tiny generated data. Nothing here downloads anything or needs sktime; statsmodels (a
test dependency) runs the ETS anchor, torch comes through the ``torch`` fixture."""

import math
import os
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from benchmarks.realdata import anchors, datasets  # noqa: E402

# --------------------------------------------------------------------------- DTW


def test_dtw_distance_hand_computed():
    # local costs (a_i - b_j)^2 for a = 0, 1, 2 and b = 0, 2:  [[0, 4], [1, 1], [4, 0]];
    # cumulative: [[0, 4], [1, 1], [5, 1]]
    assert anchors.dtw_distance(np.array([0.0, 1.0, 2.0]), np.array([0.0, 2.0])) == 1.0
    # a warp absorbs a repeated value exactly
    assert anchors.dtw_distance([0.0, 0.0, 1.0, 2.0], [0.0, 1.0, 2.0, 2.0]) == 0.0
    # two channels: squared Euclidean local cost, one step each
    a = np.array([[0.0, 0.0]])
    b = np.array([[3.0, 4.0]])
    assert anchors.dtw_distance(a, b) == 25.0


def test_dtw_distance_symmetric_and_below_euclidean():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 12, 3))
    d = anchors.dtw_distance(a, b)
    assert d == pytest.approx(anchors.dtw_distance(b, a))
    assert 0.0 <= d <= np.sum((a - b) ** 2) + 1e-12
    assert anchors.dtw_distance(a, a) == 0.0


def test_dtw_nearest_matches_brute_force_on_ragged_series():
    rng = np.random.default_rng(1)
    train = [rng.standard_normal((int(t), 2)) for t in rng.integers(3, 9, size=7)]
    test = [rng.standard_normal((int(t), 2)) for t in rng.integers(3, 9, size=5)]
    idx, dist = anchors.dtw_nearest(train, test)
    for q, s in enumerate(test):
        brute = [anchors.dtw_distance(s, r) for r in train]
        assert idx[q] == int(np.argmin(brute))
        assert dist[q] == pytest.approx(min(brute))


def _bumps(n, seed, ragged=False):
    """Class 0: a positive bump, class 1: a negative one, at random places and lengths."""
    rng = np.random.default_rng(seed)
    X, y = [], []
    for i in range(n):
        T = int(rng.integers(15, 25)) if ragged else 20
        s = 0.05 * rng.standard_normal(T)
        at = int(rng.integers(2, T - 6))
        s[at:at + 4] += 1.0 if i % 2 == 0 else -1.0
        X.append(s)
        y.append(i % 2)
    return (X if ragged else np.array(X)), np.array(y)


def test_dtw_1nn_separates_a_tiny_set():
    X_train, y_train = _bumps(10, 0)
    X_test, y_test = _bumps(12, 1)
    out = anchors.dtw_1nn(X_train, y_train, X_test, y_test)
    assert out["accuracy"] == 1.0 and out["error_rate"] == 0.0 and out["seconds"] >= 0
    ragged = anchors.dtw_1nn(*_bumps(10, 2, ragged=True), *_bumps(12, 3, ragged=True))
    assert ragged["accuracy"] == 1.0


def test_as_series_list_layouts():
    two = anchors.as_series_list(np.zeros((3, 5)))
    three = anchors.as_series_list(np.zeros((3, 5, 2)))
    ragged = anchors.as_series_list([np.zeros(4), np.zeros(6)])
    assert [s.shape for s in two] == [(5, 1)] * 3
    assert [s.shape for s in three] == [(5, 2)] * 3
    assert [s.shape for s in ragged] == [(4, 1), (6, 1)]
    with pytest.raises(ValueError):
        anchors.as_series_list([np.zeros((4, 2)), np.zeros((4, 3))])


# --------------------------------------------------------------------------- regression anchors


def test_ridge_and_mean_anchors():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 5))
    y = X @ np.arange(1.0, 6.0)
    ridge = anchors.ridge_anchor(X[:40], y[:40], X[40:], y[40:])
    assert ridge["rmse"] < 0.1 and ridge["alpha"] in np.logspace(-3, 3, 13)
    mean = anchors.mean_anchor([1.0, 3.0], [1.0, 3.0])  # predicts 2 for both
    assert mean == {"rmse": 1.0, "mae": 1.0}


def test_flatten_series_pads_ragged_with_zeros():
    A, B = anchors.flatten_series([np.ones((2, 2))], [np.ones((3, 2))])
    assert A.shape == B.shape == (1, 6)
    assert A.tolist() == [[1, 1, 1, 1, 0, 0]]


# --------------------------------------------------------------------------- forecasting


def test_seasonal_naive_and_mase_by_hand():
    y_train = np.array([1.0, 3.0, 2.0, 4.0, 3.0, 5.0])
    assert anchors.seasonal_naive(y_train, 3, m=2).tolist() == [3.0, 5.0, 3.0]
    assert anchors.seasonal_naive(y_train, 2).tolist() == [5.0, 5.0]
    # in-sample seasonal-naive MAE (m = 2): mean(|2-1|, |4-3|, |3-2|, |5-4|) = 1
    assert anchors.mase([4.0, 6.0], [3.0, 5.0], y_train, m=2) == 1.0
    # m = 1: mean(2, 1, 2, 1, 2) = 1.6; forecast MAE 0.8
    assert anchors.mase([6.0, 5.0], [5.2, 5.8], y_train) == pytest.approx(0.5)


def test_interval_coverage_by_hand():
    cover = anchors.interval_coverage([1.0, 2.0, 3.0, 4.0], [0.0, 2.0, 3.5, 5.0],
                                      [2.0, 2.0, 4.0, 6.0])
    assert cover == 0.5  # 1 inside, 2 on both ends, 3 below, 4 below


def test_seasonal_naive_anchor_scores():
    y = np.tile([1.0, 2.0, 4.0], 5) + 0.1 * np.arange(15)
    out = anchors.seasonal_naive_anchor(y[:12], y[12:], m=3, level=0.9)
    # every seasonal difference is 0.3: the forecast is off by 0.3 per step, MASE 1
    assert out["mase"] == pytest.approx(1.0)
    assert out["mae"] == pytest.approx(0.3)
    # sigma 0.3: half-widths 1.645 * 0.3 = 0.49 > 0.3, every point inside
    assert out["coverage"] == 1.0
    wide = anchors.seasonal_naive_anchor(y[:12], y[12:], m=3, level=0.99)
    assert wide["interval_width"] > out["interval_width"]


def test_ets_anchor_on_a_seasonal_series():
    t = np.arange(60)
    y = 10 + 0.2 * t + 3 * np.sin(2 * np.pi * t / 12)
    y = y + 0.1 * np.random.default_rng(0).standard_normal(60)
    out = anchors.ets_anchor(y[:48], y[48:], m=12)
    assert out["seasonal"] == 1.0 and out["mase"] < 1.0
    assert 0.0 <= out["coverage"] <= 1.0
    assert anchors.ets_anchor(y[:48], y[48:], m=12)["mase"] == out["mase"]


# --------------------------------------------------------------------------- text


def test_char_bigram_perplexity_by_hand():
    # ids: 0 end, 1 unknown, 2 "a", 3 "b"; train "ab" gives the pairs 0->2, 2->3, 3->0
    train = [np.array([2, 3])]
    # add-one over 4 ids: each held-out pair has (1 + 1) / (1 + 4) = 2/5
    out = anchors.char_bigram(train, [np.array([2, 3])], 4)
    assert out["perplexity"] == pytest.approx(2.5)
    assert out["n_tokens"] == 3.0
    assert out["bits_per_char"] == pytest.approx(math.log2(2.5))
    # Witten-Bell: unigram (targets 0, 2, 3 once, add-one) = [2, 1, 2, 2] / 7; each context
    # has one count and one type: (1 + 2/7) / 2 = 9/14
    wb = anchors.char_bigram(train, [np.array([2, 3])], 4, smoothing="witten_bell")
    assert wb["perplexity"] == pytest.approx(14 / 9)
    # context "b" never seen in training: Witten-Bell falls back to the unigram
    unseen = anchors.char_bigram([np.array([2])], [np.array([3])], 4, smoothing="witten_bell")
    assert np.isfinite(unseen["perplexity"])
    with pytest.raises(ValueError):
        anchors.char_bigram(train, [np.array([7])], 4)


def test_char_bigram_is_normalised():
    rng = np.random.default_rng(0)
    train = [rng.integers(1, 6, size=int(n)) for n in rng.integers(1, 8, size=20)]
    for smoothing in ("add_one", "witten_bell"):
        probs = anchors.bigram_probabilities(train, 7, smoothing)  # id 6 never seen
        assert probs.shape == (7, 7) and (probs > 0).all()
        assert np.allclose(probs.sum(axis=1), 1.0)
    with pytest.raises(ValueError):
        anchors.bigram_probabilities(train, 7, "kneser_ney")


def test_text_corpus_split_and_encoding():
    train, test = datasets.load_text(train_chars=3000, test_chars=1000)
    assert 0 < sum(map(len, train)) <= 3000 and 0 < sum(map(len, test)) <= 1000
    assert (train, test) == datasets.load_text(train_chars=3000, test_chars=1000)
    assert all(len(set(s)) > 1 for s in train + test)
    train_ids, test_ids, vocab = datasets.encode_text(["ab", "ba"], ["abc"])
    assert vocab == ["<eos>", "<unk>", "a", "b"]
    assert train_ids[0].tolist() == [2, 3] and test_ids[0].tolist() == [2, 3, 1]
    info = datasets.text_info(train, test)
    assert info["train_chars"] == sum(map(len, train)) and len(info["corpus_sha256"]) == 64


# --------------------------------------------------------------------------- data tools


def test_make_adding_shapes_targets_and_determinism():
    X, y = datasets.make_adding(50, 20, seed=3)
    assert X.shape == (50, 20, 2) and y.shape == (50,)
    marks = X[:, :, 1]
    assert (marks.sum(axis=1) == 2).all()
    assert (marks[:, :10].sum(axis=1) == 1).all() and (marks[:, 10:].sum(axis=1) == 1).all()
    assert np.allclose(y, (X[:, :, 0] * marks).sum(axis=1))
    X2, y2 = datasets.make_adding(50, 20, seed=3)
    assert np.array_equal(X, X2) and np.array_equal(y, y2)
    assert not np.array_equal(X, datasets.make_adding(50, 20, seed=4)[0])


def test_make_delayed_recall_shapes_and_determinism():
    X, y = datasets.make_delayed_recall(40, 30, n_symbols=3, seed=1)
    assert X.shape == (40, 30, 4) and y.shape == (40,)
    assert np.array_equal(np.argmax(X[:, 0, :3], axis=1), y)
    assert (X[:, 0, 3] == 1).all() and (X[:, 1:, 3] == 0).all()
    assert set(np.unique(y)) <= {0, 1, 2}
    X2, y2 = datasets.make_delayed_recall(40, 30, n_symbols=3, seed=1)
    assert np.array_equal(X, X2) and np.array_equal(y, y2)


def test_read_ts_equal_ragged_and_regression(tmp_path):
    equal = tmp_path / "equal.ts"
    equal.write_text("# comment\n@problemName x\n@timeStamps false\n@univariate true\n"
                     "@classLabel true a b\n@data\n1,2,3:a\n4,?,6:b\n")
    X, y, meta = datasets.read_ts(str(equal))
    assert X.shape == (2, 3) and np.isnan(X[1, 1]) and y.tolist() == ["a", "b"]
    assert meta["problemname"] == "x"
    ragged = tmp_path / "ragged.ts"
    ragged.write_text("@problemName r\n@equalLength false\n@classLabel true 1 2\n@data\n"
                      "1,2:3,4:1\n5,6,7:8,9,10:2\n")
    X, y, _ = datasets.read_ts(str(ragged))
    assert isinstance(X, list) and [s.shape for s in X] == [(2, 2), (3, 2)]
    assert X[1][:, 1].tolist() == [8.0, 9.0, 10.0]
    reg = tmp_path / "reg.ts"
    reg.write_text("@problemname t\n@targetlabel true\n@data\n1,2:0.5\n3,4:1.5\n")
    X, y, _ = datasets.read_ts(str(reg))
    assert X.shape == (2, 2) and y.dtype == np.float64 and y.tolist() == [0.5, 1.5]


def test_missing_data_package_names_the_install_line():
    with pytest.raises(ImportError, match="pip install"):
        datasets.package_data_dir("no_such_package_rnnumba_bench")


def test_registries_are_consistent():
    for name, entry in datasets.SEQUENCE_DATASETS.items():
        assert entry["task"] in ("classification", "regression") and entry["torch_epochs"] > 0
    for name, entry in datasets.FORECAST_DATASETS.items():
        assert entry["m"] >= 1 and entry["h"] >= 1
    with pytest.raises(ValueError):
        datasets.load_sequences("nope")


# --------------------------------------------------------------------------- PyTorch anchors


def test_torch_lstm_classifier_runs_and_repeats(torch):
    X_train, y_train = _bumps(16, 0)
    X_test, y_test = _bumps(8, 1)
    first = anchors.torch_lstm_classifier(X_train, y_train, X_test, y_test, epochs=2,
                                          hidden=8)
    again = anchors.torch_lstm_classifier(X_train, y_train, X_test, y_test, epochs=2,
                                          hidden=8)
    assert 0.0 <= first["accuracy"] <= 1.0 and first["epochs"] == 2
    assert first["final_train_loss"] == again["final_train_loss"]
    assert first["accuracy"] == again["accuracy"]
    ragged = anchors.torch_lstm_classifier(*_bumps(16, 2, ragged=True),
                                           *_bumps(8, 3, ragged=True), epochs=1, hidden=8)
    assert 0.0 <= ragged["accuracy"] <= 1.0


def test_torch_lstm_regressor_runs(torch):
    X, y = datasets.make_adding(24, 10, seed=0)
    out = anchors.torch_lstm_regressor(X[:16], y[:16], X[16:], y[16:], epochs=2, hidden=8)
    assert out["rmse"] > 0 and out["mae"] > 0 and out["fit_seconds"] >= 0


def test_torch_char_lm_and_sampling(torch):
    train = [np.array([2, 3, 2, 3]), np.array([3, 2]), np.array([2, 2, 3])]
    test = [np.array([2, 3])]
    out, model = anchors.torch_char_lm(train, test, 4, embed=4, hidden=8, epochs=2,
                                       batch_size=2, sample_tokens=20, return_model=True)
    assert 1.0 < out["perplexity"] < 100 and out["tokens_per_second"] > 0
    assert out["n_tokens"] == 20.0
    again = anchors.torch_char_lm(train, test, 4, embed=4, hidden=8, epochs=2, batch_size=2,
                                  sample_tokens=0)
    assert again["perplexity"] == out["perplexity"] and "tokens_per_second" not in again
    # the perplexity helper counts the end of each sequence: 3 tokens for [2, 3]
    ppl = anchors.lm_perplexity(model, test)
    assert ppl == pytest.approx(out["perplexity"])
    s1 = anchors.torch_char_lm_sampling(model, 30, seed=1)
    s2 = anchors.torch_char_lm_sampling(model, 30, seed=1)
    assert s1["sequences"] == s2["sequences"]
