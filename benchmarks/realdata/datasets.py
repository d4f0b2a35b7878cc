"""Data of the real-data benchmark suites, read from files that installed packages ship.

Nothing is downloaded at run time. The UCR/UEA/TSER archive files and sktime's forecasting
CSVs are read straight from ``sktime``'s installed ``datasets/data`` folder, and statsmodels'
CSVs from its ``datasets`` folder, without importing either package (their folders are found
with ``importlib.util.find_spec``), so the loaders do not depend on their Python APIs.
Checked with sktime 1.2.0 and statsmodels 0.15.0 (``pip install sktime==1.2.0
statsmodels==0.15.0``); aeon 1.6.0 ships most of the same files but not Tecator, and pins
numba < 0.64, so it is not used.

Sequence classification and extrinsic regression (``load_sequences(name)`` returns
``(X_train, y_train, X_test, y_test)``; ``X`` is ``(n, T)`` for univariate sets,
``(n, T, k)`` for multichannel ones and a list of ``(T_i, k)`` arrays for ragged ones, values
float64 as stored; class labels are the archive's label strings (digits and recall: ints)):

=================  ===========================  ======  ======  ======  =====  ===========
name               source (file)                train   test    T       k      classes
=================  ===========================  ======  ======  ======  =====  ===========
digits             sklearn ``load_digits``      1347    450     8       8      10
adding100          generated (``make_adding``)  1000    500     100     2      regression
adding500          generated (``make_adding``)  1000    500     500     2      regression
recall100          generated (recall task)      500     500     100     5      4
GunPoint           sktime GunPoint/*.ts         50      150     150     1      2
ArrowHead          sktime ArrowHead/*.ts        36      175     251     1      3
ItalyPowerDemand   sktime ItalyPowerDemand/     67      1029    24      1      2
BasicMotions       sktime BasicMotions/*.ts     40      40      100     6      4
JapaneseVowels     sktime JapaneseVowels/*.ts   270     370     7-29    12     9 (ragged)
Tecator            sktime Tecator/*.ts          172     43      100     1      regression
Covid3Month        sktime Covid3Month/*.ts      140     61      84      1      regression
=================  ===========================  ======  ======  ======  =====  ===========

Splits: the archives' own TRAIN/TEST files; digits: ``train_test_split(test_size=0.25,
random_state=0, stratify=y)`` of the 8x8 images, each image row one step of 8 features (raw
pixel values 0-16); the generated tasks draw train and test from one seeded generator.
``SEQUENCE_DATASETS[name]["torch_epochs"]`` is the epochs of the PyTorch anchor recipe: 300,
except on the adding problems, where the recipe's batches of 16 make an epoch long (150
epochs at T=100; only 10 at T=500, about 630 updates: a time-capped anchor), so that one
run stays near a minute on two cores (extrapolated from 2-epoch runs: digits ~40 s,
recall100 ~38 s, ArrowHead ~35 s, JapaneseVowels ~23 s, adding100 ~37 s, adding500 ~60 s).

Forecasting (``load_forecast(name)`` returns a dict: ``y`` a pandas Series on a PeriodIndex,
``X`` the exogenous covariates (a DataFrame on the same index) or None, ``m`` the seasonal
period, ``h`` the horizon; ``forecast_split(name)`` holds out the last ``h`` points, one
forecast origin, so ``y_train = y[:-h]`` and ``y_test = y[-h:]``):

==========  ===================================  =====  ====  ===  ===  =====================
name        source (file)                        freq   n     m    h    covariates
==========  ===================================  =====  ====  ===  ===  =====================
airline     sktime Airline/Airline.csv           month  144   12   12   -
co2         statsmodels co2/co2.csv (weekly ->   month  526   12   24   -
            monthly means, 5 empty months
            linearly interpolated)
elnino      statsmodels elnino/elnino.csv        month  732   12   12   -
seatbelts   sktime seatbelts/seatbelts.csv (KSI) month  192   12   12   law (belt law in
                                                                      force, from 1983-02)
uschange    sktime Uschange/Uschange.csv         qtr    187   1    8    Income, Production,
            (Consumption, % change)                                   Savings, Unemployment
nile        statsmodels nile/nile.csv            year   100   1    10   -
sunspots    statsmodels sunspots/sunspots.csv    year   309   1    11   -
lynx        sktime Lynx/Lynx.csv                 year   114   1    10   -
shampoo     sktime ShampooSales/ShampooSales.csv month  36    1    6    -
==========  ===================================  =====  ====  ===  ===  =====================

``uschange`` is seasonally adjusted (``m = 1``), ``shampoo`` too short and without a
seasonal pattern to fit one (``m = 1``); sunspots' and lynx's cycles are not of fixed length.
seatbelts' ``law`` is built from the file's ``label`` column (1 at the month the law came
into force) as its running sum: a covariate known in advance. uschange's covariates are
observed with the target (the usual scenario-forecasting setup: their future values given).

Text (``load_text()``): the topics of Python's own documentation that ship with every
CPython as ``pydoc_data.topics.topics`` (checked 3.10-3.13; about 465,000 characters in
3.11, 79 topics; the text differs a little between Python versions, see ``text_info()``).
Topics in sorted order are cut into paragraphs at blank lines; every 10th paragraph
(index % 10 == 9) is held out. A sequence is one stripped line; lines with fewer than two
distinct characters (heading underlines, blank lines) are dropped. To keep one PyTorch run
well under a minute (about 0.55 s per epoch per 100,000 characters on two cores), whole
training paragraphs are sampled (seeded, order kept) up to ``train_chars`` (250,000 of about
386,000); all held-out paragraphs are kept by default (``test_chars=None``, about 47,000
characters in 3.11). ``encode_text`` maps characters to ids:
0 is end of sequence (also the start context), 1 an unknown character (held-out characters
absent from the training text), then the training characters in sorted order.
"""

