"""Digits quick-start fit time: rnnumba's RNNClassifier against a PyTorch LSTM trained with
the same recipe, in the same process.

The recipe (rnnumba's defaults before the real-data suite changed them, stated in full
below): one LSTM layer of 64 units read in one direction, on the last state, a dense
softmax layer, Adam (lr 0.01, betas 0.9/0.999, eps 1e-8), mini-batches of 64 shuffled every
epoch, L2 ``alpha=1e-4`` scaled as scikit-learn's MLP scales it (``alpha / batch`` on the
weights), global gradient-norm clipping at 5, and scikit-learn's stopping rule (stop when
the training loss has not improved by ``tol=1e-4`` for more than 10 epochs, at most 200).
PyTorch gets the same weight initialisation scheme and data, float32 as it defaults to.

Usage::

    python benchmarks/bench_digits.py [--repeats 3] [--dtype float32 float64] [--threads N]

Prints, per run, the fit time, the epochs, the time per epoch and the test accuracy, then
the median ratios rnnumba / PyTorch (total and per epoch).
"""

import argparse
import statistics
import time
import warnings

import numpy as np
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split


def data(seed=0):
    digits = load_digits()
    X = digits.images / 16.0
    return train_test_split(X, digits.target, test_size=0.25, random_state=seed,
                            stratify=digits.target)


def fit_rnnumba(X_train, y_train, X_test, y_test, dtype, seed):
    from rnnumba import RNNClassifier
    # the recipe PyTorch runs below, stated: the defaults now differ (both directions, max
    # pooling, scaled inputs, a plateau schedule, steps in batches of another size, the
    # forget gate's bias)
    clf = RNNClassifier(cell="lstm", hidden_layer_sizes=(64,), dtype=dtype,
                        bidirectional=False, pooling="last", scale=False, patch_size=1,
                        learning_rate="constant", learning_rate_init=0.01, batch_size=64,
                        alpha=1e-4, clip_norm=5.0, max_iter=200, n_iter_no_change=10,
                        tol=1e-4, forget_bias=None, random_state=seed)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X_train, y_train)
    elapsed = time.perf_counter() - start
    return elapsed, clf.n_iter_, clf.score(X_test, y_test)


def fit_torch(X_train, y_train, X_test, y_test, dtype, seed, *, batch_size=64, lr=0.01,
              alpha=1e-4, clip=5.0, max_iter=200, tol=1e-4, n_iter_no_change=10):
    import torch
    torch_dtype = {"float32": torch.float32, "float64": torch.float64}[dtype]
    torch.manual_seed(seed)
    lstm = torch.nn.LSTM(8, 64, batch_first=True).to(torch_dtype)
    head = torch.nn.Linear(64, 10).to(torch_dtype)
    bound = np.sqrt(6.0 / (64 + 10))
    with torch.no_grad():
        head.weight.uniform_(-bound, bound)
        head.bias.zero_()
    params = list(lstm.parameters()) + list(head.parameters())
    weights = [p for name, p in list(lstm.named_parameters()) + list(head.named_parameters())
               if "weight" in name]
    opt = torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999), eps=1e-8)
    Xt = torch.tensor(X_train, dtype=torch_dtype)
    yt = torch.tensor(y_train)
    rng = np.random.RandomState(seed)
    n = len(Xt)
    start = time.perf_counter()
    best, bad, epochs = np.inf, 0, 0
    for _ in range(max_iter):
        perm = torch.from_numpy(rng.permutation(n))
        total = 0.0
        for s in range(0, n, batch_size):
            idx = perm[s:s + batch_size]
            _, (h, _) = lstm(Xt[idx])
            loss = torch.nn.functional.cross_entropy(head(h[-1]), yt[idx])
            penalty = 0.5 * alpha * sum((w * w).sum() for w in weights) / len(idx)
            opt.zero_grad()
            (loss + penalty).backward()
            torch.nn.utils.clip_grad_norm_(params, clip)
            opt.step()
            total += float((loss + penalty).detach()) * len(idx)
        epochs += 1
        total /= n
        bad = bad + 1 if total > best - tol else 0
        best = min(best, total)
        if bad > n_iter_no_change:
            break
    elapsed = time.perf_counter() - start
    with torch.no_grad():
        _, (h, _) = lstm(torch.tensor(X_test, dtype=torch_dtype))
        accuracy = float((head(h[-1]).argmax(1).numpy() == y_test).mean())
    return elapsed, epochs, accuracy


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtype", nargs="+", default=["float32", "float64"])
    parser.add_argument("--threads", type=int, default=None,
                        help="torch.set_num_threads (default: PyTorch's choice)")
    args = parser.parse_args(argv)
    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    X_train, X_test, y_train, y_test = data()
    # compile / warm up both sides outside the timings
    fit_rnnumba(X_train[:64], y_train[:64], X_test, y_test, "float32", 0)
    fit_rnnumba(X_train[:64], y_train[:64], X_test, y_test, "float64", 0)
    print(f"digits: {len(X_train)} train / {len(X_test)} test sequences of 8 steps x 8 "
          f"features; torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'library':<8} {'dtype':<8} {'seed':>4} {'fit s':>8} {'epochs':>6} "
          f"{'ms/epoch':>9} {'accuracy':>8}")
    for dtype in args.dtype:
        results = {"rnnumba": [], "torch": []}
        for seed in range(args.repeats):
            for name, fit in (("rnnumba", fit_rnnumba), ("torch", fit_torch)):
                elapsed, epochs, acc = fit(X_train, y_train, X_test, y_test, dtype, seed)
                results[name].append((elapsed, epochs, acc))
                print(f"{name:<8} {dtype:<8} {seed:>4} {elapsed:8.2f} {epochs:>6} "
                      f"{1000 * elapsed / epochs:9.1f} {acc:8.4f}", flush=True)
        med = {k: statistics.median(r[0] for r in v) for k, v in results.items()}
        per_epoch = {k: statistics.median(r[0] / r[1] for r in v) for k, v in results.items()}
        acc = {k: statistics.mean(r[2] for r in v) for k, v in results.items()}
        print(f"{dtype}: median fit rnnumba {med['rnnumba']:.2f} s, torch {med['torch']:.2f} s, "
              f"ratio rnnumba/torch {med['rnnumba'] / med['torch']:.2f} "
              f"(per epoch {per_epoch['rnnumba'] / per_epoch['torch']:.2f}); mean accuracy "
              f"rnnumba {acc['rnnumba']:.4f}, torch {acc['torch']:.4f}")


if __name__ == "__main__":
    main()
