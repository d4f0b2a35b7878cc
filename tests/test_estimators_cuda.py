"""Estimators trained with ``device="cuda"`` against ``device="cpu"``, under Numba's simulator.

Run with (slow: the simulator runs one Python thread per CUDA thread, so shapes are tiny)::

    NUMBA_ENABLE_CUDASIM=1 python -m pytest -m cudasim tests/test_estimators_cuda.py

and, on a machine with an NVIDIA GPU, ``python -m pytest -m gpu tests/test_estimators_cuda.py``.

During a CUDA fit the device holds the truth (weights, gradients, optimizer state); these
tests check that the results equal the CPU fit, that a batch costs a fixed, small number of
host-device copies (its data in, one array of statistics out; no copy between layers), that
the weights go up once per fit and come back once at its end, and that a CUDA-fitted
estimator pickles and saves with host arrays only and predicts in a process where no CUDA
device works.
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
    from rnnumba.kernels.cuda import _jit, _reduce
    monkeypatch.setattr(_jit, "GEMM_TILE", 4)
    monkeypatch.setattr(_jit, "ELEMENTWISE_BLOCK", 16)
    monkeypatch.setattr(_reduce, "REDUCE_BLOCK", 16)
    monkeypatch.setattr(_reduce, "REDUCE_MAX_BLOCKS", 1)


@pytest.fixture
def copies(monkeypatch):
    """Every host-device copy the simulator makes, as ``(direction, elements)``: "up" for
    host to device, "down" for device to host (device-to-device copies are not counted)."""
    from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray
    seen = []
    to_device, to_host = FakeCUDAArray.copy_to_device, FakeCUDAArray.copy_to_host

    def up(self, ary, stream=0):
        if not isinstance(ary, FakeCUDAArray):
            seen.append(("up", self.size))
        return to_device(self, ary, stream)

    def down(self, ary=None, stream=0):
        seen.append(("down", self.size))
        return to_host(self, ary, stream)

    monkeypatch.setattr(FakeCUDAArray, "copy_to_device", up)
    monkeypatch.setattr(FakeCUDAArray, "copy_to_host", down)
    return seen


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
        # the head and the loss run on the device too now: equal up to rounding
        np.testing.assert_allclose(gpu.validation_scores_, cpu.validation_scores_, rtol=RTOL)
    # host buffers synced after the fit
    assert type(gpu._model.store.host) is np.ndarray and not gpu._model.store.resident
    np.testing.assert_allclose(gpu._model.store.host, cpu._model.store.host, rtol=RTOL,
                               atol=ATOL)
    for name in ("ms", "vs", "velocities"):  # optimizer state synced back too
        for a, b in zip(getattr(gpu._trainer.optimizer, name, []),
                        getattr(cpu._trainer.optimizer, name, [])):
            assert type(a) is np.ndarray
            np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL)
    if isinstance(cpu, RNNClassifier):
        np.testing.assert_allclose(gpu.predict_proba(X), cpu.predict_proba(X), rtol=RTOL,
                                   atol=ATOL)
        np.testing.assert_array_equal(gpu.predict(X), cpu.predict(X))
    else:
        np.testing.assert_allclose(gpu.predict(X), cpu.predict(X), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("cls, cell, solver, sizes, batch, bidirectional", [
    (RNNClassifier, "lstm", "adam", (3,), 6, True),
    (RNNClassifier, "gru", "sgd", (3,), 6, True),
    (RNNRegressor, "gru", "adam", (3, 2), 3, False),  # the simulator is slow: one direction
    (RNNRegressor, "lstm", "sgd", (2,), 6, False),
], ids=["clf-lstm-adam-bidir", "clf-gru-sgd-bidir", "reg-gru-adam-stacked", "reg-lstm-sgd"])
def test_cuda_fit_matches_cpu(cls, cell, solver, sizes, batch, bidirectional):
    """Early stopping on (validation forwards, best-weight snapshots and the restore at the
    end all run while the device holds the weights)."""
    X, y, cpu, gpu = _fit_both(
        cls, "cls" if cls is RNNClassifier else "reg", cell=cell, solver=solver,
        hidden_layer_sizes=sizes, early_stopping=True, validation_fraction=0.25,
        batch_size=batch, learning_rate_init=0.05, alpha=1e-3, clip_norm=0.5,
        bidirectional=bidirectional)
    assert len(gpu.validation_scores_) == 2
    assert type(gpu._trainer.best_params) is np.ndarray
    _assert_same_fit(cpu, gpu, X)


@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_cuda_fit_copies_per_batch_and_per_fit(solver, copies):
    """A batch sends its data up (X, lengths, targets, weights) and brings one statistics
    array down, whatever the depth of the network; the weights go up once per fit and come
    back once (with the optimizer state and the best weights), however many epochs."""
    X, y = _data()
    kw = dict(cell="lstm", hidden_layer_sizes=(3, 2), batch_size=3, random_state=0,
              device="cuda", solver=solver, alpha=1e-3, bidirectional=False)
    counts = {}
    for epochs in (1, 3):
        copies.clear()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est = RNNRegressor(max_iter=epochs, **kw).fit(X, y)
        counts[epochs] = list(copies)
    size = est._model.store.size
    batches = 2 * -(-len(X) // 3)  # the two extra epochs
    per_fit = {"up": [n for d, n in counts[1] if d == "up" and n == size],
               "down": [n for d, n in counts[1] if d == "down" and n == size]}
    # the weights, the optimizer state, the L2 mask
    assert len(per_fit["up"]) == 1 + (2 if solver == "adam" else 1) + 1
    assert len(per_fit["down"]) == 1 + (2 if solver == "adam" else 1) + 1  # and the best
    for direction, per_batch in (("up", 4), ("down", 1)):
        extra = (sum(d == direction for d, _ in counts[3])
                 - sum(d == direction for d, _ in counts[1]))
        assert extra == per_batch * batches, (direction, extra, batches)
    for direction in ("up", "down"):  # no more whole-buffer copies in longer fits
        assert ([n for d, n in counts[3] if d == direction and n == size]
                == per_fit[direction])


def test_cuda_partial_fit_and_tbptt_match_cpu():
    X, y = _data()
    labels = (y > np.median(y)).astype(int)
    kw = dict(cell="gru", hidden_layer_sizes=(3,), random_state=1, dtype="float64",
              batch_size=8, bptt_steps=2, pooling="last")
    cpu, gpu = RNNClassifier(device="cpu", **kw), RNNClassifier(device="cuda", **kw)
    for _ in range(2):
        cpu.partial_fit(X, labels, classes=[0, 1])
        gpu.partial_fit(X, labels, classes=[0, 1])
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
    assert np.isfinite(est._model.store.host).all()
    assert not est._model.store.resident


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
                        validation_fraction=0.25, dtype="float64")
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
            assert est._model.device == "cpu"
        np.save("pickled.npy", pickled.predict_proba(X))
        np.save("saved.npy", saved.predict_proba(X))
        np.save("labels.npy", saved.predict(X))
        try:
            both = np.where(np.arange(len(X)) % 2, "up", "down")
            saved.set_params(warm_start=True).fit(X, both)
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
    from rnnumba.model import SequenceModel
    X, y = _data()
    original = SequenceModel.loss_and_gradients
    calls = {"n": 0}

    def interrupt(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] % 3 == 0:  # one batch per epoch: interrupt in epoch 3
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(SequenceModel, "loss_and_gradients", interrupt)
    fitted = []
    for device in ("cpu", "cuda"):
        est = RNNRegressor(device=device, cell="gru", hidden_layer_sizes=(2,), max_iter=5,
                           batch_size=8, random_state=0, learning_rate_init=0.1,
                           dtype="float64")
        with pytest.warns(UserWarning, match="interrupted"):
            est.fit(X, y)
        assert est.n_iter_ == 2
        assert type(est._trainer.best_params) is np.ndarray
        np.testing.assert_array_equal(est._trainer.best_params, est._model.store.host)
        fitted.append(est)
    np.testing.assert_allclose(fitted[1]._model.store.host, fitted[0]._model.store.host,
                               rtol=RTOL, atol=ATOL)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype, rtol", [("float64", 1e-8), ("float32", 2e-3)])
def test_gpu_fit_matches_cpu(dtype, rtol):
    rng = np.random.default_rng(5)
    X = rng.standard_normal((300, 20, 6))
    y = (X[:, :, 0].sum(axis=1) > 0).astype(int)
    kw = dict(cell="lstm", hidden_layer_sizes=(32, 16), max_iter=3, batch_size=64,
              random_state=0, dtype=dtype, early_stopping=dtype == "float64")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cpu = RNNClassifier(device="cpu", **kw).fit(X, y)
        gpu = RNNClassifier(device="cuda", **kw).fit(X, y)
    assert gpu.device_ == "cuda"
    np.testing.assert_allclose(gpu.loss_curve_, cpu.loss_curve_, rtol=rtol)
    np.testing.assert_allclose(gpu.predict_proba(X), cpu.predict_proba(X), rtol=rtol,
                               atol=rtol)