import importlib.util
import os
import re

import numpy as np

#: Package versions the files were checked in (and the install line of the benchmarks).
PACKAGES = {"sktime": "1.2.0", "statsmodels": "0.15.0"}

# --------------------------------------------------------------------------- file locations


def package_data_dir(package, *parts):
    """Folder of ``package`` (installed, not imported) joined with ``parts``.

    Raises ``ImportError`` naming the install line when the package is missing.
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        version = PACKAGES.get(package, "")
        pin = f"=={version}" if version else ""
        raise ImportError(f"the real-data benchmarks read data shipped with {package}: "
                          f"pip install {package}{pin}")
    path = os.path.join(list(spec.submodule_search_locations)[0], *parts)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} is not in the installed {package} "
                                f"(checked with {package} {PACKAGES.get(package)})")
    return path


def sktime_file(*parts):
    return package_data_dir("sktime", "datasets", "data", *parts)


def statsmodels_file(*parts):
    return package_data_dir("statsmodels", "datasets", *parts)


# --------------------------------------------------------------------------- .ts archive files


def read_ts(path):
    """Read a ``.ts`` archive file: ``(X, y, meta)``.

    ``X`` is ``(n, T)`` (univariate, equal length), ``(n, T, k)`` (equal length) or a list of
    ``(T_i, k)`` float64 arrays (unequal lengths); missing values ``?`` become NaN. ``y`` holds
    the class label strings, or floats when the file has ``@targetlabel true``. ``meta`` is
    the header (keys lower-cased).
    """
    meta, rows, in_data = {}, [], False
    with open(path, encoding="utf-8") as fh:
        for raw in fh:
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if in_data:
                rows.append(line)
            elif line.startswith("@"):
                key, _, value = line[1:].partition(" ")
                key = key.lower()
                if key == "data":
                    in_data = True
                else:
                    meta[key] = value.strip()
    if meta.get("timestamps", "false").lower() == "true":
        raise ValueError(f"{path}: time-stamped .ts files are not supported")
    regression = meta.get("targetlabel", "false").split()[:1] == ["true"]
    labelled = regression or meta.get("classlabel", "false").split()[:1] == ["true"]
    series, labels = [], []
    for row in rows:
        parts = row.split(":")
        if labelled:
            labels.append(parts.pop().strip())
        dims = [np.array([np.nan if v.strip() == "?" else float(v) for v in p.split(",")])
                for p in parts]
        if len({d.shape[0] for d in dims}) != 1:
            raise ValueError(f"{path}: channels of one series differ in length")
        series.append(np.stack(dims, axis=1))
    y = np.array([float(v) for v in labels]) if regression else np.array(labels)
    if len({s.shape for s in series}) == 1:
        X = np.stack(series)
        if X.shape[2] == 1:
            X = X[:, :, 0]
    else:
        X = series
    return X, y, meta


def load_archive(name):
    """``(X_train, y_train, X_test, y_test)`` of an archive set shipped with sktime."""
    X_train, y_train, _ = read_ts(sktime_file(name, f"{name}_TRAIN.ts"))
    X_test, y_test, _ = read_ts(sktime_file(name, f"{name}_TEST.ts"))
    return X_train, y_train, X_test, y_test


# --------------------------------------------------------------------------- generated tasks


def make_adding(n, T, seed=0):
    """The adding problem: ``X (n, T, 2)`` float64 and ``y (n,)``.

    Channel 0 holds values drawn uniformly from [0, 1); channel 1 marks two steps with 1, one
    drawn uniformly from the first half and one from the second half (Hochreiter & Schmidhuber
    1997; Le et al. 2015). The target is the sum of the two marked values (predicting 1
    always gives an MSE of about 1/6).
    """
    if T < 2:
        raise ValueError("T must be at least 2")
    rng = np.random.default_rng(seed)
    X = np.zeros((n, T, 2))
    X[:, :, 0] = rng.random((n, T))
    half = T // 2
    first = rng.integers(0, half, size=n)
    second = rng.integers(half, T, size=n)
    rows = np.arange(n)
    X[rows, first, 1] = 1.0
    X[rows, second, 1] = 1.0
    y = X[rows, first, 0] + X[rows, second, 0]
    return X, y


def make_delayed_recall(n, T, n_symbols=4, noise=1.0, seed=0):
    """Delayed recall: ``X (n, T, n_symbols + 1)`` float64 and the class ``y (n,)`` (ints).

    Step 0 shows one of ``n_symbols`` symbols as a one-hot vector on the first ``n_symbols``
    channels, with a cue of 1 on the last channel; every later step carries Gaussian noise
    (standard deviation ``noise``) on the symbol channels and 0 on the cue. The class is the
    symbol shown at step 0, to be told at the end of the sequence: a pure memory task that
    distance-based classifiers cannot solve through the noise.
    """
    if T < 1 or n_symbols < 2:
        raise ValueError("need T >= 1 and n_symbols >= 2")
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_symbols, size=n)
    X = np.zeros((n, T, n_symbols + 1))
    X[:, 1:, :n_symbols] = noise * rng.standard_normal((n, T - 1, n_symbols))
    X[np.arange(n), 0, y] = 1.0
    X[:, 0, n_symbols] = 1.0
    return X, y


def _split_generated(X, y, n_train):
    return X[:n_train], y[:n_train], X[n_train:], y[n_train:]


def load_digits_sequences():
    """Digits as sequences: 8 steps (image rows) of 8 features, raw pixel values 0-16."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    digits = load_digits()
    X_train, X_test, y_train, y_test = train_test_split(
        digits.images.astype(np.float64), digits.target, test_size=0.25, random_state=0,
        stratify=digits.target)
    return X_train, y_train, X_test, y_test


