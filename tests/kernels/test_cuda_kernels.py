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
        results.append(model.backward(g["grad_output"], g["grad_h_n"], g["grad_c_n"],
                                      input_grad=False))
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
    """The training stack (a stack of recurrent layers of different widths with dropout, a
    dense head, the optimizer) runs unchanged on the CUDA backend."""
    from rnnumba.heads import SequenceHead
    from rnnumba.inputs import NumericInput
    from rnnumba.model import SequenceModel
    from rnnumba.optim import Adam
    rng = np.random.default_rng(9)
    X = rng.standard_normal((4, 3, 2))
    lengths = np.array([3, 1, 2, 3])
    nets = []
    for device in ("cpu", "cuda"):
        recurrent = Recurrent("gru", 2, [3, 2], dropout=0.3, dtype="float64", device=device,
                              random_state=0)
        head = SequenceHead(2, 1, 1, random_state=np.random.RandomState(1))
        nets.append(SequenceModel(NumericInput(2, np.float64), recurrent, head).train())
    assert nets[1].device == "cuda" and nets[1].backend.name == "cuda"
    optimizers = []
    for net in nets:
        optimizer = Adam([(net.store.size,)], 0.01)
        optimizer.attach(net.backend)
        optimizers.append(optimizer)
    for _ in range(2):
        preds = []
        for net in nets:
            net.store.push()
            preds.append(np.array(net.backend.to_host(net.forward(net.prepare(X, lengths)))))
        np.testing.assert_allclose(preds[1], preds[0], rtol=1e-10, atol=1e-12)
        grad_pred = rng.standard_normal(preds[0].shape)
        for net, optimizer in zip(nets, optimizers):
            net.backward(net.backend.upload(grad_pred))
            net.store.pull_grads()
            optimizer.step([net.store.device], [net.store.device_grads])
            net.store.pull()
        np.testing.assert_allclose(nets[1].store.host_grads, nets[0].store.host_grads,
                                   rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(nets[1].store.host, nets[0].store.host, rtol=1e-10,
                                   atol=1e-12)


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
def test_gpu_optimizer_and_clipping_match_cpu(dtype):
    """The device optimizer kernels on large flat buffers (many reduction blocks, strided
    loops) against the CPU kernels: L2, clipping, finiteness and Adam steps."""
    _real_gpu_or_skip()
    from rnnumba.kernels.cpu import optim as cpu_optim
    from rnnumba.kernels.cuda import optim
    rng = np.random.default_rng(8)
    for size in (1000, 0, 70001):
        want = _flat_state(rng, dtype, size)
        got = _to_device(want)
        for g in _flat_grads(rng, dtype, size):
            for module, s in ((cpu_optim, want), (optim, got)):
                module.copy(s["grads"], _like(s["grads"], g))
                _training_step(module, s, 50.0)
        rtol = 1e-12 if dtype == "float64" else 1e-5
        _assert_state_close(got, want, rtol)


# --------------------------------------------------------------------------- optimizers


# The flat-buffer kernels of rnnumba.kernels.cuda.optim against rnnumba.kernels.cpu.optim.


@pytest.fixture
def small_reductions(small_launches, monkeypatch):
    """4-thread reduction blocks, at most 2 of them: 37 values take the strided loop."""
    from rnnumba.kernels.cuda import _reduce
    monkeypatch.setattr(_reduce, "REDUCE_BLOCK", 4)
    monkeypatch.setattr(_reduce, "REDUCE_MAX_BLOCKS", 2)
    return _reduce


def _flat_state(rng, dtype, size):
    """A flat parameter buffer with everything a training step touches (host arrays)."""
    mask = (np.arange(size) % 5 != 0).astype(dtype)
    return {"params": rng.standard_normal(size).astype(dtype),
            "grads": np.zeros(size, dtype), "mask": mask, "m": np.zeros(size),
            "v": np.zeros(size), "velocity": np.zeros(size),
            "stats": np.array([0.5, 0.0, 0.0, 0.0]), "t": 0}


def _flat_grads(rng, dtype, size, steps=3):
    return [(3 * rng.standard_normal(size)).astype(dtype) for _ in range(steps)]


def _to_device(state):
    from numba import cuda
    return {k: cuda.to_device(v) if isinstance(v, np.ndarray) else v for k, v in state.items()}


def _like(target, host):
    """``host`` where ``target`` lives (a device copy for a device ``target``)."""
    if isinstance(target, np.ndarray):
        return host
    from numba import cuda
    return cuda.to_device(host)


def _to_host(array):
    return array if isinstance(array, np.ndarray) else array.copy_to_host()


def _training_step(module, s, max_norm, solver="adam"):
    """What the training core runs per batch once the gradients are in."""
    module.add_l2(s["params"], s["grads"], s["mask"], 0.01, 0.005, s["stats"])
    module.clip_grad_norm(s["grads"], max_norm, s["stats"])
    s["t"] += 1
    if solver == "adam":
        module.adam_step(s["params"], s["grads"], s["m"], s["v"], s["t"], 0.01, 0.9, 0.999,
                         1e-8)
    else:
        module.sgd_step(s["params"], s["grads"], s["velocity"], 0.1, 0.8, solver == "sgd")
    module.check_finite(s["params"], s["stats"])


def _assert_state_close(got, want, rtol):
    for key in ("params", "grads", "m", "v", "velocity", "stats"):
        a, b = _to_host(got[key]), want[key]
        assert a.dtype == b.dtype, key
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol, err_msg=key)


