"""Estimators trained with ``device="cuda"`` against ``device="cpu"``, under Numba's simulator.

Run with (slow: the simulator runs one Python thread per CUDA thread, so shapes are tiny)::

    NUMBA_ENABLE_CUDASIM=1 python -m pytest -m cudasim tests/test_estimators_cuda.py

and, on a machine with an NVIDIA GPU, ``python -m pytest -m gpu tests/test_estimators_cuda.py``.

During a CUDA fit the device holds the truth (weights, gradients, optimizer state); these
tests check that the results equal the CPU fit, that the host weights are uploaded once per
fit and synced back at the end, and that a CUDA-fitted estimator pickles and saves with host
arrays only and predicts in a process where no CUDA device works.
"""

import io
import os
import pickle
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

from rnnumba import RNNClassifier, RNNRegressor, load

SIM = os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")

pytestmark = pytest.mark.cudasim

RTOL, ATOL = 1e-9, 1e-11


@pytest.fixture(autouse=True)
def sim_launches(request, monkeypatch):
    """The simulator, with launch constants that keep the thread count (its cost) low; or,
    for tests marked ``gpu``, a real device with the real constants."""
    if request.node.get_closest_marker("gpu"):
        if SIM:
            pytest.skip("gpu tests need a real CUDA device, not the simulator")
        from rnnumba.backend import cuda_unavailable_reason
        reason = cuda_unavailable_reason()
        if reason:
            pytest.skip(f"no CUDA device: {reason}")
        return
    if not SIM:
        pytest.skip("simulator tests need NUMBA_ENABLE_CUDASIM=1 set before numba is imported")
    from numba import config
    if not config.ENABLE_CUDASIM:
        pytest.skip("numba was imported before NUMBA_ENABLE_CUDASIM=1 was set")
    from rnnumba.kernels.cuda import _jit, optim
    monkeypatch.setattr(_jit, "GEMM_TILE", 4)
    monkeypatch.setattr(_jit, "ELEMENTWISE_BLOCK", 16)
    monkeypatch.setattr(optim, "REDUCE_BLOCK", 16)
    monkeypatch.setattr(optim, "REDUCE_MAX_BLOCKS", 1)


@pytest.fixture
def uploads(monkeypatch):
    """Count host-to-device copies of the recurrent weights, per network."""
    from rnnumba.kernels.cuda.runner import CudaRunner
    counts = []
    original = CudaRunner.push_params

    def push_params(self, model):
        counts.append(id(model))
        return original(self, model)

    monkeypatch.setattr(CudaRunner, "push_params", push_params)
    return counts


def _data(n=8, steps=4, features=2, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, steps, features))
    lengths = rng.integers(2, steps + 1, n)
    for i, length in enumerate(lengths):
        X[i, length:] = np.nan  # trailing NaN padding: ragged batch
    y = np.nan_to_num(X[:, :, 0]).sum(axis=1)
    return X, y


