"""Token sequences: :class:`RNNLanguageModel`, its vocabulary and sampling.

A language model reads sequences of tokens (the characters of strings, or integer ids)
and learns the distribution of the next token given the ones before it. It is a
:class:`~rnnumba.model.SequenceModel` of an :class:`~rnnumba.inputs.EmbeddingInput`, a
causal :class:`~rnnumba.Recurrent` stack and a :class:`~rnnumba.heads.StepHead` over the
vocabulary, trained by the training core (:class:`~rnnumba.training.Trainer`) with the
softmax cross-entropy of every step's next token.

The vocabulary (learned at ``fit``) gives every distinct token an id; two ids are
reserved:

- ``EOS = 0``: end of sequence. It is also the start context: a sequence ``s`` of length
  ``L`` is read as ``EOS, s[0], ..., s[L-1]`` and its targets are ``s[0], ..., s[L-1],
  EOS``, so that its likelihood includes its first token and its end, and sampling starts
  from the state after ``EOS``.
- ``UNK = 1``: the unknown token. With ``handle_unknown="unknown"`` (the default) a token
  never seen at ``fit`` reads as ``UNK`` when scoring or in a prompt; no training sequence
  holds it, so its probability is small and scores are honest (unseen characters cost
  what the model gives them). Sampling never draws it. With ``handle_unknown="error"``
  such a token is a ``ValueError`` that names it.

The tokens seen at ``fit``, sorted (characters by code point), take ids ``2, 3, ...``:
``vocabulary_[i]`` has id ``i + 2``, which is also its row of the embedding table and of
the output layer in :meth:`RNNLanguageModel.state_dict`.
"""

import math
import numbers

import numpy as np
from sklearn.base import BaseEstimator, _fit_context
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils.validation import check_is_fitted

from . import persistence
from ._validation import _token_array, check_hidden_layer_sizes, check_token_sequences
from .backend import resolve_device, runnable_device
from .heads import StepHead
from .inputs import EmbeddingInput
from .losses import CrossEntropy, log_softmax
from .model import SequenceModel
from .optim import make_optimizer
from .recurrent import Recurrent
from .training import Trainer

__all__ = ["RNNLanguageModel", "EOS", "UNK"]

#: Id of the end-of-sequence token (also the context the first token is predicted from).
EOS = 0
#: Id of the unknown token.
UNK = 1
_N_SPECIAL = 2

#: Sequences per forward pass when scoring (sorted by length, so little padding).
_SCORE_BATCH = 256

#: The fitted counters the training core keeps, copied onto the estimator after each fit.
_TRAINING_RESULTS = ("n_iter_", "t_", "loss_", "loss_curve_", "best_loss_",
                     "validation_scores_", "best_validation_score_")

_MAX_CODE_POINT = 0x10FFFF


# --------------------------------------------------------------------------- input checks
def _check_texts(X, name="X"):
    """``(kind, values)``: ``kind`` is ``"str"`` (``values`` the strings' code points) or
    ``"int"`` (``values`` the token arrays), each a 1-D int64 array, none empty."""
    if isinstance(X, (str, bytes)):
        raise TypeError(f"{name} must be a list of strings or of 1-D integer arrays (one "
                        f"sequence each), got a single {type(X).__name__}; wrap it in a list")
    if isinstance(X, np.ndarray) and X.dtype.kind in "UO" and X.ndim == 1:
        X = X.tolist()
    if isinstance(X, np.ndarray) and X.dtype.kind == "U":
        raise ValueError(f"{name} as an array of strings must be 1-D, got shape {X.shape}")
    if isinstance(X, (list, tuple)) and len(X) and all(isinstance(s, str) for s in X):
        values = []
        for i, s in enumerate(X):
            if not s:
                raise ValueError(f"{name}[{i}] is an empty sequence (an empty string); every "
                                 "sequence needs at least 1 token")
            values.append(_code_points(s))
        return "str", values
    if isinstance(X, (list, tuple)) and any(isinstance(s, (str, bytes)) for s in X):
        bad = next(i for i, s in enumerate(X) if not isinstance(s, str))
        raise TypeError(f"{name}[{bad}] is a {type(X[bad]).__name__}: {name} must hold only "
                        "strings or only 1-D integer arrays (decode bytes to str)")
    if not isinstance(X, (list, tuple, np.ndarray)):
        raise TypeError(f"{name} must be a list of strings or of 1-D integer arrays, got "
                        f"{type(X).__name__}")
    if isinstance(X, np.ndarray):
        batch = check_token_sequences(X, input_name=name)
        return "int", [batch.X[i, :length].copy() for i, length in enumerate(batch.lengths)]
    if len(X) == 0:
        raise ValueError(f"{name} holds no sequences; a minimum of 1 is required.")
    values = []  # one by one: padding a ragged batch could need far more memory
    for i, seq in enumerate(X):
        values.append(_token_sequence(seq, f"{name}[{i}]"))
    return "int", values