@cudasim
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("solver", ["sgd", "sgd-plain", "adam"])
@pytest.mark.parametrize("max_norm", [0.0, 5.0], ids=["measure", "clip"])
def test_device_training_step_matches_cpu(max_norm, solver, dtype, small_reductions):
    """L2, clipping (measured or applied), an optimizer step and the finite check, three
    times: the device buffers and ``stats`` equal the CPU kernels' (37 values: several
    elementwise blocks, strided reductions)."""
    from rnnumba.kernels.cpu import optim as cpu_optim
    from rnnumba.kernels.cuda import optim
    rng = np.random.default_rng(4)
    want = _flat_state(rng, dtype, 37)
    got = _to_device(want)
    for g in _flat_grads(rng, dtype, 37):
        for module, s in ((cpu_optim, want), (optim, got)):
            module.copy(s["grads"], _like(s["grads"], g))
            _training_step(module, s, max_norm, solver)
    if max_norm:
        assert want["stats"][1] > max_norm  # the clip did happen
    assert want["stats"][2] == 1.0
    _assert_state_close(got, want, 1e-13 if dtype == "float64" else 1e-6)


@cudasim
@pytest.mark.parametrize("max_norm", [0.0, 1.0, 1e6], ids=["measure", "clip", "no-clip"])
def test_device_clip_grad_norm_matches_cpu(max_norm, small_reductions):
    from rnnumba.kernels.cpu import optim as cpu_optim
    from rnnumba.kernels.cuda import optim
    grads = np.random.default_rng(6).standard_normal(37).astype(np.float32)
    dev, stats, want_stats = _to_device({"g": grads})["g"], np.zeros(4), np.zeros(4)
    optim.clip_grad_norm(dev, max_norm, stats)  # host stats: copied in and out
    cpu_optim.clip_grad_norm(grads, max_norm, want_stats)
    assert stats[1] == pytest.approx(want_stats[1], rel=1e-12)
    np.testing.assert_allclose(dev.copy_to_host(), grads, rtol=1e-6, atol=1e-7)


@cudasim
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_device_non_finite_values(bad, small_reductions):
    """A non-finite gradient is measured, not clipped; non-finite parameters are flagged."""
    from rnnumba.kernels.cuda import optim
    grads = np.arange(37, dtype=np.float64)
    grads[29] = bad
    stats = np.zeros(4)
    want = grads.copy()
    optim.clip_grad_norm(grads, 1.0, stats)
    assert not np.isfinite(stats[1])
    np.testing.assert_array_equal(grads, want)
    optim.check_finite(grads, stats)
    assert stats[2] == 0.0
    optim.check_finite(np.zeros(0), stats)
    assert stats[2] == 1.0


