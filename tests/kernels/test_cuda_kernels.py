"""CUDA kernels against the CPU kernels, and ``Recurrent(device="cuda")`` against the CPU and
PyTorch.

Run under Numba's simulator (slow: one Python thread per CUDA thread, so shapes are tiny)::

    NUMBA_ENABLE_CUDASIM=1 python -m pytest -m cudasim tests/kernels/test_cuda_kernels.py

The launch constants are lowered (4x4 GEMM tiles, 8-thread elementwise blocks, 2 rows per
persistent block) so that the tiny problems still span several blocks, and every case runs
on both recurrence paths: the persistent one-launch kernel and the per-step GEMM +
elementwise launches (forced by a zero shared-memory budget). Tests marked ``gpu`` run the
same comparisons with the real launch constants and larger shapes on a real device::

    python -m pytest -m gpu tests/kernels/test_cuda_kernels.py
"""

import os
import pickle

import numpy as np
import pytest

from rnnumba import Recurrent

SIM = os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")

cudasim = pytest.mark.cudasim

CELLS = [("rnn", "tanh"), ("rnn", "relu"), ("lstm", "tanh"), ("gru", "tanh")]
CELL_IDS = ["rnn-tanh", "rnn-relu", "lstm", "gru"]
cells = pytest.mark.parametrize("cell, nonlinearity", CELLS, ids=CELL_IDS)
paths = pytest.mark.parametrize("path", ["persistent", "per-step"])
ragged = pytest.mark.parametrize("use_lengths", [False, True], ids=["full", "ragged"])

GATES = {"rnn": 1, "lstm": 4, "gru": 3}
ACT = {"tanh": 0, "relu": 1}


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def cuda_kernels():
    """``rnnumba.kernels.cuda`` under the simulator, or a skip."""
    if not SIM:
        pytest.skip("simulator tests need NUMBA_ENABLE_CUDASIM=1 set before numba is imported")
    from numba import config
    if not config.ENABLE_CUDASIM:
        pytest.skip("numba was imported before NUMBA_ENABLE_CUDASIM=1 was set")
    import rnnumba.kernels.cuda as kernels
    return kernels


@pytest.fixture
def small_launches(cuda_kernels, monkeypatch):
    """Launch constants that make tiny problems span several blocks."""
    from rnnumba.kernels.cuda import _jit
    monkeypatch.setattr(_jit, "GEMM_TILE", 4)
    monkeypatch.setattr(_jit, "ELEMENTWISE_BLOCK", 8)
    monkeypatch.setattr(_jit, "PERSISTENT_ROWS", 2)
    return _jit


def set_path(jit, monkeypatch, path):
    """Force the persistent kernel (default budget) or the per-step path (no budget)."""
    if path == "per-step":
        monkeypatch.setattr(jit, "PERSISTENT_MAX_BYTES", 0)


# --------------------------------------------------------------------------- kernel level


def _problem(cell, T, N, I, H, dtype, lengths, seed=0):
    """Random inputs of one bidirectional layer plus upstream gradients (host arrays)."""
    rng = np.random.default_rng(seed)
    G = GATES[cell]
    lstm = cell == "lstm"
    p = {"x": rng.standard_normal((T, N, I))}
    for d in range(2):
        p[f"w_ih{d}"] = rng.uniform(-0.6, 0.6, (G * H, I))
        p[f"w_hh{d}"] = rng.uniform(-0.6, 0.6, (G * H, H))
        p[f"b_ih{d}"] = rng.uniform(-0.6, 0.6, G * H)
        p[f"b_hh{d}"] = rng.uniform(-0.6, 0.6, G * H)
        p[f"h0{d}"] = rng.standard_normal((N, H))
        p[f"c0{d}"] = rng.standard_normal((N, H)) if lstm else np.empty((0, 0))
        p[f"g_h{d}"] = rng.standard_normal((N, H))
        p[f"g_c{d}"] = rng.standard_normal((N, H)) if lstm else np.empty((0, 0))
    p["g_out"] = rng.standard_normal((T, N, 2 * H))
    p = {k: np.ascontiguousarray(v, dtype=dtype) for k, v in p.items()}
    p["lengths"] = np.asarray(lengths, dtype=np.int64)
    return p


