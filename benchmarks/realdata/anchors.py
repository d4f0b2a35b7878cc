"""Anchors of the real-data suites: the baselines rnnumba's defaults are measured against.

Every anchor takes arrays (in the layouts of ``datasets``) and returns a dict of numbers;
all are seeded and deterministic (the timings aside). Nothing heavy is imported here: torch,
scikit-learn and statsmodels are imported inside the functions that use them.

Sequence classification and regression (``X`` is ``(n, T)``, ``(n, T, k)`` or a list of
``(T_i, k)`` arrays):

- ``dtw_1nn``: 1-nearest neighbour under dynamic time warping with a full window, written
  here as a Numba kernel. The local cost is the squared Euclidean distance between the
  channel vectors of two steps (dependent DTW), the distance the smallest sum of local costs
  along a warping path (not square-rooted: the order is the same). Unequal lengths work.
  Candidates are abandoned early once a whole row of the cost matrix exceeds the best
  distance so far (exact); ties go to the first training series.
- ``torch_lstm_classifier`` / ``torch_lstm_regressor``: a plain PyTorch recipe,
  ``nn.LSTM(k, 64, batch_first=True)`` and ``nn.Linear(64, out)`` on the last layer's final
  state (``pack_padded_sequence`` for ragged sets), Adam (lr 1e-3), mini-batches of 16
  reshuffled each epoch, 300 epochs (``datasets.SEQUENCE_DATASETS[name]["torch_epochs"]``
  caps the long adding problems), cross-entropy (classification) or MSE on the raw targets
  (regression, RMSE reported), float32, raw unscaled inputs, no early stopping. The batch
  order comes from ``numpy.random.default_rng(seed)``, the weights from ``torch.manual_seed``.
- ``ridge_anchor``: ``RidgeCV(alphas=np.logspace(-3, 3, 13))`` on the flattened series
  (ragged ones zero-padded to the longest length), and ``mean_anchor``, the training mean.

Forecasting (``y_train``, ``y_test`` 1-D arrays or Series, ``m`` the seasonal period):

- ``seasonal_naive_anchor``: the last season repeated, with the usual normal intervals whose
  scale is the RMS of the in-sample seasonal differences times ``sqrt(1 + (j - 1) // m)``.
- ``ets_anchor``: one fixed automatic rule for every series, statsmodels'
  ``ETSModel(error="add", trend="add", damped_trend=True, seasonal="add" if m > 1 else None)``
  fitted by maximum likelihood with estimated initial states, and its analytic prediction
  intervals. Seasonality is dropped when the training part has fewer than two full seasons.
- ``mase`` (scaled by the in-sample MAE of the seasonal naive forecast of period ``m``, the
  standard definition) and ``interval_coverage`` (fraction of held-out points inside
  ``[lower, upper]``, ends included).

Character language modelling (sequences are int arrays of ids from ``datasets.encode_text``;
id 0 is end of sequence and the start context; every sequence is scored with its end):

- ``char_bigram``: a character bigram model, add-one (Laplace) or Witten-Bell interpolated
  with an add-one unigram, returning held-out per-character perplexity.
- ``torch_char_lm``: embedding 32, ``nn.LSTM(32, 128)``, a linear head over the vocabulary;
  Adam (lr 2e-3), gradient-norm clipping at 1.0, 20 epochs, cross-entropy. Each sequence (one
  line, at most a few hundred characters) is one full BPTT window from a zero state: no
  truncation. Batches of 32 sequences of similar length (sorted by length, then cut), the
  batches' order reshuffled each epoch; padding is masked out of the loss.
- ``torch_char_lm_sampling``: sampling from that model step by step with the state carried
  (temperature 1; the state restarts after each end of sequence), in tokens per second.
"""

import math
import time

import numpy as np
from numba import njit, prange

# --------------------------------------------------------------------------- sequence layouts


def as_series_list(X):
    """``X`` in any of the three layouts as a list of C-contiguous float64 ``(T_i, k)``."""
    if isinstance(X, np.ndarray) and X.dtype != object:
        if X.ndim == 2:
            X = X[:, :, None]
        if X.ndim != 3:
            raise ValueError(f"X must be (n, T) or (n, T, k); got shape {X.shape}")
        return [np.ascontiguousarray(s, dtype=np.float64) for s in X]
    out = []
    for s in X:
        s = np.asarray(s, dtype=np.float64)
        if s.ndim == 1:
            s = s[:, None]
        if s.ndim != 2 or s.shape[0] == 0:
            raise ValueError("each series must be a non-empty (T_i,) or (T_i, k) array")
        out.append(np.ascontiguousarray(s))
    if len({s.shape[1] for s in out}) > 1:
        raise ValueError("all series must have the same number of channels")
    return out