def _fit_both(cls, y_kind="reg", **params):
    X, y = _data()
    target = (y > np.median(y)).astype(int) if y_kind == "cls" else y
    kw = dict(max_iter=2, random_state=3, dtype="float64", **params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cpu = cls(device="cpu", **kw).fit(X, target)
        gpu = cls(device="cuda", **kw).fit(X, target)
    return X, target, cpu, gpu


def _assert_same_fit(cpu, gpu, X):
    assert gpu.device_ == "cuda" and cpu.device_ == "cpu"
    np.testing.assert_allclose(gpu.loss_curve_, cpu.loss_curve_, rtol=RTOL)
    if cpu.validation_scores_ is not None:
        assert gpu.validation_scores_ == cpu.validation_scores_
    for a, b in zip(gpu._net.params, cpu._net.params):  # host buffers synced after fit
        assert type(a) is np.ndarray
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL)
    for name in ("ms", "vs", "velocities"):  # optimizer state synced back too
        for a, b in zip(getattr(gpu._optimizer, name, []), getattr(cpu._optimizer, name, [])):
            np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL)
    if isinstance(cpu, RNNClassifier):
        np.testing.assert_allclose(gpu.predict_proba(X), cpu.predict_proba(X), rtol=RTOL,
                                   atol=ATOL)
        np.testing.assert_array_equal(gpu.predict(X), cpu.predict(X))
    else:
        np.testing.assert_allclose(gpu.predict(X), cpu.predict(X), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("cls, cell, solver, sizes, batch", [
    (RNNClassifier, "lstm", "adam", (3,), 6),
    (RNNClassifier, "gru", "sgd", (3,), 6),
    (RNNRegressor, "gru", "adam", (3, 2), 3),
    (RNNRegressor, "lstm", "sgd", (2,), 6),
], ids=["clf-lstm-adam", "clf-gru-sgd", "reg-gru-adam-stacked", "reg-lstm-sgd"])
def test_cuda_fit_matches_cpu_and_uploads_weights_once(cls, cell, solver, sizes, batch,
                                                       uploads):
    """Early stopping on (validation forwards, best-weight snapshots and the restore at the
    end all run while the device holds the weights); one upload per layer per fit."""
    X, y, cpu, gpu = _fit_both(
        cls, "cls" if cls is RNNClassifier else "reg", cell=cell, solver=solver,
        hidden_layer_sizes=sizes, early_stopping=True, validation_fraction=0.25,
        batch_size=batch, learning_rate_init=0.05, alpha=1e-3, clip_norm=0.5)
    # 2 epochs x (1 or 2) batches + 2 validation passes; each layer's weights went up once
    layers = [id(layer) for layer in gpu._net.layers]
    assert sorted(uploads) == sorted(layers)
    assert len(gpu.validation_scores_) == 2
    assert all(type(w) is np.ndarray for w in gpu._best_weights)
    _assert_same_fit(cpu, gpu, X)


def test_cuda_partial_fit_and_tbptt_match_cpu(uploads):
    X, y = _data()
    labels = (y > np.median(y)).astype(int)
    kw = dict(cell="gru", hidden_layer_sizes=(3,), random_state=1, dtype="float64",
              batch_size=8, bptt_steps=2)
    cpu, gpu = RNNClassifier(device="cpu", **kw), RNNClassifier(device="cuda", **kw)
    for _ in range(2):
        cpu.partial_fit(X, labels, classes=[0, 1])
        gpu.partial_fit(X, labels, classes=[0, 1])
    assert len(uploads) == 2  # once per partial_fit call, not per batch or chunk
    _assert_same_fit(cpu, gpu, X)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the simulator's numpy overflow
def test_cuda_divergence_keeps_finite_host_weights():
    from rnnumba.estimators import TrainingDivergedError
    X, y = _data()
    # relu: the simulator raises OverflowError on math.exp overflow where a GPU gives inf
    est = RNNRegressor(device="cuda", cell="rnn", activation="relu", solver="sgd",
                       learning_rate_init=1e200,
                       clip_norm=None, momentum=0.0, hidden_layer_sizes=(2,), max_iter=3,
                       batch_size=8, random_state=0)
    with pytest.raises(TrainingDivergedError, match="diverged"):
        est.fit(X, y * 1e100)
    assert all(type(p) is np.ndarray and np.isfinite(p).all() for p in est._net.params)
    assert est._net._device_session is None


def _device_objects(obj):
    """Every object in ``obj``'s pickle that looks like a device array."""
    found = []

    class Probe(pickle.Pickler):
        def persistent_id(self, value):
            if hasattr(value, "copy_to_host") or hasattr(value, "__cuda_array_interface__"):
                found.append(type(value).__name__)
            return None

    Probe(io.BytesIO()).dump(obj)
    return found


def test_cuda_fitted_estimator_loads_and_predicts_without_cuda(tmp_path):
    X, y = _data()
    labels = np.where(y > np.median(y), "up", "down")
    est = RNNClassifier(device="cuda", cell="lstm", hidden_layer_sizes=(2,), max_iter=1,
                        batch_size=8, random_state=0, early_stopping=True,
                        validation_fraction=0.25)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X, labels)
    assert est.device_ == "cuda"
    assert _device_objects(est) == []
    proba = est.predict_proba(X)
    (tmp_path / "est.pkl").write_bytes(pickle.dumps(est))
    est.save(tmp_path / "est.npz")
    np.save(tmp_path / "X.npy", X)
    clone = load(tmp_path / "est.npz")  # a CUDA device (the simulator) works here
    assert clone.device_ == "cuda"
    np.testing.assert_allclose(clone.predict_proba(X), proba, rtol=RTOL, atol=ATOL)

    code = textwrap.dedent("""
        import pickle, sys
        import numpy as np
        from rnnumba import backend, load
        reason = backend.cuda_unavailable_reason()
        assert reason is not None, "expected no usable CUDA device in this process"
        X = np.load("X.npy")
        pickled = pickle.loads(open("est.pkl", "rb").read())
        saved = load("est.npz")
        for est in (pickled, saved):
            assert est.device_ == "cpu", est.device_
            assert all(layer.device == "cpu" for layer in est._net.layers)
        np.save("pickled.npy", pickled.predict_proba(X))
        np.save("saved.npy", saved.predict_proba(X))
        np.save("labels.npy", saved.predict(X))
        try:
            saved.set_params(warm_start=True).fit(X, saved.predict(X))
        except ValueError as exc:
            assert "device='cuda' is not available" in str(exc), exc
        else:
            raise AssertionError("fit with device='cuda' must fail without CUDA")
    """)
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    env["CUDA_VISIBLE_DEVICES"] = ""
    subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, check=True,
                   timeout=300)
    for name in ("pickled.npy", "saved.npy"):
        np.testing.assert_allclose(np.load(tmp_path / name), proba, rtol=RTOL, atol=ATOL)
    np.testing.assert_array_equal(np.load(tmp_path / "labels.npy"), est.predict(X))