def _run_layer(common, mod, p, cell, act, H, to_dev, to_host):
    """Both directions of one layer through the four phases; returns every output."""
    T, N, I = p["x"].shape
    G, K = mod.GATES, mod.cache_width(H)
    dtype = p["x"].dtype
    lstm, gru = cell == "lstm", cell == "gru"

    def zeros(*shape):
        return to_dev(np.zeros(shape, dtype))

    d = {k: to_dev(v) for k, v in p.items()}
    res = {"out": zeros(T, N, 2 * H)}
    for r in range(2):
        res[f"proj{r}"] = zeros(T, N, G * H)
        res[f"cache{r}"] = zeros(T, N, K)
        res[f"h_n{r}"] = zeros(N, H)
        res[f"c_n{r}"] = zeros(N, H) if lstm else zeros(0, 0)
        common.project_input(d["x"], d[f"w_ih{r}"], d[f"b_ih{r}"], res[f"proj{r}"])
        mod.forward_sequence(res[f"proj{r}"], d[f"w_hh{r}"], d[f"b_hh{r}"], d[f"h0{r}"],
                             d[f"c0{r}"], d["lengths"], r == 1, act, res["out"], r * H,
                             res[f"cache{r}"], res[f"h_n{r}"], res[f"c_n{r}"])
    res["grad_x"] = zeros(T, N, I)
    for r in range(2):
        res[f"d_ih{r}"] = d_ih = zeros(T, N, G * H)
        res[f"d_hh{r}"] = d_hh = zeros(T, N, G * H) if gru else d_ih
        res[f"grad_h0{r}"] = zeros(N, H)
        res[f"grad_c0{r}"] = zeros(N, H) if lstm else zeros(0, 0)
        mod.backward_sequence(d[f"w_hh{r}"], d[f"b_hh{r}"], d[f"h0{r}"], d[f"c0{r}"],
                              d["lengths"], r == 1, act, res["out"], r * H, res[f"cache{r}"],
                              d["g_out"], d[f"g_h{r}"], d[f"g_c{r}"], d_ih, d_hh,
                              res[f"grad_h0{r}"], res[f"grad_c0{r}"])
        for name, shape in (("gw_ih", (G * H, I)), ("gw_hh", (G * H, H)), ("gb_ih", (G * H,)),
                            ("gb_hh", (G * H,))):
            res[f"{name}{r}"] = zeros(*shape)
        common.weight_gradients(d["x"], res["out"], r * H, d[f"h0{r}"], d["lengths"], r == 1,
                                d_ih, d_hh, d[f"w_ih{r}"], res[f"gw_ih{r}"], res[f"gw_hh{r}"],
                                res[f"gb_ih{r}"], res[f"gb_hh{r}"], res["grad_x"])
    return {k: to_host(v) for k, v in res.items()}


def _compare_layer(cuda_kernels, cell, nonlinearity, lengths, dtype, T, N, I, H, rtol, atol):
    from numba import cuda

    from rnnumba.kernels.cpu import CELLS as CPU_CELLS, common as cpu_common
    p = _problem(cell, T, N, I, H, dtype, lengths)
    act = ACT[nonlinearity]
    want = _run_layer(cpu_common, CPU_CELLS[cell], p, cell, act, H,
                      lambda a: a.copy(), lambda a: a)
    got = _run_layer(cuda_kernels.common, cuda_kernels.CELLS[cell], p, cell, act, H,
                     cuda.to_device, lambda a: a.copy_to_host())
    assert set(got) == set(want)
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=rtol, atol=atol, err_msg=key)


@cudasim
@paths
@ragged
@cells
def test_kernels_match_cpu(cell, nonlinearity, use_lengths, path, small_launches,
                           monkeypatch, cuda_kernels):
    """Every phase, both directions, float64: the CUDA kernels equal the CPU kernels."""
    set_path(small_launches, monkeypatch, path)
    from rnnumba.kernels.cuda._recurrence import use_persistent
    # 3 rows: 2 persistent blocks; 3x3 units: 2 elementwise blocks; T*N = 9: 3 GEMM row tiles
    T, N, I, H = 3, 3, 2, 3
    assert use_persistent(GATES[cell], H, np.float64) == (path == "persistent")
    lengths = [3, 1, 2] if use_lengths else [T] * N
    _compare_layer(cuda_kernels, cell, nonlinearity, lengths, np.float64, T, N, I, H,
                   rtol=1e-11, atol=1e-12)


@cudasim
@paths
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_kernels_match_cpu_float32(cell, path, small_launches, monkeypatch, cuda_kernels):
    set_path(small_launches, monkeypatch, path)
    _compare_layer(cuda_kernels, cell, "tanh", [3, 1, 2], np.float32, 3, 3, 2, 3,
                   rtol=1e-4, atol=1e-5)


@cudasim
def test_zero_lengths_pass_the_state_through(small_launches, cuda_kernels):
    """Length 0 (used by truncated BPTT chunks): outputs zero, states unchanged."""
    _compare_layer(cuda_kernels, "lstm", "tanh", [0, 2, 0], np.float64, 2, 3, 2, 3,
                   rtol=1e-11, atol=1e-12)