def _adding(T):
    return lambda: _split_generated(*make_adding(1500, T, seed=T), n_train=1000)


def _recall(T):
    return lambda: _split_generated(*make_delayed_recall(1000, T, seed=T), n_train=500)


def _archive(name):
    return lambda: load_archive(name)


#: name -> task, loader, epochs of the PyTorch recipe, and where the data come from.
SEQUENCE_DATASETS = {
    "digits": dict(task="classification", load=load_digits_sequences, torch_epochs=300,
                   source="scikit-learn load_digits (bundled)"),
    "adding100": dict(task="regression", load=_adding(100), torch_epochs=150,
                      source="generated: make_adding(1500, 100, seed=100)"),
    "adding500": dict(task="regression", load=_adding(500), torch_epochs=10,
                      source="generated: make_adding(1500, 500, seed=500)"),
    "recall100": dict(task="classification", load=_recall(100), torch_epochs=300,
                      source="generated: make_delayed_recall(1000, 100, seed=100)"),
}
for _name in ("GunPoint", "ArrowHead", "ItalyPowerDemand", "BasicMotions", "JapaneseVowels"):
    SEQUENCE_DATASETS[_name] = dict(task="classification", load=_archive(_name),
                                    torch_epochs=300,
                                    source=f"sktime {PACKAGES['sktime']}: "
                                           f"datasets/data/{_name}/{_name}_TRAIN|TEST.ts")
for _name in ("Tecator", "Covid3Month"):
    SEQUENCE_DATASETS[_name] = dict(task="regression", load=_archive(_name), torch_epochs=300,
                                    source=f"sktime {PACKAGES['sktime']}: "
                                           f"datasets/data/{_name}/{_name}_TRAIN|TEST.ts")
