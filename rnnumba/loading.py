"""``rnnumba.load``: read back any estimator that ``save`` wrote."""

from .estimators import RNNClassifier, RNNRegressor
from .forecasting import RNNForecaster
from .persistence import read_archive
from .text import RNNLanguageModel

__all__ = ["load"]

#: Every estimator class a file may name.
ESTIMATORS = {cls.__name__: cls for cls in (RNNRegressor, RNNClassifier, RNNForecaster,
                                            RNNLanguageModel)}


def load(path):
    """Read an estimator written by its ``save`` method.

    Parameters
    ----------
    path : str, path-like or binary file object

    Returns
    -------
    estimator
        Fitted, of the class that was saved; a network trained on a GPU runs on the CPU
        where no CUDA device works.

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        Anything but an rnnumba estimator file (corrupt, truncated, foreign, or a format
        version newer than this rnnumba reads). Loading never runs code from the file.
    """
    class_name, params, fitted, arrays = read_archive(path)
    cls = ESTIMATORS.get(class_name)
    if cls is None:
        raise ValueError(f"unknown estimator class {class_name!r}")
    return cls._from_archive(params, fitted, arrays)