@cudasim
@pytest.mark.parametrize("trans_a, trans_b",
                         [(False, False), (True, False), (False, True), (True, True)])
def test_gemm_matches_numpy(trans_a, trans_b, small_launches, cuda_kernels):
    from numba import cuda
    rng = np.random.default_rng(1)
    m, n, k = 7, 5, 9  # not multiples of the 4x4 tile
    a = rng.standard_normal((k, m) if trans_a else (m, k))
    b = rng.standard_normal((n, k) if trans_b else (k, n))
    c = rng.standard_normal((m, n))
    bias = rng.standard_normal(n)
    want = c + (a.T if trans_a else a) @ (b.T if trans_b else b) + bias
    dc = cuda.to_device(c)
    cuda_kernels.common.gemm(cuda.to_device(a), cuda.to_device(b), dc, trans_a, trans_b,
                             accumulate=True, bias=cuda.to_device(bias))
    np.testing.assert_allclose(dc.copy_to_host(), want, rtol=1e-12, atol=1e-12)


@cudasim
def test_launchers_accept_host_arrays(small_launches, cuda_kernels):
    """Host NumPy arrays are copied in and the outputs copied back (aliased d_ih/d_hh too)."""
    from rnnumba.kernels.cpu import CELLS as CPU_CELLS, common as cpu_common
    p = _problem("lstm", 3, 2, 2, 3, np.float64, [3, 2])
    want = _run_layer(cpu_common, CPU_CELLS["lstm"], p, "lstm", 0, 3, lambda a: a.copy(),
                      lambda a: a)
    got = _run_layer(cuda_kernels.common, cuda_kernels.CELLS["lstm"], p, "lstm", 0, 3,
                     lambda a: a.copy(), lambda a: a)
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-11, atol=1e-12, err_msg=key)


@cudasim
def test_out_of_memory_names_the_bytes(cuda_kernels, monkeypatch):
    from numba import cuda

    from rnnumba.kernels.cuda import _jit

    class FakeOOM(Exception):
        pass

    def refuse(shape, dtype):
        raise FakeOOM("[CUresult.CUDA_ERROR_OUT_OF_MEMORY] Call to cuMemAlloc results in "
                      "CUDA_ERROR_OUT_OF_MEMORY")

    monkeypatch.setattr(cuda, "device_array", refuse)
    with pytest.raises(MemoryError, match=r"3200 bytes .* proj"):
        _jit.device_empty((10, 40), np.float64, "proj")


# --------------------------------------------------------------------------- Recurrent


def _models(cell, nonlinearity, num_layers, bidirectional, dtype="float64", **kwargs):
    kw = dict(cell=cell, input_size=2, hidden_size=3, num_layers=num_layers,
              bidirectional=bidirectional, nonlinearity=nonlinearity, dtype=dtype,
              random_state=0, **kwargs)
    return Recurrent(device="cpu", **kw), Recurrent(device="cuda", **kw)


def _upstream(rng, cell, model, N, T):
    S = model.num_layers * model.num_directions
    H = model.hidden_size
    g = {"grad_output": rng.standard_normal((N, T, model.num_directions * H)),
         "grad_h_n": rng.standard_normal((S, N, H))}
    if cell == "lstm":
        g["grad_c_n"] = rng.standard_normal((S, N, H))
    return {k: v.astype(model.dtype) for k, v in g.items()}


def _hx(rng, cell, model, N):
    shape = (model.num_layers * model.num_directions, N, model.hidden_size)
    h0 = rng.standard_normal(shape).astype(model.dtype)
    return (h0, rng.standard_normal(shape).astype(model.dtype)) if cell == "lstm" else h0


def _assert_same(got, want, rtol, atol, what):
    for a, b, name in zip(_flatten(got), _flatten(want), range(99)):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=f"{what}[{name}]")


def _flatten(value):
    if isinstance(value, (tuple, list)):
        return [x for v in value for x in _flatten(v)]
    return [value]


RECURRENT_CASES = [(1, False, False, "persistent"), (2, True, True, "per-step"),
                   (2, False, True, "persistent"), (1, True, False, "per-step")]
RECURRENT_IDS = ["L1-uni-full-persistent", "L2-bi-ragged-per-step", "L2-uni-ragged-persistent",
                 "L1-bi-full-per-step"]


@cudasim
@pytest.mark.parametrize("num_layers, bidirectional, use_lengths, path", RECURRENT_CASES,
                         ids=RECURRENT_IDS)