def test_cuda_keyboard_interrupt_leaves_best_host_weights(monkeypatch):
    import rnnumba.training as training
    X, y = _data()
    original = training.SequenceNetwork.loss_and_gradients
    calls = {"n": 0}

    def interrupt(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] % 3 == 0:  # one batch per epoch: interrupt in epoch 3
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(training.SequenceNetwork, "loss_and_gradients", interrupt)
    fitted = []
    for device in ("cpu", "cuda"):
        est = RNNRegressor(device=device, cell="gru", hidden_layer_sizes=(2,), max_iter=5,
                           batch_size=8, random_state=0, learning_rate_init=0.1)
        with pytest.warns(UserWarning, match="interrupted"):
            est.fit(X, y)
        assert est.n_iter_ == 2
        assert all(type(w) is np.ndarray for w in est._best_weights)
        for best, p in zip(est._best_weights, est._net.params):
            np.testing.assert_array_equal(best, p)
        fitted.append(est)
    for a, b in zip(fitted[1]._net.params, fitted[0]._net.params):
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype, rtol", [("float64", 1e-8), ("float32", 2e-3)])
def test_gpu_fit_matches_cpu(dtype, rtol, uploads):
    rng = np.random.default_rng(5)
    X = rng.standard_normal((300, 20, 6))
    y = (X[:, :, 0].sum(axis=1) > 0).astype(int)
    kw = dict(cell="lstm", hidden_layer_sizes=(32, 16), max_iter=3, batch_size=64,
              random_state=0, dtype=dtype, early_stopping=dtype == "float64")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cpu = RNNClassifier(device="cpu", **kw).fit(X, y)
        gpu = RNNClassifier(device="cuda", **kw).fit(X, y)
    assert gpu.device_ == "cuda" and len(uploads) == 2
    np.testing.assert_allclose(gpu.loss_curve_, cpu.loss_curve_, rtol=rtol)
    np.testing.assert_allclose(gpu.predict_proba(X), cpu.predict_proba(X), rtol=rtol,
                               atol=rtol)