@cudasim
def test_device_buffer_helpers(small_launches):
    from rnnumba.kernels.cuda import optim
    a, b = np.arange(19.0), np.full(19, 0.5)
    optim.accumulate(a, b)
    np.testing.assert_array_equal(a, np.arange(19.0) + 0.5)
    optim.copy(b, a)
    np.testing.assert_array_equal(b, a)
    optim.fill(a, 2.0)
    np.testing.assert_array_equal(a, 2.0)
    empty = np.zeros(0)
    for fn in (optim.accumulate, optim.copy):
        fn(empty, empty)
    stats = np.zeros(4)
    optim.add_l2(empty, empty, empty, 1.0, 1.0, stats)
    optim.clip_grad_norm(empty, 1.0, stats)
    assert stats.tolist() == [0.0, 0.0, 0.0, 0.0]


@cudasim
def test_device_optim_is_deterministic_and_stays_on_the_device(small_reductions, monkeypatch):
    """Device arrays in, nothing copied to the host inside the launchers, the same bits
    on every run."""
    from rnnumba.kernels.cuda import optim
    rng = np.random.default_rng(7)
    start = _flat_state(rng, "float32", 37)
    grads = _flat_grads(rng, "float32", 37)
    runs = []
    for _ in range(2):
        s = _to_device(start)
        with monkeypatch.context() as patch:
            patch.setattr(type(s["params"]), "copy_to_host", _no_transfer)
            for g in grads:
                optim.fill(s["grads"], 0.0)
                optim.accumulate(s["grads"], _to_device({"g": g})["g"])
                _training_step(optim, s, 5.0)
        runs.append({k: _to_host(v) for k, v in s.items() if k != "t"})
    for key in runs[0]:
        np.testing.assert_array_equal(runs[0][key], runs[1][key], err_msg=key)


def _no_transfer(*args, **kwargs):
    raise AssertionError("copied to the host")


@cudasim
def test_optim_launchers_reject_bad_shapes_and_dtypes(cuda_kernels, monkeypatch):
    from rnnumba.kernels.cuda import _reduce, optim
    p, f64, stats = np.zeros(5), np.zeros(5), np.zeros(4)
    p32 = np.zeros(5, np.float32)
    for fn, args, name in (
            (optim.add_l2, (p, p[:4], p, 1.0, 1.0, stats), "grads"),
            (optim.add_l2, (p, p, p32, 1.0, 1.0, stats), "mask"),
            (optim.add_l2, (p, p, p, 1.0, 1.0, np.zeros(3)), "stats"),
            (optim.clip_grad_norm, (np.zeros((5, 1)), 1.0, stats), "grads"),
            (optim.clip_grad_norm, (np.zeros(5, np.int64), 1.0, stats), "grads"),
            (optim.check_finite, (p, stats.astype(np.float32)), "stats"),
            (optim.sgd_step, (p32, p32, p32, 0.1, 0.9, True), "velocity"),
            (optim.adam_step, (p, p, f64, f64[:4], 1, 0.1, 0.9, 0.9, 1e-8), "v"),
            (optim.accumulate, (p, p32), "src"),
            (optim.copy, (p, p[:3]), "src")):
        with pytest.raises(ValueError, match=name):
            fn(*args)
    monkeypatch.setattr(_reduce, "REDUCE_BLOCK", 6)
    with pytest.raises(ValueError, match="power of two"):
        optim.check_finite(p, stats)