@cells
def test_recurrent_cuda_matches_cpu(cell, nonlinearity, num_layers, bidirectional, use_lengths,
                                    path, small_launches, monkeypatch):
    set_path(small_launches, monkeypatch, path)
    rng = np.random.default_rng(5)
    cpu_model, gpu_model = _models(cell, nonlinearity, num_layers, bidirectional)
    N, T = 3, 3
    X = rng.standard_normal((N, T, 2))
    lengths = np.array([3, 1, 2]) if use_lengths else None
    hx = _hx(rng, cell, cpu_model, N)
    _assert_same(gpu_model.forward(X, lengths, hx), cpu_model.forward(X, lengths, hx),
                 1e-11, 1e-12, "forward")
    g = _upstream(rng, cell, cpu_model, N, T)
    got, want = gpu_model.backward(**g), cpu_model.backward(**g)
    assert set(got) == set(want)
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-10, atol=1e-11, err_msg=key)
    np.testing.assert_allclose(gpu_model.flat_grads, cpu_model.flat_grads, rtol=1e-10,
                               atol=1e-11)


@cudasim
@cells
def test_recurrent_cuda_matches_torch(cell, nonlinearity, small_launches, torch):
    """Two bidirectional layers, ragged lengths, initial states: outputs and every gradient."""
    rng = np.random.default_rng(7)
    _, model = _models(cell, nonlinearity, 2, True)
    N, T, I, H = 3, 3, 2, 3
    kwargs = dict(num_layers=2, bidirectional=True, batch_first=True)
    if cell == "rnn":
        module = torch.nn.RNN(I, H, nonlinearity=nonlinearity, **kwargs)
    else:
        module = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell](I, H, **kwargs)
    module = module.double()
    module.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})
    X = rng.standard_normal((N, T, I))
    lengths = np.array([3, 1, 2])
    hx = _hx(rng, cell, model, N)
    g = _upstream(rng, cell, model, N, T)

    out, state = model.forward(X, lengths, hx)
    grads = model.backward(**g)

    x = torch.tensor(X, requires_grad=True)
    h0, c0 = hx if cell == "lstm" else (hx, None)
    h = torch.tensor(h0, requires_grad=True)
    c = torch.tensor(c0, requires_grad=True) if cell == "lstm" else None
    packed = torch.nn.utils.rnn.pack_padded_sequence(x, torch.as_tensor(lengths),
                                                     batch_first=True, enforce_sorted=False)
    t_out, t_state = module(packed, (h, c) if cell == "lstm" else h)
    t_out, _ = torch.nn.utils.rnn.pad_packed_sequence(t_out, batch_first=True, total_length=T)
    t_h, t_c = t_state if cell == "lstm" else (t_state, None)
    loss = ((t_out * torch.tensor(g["grad_output"])).sum()
            + (t_h * torch.tensor(g["grad_h_n"])).sum())
    if cell == "lstm":
        loss = loss + (t_c * torch.tensor(g["grad_c_n"])).sum()
    loss.backward()

    np.testing.assert_allclose(out, t_out.detach().numpy(), rtol=1e-10, atol=1e-12)
    if cell == "lstm":
        np.testing.assert_allclose(state[0], t_h.detach().numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(state[1], t_c.detach().numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(grads["c0"], c.grad.numpy(), rtol=1e-10, atol=1e-12)
    else:
        np.testing.assert_allclose(state, t_h.detach().numpy(), rtol=1e-10, atol=1e-12)
    for name, param in module.named_parameters():
        np.testing.assert_allclose(grads[name], param.grad.numpy(), rtol=1e-10, atol=1e-11,
                                   err_msg=name)
    np.testing.assert_allclose(grads["input"], x.grad.numpy(), rtol=1e-10, atol=1e-11)
    np.testing.assert_allclose(grads["h0"], h.grad.numpy(), rtol=1e-10, atol=1e-11)


@cudasim
def test_backward_without_input_gradient_matches_cpu(small_launches):
    """``need_input_grad=False`` (training loops): no ``dX``, the same weight gradients."""
    rng = np.random.default_rng(10)
    cpu_model, gpu_model = _models("lstm", "tanh", 2, False)
    X = rng.standard_normal((2, 3, 2))
    g = _upstream(rng, "lstm", cpu_model, 2, 3)
    results = []
    for model in (cpu_model, gpu_model):
        model.forward(X)
        results.append(model._backward_unchecked(
            np.ascontiguousarray(g["grad_output"]), g["grad_h_n"], g["grad_c_n"],
            need_input_grad=False))
    want, got = results
    assert got["input"] is None and want["input"] is None
    for key in want:
        if want[key] is not None:
            np.testing.assert_allclose(got[key], want[key], rtol=1e-10, atol=1e-11,
                                       err_msg=key)


@cudasim
def test_recurrent_cuda_float32_matches_cpu(small_launches):
    rng = np.random.default_rng(2)
    cpu_model, gpu_model = _models("gru", "tanh", 2, True, dtype="float32")
    X = rng.standard_normal((3, 3, 2)).astype(np.float32)
    _assert_same(gpu_model.forward(X, [3, 1, 2]), cpu_model.forward(X, [3, 1, 2]),
                 1e-4, 1e-5, "forward")
    g = _upstream(rng, "gru", cpu_model, 3, 3)
    got, want = gpu_model.backward(**g), cpu_model.backward(**g)
    for key in want:
        assert got[key].dtype == np.float32
        np.testing.assert_allclose(got[key], want[key], rtol=1e-4, atol=1e-5, err_msg=key)


@cudasim
def test_recurrent_cuda_dropout_weight_updates_and_shape_changes(small_launches):
    """Dropout masks follow the CPU's random stream; host-side weight edits reach the
    device; a new batch shape reallocates the device buffers."""
    rng = np.random.default_rng(3)
    cpu_model, gpu_model = _models("lstm", "tanh", 2, False, dropout=0.4)
    for n_seq, steps in ((3, 3), (2, 2)):
        X = rng.standard_normal((n_seq, steps, 2))
        _assert_same(gpu_model.forward(X), cpu_model.forward(X), 1e-11, 1e-12, "forward")
        g = _upstream(rng, "lstm", cpu_model, n_seq, steps)
        got, want = gpu_model.backward(**g), cpu_model.backward(**g)
        for key in want:
            np.testing.assert_allclose(got[key], want[key], rtol=1e-10, atol=1e-11,
                                       err_msg=key)
        for model in (cpu_model, gpu_model):  # a host-side SGD step, in place
            model.flat_params[...] -= 0.1 * model.flat_grads
    np.testing.assert_allclose(gpu_model.flat_params, cpu_model.flat_params, rtol=1e-10)


@cudasim
def test_recurrent_cuda_pickles_to_host_arrays(small_launches):
    _, model = _models("gru", "tanh", 1, False)
    X = np.random.default_rng(0).standard_normal((2, 3, 2))
    before = model.forward(X)
    clone = pickle.loads(pickle.dumps(model))
    assert clone.device == "cuda"
    assert not any(hasattr(v, "copy_to_host") for v in clone.__dict__.values())
    assert type(clone.flat_params) is np.ndarray
    _assert_same(clone.forward(X), before, 0, 0, "forward")


@cudasim
def test_backward_before_forward_raises_on_cuda(small_launches):
    _, model = _models("rnn", "tanh", 1, False)
    with pytest.raises(RuntimeError, match="forward"):
        model.backward()


@cudasim
def test_training_network_on_cuda_matches_cpu(small_launches):
    """The training stack (stacked ``Recurrent`` layers, dropout, dense head, host optimizer)
    runs unchanged on the CUDA backend."""
    from rnnumba.optim import Adam
    from rnnumba.training import SequenceNetwork
    rng = np.random.default_rng(9)
    X = rng.standard_normal((4, 3, 2))
    lengths = np.array([3, 1, 2, 3])
    nets = [SequenceNetwork("gru", 2, (3, 2), 1, dropout=0.3, device=device,
                            random_state=np.random.RandomState(0)).train()
            for device in ("cpu", "cuda")]
    assert [layer.device for layer in nets[1].layers] == ["cuda", "cuda"]
    optimizers = [Adam([p.shape for p in net.params], 0.01) for net in nets]
    for _ in range(2):
        preds = [net.forward(X, lengths)[0] for net in nets]
        np.testing.assert_allclose(preds[1], preds[0], rtol=1e-10, atol=1e-12)
        grad_pred = rng.standard_normal(preds[0].shape)
        for net, optimizer in zip(nets, optimizers):
            net.backward(grad_pred)
            optimizer.step(net.params, net.grads)
        for g_cuda, g_cpu in zip(nets[1].grads, nets[0].grads):
            np.testing.assert_allclose(g_cuda, g_cpu, rtol=1e-10, atol=1e-12)


# --------------------------------------------------------------------------- real GPU


def _real_gpu_or_skip():
    if SIM:
        pytest.skip("gpu tests need a real CUDA device, not the simulator "
                    "(unset NUMBA_ENABLE_CUDASIM)")
    from rnnumba.backend import cuda_unavailable_reason
    reason = cuda_unavailable_reason()
    if reason:
        pytest.skip(f"no CUDA device: {reason}")


@pytest.mark.gpu
@pytest.mark.parametrize("hidden", [16, 96], ids=["persistent", "per-step"])
@cells
def test_recurrent_gpu_matches_cpu(cell, nonlinearity, hidden):
    _real_gpu_or_skip()
    from rnnumba.kernels.cuda._recurrence import use_persistent
    assert use_persistent(GATES[cell], hidden, np.float64) == (hidden == 16)
    rng = np.random.default_rng(11)
    kw = dict(cell=cell, input_size=7, hidden_size=hidden, num_layers=2, bidirectional=True,
              nonlinearity=nonlinearity, dtype="float64", random_state=0)
    cpu_model, gpu_model = Recurrent(device="cpu", **kw), Recurrent(device="cuda", **kw)
    N, T = 37, 23
    X = rng.standard_normal((N, T, 7))
    lengths = rng.integers(1, T + 1, N)
    hx = _hx(rng, cell, cpu_model, N)
    _assert_same(gpu_model.forward(X, lengths, hx), cpu_model.forward(X, lengths, hx),
                 1e-9, 1e-11, "forward")
    g = _upstream(rng, cell, cpu_model, N, T)
    got, want = gpu_model.backward(**g), cpu_model.backward(**g)
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-8, atol=1e-10, err_msg=key)


@pytest.mark.gpu
@pytest.mark.parametrize("hidden", [32, 200], ids=["persistent", "per-step"])
def test_recurrent_gpu_float32_matches_cpu(hidden):
    _real_gpu_or_skip()
    rng = np.random.default_rng(12)
    kw = dict(cell="lstm", input_size=5, hidden_size=hidden, num_layers=2, dtype="float32",
              random_state=0)
    cpu_model, gpu_model = Recurrent(device="cpu", **kw), Recurrent(device="cuda", **kw)
    X = rng.standard_normal((64, 30, 5)).astype(np.float32)
    _assert_same(gpu_model.forward(X), cpu_model.forward(X), 1e-3, 1e-4, "forward")
    g = _upstream(rng, "lstm", cpu_model, 64, 30)
    got, want = gpu_model.backward(**g), cpu_model.backward(**g)
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-3, atol=1e-3, err_msg=key)


