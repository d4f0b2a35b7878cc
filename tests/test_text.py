"""RNNLanguageModel: next-token training on the training core, scoring, sampling through
the stepping API, the vocabulary, the PyTorch interchange, persistence and bad input.

Everything runs on tiny generated text (a grammar whose best achievable loss is known), so
the file stays fast; the real corpus is benchmarks/text_suite.py's."""

import io
import math
import pickle
import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning, NotFittedError

from rnnumba import persistence
from rnnumba.losses import CrossEntropy
from rnnumba.text import EOS, UNK, RNNLanguageModel, _Buckets, _draw

#: The grammar: ``a^n b^n`` with ``n`` uniform in 1..MAX_N.
MAX_N = 4


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


def grammar(n_texts=160, seed=0):
    rng = np.random.RandomState(seed)
    return ["a" * n + "b" * n for n in rng.randint(1, MAX_N + 1, n_texts)]


def grammar_entropy(texts):
    """The loss per token (nats) of the true model on ``texts`` (end of sequence counted):
    only the number of ``a`` is uncertain, one of ``MAX_N`` equally likely choices per
    sequence; every ``b`` and the end then follow."""
    return len(texts) * math.log(MAX_N) / sum(len(t) + 1 for t in texts)


def valid(text):
    """In the language ``a^n b^n`` (n >= 1): as many ``b`` as ``a``, the grammar's structure
    (a sample may rarely count one ``a`` past ``MAX_N``)."""
    n = len(text) // 2
    return n >= 1 and text == "a" * n + "b" * n


SMALL = dict(hidden_layer_sizes=(24,), embedding_dim=8, learning_rate_init=0.02,
             max_iter=80, batch_size=16, random_state=0)


@pytest.fixture(scope="module")
def fitted():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return RNNLanguageModel(**SMALL).fit(grammar())