@cudasim
@pytest.mark.parametrize("cell", ["rnn", "gru"])
def test_weight_gradients_without_input_gradient(cell, small_launches, cuda_kernels):
    """``grad_x=None`` skips the input-gradient GEMM; the other gradients are unchanged."""
    from rnnumba.kernels.cpu import CELLS as CPU_CELLS, common as cpu_common
    T, N, I, H = 3, 3, 2, 3
    p = _problem(cell, T, N, I, H, np.float64, [3, 1, 2])
    want = _run_layer(cpu_common, CPU_CELLS[cell], p, cell, 0, H, lambda a: a.copy(),
                      lambda a: a)
    G = GATES[cell] * H
    for r in range(2):
        got = [np.zeros((G, I)), np.zeros((G, H)), np.zeros(G), np.zeros(G)]
        cuda_kernels.common.weight_gradients(
            p["x"], want["out"], r * H, p[f"h0{r}"], p["lengths"], r == 1, want[f"d_ih{r}"],
            want[f"d_hh{r}"], p[f"w_ih{r}"], *got, None)
        for name, array in zip(("gw_ih", "gw_hh", "gb_ih", "gb_hh"), got):
            np.testing.assert_allclose(array, want[f"{name}{r}"], rtol=1e-12, atol=1e-13,
                                       err_msg=f"{name}{r}")


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
    the dtype-specialised factories (GEMM, LSTM persistent pair, the learning parts) in
    float64 too."""
    from rnnumba.kernels.cuda import (_jit, _recurrence as rec, _reduce, common, layers,
                                      losses, optim)
    for dtype in (np.float32, np.float64):
        a3, a2, a1 = np.zeros((2, 2, 2), dtype), np.zeros((2, 2), dtype), np.zeros(2, dtype)
        f64, lengths, key = np.zeros(2), np.zeros(2, np.int64), np.dtype(dtype).str
        f64_2, i2 = np.zeros((2, 2)), np.zeros((2, 2), np.int64)
        # the learning parts: every dtype-specialised kernel in both dtypes
        ptx_compiler(layers._pool_features_kernel(key), 0, a3, lengths, 1, a2, i2)
        ptx_compiler(layers._mean_weights_kernel(key), lengths, a2)
        ptx_compiler(layers._score_kernel(key), a3, lengths, a1, a2)
        ptx_compiler(layers._softmax_steps_kernel(key), lengths, a2)
        ptx_compiler(layers._attention_features_kernel(key), a3, lengths, a2, a2)
        ptx_compiler(layers._pool_grad_kernel(key), 0, lengths, a2, i2, a2, a3)
        ptx_compiler(layers._attention_dots_kernel(key), a3, lengths, a2, a2)
        ptx_compiler(layers._attention_scores_grad_kernel, lengths, a2, a2)
        ptx_compiler(layers._attention_grad_kernel(key), lengths, a1, a2, a2, a2, a3)
        ptx_compiler(layers._attention_vector_grad_kernel(key), a3, lengths, a2, a1)
        ptx_compiler(losses._squared_rows_kernel(128), a2, a2, f64, f64)
        ptx_compiler(losses._squared_grad_kernel(key), a2, a2, f64, 1.0, a2)
        ptx_compiler(losses._softmax_rows_kernel(128, key), a2, lengths, f64, f64_2, f64)
        ptx_compiler(losses._softmax_grad_kernel(key), a2, lengths, f64, 1.0, f64_2, a2)
        ptx_compiler(optim._l2_kernel(key, 128), a1, a1, a1, 0.5, f64)
        ptx_compiler(optim._sum_squares_kernel(128), a1, f64)
        ptx_compiler(optim._finite_probe_kernel(128), a1, f64)
        ptx_compiler(optim._clip_kernel(key), a1, 1.0, f64)
        ptx_compiler(optim._sgd_kernel(key), a1, a1, f64, 0.1, 0.9, True)
        ptx_compiler(optim._adam_kernel(key), a1, a1, f64, f64, 0.1, 0.9, 0.9, 1e-8)
        ptx_compiler(optim._add_kernel, a1, a1)
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
        ptx_compiler(_reduce._finish_kernel(128), f64, f64, 0, 0, 1.0)


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