@pytest.mark.gpu
def test_gpu_out_of_memory_names_the_bytes():
    _real_gpu_or_skip()
    from rnnumba.kernels.cuda._jit import DeviceMemoryError, device_empty
    with pytest.raises(DeviceMemoryError, match=r"could not allocate 562949953421312 bytes"):
        device_empty((2 ** 46,), np.float64, "a huge buffer")  # 512 TiB


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_gpu_optimizer_and_clipping_match_host(dtype):
    _real_gpu_or_skip()
    from numba import cuda

    from rnnumba import optim as host_optim
    from rnnumba.kernels.cuda import optim
    rng = np.random.default_rng(8)
    params, grads = _buffers(rng, dtype, sizes=(1000, 0, 70001))
    shapes = [p.shape for p in params]
    dev = [cuda.to_device(p) for p in params]
    host = host_optim.Adam(shapes, 0.01)
    ms = [cuda.to_device(np.zeros(s)) for s in shapes]
    vs = [cuda.to_device(np.zeros(s)) for s in shapes]
    for t, g in enumerate(grads, start=1):
        dg = [cuda.to_device(x) for x in g]
        assert optim.clip_grad_norm(dg, 50.0) == pytest.approx(
            host_optim.clip_grad_norm(g, 50.0), rel=1e-9)
        host.step(params, g)
        optim.adam_step(dev, dg, ms, vs, t, 0.01)
    rtol = 1e-12 if dtype == "float64" else 1e-5
    for p, d in zip(params, dev):
        np.testing.assert_allclose(d.copy_to_host(), p, rtol=rtol, atol=rtol)