def _concat(series):
    offsets = np.zeros(len(series) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([s.shape[0] for s in series])
    return np.ascontiguousarray(np.concatenate(series, axis=0)), offsets


def pad_series(series, length=None, value=0.0):
    """``(array (n, length, k), lengths (n,))`` of a list of ``(T_i, k)`` arrays."""
    lengths = np.array([s.shape[0] for s in series], dtype=np.int64)
    length = int(lengths.max()) if length is None else int(length)
    out = np.full((len(series), length, series[0].shape[1]), value, dtype=np.float64)
    for i, s in enumerate(series):
        out[i, :s.shape[0]] = s
    return out, lengths


# --------------------------------------------------------------------------- DTW


@njit(cache=True)
def _dtw_core(a, b, cutoff, prev, cur):
    n, m, k = a.shape[0], b.shape[0], a.shape[1]
    prev[0] = 0.0
    for j in range(1, m + 1):
        prev[j] = np.inf
    for i in range(1, n + 1):
        cur[0] = np.inf
        row_min = np.inf
        for j in range(1, m + 1):
            d = 0.0
            for c in range(k):
                diff = a[i - 1, c] - b[j - 1, c]
                d += diff * diff
            best = prev[j - 1]
            if prev[j] < best:
                best = prev[j]
            if cur[j - 1] < best:
                best = cur[j - 1]
            v = best + d
            cur[j] = v
            if v < row_min:
                row_min = v
        if row_min > cutoff:
            return np.inf
        prev, cur = cur, prev
    return prev[m]


@njit(parallel=True, cache=True)
def _nearest_dtw(train, train_off, test, test_off):
    n_train = train_off.shape[0] - 1
    n_test = test_off.shape[0] - 1
    max_len = 0
    for i in range(n_train):
        max_len = max(max_len, train_off[i + 1] - train_off[i])
    nearest = np.empty(n_test, dtype=np.int64)
    dist = np.empty(n_test, dtype=np.float64)
    for q in prange(n_test):
        prev = np.empty(max_len + 1)
        cur = np.empty(max_len + 1)
        a = test[test_off[q]:test_off[q + 1]]
        best = np.inf
        arg = 0
        for i in range(n_train):
            d = _dtw_core(a, train[train_off[i]:train_off[i + 1]], best, prev, cur)
            if d < best:
                best = d
                arg = i
        nearest[q] = arg
        dist[q] = best
    return nearest, dist


def dtw_distance(a, b):
    """DTW distance of two series ``(T_a,)``/``(T_a, k)`` and ``(T_b,)``/``(T_b, k)``.

    Full window; local cost the squared Euclidean distance of the step vectors; the result
    is the smallest path sum (not square-rooted).
    """
    a, b = as_series_list([a, b])
    prev = np.empty(b.shape[0] + 1)
    cur = np.empty(b.shape[0] + 1)
    return float(_dtw_core(a, b, np.inf, prev, cur))


def dtw_nearest(X_train, X_test):
    """``(index, distance)`` of each test series' nearest training series under DTW."""
    train, test = as_series_list(X_train), as_series_list(X_test)
    if train[0].shape[1] != test[0].shape[1]:
        raise ValueError("train and test series have different numbers of channels")
    tr, tr_off = _concat(train)
    te, te_off = _concat(test)
    return _nearest_dtw(tr, tr_off, te, te_off)


def dtw_1nn(X_train, y_train, X_test, y_test):
    """1-NN DTW classifier: ``{"accuracy", "error_rate", "seconds"}`` (seconds after compile).

    For a regression set, ``dtw_1nn_regression`` gives the nearest neighbour's target.
    """
    _warm_dtw()
    start = time.perf_counter()
    idx, _ = dtw_nearest(X_train, X_test)
    seconds = time.perf_counter() - start
    pred = np.asarray(y_train)[idx]
    accuracy = float(np.mean(pred == np.asarray(y_test)))
    return {"accuracy": accuracy, "error_rate": 1.0 - accuracy, "seconds": seconds}


def dtw_1nn_regression(X_train, y_train, X_test, y_test):
    """1-NN DTW regressor (the nearest training series' target): ``{"rmse", "mae", "seconds"}``."""
    _warm_dtw()
    start = time.perf_counter()
    idx, _ = dtw_nearest(X_train, X_test)
    seconds = time.perf_counter() - start
    out = _regression_scores(np.asarray(y_test, float), np.asarray(y_train, float)[idx])
    out["seconds"] = seconds
    return out


def _warm_dtw():
    x = np.zeros((2, 3))
    dtw_nearest(x, x)


# --------------------------------------------------------------------------- scores


def _regression_scores(y_true, y_pred):
    err = np.asarray(y_pred, dtype=np.float64) - np.asarray(y_true, dtype=np.float64)
    return {"rmse": float(np.sqrt(np.mean(err ** 2))), "mae": float(np.mean(np.abs(err)))}


def mean_anchor(y_train, y_test):
    """Predict the training mean for every test series: ``{"rmse", "mae"}``."""
    y_train = np.asarray(y_train, dtype=np.float64)
    return _regression_scores(y_test, np.full(len(y_test), y_train.mean()))


def flatten_series(X_train, X_test):
    """Both sets as ``(n, T_max * k)`` rows, zero-padded to the longest series of either."""
    train, test = as_series_list(X_train), as_series_list(X_test)
    length = max(max(s.shape[0] for s in train), max(s.shape[0] for s in test))
    A, _ = pad_series(train, length)
    B, _ = pad_series(test, length)
    return A.reshape(len(train), -1), B.reshape(len(test), -1)


def ridge_anchor(X_train, y_train, X_test, y_test, alphas=None):
    """``RidgeCV`` on the flattened series: ``{"rmse", "mae", "alpha"}``."""
    from sklearn.linear_model import RidgeCV
    alphas = np.logspace(-3, 3, 13) if alphas is None else alphas
    A, B = flatten_series(X_train, X_test)
    model = RidgeCV(alphas=alphas).fit(A, np.asarray(y_train, dtype=np.float64))
    out = _regression_scores(y_test, model.predict(B))
    out["alpha"] = float(model.alpha_)
    return out


# --------------------------------------------------------------------------- PyTorch LSTM recipe


def _torch(seed, threads):
    import torch
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(int(threads))
    torch.manual_seed(seed)
    return torch, previous


def _sequence_tensors(torch, X):
    series = as_series_list(X)
    padded, lengths = pad_series(series)
    ragged = bool(lengths.min() != lengths.max())
    return torch.from_numpy(padded.astype(np.float32)), torch.from_numpy(lengths), ragged


def _last_state_model(torch, n_features, hidden, n_out):
    from torch.nn.utils.rnn import pack_padded_sequence

    class LastState(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = torch.nn.LSTM(n_features, hidden, batch_first=True)
            self.head = torch.nn.Linear(hidden, n_out)

        def forward(self, x, lengths=None):
            if lengths is not None:
                x = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
            _, (h, _) = self.lstm(x)
            return self.head(h[-1])

    return LastState()


def _fit_last_state(X_train, target, X_test, n_out, loss_fn, *, hidden, epochs, batch_size,
                    lr, seed, threads):
    """Train the recipe; ``(test outputs (n_test, n_out) ndarray, info dict)``."""
    torch, previous = _torch(seed, threads)
    try:
        x, lengths, ragged = _sequence_tensors(torch, X_train)
        xt, lengths_t, ragged_t = _sequence_tensors(torch, X_test)
        model = _last_state_model(torch, x.shape[2], hidden, n_out)
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        rng = np.random.default_rng(seed)
        n = x.shape[0]
        start = time.perf_counter()
        epoch_loss = float("nan")
        for _ in range(epochs):
            perm = rng.permutation(n)
            total = 0.0
            for lo in range(0, n, batch_size):
                idx = torch.from_numpy(perm[lo:lo + batch_size])
                out = model(x[idx], lengths[idx] if ragged else None)
                loss = loss_fn(out, target[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += loss.item() * len(idx)
            epoch_loss = total / n
        fit_seconds = time.perf_counter() - start
        start = time.perf_counter()
        with torch.no_grad():
            outs = [model(xt[lo:lo + 256], lengths_t[lo:lo + 256] if ragged_t else None)
                    for lo in range(0, xt.shape[0], 256)]
        predict_seconds = time.perf_counter() - start
        info = {"fit_seconds": fit_seconds, "predict_seconds": predict_seconds,
                "epochs": epochs, "final_train_loss": epoch_loss,
                "threads": torch.get_num_threads()}
        return torch.cat(outs).numpy().astype(np.float64), info
    finally:
        torch.set_num_threads(previous)


def torch_lstm_classifier(X_train, y_train, X_test, y_test, *, hidden=64, epochs=300,
                          batch_size=16, lr=1e-3, seed=0, threads=None):
    """The PyTorch LSTM recipe as a classifier: ``{"accuracy", "fit_seconds",
    "predict_seconds", "epochs", "final_train_loss", "threads"}``."""
    import torch
    classes, codes = np.unique(np.asarray(y_train), return_inverse=True)
    target = torch.from_numpy(codes.astype(np.int64))
    out, info = _fit_last_state(X_train, target, X_test, len(classes),
                                torch.nn.functional.cross_entropy, hidden=hidden,
                                epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                                threads=threads)
    pred = classes[np.argmax(out, axis=1)]
    return {"accuracy": float(np.mean(pred == np.asarray(y_test))), **info}


def torch_lstm_regressor(X_train, y_train, X_test, y_test, *, hidden=64, epochs=300,
                         batch_size=16, lr=1e-3, seed=0, threads=None):
    """The PyTorch LSTM recipe as a regressor (MSE on raw targets): ``{"rmse", "mae",
    "fit_seconds", "predict_seconds", "epochs", "final_train_loss", "threads"}``."""
    import torch
    target = torch.from_numpy(np.asarray(y_train, dtype=np.float32).reshape(-1, 1))
    out, info = _fit_last_state(X_train, target, X_test, 1, torch.nn.functional.mse_loss,
                                hidden=hidden, epochs=epochs, batch_size=batch_size, lr=lr,
                                seed=seed, threads=threads)
    return {**_regression_scores(y_test, out[:, 0]), **info}


# --------------------------------------------------------------------------- forecasting


def _series(y):
    y = np.asarray(y, dtype=np.float64)
    if y.ndim != 1:
        raise ValueError("a forecasting series must be one-dimensional")
    return y


def seasonal_naive(y_train, h, m=1):
    """The last ``m`` values repeated over ``h`` steps (``m = 1``: the last value)."""
    y = _series(y_train)
    if not 1 <= m <= len(y):
        raise ValueError("need 1 <= m <= len(y_train)")
    return y[len(y) - m + np.arange(h) % m].copy()


def mase(y_true, y_pred, y_train, m=1):
    """Mean absolute scaled error: the forecast's MAE over the in-sample MAE of the seasonal
    naive forecast of period ``m`` (``mean |y_t - y_{t-m}|`` over the training part)."""
    y_train = _series(y_train)
    if len(y_train) <= m:
        raise ValueError("the training part must be longer than m")
    scale = np.mean(np.abs(y_train[m:] - y_train[:-m]))
    return float(np.mean(np.abs(_series(y_true) - _series(y_pred))) / scale)


def interval_coverage(y_true, lower, upper):
    """Fraction of ``y_true`` inside ``[lower, upper]`` (ends included)."""
    y = _series(y_true)
    return float(np.mean((y >= _series(lower)) & (y <= _series(upper))))


def _forecast_scores(y_train, y_test, mean, lower, upper, m):
    y_test = _series(y_test)
    out = _regression_scores(y_test, mean)
    out["mase"] = mase(y_test, mean, y_train, m)
    out["coverage"] = interval_coverage(y_test, lower, upper)
    out["interval_width"] = float(np.mean(np.asarray(upper) - np.asarray(lower)))
    return out


def seasonal_naive_anchor(y_train, y_test, m=1, level=0.9):
    """Seasonal naive forecast over the held-out tail: ``{"mase", "rmse", "mae", "coverage",
    "interval_width"}`` (intervals at ``level``)."""
    from scipy.stats import norm
    y = _series(y_train)
    h = len(y_test)
    mean = seasonal_naive(y, h, m)
    sigma = np.sqrt(np.mean((y[m:] - y[:-m]) ** 2))
    half = norm.ppf(0.5 + level / 2) * sigma * np.sqrt(1 + np.arange(h) // m)
    return _forecast_scores(y, y_test, mean, mean - half, mean + half, m)


def ets_anchor(y_train, y_test, m=1, level=0.9):
    """Damped-trend additive ETS (seasonal where ``m > 1``): ``{"mase", "rmse", "mae",
    "coverage", "interval_width", "aic", "seasonal", "seconds"}``."""
    import warnings

    import pandas as pd
    from statsmodels.tsa.exponential_smoothing.ets import ETSModel
    y = _series(y_train)
    h = len(y_test)
    seasonal = m > 1 and len(y) >= 2 * m
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # optimizer convergence chatter
        model = ETSModel(pd.Series(y), error="add", trend="add", damped_trend=True,
                         seasonal="add" if seasonal else None,
                         seasonal_periods=m if seasonal else None)
        res = model.fit(disp=False)
        frame = res.get_prediction(start=len(y), end=len(y) + h - 1).summary_frame(
            alpha=1 - level)
    seconds = time.perf_counter() - start
    out = _forecast_scores(y, y_test, frame["mean"].to_numpy(), frame["pi_lower"].to_numpy(),
                           frame["pi_upper"].to_numpy(), m)
    out.update(aic=float(res.aic), seasonal=float(seasonal), seconds=seconds)
    return out


# --------------------------------------------------------------------------- text

EOS = 0


def _check_ids(seqs, vocab_size):
    for s in seqs:
        s = np.asarray(s)
        if s.size and (s.min() < 0 or s.max() >= vocab_size):
            raise ValueError("token ids must lie in [0, vocab_size)")


def _bigram_pairs(seqs):
    ctx, tgt = [], []
    for s in seqs:
        s = np.asarray(s, dtype=np.int64)
        ctx.append(np.concatenate(([EOS], s)))
        tgt.append(np.concatenate((s, [EOS])))
    return np.concatenate(ctx), np.concatenate(tgt)


def char_bigram(train_ids, test_ids, vocab_size, smoothing="add_one"):
    """Held-out perplexity of a character bigram model: ``{"perplexity", "bits_per_char",
    "n_tokens"}``, end of sequence counted as a token.

    ``smoothing``: ``"add_one"`` (Laplace over the ``vocab_size`` ids) or ``"witten_bell"``
    (bigram interpolated with the add-one unigram, weight by the number of distinct
    followers of each context).
    """
    _check_ids(test_ids, vocab_size)
    probs = bigram_probabilities(train_ids, vocab_size, smoothing)
    c, t = _bigram_pairs(test_ids)
    nll = -np.log(probs[c, t]).sum()
    n = len(t)
    return {"perplexity": float(np.exp(nll / n)), "bits_per_char": float(nll / n / math.log(2)),
            "n_tokens": float(n)}


def bigram_probabilities(train_ids, vocab_size, smoothing="add_one"):
    """``P[context, next]`` (``(V, V)``, rows summing to 1) of ``char_bigram``'s model."""
    _check_ids(train_ids, vocab_size)
    V = int(vocab_size)
    ctx, tgt = _bigram_pairs(train_ids)
    counts = np.zeros((V, V))
    np.add.at(counts, (ctx, tgt), 1.0)
    totals = counts.sum(axis=1, keepdims=True)
    if smoothing == "add_one":
        probs = (counts + 1.0) / (totals + V)
    elif smoothing == "witten_bell":
        unigram = (counts.sum(axis=0) + 1.0) / (counts.sum() + V)
        types = (counts > 0).sum(axis=1, keepdims=True).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            probs = (counts + types * unigram) / (totals + types)
        probs[totals[:, 0] == 0] = unigram
    else:
        raise ValueError("smoothing must be 'add_one' or 'witten_bell'")
    return probs


def build_char_lm(vocab_size, embed=32, hidden=128, seed=0):
    """The recipe's model (embedding, one LSTM layer, linear head), seeded; torch imported."""
    import torch
    torch.manual_seed(seed)

    class CharLM(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(vocab_size, embed)
            self.lstm = torch.nn.LSTM(embed, hidden, batch_first=True)
            self.head = torch.nn.Linear(hidden, vocab_size)

        def forward(self, tokens, state=None):
            out, state = self.lstm(self.embed(tokens), state)
            return self.head(out), state

    return CharLM()


def _lm_batches(torch, seqs, batch_size):
    """Fixed batches of similar-length sequences: ``[(inputs, targets)]``, padded targets
    set to -100 (ignored by the loss)."""
    order = sorted(range(len(seqs)), key=lambda i: (len(seqs[i]), i))
    batches = []
    for lo in range(0, len(order), batch_size):
        chunk = [np.asarray(seqs[i], dtype=np.int64) for i in order[lo:lo + batch_size]]
        width = max(len(s) for s in chunk) + 1
        inp = np.full((len(chunk), width), EOS, dtype=np.int64)
        tgt = np.full((len(chunk), width), -100, dtype=np.int64)
        for r, s in enumerate(chunk):
            inp[r, 1:len(s) + 1] = s
            tgt[r, :len(s)] = s
            tgt[r, len(s)] = EOS
        batches.append((torch.from_numpy(inp), torch.from_numpy(tgt)))
    return batches


def lm_perplexity(model, seqs, batch_size=64):
    """Per-token perplexity of ``model`` (``build_char_lm``'s) on ``seqs``, ends included."""
    import torch
    nll, n = 0.0, 0
    with torch.no_grad():
        for inp, tgt in _lm_batches(torch, seqs, batch_size):
            logits, _ = model(inp)
            nll += float(torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1), ignore_index=-100,
                reduction="sum"))
            n += int((tgt != -100).sum())
    return math.exp(nll / n)


def torch_char_lm(train_ids, test_ids, vocab_size, *, embed=32, hidden=128, epochs=20,
                  batch_size=32, lr=2e-3, clip=1.0, seed=0, sample_tokens=2000, threads=None,
                  return_model=False):
    """Train the same-size PyTorch recipe: ``{"perplexity", "bits_per_char",
    "train_perplexity", "fit_seconds", "epochs", "threads"}`` plus, when ``sample_tokens``,
    ``torch_char_lm_sampling``'s ``"tokens_per_second"``. ``return_model=True`` returns
    ``(dict, model)``."""
    _check_ids(train_ids, vocab_size)
    _check_ids(test_ids, vocab_size)
    torch, previous = _torch(seed, threads)
    try:
        model = build_char_lm(vocab_size, embed, hidden, seed)
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        batches = _lm_batches(torch, train_ids, batch_size)
        rng = np.random.default_rng(seed)
        start = time.perf_counter()
        for _ in range(epochs):
            for b in rng.permutation(len(batches)):
                inp, tgt = batches[b]
                logits, _ = model(inp)
                loss = torch.nn.functional.cross_entropy(
                    logits.reshape(-1, vocab_size), tgt.reshape(-1), ignore_index=-100)
                opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
                opt.step()
        fit_seconds = time.perf_counter() - start
        ppl = lm_perplexity(model, test_ids)
        out = {"perplexity": ppl, "bits_per_char": math.log2(ppl),
               "train_perplexity": lm_perplexity(model, train_ids),
               "fit_seconds": fit_seconds, "epochs": epochs,
               "threads": torch.get_num_threads()}
        if sample_tokens:
            out.update(torch_char_lm_sampling(model, sample_tokens, seed=seed))
    finally:
        torch.set_num_threads(previous)
    return (out, model) if return_model else out


def torch_char_lm_sampling(model, n_tokens=2000, seed=0, temperature=1.0):
    """Sample ``n_tokens`` ids one step at a time with the state carried: ``{"tokens_per_second",
    "n_tokens", "sequences"}`` (``sequences``: ends of sequence sampled)."""
    import torch
    gen = torch.Generator().manual_seed(seed)
    token = torch.full((1, 1), EOS, dtype=torch.long)
    state, ends = None, 0
    with torch.no_grad():
        start = time.perf_counter()
        for _ in range(n_tokens):
            logits, state = model(token, state)
            probs = torch.softmax(logits[:, -1] / temperature, dim=-1)
            token = torch.multinomial(probs, 1, generator=gen)
            if int(token) == EOS:
                state, ends = None, ends + 1
        seconds = time.perf_counter() - start
    return {"tokens_per_second": n_tokens / seconds, "n_tokens": float(n_tokens),
            "sequences": float(ends)}