def _token_sequence(seq, name):
    """One sequence of integer tokens as a 1-D int64 array, checked."""
    array = _token_array(seq, name)
    if array.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of token ids, got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name} is an empty sequence; every sequence needs at least 1 "
                         "token")
    if array.min() < 0:
        raise ValueError(f"{name} holds negative token ids (e.g. {int(array.min())}); "
                         "token ids are integers >= 0")
    return np.ascontiguousarray(array, dtype=np.int64)


def _code_points(text):
    """The code points of ``text`` as int64 (lone surrogates kept)."""
    raw = text.encode("utf-32-le", "surrogatepass")
    return np.frombuffer(raw, dtype="<u4").astype(np.int64)


def _from_code_points(values):
    return np.asarray(values, dtype="<u4").tobytes().decode("utf-32-le", "surrogatepass")


def _describe(kind, tokens):
    if kind == "str":
        return ", ".join(repr(chr(int(t))) for t in tokens)
    return ", ".join(str(int(t)) for t in tokens)


class _Buckets:
    """Sequences of similar length batched once (fixed batches, as length-bucketed
    training does), each batch one *sample* of the :class:`~rnnumba.training.Trainer`:
    ``len`` is the number of batches and :meth:`batch` returns the batches ``idx`` (the
    trainer, run with ``batch_size=1``, shuffles their order every epoch). Inputs are
    ``EOS`` and the tokens, targets the tokens and ``EOS``; padding has weight 0."""

    def __init__(self, parts):
        self.parts = parts  # [(X, lengths, target, weights, normalizer)]

    @classmethod
    def from_ids(cls, ids, batch_size):
        order = sorted(range(len(ids)), key=lambda i: (len(ids[i]), i))
        parts = [_padded([ids[i] for i in order[lo:lo + batch_size]])
                 for lo in range(0, len(order), batch_size)]
        return cls(parts)

    def __len__(self):
        return len(self.parts)

    def take(self, rows):
        return _Buckets([self.parts[i] for i in rows])

    def batch(self, idx, dtype):
        if len(idx) == 1:
            return self.parts[int(idx[0])]
        chosen = [self.parts[int(i)] for i in idx]
        steps = max(p[0].shape[1] for p in chosen)
        merged = []
        for k in range(4):
            arrays = [np.pad(p[k], ((0, 0), (0, steps - p[k].shape[1]))) if k != 1 else p[k]
                      for p in chosen]
            merged.append(np.concatenate(arrays))
        return (*merged, float(sum(p[4] for p in chosen)))

    @property
    def n_tokens(self):
        return float(sum(p[4] for p in self.parts))


def _padded(ids):
    """``(X, lengths, target, weights, normalizer)`` of one batch of id sequences."""
    lengths = np.array([len(s) + 1 for s in ids], dtype=np.int64)
    steps = int(lengths.max())
    valid = np.arange(steps)[None, :] < lengths[:, None]
    target = np.zeros((len(ids), steps), dtype=np.int64)
    target[valid] = np.concatenate([np.append(s, EOS) for s in ids])
    X = np.zeros_like(target)
    X[:, 1:] = target[:, :-1]  # EOS first, then the tokens (padding reads EOS, weight 0)
    weights = valid.astype(np.float64)
    return X, lengths, target, weights, float(lengths.sum())


# --------------------------------------------------------------------------- progress
def _perplexities(loss, score):
    """Verbose progress: the perplexities that the loss and validation score mean."""
    def perplexity(value):
        try:
            return f"{math.exp(value):.4f}"
        except OverflowError:
            return "inf"
    text = f", perplexity = {perplexity(loss)}"
    if score is not None:
        text += f", validation perplexity = {perplexity(-score)}"
    return text