# --------------------------------------------------------------------------- optimizers


def _buffers(rng, dtype, sizes=(7, 0, 19)):
    params = [rng.standard_normal(n).astype(dtype) for n in sizes]
    grads = [[rng.standard_normal(n).astype(dtype) for n in sizes] for _ in range(3)]
    return params, grads


@cudasim
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("solver", ["sgd", "sgd-plain", "adam"])
def test_device_optimizer_steps_match_host(solver, dtype, small_launches):
    from numba import cuda

    from rnnumba import optim as host_optim
    from rnnumba.kernels.cuda import optim
    rng = np.random.default_rng(4)
    params, grads = _buffers(rng, dtype)
    shapes = [p.shape for p in params]
    dev = [cuda.to_device(p) for p in params]
    if solver == "adam":
        host = host_optim.Adam(shapes, 0.01)
        ms = [cuda.to_device(np.zeros(s)) for s in shapes]
        vs = [cuda.to_device(np.zeros(s)) for s in shapes]
    else:
        host = host_optim.SGD(shapes, 0.1, momentum=0.8, nesterov=solver == "sgd")
        vel = [cuda.to_device(np.zeros(s)) for s in shapes]
    for t, g in enumerate(grads, start=1):
        host.step(params, g)
        dg = [cuda.to_device(x) for x in g]
        if solver == "adam":
            optim.adam_step(dev, dg, ms, vs, t, 0.01)
        else:
            optim.sgd_step(dev, dg, vel, 0.1, momentum=0.8, nesterov=solver == "sgd")
    rtol = 1e-13 if dtype == "float64" else 1e-6
    for p, d in zip(params, dev):
        assert d.dtype == p.dtype
        np.testing.assert_allclose(d.copy_to_host(), p, rtol=rtol, atol=rtol)


