"""rnnumba: RNN, LSTM and GRU networks whose recurrences are Numba kernels.

Public names are loaded on first use so that ``import rnnumba`` stays fast and never
imports ``numba.cuda``.
"""

from importlib import import_module

__version__ = "0.1.0"

_PUBLIC = {
    "Recurrent": "rnnumba.recurrent",
    "RNNRegressor": "rnnumba.estimators",
    "RNNClassifier": "rnnumba.estimators",
    "load": "rnnumba.loading",
    "SequenceScaler": "rnnumba.preprocessing",
    "RNNLanguageModel": "rnnumba.text",
    "RNNForecaster": "rnnumba.forecasting",
    "backtest": "rnnumba.forecasting",
    "plot_forecast": "rnnumba.plotting",
    "profile": "rnnumba.profiling",
}

__all__ = sorted(_PUBLIC) + ["__version__"]


def __getattr__(name):
    try:
        module = _PUBLIC[name]
    except KeyError:
        raise AttributeError(f"module 'rnnumba' has no attribute {name!r}") from None
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__