del _name


def load_sequences(name):
    """``(X_train, y_train, X_test, y_test)`` of a sequence set (see ``SEQUENCE_DATASETS``)."""
    try:
        entry = SEQUENCE_DATASETS[name]
    except KeyError:
        raise ValueError(f"unknown data set {name!r}; one of {sorted(SEQUENCE_DATASETS)}")
    return entry["load"]()


def describe_sequences(X):
    """``(n, min length, max length, channels)`` of ``X`` in any of the three layouts."""
    if isinstance(X, np.ndarray):
        k = 1 if X.ndim == 2 else X.shape[2]
        return X.shape[0], X.shape[1], X.shape[1], k
    lengths = [len(s) for s in X]
    return len(X), min(lengths), max(lengths), np.asarray(X[0]).reshape(len(X[0]), -1).shape[1]


# --------------------------------------------------------------------------- forecasting


def _sktime_csv(name, **kw):
    import pandas as pd
    return pd.read_csv(sktime_file(name, f"{name}.csv"), **kw)


def _statsmodels_csv(name, **kw):
    import pandas as pd
    return pd.read_csv(statsmodels_file(name, f"{name}.csv"), **kw)


def _airline():
    import pandas as pd
    df = _sktime_csv("Airline")
    return pd.Series(df["Passengers"].to_numpy(dtype=float), name="passengers",
                     index=pd.PeriodIndex(df["Date"], freq="M")), None


def _co2():
    import pandas as pd
    df = _statsmodels_csv("co2", dtype={"date": str})
    weeks = pd.to_datetime(df["date"], format="%Y%m%d")
    monthly = df["co2"].astype(float).groupby(weeks.dt.to_period("M")).mean()
    full = pd.period_range(monthly.index.min(), monthly.index.max(), freq="M")
    monthly = monthly.reindex(full).interpolate(method="linear")
    return monthly.rename("co2"), None


def _elnino():
    import pandas as pd
    df = _statsmodels_csv("elnino")
    values = df.drop(columns="YEAR").to_numpy(dtype=float).ravel()
    start = pd.Period(f"{int(df['YEAR'].iloc[0])}-01", freq="M")
    index = pd.period_range(start, periods=values.size, freq="M")
    return pd.Series(values, index=index, name="sea_surface_temperature"), None


def _seatbelts():
    import pandas as pd
    df = _sktime_csv("seatbelts", index_col=0)
    index = pd.PeriodIndex(pd.to_datetime(df.index), freq="M")
    y = pd.Series(df["KSI"].to_numpy(dtype=float), index=index, name="KSI")
    law = np.cumsum(df["label"].to_numpy()).clip(0, 1).astype(float)
    return y, pd.DataFrame({"law": law}, index=index)


def _uschange():
    import pandas as pd
    df = _sktime_csv("Uschange", index_col=0)
    index = pd.PeriodIndex([q.replace(" ", "") for q in df["Quarter"]], freq="Q")
    y = pd.Series(df["Consumption"].to_numpy(dtype=float), index=index, name="Consumption")
    X = df[["Income", "Production", "Savings", "Unemployment"]].astype(float)
    X.index = index
    return y, X


def _annual(frame, year_col, value_col, name):
    import pandas as pd
    index = pd.PeriodIndex([str(int(v)) for v in frame[year_col]], freq="Y")
    return pd.Series(frame[value_col].to_numpy(dtype=float), index=index, name=name), None


def _nile():
    return _annual(_statsmodels_csv("nile"), "year", "volume", "volume")


def _sunspots():
    return _annual(_statsmodels_csv("sunspots"), "YEAR", "SUNACTIVITY", "sunactivity")


def _lynx():
    df = _sktime_csv("Lynx").rename(columns=lambda c: "year" if "Unnamed" in c or not c
                                    else "trappings")
    return _annual(df, "year", "trappings", "lynx_trappings")


def _shampoo():
    import pandas as pd
    df = _sktime_csv("ShampooSales")
    return pd.Series(df["Sales"].to_numpy(dtype=float), name="sales",
                     index=pd.PeriodIndex(df["Time"], freq="M")), None