@cudasim
@pytest.mark.parametrize("max_norm", [None, 1.0, 1e6])
def test_device_clip_grad_norm_matches_host(max_norm, small_launches, monkeypatch):
    from numba import cuda

    from rnnumba import optim as host_optim
    from rnnumba.kernels.cuda import optim
    monkeypatch.setattr(optim, "REDUCE_BLOCK", 4)  # 37 values: several blocks and strides
    rng = np.random.default_rng(6)
    grads = [rng.standard_normal(n).astype(np.float32) for n in (30, 0, 7)]
    dev = [cuda.to_device(g) for g in grads]
    want = host_optim.clip_grad_norm(grads, max_norm)
    got = optim.clip_grad_norm(dev, max_norm)
    assert got == pytest.approx(want, rel=1e-12)
    for g, d in zip(grads, dev):
        np.testing.assert_allclose(d.copy_to_host(), g, rtol=1e-6, atol=1e-7)


# --------------------------------------------------------------------------- PTX (no GPU)


@pytest.fixture
def ptx_compiler(monkeypatch):
    """``compile(kernel, arg_values)`` to PTX for sm_80 without a GPU, or a skip.

    The simulator runs kernels as Python and so cannot catch code that does not type or
    lower for a real device; NVVM can, given libdevice, with no driver. Numba looks up the
    device and NVRTC only to pick the architecture and libdevice, so those look-ups are
    patched for the test.
    """
    if SIM:
        pytest.skip("PTX compilation needs numba's real CUDA target (unset NUMBA_ENABLE_CUDASIM)")
    import glob
    import types

    from numba import cuda, typeof
    from numba.core import types as nb_types
    from numba.core.typing import signature
    try:
        from numba.cuda.cudadrv import libs, nvrtc, nvvm
        import numba.cuda.dispatcher as dispatcher
        if not nvvm.is_available():
            pytest.skip("NVVM (libnvvm) is not installed")
        if cuda.is_available():  # the patched look-ups below would leak into real launches
            pytest.skip("a real device is present: the gpu tests compile the kernels")
    except (ImportError, AttributeError) as exc:
        pytest.skip(f"numba-cuda internals differ: {exc}")
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH") or ""
    found = sorted(glob.glob(os.path.join(home, "nvvm/libdevice/libdevice*.bc"))
                   + glob.glob("/usr/local/cuda*/nvvm/libdevice/libdevice*.bc"))
    if not found:
        pytest.skip("libdevice was not found (set CUDA_HOME)")
    monkeypatch.setattr(dispatcher, "get_current_device",
                        lambda: types.SimpleNamespace(compute_capability=(8, 0)))
    monkeypatch.setattr(nvrtc, "get_arch_option", lambda major, minor: f"compute_{major}{minor}")
    for module in (libs, nvvm):  # nvvm imports the function by name
        monkeypatch.setattr(module, "get_libdevice", lambda: found[-1], raising=False)

    def compile_kernel(kernel, *args):
        sig = signature(nb_types.void, *[typeof(a) for a in args])
        ptx, _ = cuda.compile_ptx(getattr(kernel, "py_func", kernel), sig, cc=(8, 0))
        assert ".entry" in ptx
        return ptx

    return compile_kernel