# ---------------------------------------------------------------------- learning
def test_grammar_is_learned_to_its_entropy_and_samples_are_valid(fitted):
    texts = grammar(seed=1)
    # the model's loss over the data's own entropy: near zero
    excess = -fitted.score(texts) - grammar_entropy(texts)
    assert excess < 0.02, excess  # 0.008 when written
    assert fitted.perplexity(texts) == pytest.approx(math.exp(-fitted.score(texts)))
    assert fitted.loss_curve_[-1] < fitted.loss_curve_[0]
    samples = fitted.sample(n_samples=50, max_length=20, random_state=0)
    assert len(samples) == 50 and all(isinstance(s, str) for s in samples)
    assert all(valid(s) for s in samples), [s for s in samples if not valid(s)]
    # every n appears: the model samples the grammar, not one string of it
    lengths = [len(s) // 2 for s in samples]
    assert set(range(1, MAX_N + 1)) <= set(lengths)
    assert sum(n > MAX_N for n in lengths) <= 2


def test_prompt_temperature_and_top_k(fitted):
    # after four a, only b can follow (after three, a and b are equally likely)
    greedy = fitted.sample(n_samples=3, prompt="aaaa", top_k=1, random_state=0)
    assert greedy == ["aaaabbbb"] * 3
    cold = fitted.sample(n_samples=20, prompt="aa", temperature=0.05, random_state=1)
    assert all(valid(s) and s.startswith("aa") for s in cold)
    hot = fitted.sample(n_samples=20, max_length=5, temperature=50.0, random_state=1)
    assert not all(valid(s) for s in hot)  # a flat distribution breaks the grammar
    assert all(len(s) <= 5 for s in hot)


def test_samples_are_reproducible_with_random_state(fitted):
    kwargs = dict(n_samples=8, max_length=12, temperature=1.5)
    first = fitted.sample(random_state=3, **kwargs)
    assert fitted.sample(random_state=3, **kwargs) == first
    assert fitted.sample(random_state=np.random.RandomState(3), **kwargs) == first
    assert fitted.sample(random_state=4, **kwargs) != first


def test_sampling_steps_equal_one_forward(fitted):
    """Greedy decoding through the carried state picks, at every step, the argmax of one
    full forward over the text so far."""
    text = fitted.sample(n_samples=1, max_length=9, prompt="a", top_k=1, random_state=0)[0]
    ids = np.concatenate([[EOS], fitted._encode("str", [np.array([ord(c) for c in text])],
                                                "X")[0]])
    logits = fitted._model.predict(ids[None, :], np.array([ids.size]))[0]
    expected = np.argmax(np.where(np.arange(logits.shape[1]) == UNK, -np.inf, logits), axis=1)
    np.testing.assert_array_equal(expected[1:-1], ids[2:])  # the prompt is given
    assert expected[-1] == EOS or len(text) == 10


def test_draw_follows_the_distribution():
    rng = np.random.RandomState(0)
    logits = np.log(np.array([[0.2, 0.3, 0.1, 0.4]] * 40000))
    tokens = _draw(logits, 1.0, None, rng)
    freq = np.bincount(tokens, minlength=4) / tokens.size
    expected = np.array([0.2, 0.0, 0.1, 0.4]) / 0.7  # UNK (id 1) is never drawn
    np.testing.assert_allclose(freq, expected, atol=0.01)
    top2 = _draw(logits, 1.0, 2, rng)
    assert set(np.unique(top2)) == {0, 3}


def test_integer_tokens_ragged_and_two_d():
    rng = np.random.RandomState(0)
    # tokens 10, 20, 30 cycle from a random start: the next token follows the last
    seqs = [np.array([10, 20, 30])[(np.arange(k) + s) % 3] for k, s in
            zip(rng.randint(2, 7, 120), rng.randint(0, 3, 120))]
    lm = RNNLanguageModel(**dict(SMALL, max_iter=25)).fit(seqs)
    assert lm.token_kind_ == "int"
    np.testing.assert_array_equal(lm.vocabulary_, [10, 20, 30])
    assert lm.vocabulary_size_ == 5
    samples = lm.sample(n_samples=10, max_length=6, prompt=np.array([20]), random_state=0)
    for s in samples:
        assert s.dtype == np.int64 and s[0] == 20
        assert np.all(np.isin(np.diff(s), [10, -20]))
    square = np.array([[10, 20, 30, 10]] * 30)
    assert RNNLanguageModel(**dict(SMALL, max_iter=3)).fit(square).perplexity(square) < 5


def test_verbose_prints_perplexity(capsys):
    RNNLanguageModel(**dict(SMALL, max_iter=2, verbose=True)).fit(grammar(40))
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    for line in lines:
        loss = float(line.split("loss = ")[1].split(",")[0])
        assert f", perplexity = {math.exp(loss):.4f}," in line


def test_early_stopping_scores_held_out_sequences(capsys):
    lm = RNNLanguageModel(**dict(SMALL, max_iter=6, early_stopping=True,
                                 n_iter_no_change=2, verbose=True)).fit(grammar(80))
    assert len(lm.validation_scores_) == lm.n_iter_
    assert lm.best_validation_score_ == max(lm.validation_scores_)
    assert "validation perplexity" in capsys.readouterr().out


def test_warm_start_continues_with_the_vocabulary():
    lm = RNNLanguageModel(**dict(SMALL, max_iter=2, warm_start=True)).fit(grammar(40))
    vocabulary = lm.vocabulary_.copy()
    lm.fit(["ab", "aabb", "abc"])  # 'c' is unseen: the unknown token, vocabulary kept
    np.testing.assert_array_equal(lm.vocabulary_, vocabulary)
    assert lm.n_iter_ == 4
    lm.set_params(hidden_layer_sizes=(8,))
    with pytest.raises(ValueError, match="architecture"):
        lm.fit(["ab"])


# ---------------------------------------------------------------------- gradients
def _tiny_model(cell, dtype=np.float64):
    lm = RNNLanguageModel(cell=cell, hidden_layer_sizes=(5, 4), embedding_dim=3,
                          dtype=np.dtype(dtype).name, device="cpu")
    lm._learn_vocabulary("int", [np.arange(5)])
    model = lm._build_model(lm._architecture(), lm.vocabulary_size_, "cpu",
                            np.random.RandomState(0))
    seqs = [np.array([2, 3, 4, 2]), np.array([5, 6]), np.array([6, 6, 5, 4, 3, 2])]
    return model, _Buckets.from_ids(seqs, 3).parts[0]


def _loss_and_grad(model, part):
    X, lengths, target, weights, normalizer = part
    batch = model.prepare(X, lengths, target, weights, normalizer)
    stats = np.zeros(4)
    model.train(False)
    model.loss_and_gradients(batch, CrossEntropy(), stats)
    return stats[0], model.store.device_grads.copy()


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_gradients_match_finite_differences(cell):
    """Embedding, recurrent and head gradients of the next-token loss, float64."""
    model, part = _tiny_model(cell)
    _, grad = _loss_and_grad(model, part)
    flat = model.store.host
    rng = np.random.RandomState(1)
    start, stop = model.store.segment_bounds("input.")
    # every embedding entry of the ids that occur, and a sample of the rest
    checked = np.concatenate([np.arange(start + 2 * 3, stop),
                              rng.choice(np.arange(stop, flat.size), 40, replace=False)])
    eps = 1e-6
    for i in checked:
        keep = flat[i]
        flat[i] = keep + eps
        up, _ = _loss_and_grad(model, part)
        flat[i] = keep - eps
        down, _ = _loss_and_grad(model, part)
        flat[i] = keep
        assert (up - down) / (2 * eps) == pytest.approx(grad[i], rel=1e-5, abs=1e-8), i
    # ids 0 (EOS as input) and 1 (UNK, never read): EOS's row has a gradient, UNK's is 0
    emb_grad = grad[start:stop].reshape(-1, 3)
    assert np.all(emb_grad[UNK] == 0) and np.any(emb_grad[EOS] != 0)


def _torch_lm(torch, lm):
    """The same-size PyTorch model, holding ``lm``'s weights."""
    from rnnumba._validation import check_hidden_layer_sizes
    sizes = check_hidden_layer_sizes(lm.hidden_layer_sizes)
    cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[lm.cell]

    class LM(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = torch.nn.Embedding(lm.vocabulary_size_, lm.embedding_dim)
            self.recurrent = cls(lm.embedding_dim, sizes[0], num_layers=len(sizes),
                                 batch_first=True)
            self.head = torch.nn.Linear(sizes[0], lm.vocabulary_size_)

        def forward(self, ids):
            return self.head(self.recurrent(self.embedding(ids))[0])

    module = LM().double()
    module.load_state_dict({k: torch.from_numpy(v.astype(np.float64))
                            for k, v in lm.state_dict().items()})
    return module


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_state_dict_gives_pytorch_the_same_logits_and_gradients(torch, cell):
    lm = RNNLanguageModel(**dict(SMALL, cell=cell, hidden_layer_sizes=(12, 12),
                                 dtype="float64", max_iter=2)).fit(grammar(30))
    sd = lm.state_dict()
    assert sd["embedding.weight"].shape == (lm.vocabulary_size_, lm.embedding_dim)
    assert sd["head.weight"].shape == (lm.vocabulary_size_, 12)
    assert "recurrent.weight_hh_l1" in sd
    module = _torch_lm(torch, lm)
    texts = [np.array([ord(c) for c in t]) for t in ["aab", "abab", "b"]]
    part = _Buckets.from_ids(lm._encode("str", texts, "X"), 3)
    X, lengths, target, weights, normalizer = part.parts[0]
    ours = lm._model.predict(X, lengths)
    theirs = module(torch.from_numpy(X)).detach().numpy()
    mask = weights > 0
    np.testing.assert_allclose(ours[mask], theirs[mask], rtol=1e-10, atol=1e-12)
    # the training loss's gradients: PyTorch's cross-entropy over the unpadded steps
    loss, grad = _loss_and_grad(lm._model, (X, lengths, target, weights, normalizer))
    logits = module(torch.from_numpy(X))
    tgt = torch.from_numpy(np.where(mask, target, -100))
    torch_loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                                   tgt.reshape(-1), ignore_index=-100)
    torch_loss.backward()
    assert loss == pytest.approx(float(torch_loss.detach()), rel=1e-12)
    names = [name for name, _ in lm._model.store.shapes]
    offset = 0
    for name, shape in lm._model.store.shapes:
        size = int(np.prod(shape))
        torch_name = name.replace("input.", "embedding.")
        param = dict(module.named_parameters())[torch_name]
        np.testing.assert_allclose(grad[offset:offset + size].reshape(shape),
                                   param.grad.numpy(), rtol=1e-8, atol=1e-12, err_msg=name)
        offset += size
    assert len(names) == len(sd)
    # and back: PyTorch's weights loaded into a fitted model
    with torch.no_grad():
        for p in module.parameters():
            p.mul_(0.5)
    lm.load_state_dict(module.state_dict())
    np.testing.assert_allclose(lm.state_dict()["head.bias"], 0.5 * sd["head.bias"])
    with pytest.raises(ValueError, match="unexpected key"):
        lm.load_state_dict({"lstm.weight_ih_l0": sd["recurrent.weight_ih_l0"]})


# ---------------------------------------------------------------------- persistence
def test_archive_round_trip(fitted, tmp_path):
    name, params, fitted_attrs, arrays = fitted._to_archive()
    assert name == "RNNLanguageModel"
    assert arrays["vocabulary/tokens"].dtype.kind == "i"
    path = tmp_path / "lm.npz"
    fitted.save(path)
    name, params, fitted_attrs, arrays = persistence.read_archive(path)
    loaded = RNNLanguageModel._from_archive(params, fitted_attrs, arrays)
    np.testing.assert_array_equal(loaded.vocabulary_, fitted.vocabulary_)
    texts = grammar(20, seed=5)
    assert loaded.score(texts) == fitted.score(texts)
    kwargs = dict(n_samples=5, random_state=2)
    assert loaded.sample(**kwargs) == fitted.sample(**kwargs)
    assert loaded.loss_curve_ == fitted.loss_curve_ and loaded.n_iter_ == fitted.n_iter_
    buffer = io.BytesIO()
    fitted.save(buffer)
    buffer.seek(0)
    assert persistence.read_archive(buffer)[0] == "RNNLanguageModel"


def test_archive_keeps_any_characters_and_int_tokens(tmp_path):
    texts = ["\x00a\u00e9", "\U0001F600b\ud800", "a\x00"] * 4
    lm = RNNLanguageModel(**dict(SMALL, max_iter=1)).fit(texts)
    loaded = RNNLanguageModel._from_archive(*lm._to_archive()[1:])
    assert "".join(loaded.vocabulary_) == "".join(lm.vocabulary_) == "\x00ab\u00e9\ud800" \
        "\U0001F600"
    assert loaded.perplexity(texts) == lm.perplexity(texts)
    ints = RNNLanguageModel(**dict(SMALL, max_iter=1)).fit([np.array([7, 900, 7])] * 4)
    path = tmp_path / "ints.npz"
    ints.save(path)
    again = RNNLanguageModel._from_archive(*persistence.read_archive(path)[1:])
    np.testing.assert_array_equal(again.vocabulary_, [7, 900])


def test_corrupt_archives_are_value_errors(fitted):
    name, params, attrs, arrays = fitted._to_archive()
    for damage in ({"vocabulary/tokens": np.array([3, 2])},
                   {"vocabulary/tokens": np.array(["a"])},
                   {"vocabulary/tokens": np.array([97, 98, 99])},  # one too many for weights
                   {"model/head.bias": np.zeros(3, dtype=np.float32)}):
        with pytest.raises(ValueError):
            RNNLanguageModel._from_archive(params, attrs, {**arrays, **damage})
    with pytest.raises(ValueError, match="token_kind_"):
        RNNLanguageModel._from_archive(params, {**attrs, "token_kind_": "bytes"}, arrays)
    without = {k: v for k, v in arrays.items() if k != "model/head.weight"}
    with pytest.raises(ValueError, match="lacks"):
        RNNLanguageModel._from_archive(params, attrs, without)


def test_sklearn_clone_params_and_pickle(fitted):
    params = fitted.get_params()
    assert params["hidden_layer_sizes"] == (24,) and params["random_state"] == 0
    fresh = clone(fitted)
    assert not hasattr(fresh, "_model") and fresh.get_params() == params
    with pytest.raises(NotFittedError):
        fresh.sample()
    again = pickle.loads(pickle.dumps(fitted))
    assert again.sample(n_samples=4, random_state=0) == fitted.sample(n_samples=4,
                                                                      random_state=0)
    texts = grammar(20, seed=2)
    assert again.score(texts) == fitted.score(texts)


def test_model_selection_uses_score():
    from sklearn.model_selection import GridSearchCV
    search = GridSearchCV(RNNLanguageModel(**dict(SMALL, max_iter=5)),
                          {"learning_rate_init": [0.001, 0.02]}, cv=3).fit(grammar(60))
    assert search.best_params_ == {"learning_rate_init": 0.02}  # higher log-likelihood


def test_refit_is_deterministic():
    texts = grammar(40)
    a = RNNLanguageModel(**dict(SMALL, max_iter=3)).fit(texts)
    b = RNNLanguageModel(**dict(SMALL, max_iter=3)).fit(texts)
    assert a.loss_curve_ == b.loss_curve_
    np.testing.assert_array_equal(a.state_dict()["head.weight"], b.state_dict()["head.weight"])


# ---------------------------------------------------------------------- bad input
def test_unseen_characters_follow_handle_unknown(fitted):
    with pytest.raises(ValueError, match=r"never seen at fit: 'c', 'z'"):
        clone(fitted).set_params(handle_unknown="error").fit(grammar(20)).perplexity(
            ["abz", "cab"])
    # the default reads them as the unknown token: finite, and worse than a seen character
    assert math.isfinite(fitted.perplexity(["abz"]))
    assert fitted.perplexity(["aabz"]) > fitted.perplexity(["aabb"])
    assert fitted.sample(prompt="zz", n_samples=2, random_state=0)[0].startswith("zz")


def test_token_ids_beyond_the_vocabulary():
    lm = RNNLanguageModel(**dict(SMALL, max_iter=1, handle_unknown="error"))
    lm.fit([np.array([0, 1, 2]), np.array([2, 1])])
    with pytest.raises(ValueError, match=r"token ids never seen at fit: 3, 9"):
        lm.score([np.array([1, 9, 3])])
    with pytest.raises(ValueError, match="never seen"):
        lm.sample(prompt=np.array([5]))


@pytest.mark.parametrize("X, error, match", [
    ([np.array([1, -2, 3])], ValueError, "negative"),
    ([np.array([1.5, 2.0])], TypeError, "integer"),
    ([np.array([True, False])], TypeError, "integer"),
    (np.array([["a", "b"], ["c", "d"]]), ValueError, "1-D"),
    ([np.array([1, 2]), np.array([], dtype=np.int64)], ValueError, "empty"),
    (["ab", ""], ValueError, r"X\[1\] is an empty sequence"),
    ([], ValueError, "no sequences"),
    ("abc", TypeError, "single str"),
    (["ab", np.array([1, 2])], TypeError, r"X\[1\]"),
    ([b"ab"], TypeError, "bytes"),
    (3, TypeError, "list of strings"),
])
def test_bad_sequences(X, error, match):
    with pytest.raises(error, match=match):
        RNNLanguageModel(**dict(SMALL, max_iter=1)).fit(X)


def test_bad_input_after_fit(fitted):
    with pytest.raises(TypeError, match="fitted on strings"):
        fitted.score([np.array([1, 2])])
    with pytest.raises(ValueError, match="empty"):
        fitted.perplexity(["ab", ""])
    with pytest.raises(TypeError, match="prompt"):
        fitted.sample(prompt=np.array([[1]]))
    with pytest.raises(TypeError, match="fitted on strings"):
        fitted.sample(prompt=np.array([1]))


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(temperature=0), ValueError, "temperature"),
    (dict(temperature=-1.0), ValueError, "temperature"),
    (dict(temperature=float("nan")), ValueError, "temperature"),
    (dict(max_length=0), ValueError, "max_length"),
    (dict(max_length=2.5), TypeError, "max_length"),
    (dict(n_samples=0), ValueError, "n_samples"),
    (dict(top_k=0), ValueError, "top_k"),
])
def test_bad_sampling_arguments(fitted, kwargs, error, match):
    with pytest.raises(error, match=match):
        fitted.sample(**kwargs)