class RNNLanguageModel(BaseEstimator):
    """Recurrent-network language model of token sequences, with sampling.

    Learns ``P(next token | tokens so far)`` of sequences of characters (a list of str)
    or of integer tokens (a list of 1-D int arrays, ragged, or a 2-D int array). Scores
    held-out sequences (:meth:`perplexity`, :meth:`score`) and generates new ones
    (:meth:`sample`). The network is an embedding, a stack of causal recurrent layers and
    a dense layer over the vocabulary on every step, trained on every step's next token
    (the end of each sequence included) with the training core; see :mod:`rnnumba.text`
    for the vocabulary and its reserved ids. The defaults were chosen on held-out text
    (``benchmarks/text_suite.py``, ``docs/text.md``).

    Parameters
    ----------
    cell : {"rnn", "lstm", "gru"}, default="lstm"
        The recurrent cell, with PyTorch's gate equations.
    hidden_layer_sizes : array-like of int, default=(128,)
        Units of each stacked recurrent layer.
    embedding_dim : int, default=32
        Features of each token's learned embedding.
    activation : {"tanh", "relu"}, default="tanh"
        Activation of the ``"rnn"`` cell.
    dropout : float in [0, 1), default=0.0
        Dropout on the outputs of every recurrent layer but the last, while training.
    forget_bias : float or None, default=None
        LSTM only: the forget gate's bias starts at this value (``bias_ih``'s forget rows;
        ``bias_hh``'s start at 0), as the classifier's and regressor's ``forget_bias``.
        None keeps PyTorch's uniform draw: 1.0 gave a higher held-out perplexity in the
        text suite.
    solver : {"adam", "sgd"}, default="adam"
    alpha : float, default=0.0
        L2 penalty on the weights (not the biases), scaled as scikit-learn's MLP scales
        it (``alpha / tokens in the batch``).
    batch_size : int, default=32
        Sequences per batch. Batches hold sequences of similar length (sorted by length,
        then cut) and are reshuffled every epoch.
    learning_rate : {"constant", "invscaling", "adaptive"}, default="constant"
    learning_rate_init : float, default=0.005
    power_t : float, default=0.5
        Exponent of ``"invscaling"``.
    max_iter : int, default=12
        Maximum number of epochs (passes over the sequences), chosen for corpora of about
        10^5 to 10^6 tokens (see ``docs/text.md``); raise it for smaller corpora, or to
        train longer (or set ``early_stopping``).
    shuffle : bool, default=True
        Reshuffle the order of the batches every epoch.
    random_state : int, RandomState or None, default=None
        Seeds initialisation, shuffling, dropout and the validation split.
    tol : float, default=1e-4
        Least improvement of the training loss (or validation score with
        ``early_stopping``) that counts.
    verbose : bool, default=False
        Print one line per epoch: the training loss (mean negative log-likelihood per
        token) and its perplexity.
    warm_start : bool, default=False
        ``fit`` continues from the current weights and vocabulary (same architecture).
    momentum : float in [0, 1], default=0.9
        SGD momentum.
    nesterovs_momentum : bool, default=True
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the sequences, stop when their log-likelihood
        stalls and restore the best epoch's weights.
    validation_fraction : float in (0, 1), default=0.1
    beta_1, beta_2 : float in [0, 1), default=0.9, 0.999
        Adam's decay rates.
    epsilon : float, default=1e-8
        Adam's numerical stability term.
    n_iter_no_change : int, default=10
        Epochs without an improvement of ``tol`` before stopping.
    clip_norm : float or None, default=1.0
        Clip the global gradient norm to this value; None disables clipping.
    bptt_steps : int or None, default=None
        Truncated backpropagation through time in chunks of this many steps.
    handle_unknown : {"unknown", "error"}, default="unknown"
        What a token never seen at ``fit`` is when scoring or in a prompt: the unknown
        token (``UNK``), or a ``ValueError`` naming it.
    device : {"auto", "cpu", "cuda"}, default="auto"
        ``"cuda"`` trains on an NVIDIA GPU; ``"auto"`` picks one when a real CUDA device
        works, else the CPU.
    dtype : {"float32", "float64"}, default="float32"
        Precision of the network.

    Attributes
    ----------
    vocabulary_ : ndarray of shape (n_tokens,)
        The distinct tokens seen at ``fit``, sorted: characters (an object array of
        one-character strings) or integer tokens (int64). ``vocabulary_[i]`` has id
        ``i + 2`` (0 is the end of sequence, 1 the unknown token).
    vocabulary_size_ : int
        Ids of the network: ``len(vocabulary_) + 2``.
    token_kind_ : {"str", "int"}
        What ``fit`` read: strings (characters are tokens) or integer tokens.
    n_iter_ : int
        Epochs run.
    t_ : int
        Batches seen by the optimizer.
    loss_ : float
        The last epoch's training loss (mean negative log-likelihood per token, in nats);
        ``exp(loss_)`` is the training perplexity.
    loss_curve_ : list of float
        The training loss of every epoch.
    best_loss_ : float or None
        The lowest training loss (None with ``early_stopping``).
    validation_scores_ : list of float or None
        The validation log-likelihood per token of every epoch (``early_stopping`` only).
    best_validation_score_ : float or None
        The best validation score (``early_stopping`` only).
    device_ : str
        Where the network trained: ``"cpu"`` or ``"cuda"``.

    See Also
    --------
    RNNClassifier : Classifies token sequences with ``embedding_dim`` set.

    Examples
    --------
    >>> from rnnumba import RNNLanguageModel
    >>> texts = ["the cat sat", "the dog sat"] * 16
    >>> lm = RNNLanguageModel(hidden_layer_sizes=(16,), embedding_dim=8,
    ...                       learning_rate_init=0.03, max_iter=50, random_state=0)
    >>> lm = lm.fit(texts)
    >>> round(lm.perplexity(["the cat sat"]), 2)  # cat or dog: log(2) over 12 tokens
    1.06
    >>> sorted(set(lm.sample(n_samples=20, random_state=0)))
    ['the cat sat', 'the dog sat']
    """

    _parameter_constraints = {
        "cell": [StrOptions({"rnn", "lstm", "gru"})],
        "hidden_layer_sizes": ["array-like", Interval(numbers.Integral, 1, None,
                                                      closed="left")],
        "embedding_dim": [Interval(numbers.Integral, 1, None, closed="left")],
        "activation": [StrOptions({"tanh", "relu"})],
        "dropout": [Interval(numbers.Real, 0, 1, closed="left")],
        "forget_bias": [Interval(numbers.Real, None, None, closed="neither"), None],
        "solver": [StrOptions({"adam", "sgd"})],
        "alpha": [Interval(numbers.Real, 0, None, closed="left")],
        "batch_size": [Interval(numbers.Integral, 1, None, closed="left")],
        "learning_rate": [StrOptions({"constant", "invscaling", "adaptive"})],
        "learning_rate_init": [Interval(numbers.Real, 0, None, closed="neither")],
        "power_t": [Interval(numbers.Real, 0, None, closed="left")],
        "max_iter": [Interval(numbers.Integral, 1, None, closed="left")],
        "shuffle": ["boolean"],
        "random_state": ["random_state"],
        "tol": [Interval(numbers.Real, 0, None, closed="left")],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
        "momentum": [Interval(numbers.Real, 0, 1, closed="both")],
        "nesterovs_momentum": ["boolean"],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(numbers.Real, 0, 1, closed="neither")],
        "beta_1": [Interval(numbers.Real, 0, 1, closed="left")],
        "beta_2": [Interval(numbers.Real, 0, 1, closed="left")],
        "epsilon": [Interval(numbers.Real, 0, None, closed="neither")],
        "n_iter_no_change": [Interval(numbers.Integral, 1, None, closed="left")],
        "clip_norm": [Interval(numbers.Real, 0, None, closed="neither"), None],
        "bptt_steps": [Interval(numbers.Integral, 1, None, closed="left"), None],
        "handle_unknown": [StrOptions({"unknown", "error"})],
        "device": [StrOptions({"auto", "cpu", "cuda"})],
        "dtype": [StrOptions({"float32", "float64"}), Options(type, {np.float32, np.float64})],
    }

    def __init__(self, cell="lstm", hidden_layer_sizes=(128,), *, embedding_dim=32,
                 activation="tanh", dropout=0.0, forget_bias=None, solver="adam", alpha=0.0,
                 batch_size=32, learning_rate="constant", learning_rate_init=0.005, power_t=0.5,
                 max_iter=12, shuffle=True, random_state=None, tol=1e-4, verbose=False,
                 warm_start=False, momentum=0.9, nesterovs_momentum=True,
                 early_stopping=False, validation_fraction=0.1, beta_1=0.9, beta_2=0.999,
                 epsilon=1e-8, n_iter_no_change=10, clip_norm=1.0, bptt_steps=None,
                 handle_unknown="unknown", device="auto", dtype="float32"):
        self.cell = cell
        self.hidden_layer_sizes = hidden_layer_sizes
        self.embedding_dim = embedding_dim
        self.activation = activation
        self.dropout = dropout
        self.forget_bias = forget_bias
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.clip_norm = clip_norm
        self.bptt_steps = bptt_steps
        self.handle_unknown = handle_unknown
        self.device = device
        self.dtype = dtype

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        tags.target_tags.required = False
        return tags

    # ------------------------------------------------------------------ configuration
    def _check_extra_params(self):
        if self.activation != "tanh" and self.cell != "rnn":
            raise ValueError(f"activation={self.activation!r} applies to cell='rnn' only; "
                             f"the {self.cell!r} cell has fixed gate activations")

    def _architecture(self):
        return (self.cell, check_hidden_layer_sizes(self.hidden_layer_sizes),
                int(self.embedding_dim),
                self.activation if self.cell == "rnn" else "tanh", np.dtype(self.dtype).name)

    def _build_model(self, arch, vocabulary_size, device, rng):
        """The network of ``arch``, its weights drawn from ``rng``: one seed per recurrent
        layer, the head, the dropout stream, then the embedding."""
        cell, sizes, embedding_dim, activation, dtype = arch
        seeds = [rng.randint(np.iinfo(np.int32).max) for _ in sizes]
        head = StepHead(sizes[-1], vocabulary_size, dtype=np.dtype(dtype), random_state=rng)
        recurrent = Recurrent(
            cell, input_size=embedding_dim, hidden_size=list(sizes), nonlinearity=activation,
            dropout=float(self.dropout), dtype=dtype, device=device,
            random_state=np.random.RandomState(rng.randint(np.iinfo(np.int32).max)))
        recurrent.initialize_layers([np.random.RandomState(seed) for seed in seeds],
                                    forget_bias=self.forget_bias)
        embedding = EmbeddingInput(vocabulary_size, embedding_dim, np.dtype(dtype),
                                   random_state=rng)
        return SequenceModel(embedding, recurrent, head)

    def _new_optimizer(self):
        return make_optimizer(
            self.solver, [(self._model.store.size,)],
            learning_rate_init=self.learning_rate_init, learning_rate=self.learning_rate,
            power_t=self.power_t, momentum=self.momentum,
            nesterovs_momentum=self.nesterovs_momentum, beta_1=self.beta_1,
            beta_2=self.beta_2, epsilon=self.epsilon)

    def _new_trainer(self):
        return Trainer(self._model, CrossEntropy(), self._new_optimizer(), batch_size=1,
                       random_state=self._random_state, early_stopping=self.early_stopping)

    def _configure(self, trainer):
        """The current parameters onto the trainer (one bucket of sequences per step)."""
        trainer.batch_size = 1
        trainer.shuffle = bool(self.shuffle)
        trainer.alpha = float(self.alpha)
        trainer.clip_norm = self.clip_norm
        trainer.bptt_steps = self.bptt_steps
        trainer.tol = float(self.tol)
        trainer.n_iter_no_change = int(self.n_iter_no_change)
        trainer.verbose = self.verbose

    # ------------------------------------------------------------------ vocabulary
    def _learn_vocabulary(self, kind, values):
        self.token_kind_ = kind
        self._tokens = np.unique(np.concatenate(values)).astype(np.int64)
        self.vocabulary_size_ = int(self._tokens.size + _N_SPECIAL)

    @property
    def vocabulary_(self):
        check_is_fitted(self, "_tokens")
        if self.token_kind_ == "str":
            # an object array: a unicode array would drop the character NUL
            return np.array([chr(int(t)) for t in self._tokens], dtype=object)
        return self._tokens.copy()

    def _encode(self, kind, values, name):
        """Token values -> network ids (``handle_unknown`` applied)."""
        if kind != self.token_kind_:
            fitted = "strings" if self.token_kind_ == "str" else "integer token arrays"
            given = "strings" if kind == "str" else "integer token arrays"
            raise TypeError(f"{name} holds {given}, but {type(self).__name__} was fitted on "
                            f"{fitted}")
        tokens = self._tokens
        lengths = [v.size for v in values]
        flat = np.concatenate(values)
        pos = np.minimum(np.searchsorted(tokens, flat), tokens.size - 1)
        known = tokens[pos] == flat
        ids = pos + _N_SPECIAL
        if not known.all():
            if self.handle_unknown == "error":
                unseen = np.unique(flat[~known])
                what = "characters" if kind == "str" else "token ids"
                raise ValueError(
                    f"{name} holds {what} never seen at fit: {_describe(kind, unseen[:10])}"
                    f"{' ...' if unseen.size > 10 else ''} (handle_unknown='error'; "
                    "handle_unknown='unknown' reads them as the unknown token)")
            ids[~known] = UNK
        return np.split(ids, np.cumsum(lengths)[:-1])

    # ------------------------------------------------------------------ fitting
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Fit the model to sequences ``X``.

        Parameters
        ----------
        X : list of str, list of 1-D int arrays, or 2-D int array
            One sequence each: the characters of a string are its tokens; integer tokens
            are any ints >= 0. None may be empty.
        y : None
            Ignored (the targets are the sequences' own next tokens).

        Returns
        -------
        self
        """
        self._check_extra_params()
        first = not (self.warm_start and hasattr(self, "_model"))
        if not first and self._arch != self._architecture():
            raise ValueError("the network architecture (cell, hidden_layer_sizes, "
                             "embedding_dim, activation, dtype) changed since the last fit; "
                             "set warm_start=False to fit a new network")
        kind, values = _check_texts(X)
        if first:
            self._learn_vocabulary(kind, values)
        ids = self._encode(kind, values, "X")
        self.device_ = resolve_device(self.device)
        if first:
            self._random_state = check_random_state(self.random_state)
            self._arch = self._architecture()
            self._model = self._build_model(self._arch, self.vocabulary_size_, self.device_,
                                            self._random_state)
            self._trainer = self._new_trainer()
        else:
            if self.device_ != self._model.device:
                self._model.to_device(self.device_)
            if self._trainer.early_stopping != bool(self.early_stopping):
                self._trainer = self._new_trainer()  # its history is of the other kind
            self._trainer.optimizer = self._new_optimizer()
        validation = None
        if self.early_stopping:
            ids, validation = self._split_validation(ids)
            validation = _Buckets.from_ids(validation, _SCORE_BATCH)
        data = _Buckets.from_ids(ids, int(self.batch_size))
        self._configure(self._trainer)
        self._trainer.describe = _perplexities
        try:
            self._trainer.fit(data, validation, score=_log_likelihood, max_epochs=self.max_iter)
        finally:
            for name in _TRAINING_RESULTS:
                value = getattr(self._trainer, name)
                setattr(self, name, list(value) if isinstance(value, list) else value)
        return self

    def _split_validation(self, ids):
        n = len(ids)
        n_val = int(math.ceil(self.validation_fraction * n))
        if n_val < 1 or n - n_val < 1:
            raise ValueError(f"early_stopping needs sequences to train on and to validate on; "
                             f"validation_fraction={self.validation_fraction} of {n} "
                             "sequences leaves none for one of them")
        order = self._random_state.permutation(n)
        val = set(order[:n_val].tolist())
        return ([s for i, s in enumerate(ids) if i not in val],
                [s for i, s in enumerate(ids) if i in val])

    # ------------------------------------------------------------------ scoring
    def score(self, X, y=None):
        """Mean log-likelihood per token (natural log; higher is better).

        Every sequence's end counts as a token. Over the tokens of all sequences, so that
        ``perplexity(X) == exp(-score(X))``.

        Parameters
        ----------
        X : sequences, as :meth:`fit` takes them
        y : None
            Ignored.

        Returns
        -------
        float
        """
        check_is_fitted(self, "_model")
        kind, values = _check_texts(X)
        ids = self._encode(kind, values, "X")
        return _log_likelihood(self._model, _Buckets.from_ids(ids, _SCORE_BATCH))

    def perplexity(self, X):
        """Per-token perplexity of sequences ``X``, their ends included:
        ``exp(-score(X))`` (lower is better; 1 is a perfect model).

        Parameters
        ----------
        X : sequences, as :meth:`fit` takes them

        Returns
        -------
        float
        """
        return float(math.exp(-self.score(X)))

    # ------------------------------------------------------------------ sampling
    def sample(self, n_samples=1, max_length=100, temperature=1.0, top_k=None, prompt=None,
               random_state=None):
        """Generate sequences one token at a time, the network's state carried.

        Each sample starts after the end-of-sequence token (and the ``prompt``, read in
        one pass) and draws its next token from the predicted distribution, until it
        draws the end of sequence or has ``max_length`` new tokens. The unknown token is
        never drawn.

        Parameters
        ----------
        n_samples : int, default=1
            Sequences to generate (stepped together, as one batch).
        max_length : int, default=100
            Most tokens generated per sample, the prompt and the end not counted.
        temperature : float > 0, default=1.0
            Divides the logits: below 1 sharpens the distribution, above 1 flattens it.
        top_k : int or None, default=None
            Draw from the ``top_k`` most likely tokens only (None: all).
        prompt : str, 1-D int array or None, default=None
            The start of every sample (strings for a model fitted on strings, integer
            tokens for one fitted on integers); tokens never seen at ``fit`` follow
            ``handle_unknown``. None or empty: start from the beginning of a sequence.
        random_state : int, RandomState or None, default=None
            Seeds the draws: the same seed gives the same samples.

        Returns
        -------
        list of str, or list of int64 ndarray
            ``n_samples`` sequences, each the prompt followed by the generated tokens
            (the end of sequence not included).
        """
        check_is_fitted(self, "_model")
        n_samples = _check_int(n_samples, "n_samples", 1)
        max_length = _check_int(max_length, "max_length", 1)
        if (isinstance(temperature, bool) or not isinstance(temperature, numbers.Real)
                or not math.isfinite(temperature) or temperature <= 0):
            raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
        if top_k is not None:
            top_k = _check_int(top_k, "top_k", 1)
        rng = check_random_state(random_state)
        prompt_values, prompt_ids = self._check_prompt(prompt)
        generated = self._generate(n_samples, max_length, float(temperature), top_k,
                                   prompt_ids, rng)
        out = []
        for row in generated:
            new = self._tokens[row - _N_SPECIAL]
            tokens = np.concatenate([prompt_values, new])
            out.append(_from_code_points(tokens) if self.token_kind_ == "str" else tokens)
        return out

    def _check_prompt(self, prompt):
        """``(values, ids)`` of the prompt (empty arrays for none)."""
        empty = np.zeros(0, dtype=np.int64)
        if prompt is None:
            return empty, empty
        if isinstance(prompt, str):
            if not prompt:
                return empty, empty
            kind, values = "str", _code_points(prompt)
        else:
            if isinstance(prompt, (list, tuple, np.ndarray)) and len(prompt) == 0:
                return empty, empty
            array = np.asarray(prompt) if not isinstance(prompt, bytes) else None
            if array is None or array.ndim != 1:
                raise TypeError("prompt must be a str or a 1-D array of integer tokens, got "
                                f"{type(prompt).__name__}")
            kind = "int"
            values = _token_sequence(array, "prompt")
        return values, self._encode(kind, [values], "prompt")[0]

    def _generate(self, n_samples, max_length, temperature, top_k, prompt_ids, rng):
        """``n_samples`` lists of generated ids (no ``EOS``)."""
        model = self._model
        first = np.tile(np.concatenate([[EOS], prompt_ids]).astype(np.int64), (n_samples, 1))
        out = np.zeros((n_samples, max_length), dtype=np.int64)
        ended = np.full(n_samples, max_length, dtype=np.int64)
        running = np.ones(n_samples, dtype=bool)
        with model.inference():
            logits, states = model.step(first)
            last = logits[:, -1]
            for t in range(max_length):
                token = _draw(last, temperature, top_k, rng)
                out[:, t] = token
                stop = running & (token == EOS)
                ended[stop] = t
                running &= ~stop
                if not running.any() or t == max_length - 1:
                    break
                logits, states = model.step(token[:, None], states)
                last = logits[:, 0]
        return [out[i, :ended[i]] for i in range(n_samples)]

    # ------------------------------------------------------------------ PyTorch interchange
    def state_dict(self):
        """The network's weights as PyTorch names them.

        ``embedding.weight`` ``(vocabulary_size_, embedding_dim)`` (``torch.nn.Embedding``),
        ``recurrent.*`` (``torch.nn.LSTM/GRU/RNN(batch_first=True)``'s keys:
        ``weight_ih_l0``, ...), ``head.weight`` ``(vocabulary_size_, hidden)`` and
        ``head.bias`` (``torch.nn.Linear``); rows are the vocabulary's ids (see
        ``vocabulary_``). A module with attributes ``embedding``, ``recurrent`` and
        ``head`` of those types loads it with ``load_state_dict``.

        Returns
        -------
        dict of str to ndarray
            Copies.
        """
        check_is_fitted(self, "_model")
        return {_TORCH_NAMES.get(name.split(".", 1)[0], "") + name.split(".", 1)[1]: value
                for name, value in self._model.state_dict().items()}

    def load_state_dict(self, state_dict):
        """Copy weights named as :meth:`state_dict` names them (a fitted model's; keys and
        shapes checked), e.g. from a PyTorch module's ``state_dict()``.

        Parameters
        ----------
        state_dict : mapping of str to array-like

        Returns
        -------
        self
        """
        check_is_fitted(self, "_model")
        ours = {}
        for key, value in state_dict.items():
            part, _, rest = str(key).partition(".")
            if part not in _FROM_TORCH or not rest:
                raise ValueError(f"state_dict does not match this network: unexpected key "
                                 f"{key!r}")
            if hasattr(value, "detach"):
                value = value.detach().cpu().numpy()
            ours[f"{_FROM_TORCH[part]}.{rest}"] = value
        self._model.load_state_dict(ours)
        return self

    # ------------------------------------------------------------------ persistence
    def __setstate__(self, state):
        super().__setstate__(state)
        model = self.__dict__.get("_model")
        if model is not None and model.device != runnable_device(model.device):
            model.to_device("cpu")
            self.device_ = "cpu"

    def save(self, path):
        """Write the fitted model to one ``.npz`` file (no pickle); read it back with
        :func:`rnnumba.load`.

        Parameters
        ----------
        path : str, path-like or binary file object
        """
        check_is_fitted(self, "_model")
        persistence.write_archive(path, *self._to_archive())

    def _to_archive(self):
        """``(class name, params, fitted, arrays)`` for :mod:`rnnumba.persistence`; the
        vocabulary is stored as code points or ints (pickle-free, exact)."""
        trainer = self._trainer
        fitted = {"device_": self.device_, "token_kind_": self.token_kind_,
                  "no_improvement_count": trainer._no_improvement_count}
        for name in ("n_iter_", "t_", "loss_", "best_loss_", "best_validation_score_"):
            fitted[name] = getattr(self, name)
        arrays = {f"model/{name}": value for name, value in self._model.state_dict().items()}
        arrays["vocabulary/tokens"] = self._tokens.copy()
        arrays["loss_curve_"] = np.asarray(self.loss_curve_, dtype=np.float64)
        if self.validation_scores_ is not None:
            arrays["validation_scores_"] = np.asarray(self.validation_scores_, np.float64)
        return type(self).__name__, self.get_params(deep=False), fitted, arrays

    @classmethod
    def _from_archive(cls, params, fitted, arrays):
        """The model :meth:`_to_archive` described (checked: a corrupt file is a
        ``ValueError``)."""
        est = persistence.estimator_from_params(cls, params)
        est._check_extra_params()
        persistence.set_fitted_counts(est, fitted, ("n_iter_", "t_"))
        for name in ("loss_", "best_loss_", "best_validation_score_"):
            setattr(est, name, persistence.optional_float(fitted.get(name), name))
        if fitted.get("device_") not in ("cpu", "cuda"):
            raise ValueError(f"unknown device_ {fitted.get('device_')!r} in file")
        est.device_ = runnable_device(fitted["device_"])
        kind = fitted.get("token_kind_")
        if kind not in ("str", "int"):
            raise ValueError(f"unknown token_kind_ {kind!r} in file")
        tokens = arrays.get("vocabulary/tokens")
        if (tokens is None or tokens.ndim != 1 or tokens.size == 0
                or tokens.dtype.kind not in "iu"):
            raise ValueError("vocabulary/tokens must be a non-empty 1-D integer array")
        tokens = tokens.astype(np.int64)
        if (np.diff(tokens) <= 0).any() or tokens[0] < 0 or (
                kind == "str" and tokens[-1] > _MAX_CODE_POINT):
            raise ValueError("vocabulary/tokens must be distinct, sorted tokens >= 0 (code "
                             "points for strings)")
        est.token_kind_ = kind
        est._tokens = tokens
        est.vocabulary_size_ = int(tokens.size + _N_SPECIAL)
        est.loss_curve_ = [float(v) for v in persistence.float_array(arrays, "loss_curve_")]
        est.validation_scores_ = (
            [float(v) for v in persistence.float_array(arrays, "validation_scores_")]
            if "validation_scores_" in arrays else None)
        est._arch = est._architecture()
        est._random_state = np.random.RandomState(
            est.random_state if isinstance(est.random_state, numbers.Integral) else None)
        est._model = est._build_model(est._arch, est.vocabulary_size_, est.device_,
                                      np.random.RandomState(0))
        prefix = "model/"
        model_arrays = {name[len(prefix):]: value for name, value in arrays.items()
                        if name.startswith(prefix)}
        missing = sorted(name for name, _ in est._model.store.shapes
                         if name not in model_arrays)
        if missing:
            raise ValueError(f"the file lacks weights of the network: {missing}")
        est._model.load_state_dict(model_arrays)
        est._model.train(False)
        trainer = est._trainer = est._new_trainer()
        for name in _TRAINING_RESULTS:
            value = getattr(est, name)
            setattr(trainer, name, list(value) if isinstance(value, list) else value)
        count = fitted.get("no_improvement_count", 0)
        trainer._no_improvement_count = count if isinstance(count, int) else 0
        return est


_TORCH_NAMES = {"input": "embedding.", "recurrent": "recurrent.", "head": "head."}
_FROM_TORCH = {"embedding": "input", "recurrent": "recurrent", "head": "head"}


# --------------------------------------------------------------------------- helpers
def _check_int(value, name, minimum):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _log_likelihood(model, data):
    """Mean log-likelihood per token of the target tokens of ``data`` (:class:`_Buckets`)."""
    total = 0.0
    for X, lengths, target, weights, normalizer in data.parts:
        logits = model.predict(X, lengths, batch_size=X.shape[0])
        logp = log_softmax(logits.astype(np.float64))
        picked = np.take_along_axis(logp, target[:, :logits.shape[1], None], axis=2)[:, :, 0]
        total += float((picked * weights[:, :logits.shape[1]]).sum())
    return total / data.n_tokens


def _draw(logits, temperature, top_k, rng):
    """One token per row of ``logits`` ``(N, V)``, drawn by inverse CDF from
    ``softmax(logits / temperature)`` (``UNK`` excluded, only the ``top_k`` largest kept)."""
    z = np.array(logits, dtype=np.float64)
    if temperature != 1.0:
        z *= 1.0 / temperature
    z[:, UNK] = -np.inf
    if top_k is not None and top_k < z.shape[1] - 1:
        kth = np.partition(z, -top_k, axis=1)[:, -top_k][:, None]
        z[z < kth] = -np.inf
    z -= z.max(axis=1)[:, None]
    cdf = np.cumsum(np.exp(z, out=z), axis=1, out=z)
    u = rng.random_sample(cdf.shape[0]) * cdf[:, -1]
    token = (cdf <= u[:, None]).sum(axis=1)
    top = token >= cdf.shape[1]
    if top.any():  # rounding put u at the very top: the row's last token with any mass
        rising = np.diff(cdf[top], axis=1, prepend=0.0) > 0
        token[top] = cdf.shape[1] - 1 - np.argmax(rising[:, ::-1], axis=1)
    return token