#: name -> loader, seasonal period ``m``, horizon ``h`` (= the held-out tail) and source.
FORECAST_DATASETS = {
    "airline": dict(load=_airline, m=12, h=12, source="sktime Airline/Airline.csv"),
    "co2": dict(load=_co2, m=12, h=24, source="statsmodels co2/co2.csv"),
    "elnino": dict(load=_elnino, m=12, h=12, source="statsmodels elnino/elnino.csv"),
    "seatbelts": dict(load=_seatbelts, m=12, h=12, source="sktime seatbelts/seatbelts.csv"),
    "uschange": dict(load=_uschange, m=1, h=8, source="sktime Uschange/Uschange.csv"),
    "nile": dict(load=_nile, m=1, h=10, source="statsmodels nile/nile.csv"),
    "sunspots": dict(load=_sunspots, m=1, h=11, source="statsmodels sunspots/sunspots.csv"),
    "lynx": dict(load=_lynx, m=1, h=10, source="sktime Lynx/Lynx.csv"),
    "shampoo": dict(load=_shampoo, m=1, h=6, source="sktime ShampooSales/ShampooSales.csv"),
}


def load_forecast(name):
    """``{"y", "X", "m", "h", "source"}`` of a forecasting series (``FORECAST_DATASETS``)."""
    try:
        entry = FORECAST_DATASETS[name]
    except KeyError:
        raise ValueError(f"unknown series {name!r}; one of {sorted(FORECAST_DATASETS)}")
    y, X = entry["load"]()
    return {"y": y, "X": X, "m": entry["m"], "h": entry["h"], "source": entry["source"]}


def forecast_split(name):
    """``(y_train, y_test, X_train, X_test)``: the last ``h`` points held out (X may be None)."""
    data = load_forecast(name)
    y, X, h = data["y"], data["X"], data["h"]
    if X is None:
        return y.iloc[:-h], y.iloc[-h:], None, None
    return y.iloc[:-h], y.iloc[-h:], X.iloc[:-h], X.iloc[-h:]


# --------------------------------------------------------------------------- text

EOS, UNK = 0, 1


def text_paragraphs():
    """The corpus as a list of paragraphs, each a list of lines (see the module docstring)."""
    from pydoc_data.topics import topics
    paragraphs = []
    for key in sorted(topics):
        for block in re.split(r"\n\s*\n", topics[key]):
            lines = [s.strip() for s in block.splitlines()]
            lines = [s for s in lines if len(set(s)) > 1]
            if lines:
                paragraphs.append(lines)
    return paragraphs


def _take(paragraphs, budget, rng):
    if budget is None:
        return [line for p in paragraphs for line in p]
    chosen, used = [], 0
    for i in rng.permutation(len(paragraphs)):
        size = sum(len(s) for s in paragraphs[i])
        if used + size > budget:
            continue
        chosen.append(i)
        used += size
    return [line for i in sorted(chosen) for line in paragraphs[i]]


def load_text(train_chars=250_000, test_chars=None, seed=0):
    """``(train_lines, test_lines)``: lists of strings (one sequence each).

    Every 10th paragraph is held out; whole paragraphs are then sampled (seeded, in corpus
    order) up to ``train_chars`` / ``test_chars`` characters (None keeps everything).
    """
    paragraphs = text_paragraphs()
    train = [p for j, p in enumerate(paragraphs) if j % 10 != 9]
    test = [p for j, p in enumerate(paragraphs) if j % 10 == 9]
    rng = np.random.default_rng(seed)
    return _take(train, train_chars, rng), _take(test, test_chars, rng)


def encode_text(train_lines, test_lines):
    """``(train_ids, test_ids, vocab)``: lists of int64 arrays and the id -> character list.

    Id 0 is end of sequence, 1 an unknown character, then the training characters sorted.
    """
    chars = sorted(set("".join(train_lines)))
    vocab = ["<eos>", "<unk>"] + chars
    lookup = {c: i for i, c in enumerate(vocab) if i > UNK}

    def enc(lines):
        return [np.array([lookup.get(c, UNK) for c in s], dtype=np.int64) for s in lines]
    return enc(train_lines), enc(test_lines), vocab


def text_info(train_lines=None, test_lines=None):
    """Python version and SHA-256 of the corpus (and of a split), to record with results."""
    import hashlib
    import platform
    info = {"python": platform.python_version()}
    full = "\n\n".join("\n".join(p) for p in text_paragraphs())
    info["corpus_sha256"] = hashlib.sha256(full.encode("utf-8")).hexdigest()
    info["corpus_chars"] = len(full)
    for key, lines in (("train", train_lines), ("test", test_lines)):
        if lines is not None:
            info[f"{key}_lines"] = len(lines)
            info[f"{key}_chars"] = sum(len(s) for s in lines)
    return info