def test_bad_parameters():
    with pytest.raises(ValueError, match="embedding_dim"):
        RNNLanguageModel(embedding_dim=0).fit(["ab"])
    with pytest.raises(ValueError, match="activation"):
        RNNLanguageModel(activation="relu").fit(["ab"])
    with pytest.raises(ValueError, match="handle_unknown"):
        RNNLanguageModel(handle_unknown="ignore").fit(["ab"])


def test_buckets_hold_next_token_targets():
    data = _Buckets.from_ids([np.array([5, 6, 7]), np.array([8]), np.array([9, 9])], 2)
    assert len(data) == 2 and data.n_tokens == (3 + 1) + (1 + 1) + (2 + 1)
    X, lengths, target, weights, normalizer = data.parts[0]  # the two shortest
    np.testing.assert_array_equal(X, [[EOS, 8, 0], [EOS, 9, 9]])
    np.testing.assert_array_equal(target[weights > 0], [8, EOS, 9, 9, EOS])
    np.testing.assert_array_equal(lengths, [2, 3])
    assert normalizer == 5
    merged = data.batch(np.array([1, 0]), np.float32)
    np.testing.assert_array_equal(merged[1], [4, 2, 3])
    np.testing.assert_array_equal(merged[0][0], [EOS, 5, 6, 7])
    assert merged[2].shape == (3, 4) and merged[4] == 9


