"""The quick-start demo: an LSTM classifier on scikit-learn's digits read row by row."""

import time


def main(argv=None):
    """Fit ``RNNClassifier(cell="lstm", hidden_layer_sizes=(64,))`` on digits; print the
    test accuracy and the fit time. Returns the accuracy."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    from .estimators import RNNClassifier

    digits = load_digits()
    X = digits.images / 16  # (1797, 8, 8): 8 time steps (rows) of 8 features (pixels)
    X_train, X_test, y_train, y_test = train_test_split(
        X, digits.target, test_size=0.25, random_state=0, stratify=digits.target)
    clf = RNNClassifier(cell="lstm", hidden_layer_sizes=(64,), random_state=0)
    print(f"fitting RNNClassifier(cell='lstm', hidden_layer_sizes=(64,)) on {len(X_train)} "
          "digits, each read row by row (8 steps x 8 pixels)...", flush=True)
    start = time.perf_counter()
    clf.fit(X_train, y_train)
    elapsed = time.perf_counter() - start
    accuracy = clf.score(X_test, y_test)
    print(f"test accuracy: {accuracy:.4f} ({len(X_test)} digits)")
    print(f"fit time: {elapsed:.2f} s, {clf.n_iter_} epochs, final loss {clf.loss_:.4f}")
    return accuracy


if __name__ == "__main__":
    main()