def test_every_kernel_compiles_to_ptx(ptx_compiler):
    """All CUDA kernels type, lower and compile for a real device: every kernel in float32,
    the dtype-specialised factories (GEMM, LSTM persistent pair) in float64 too."""
    from rnnumba.kernels.cuda import _jit, _recurrence as rec, common, optim
    for dtype in (np.float32, np.float64):
        a3, a2, a1 = np.zeros((2, 2, 2), dtype), np.zeros((2, 2), dtype), np.zeros(2, dtype)
        f64, lengths, key = np.zeros(2), np.zeros(2, np.int64), np.dtype(dtype).str
        ptx_compiler(common._gemm_kernel(16, key), a2, a2, a2, a1, True, False, True, False)
        # the weight gradients read the states as a column block of the outputs (strided)
        ptx_compiler(common._gemm_kernel(16, key), a2, a2[:, :1], a2, a1, True, False, True,
                     False)
        for gates in (1, 3, 4) if dtype == np.float32 else (4,):
            ptx_compiler(rec._forward_persistent(key, 4, gates), a3, a2, a1, a2, a2, lengths,
                         True, 0, a3, 0, a3, a2, a2)
            ptx_compiler(rec._backward_persistent(key, 4, gates), a2, a2, a2, lengths, True,
                         0, a3, 0, a3, a3, a2, a2, a3, a3, a2, a2)
        if dtype == np.float64:
            continue
        ptx_compiler(common._column_sums_kernel, a2, a1)
        ptx_compiler(_jit._fill_kernel, a1, 0.0)
        ptx_compiler(_jit._scale_kernel, a1, a1)
        ptx_compiler(_jit._product_kernel, a1, a1, a1)
        ptx_compiler(rec._forward_step, 0, a3, a2, a1, lengths, 0, 0, a3, 0, a3, a2, a2)
        ptx_compiler(rec._backward_step, 0, a2, a2, lengths, 0, True, 0, a3, 0, a3, a3, a3, a3,
                     a2, a2)
        ptx_compiler(common._first_step_rows_kernel, a3, lengths, True, a2)
        ptx_compiler(optim._sgd_kernel(key), a1, a1, f64, 0.1, 0.9, True)
        ptx_compiler(optim._adam_kernel(key), a1, a1, f64, f64, 0.1, 0.9, 0.9, 1e-8)
        ptx_compiler(optim._scale_kernel(key), a1, 0.5)
        ptx_compiler(optim._sum_squares_kernel(128), a1, f64)
        ptx_compiler(optim._finite_probe_kernel(128), a1, f64)


@cudasim
def test_launchers_reject_bad_shapes_and_dtypes(cuda_kernels):
    """The kernels do not check bounds, so the launchers check every shape first."""
    lstm = cuda_kernels.CELLS["lstm"]
    T, N, H = 2, 3, 2

    def args(**change):
        a = dict(proj=np.zeros((T, N, 4 * H)), w_hh=np.zeros((4 * H, H)), b_hh=np.zeros(4 * H),
                 h0=np.zeros((N, H)), c0=np.zeros((N, H)), lengths=np.full(N, T),
                 reverse=False, act=0, out=np.zeros((T, N, 2 * H)), col=H,
                 cache=np.zeros((T, N, 5 * H)), h_n=np.zeros((N, H)), c_n=np.zeros((N, H)))
        a.update(change)
        return list(a.values())

    lstm.forward_sequence(*args())  # the valid call runs
    for change, name in ((dict(w_hh=np.zeros((4 * H, H + 1))), "w_hh"),
                         (dict(c0=np.zeros((0, 0))), "c0"),
                         (dict(lengths=np.full(N, T, dtype=np.int32)), "lengths"),
                         (dict(col=H + 1), "out"),
                         (dict(cache=np.zeros((T, N, 4 * H))), "cache"),
                         (dict(h_n=np.zeros((N, H), np.float32)), "h_n"),
                         (dict(proj=np.zeros((T, N, 3 * H))), "gate width")):
        with pytest.raises(ValueError, match=name):
            lstm.forward_sequence(*args(**change))


@cudasim
def test_gemm_phases_reject_bad_shapes(cuda_kernels):
    common = cuda_kernels.common
    x, w, b = np.zeros((2, 3, 4)), np.zeros((6, 4)), np.zeros(6)
    common.project_input(x, w, b, np.zeros((2, 3, 6)))
    with pytest.raises(ValueError, match="proj"):
        common.project_input(x, w, b, np.zeros((2, 3, 5)))
    with pytest.raises(ValueError, match="w_ih"):
        common.project_input(x, np.zeros((6, 5)), b, np.zeros((2, 3, 6)))
    out, h0, lengths = np.zeros((2, 3, 4)), np.zeros((3, 2)), np.full(3, 2, dtype=np.int64)
    d = np.zeros((2, 3, 6))
    with pytest.raises(ValueError, match="grad_w_hh"):
        common.weight_gradients(x, out, 0, h0, lengths, False, d, d.copy(), w,
                                np.zeros((6, 4)), np.zeros((6, 3)), b.copy(), b.copy(),
                                np.zeros_like(x))
    with pytest.raises(ValueError, match="col"):
        common.weight_gradients(x, out, 3, h0, lengths, False, d, d.copy(), w,
                                np.zeros((6, 4)), np.zeros((6, 2)), b.copy(), b.copy(),
                                np.zeros_like(x))