# ---------------------------------------------------------------------- CUDA (simulator)
@pytest.mark.cudasim
def test_cuda_fit_and_sampling_match_cpu(monkeypatch):
    """Run with ``NUMBA_ENABLE_CUDASIM=1 python -m pytest -m cudasim tests/test_text.py``."""
    import os
    if os.environ.get("NUMBA_ENABLE_CUDASIM", "0") in ("", "0"):
        pytest.skip("simulator tests need NUMBA_ENABLE_CUDASIM=1 set before numba is imported")
    from rnnumba.kernels.cuda import _jit, _reduce
    monkeypatch.setattr(_jit, "GEMM_TILE", 4)
    monkeypatch.setattr(_jit, "ELEMENTWISE_BLOCK", 16)
    monkeypatch.setattr(_reduce, "REDUCE_BLOCK", 16)
    monkeypatch.setattr(_reduce, "REDUCE_MAX_BLOCKS", 1)
    texts = ["ab", "aabb", "abab", "b"]
    kw = dict(hidden_layer_sizes=(3,), embedding_dim=2, max_iter=2, batch_size=2,
              dtype="float64", random_state=0, early_stopping=True, validation_fraction=0.25)
    cpu = RNNLanguageModel(device="cpu", **kw).fit(texts)
    gpu = RNNLanguageModel(device="cuda", **kw).fit(texts)
    assert gpu.device_ == "cuda"
    np.testing.assert_allclose(gpu.loss_curve_, cpu.loss_curve_, rtol=1e-9)
    np.testing.assert_allclose(gpu.validation_scores_, cpu.validation_scores_, rtol=1e-9)
    assert gpu.score(texts) == pytest.approx(cpu.score(texts), rel=1e-9)
    kwargs = dict(n_samples=2, max_length=4, prompt="a", random_state=0)
    assert gpu.sample(**kwargs) == cpu.sample(**kwargs)


@pytest.mark.parametrize("forget_bias", [None, 1.0])
def test_forget_bias_reaches_the_network(initializations, forget_bias):
    """``forget_bias`` (default None: PyTorch's draw, the lower perplexity in the text
    suite) is what the network starts from."""
    params = {} if forget_bias is None else {"forget_bias": forget_bias}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        RNNLanguageModel(**dict(SMALL, max_iter=1, **params)).fit(grammar())
    assert [value for value, _ in initializations] == [forget_bias]
