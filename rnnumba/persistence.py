"""Safe single-file persistence for fitted estimators: ``est.save(path)``, ``load(path)``.

The file is a NumPy ``.npz`` archive holding only numeric (or fixed-width string) arrays and
one JSON metadata string with a format tag and version. It is read with
``allow_pickle=False``, so loading never runs code; a corrupt, truncated or foreign file
raises ``ValueError``.

Layout::

    __metadata__            0-d unicode array: JSON {"format", "format_version", "class",
                            "rnnumba_version", "params", "fitted", "layers", ...}
    layer{i}/{name}         the state_dict of recurrent layer i (PyTorch names)
    head/flat               the dense output layer (W then b)
    classes_                class labels (classifier)
    loss_curve_, validation_scores_
"""

import io
import json
import numbers
import zipfile

import numpy as np

FORMAT = "rnnumba-estimator"
FORMAT_VERSION = 1

__all__ = ["save", "load", "FORMAT", "FORMAT_VERSION"]

_SCALARS = ("n_features_in_", "n_outputs_", "n_iter_", "t_", "loss_", "best_loss_",
            "best_validation_score_", "device_", "_y_ndim", "_no_improvement_count")


def _json_value(value):
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        value = float(value)
        if not np.isfinite(value):
            return {"__float__": repr(value)}
        return value
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (tuple, list)):
        return {"__tuple__": [_json_value(v) for v in value]}
    if isinstance(value, np.dtype) or value in (np.float32, np.float64):
        return {"__dtype__": np.dtype(value).name}
    raise TypeError(f"cannot store {type(value).__name__} in the metadata")


def _from_json(value):
    if isinstance(value, dict):
        if "__float__" in value:
            return float(value["__float__"])
        if "__tuple__" in value:
            return tuple(_from_json(v) for v in value["__tuple__"])
        if "__dtype__" in value:
            return np.dtype(value["__dtype__"]).name
        raise ValueError("unknown metadata entry")
    return value


def _label_array(labels):
    """Labels as a pickle-free array plus the kind needed to restore them."""
    labels = np.asarray(labels)
    if labels.dtype.kind in "biuf":
        return labels, "native"
    if labels.dtype.kind == "U":
        return labels, "native"
    if labels.dtype == object and all(isinstance(v, str) for v in labels.tolist()):
        return labels.astype(str), "object_str"
    raise TypeError("only numeric, boolean or string class labels can be saved; got "
                    f"dtype {labels.dtype}")


def save(estimator, path):
    """Write a fitted :class:`~rnnumba.RNNRegressor`/:class:`~rnnumba.RNNClassifier`."""
    from sklearn.utils.validation import check_is_fitted
    check_is_fitted(estimator, "_net")
    net = estimator._net
    params = {}
    dropped = []
    for key, value in estimator.get_params(deep=False).items():
        if key == "random_state" and not (value is None or isinstance(value, numbers.Integral)):
            dropped.append(key)
            value = None
        elif key == "class_weight" and isinstance(value, dict):
            labels, kind = _label_array(list(value.keys()))
            value = {"__class_weight__": [labels.tolist(), [float(v) for v in value.values()],
                                          kind]}
            params[key] = value
            continue
        params[key] = _json_value(value)
    fitted = {name: _json_value(getattr(estimator, name)) for name in _SCALARS
              if hasattr(estimator, name)}
    arrays = {}
    layers = []
    for i, layer in enumerate(net.layers):
        layers.append({"input_size": layer.input_size, "hidden_size": layer.hidden_size})
        for name, value in layer.state_dict().items():
            arrays[f"layer{i}/{name}"] = value
    arrays["head/flat"] = net.head.flat_params
    arrays["loss_curve_"] = np.asarray(estimator.loss_curve_, dtype=np.float64)
    if estimator.validation_scores_ is not None:
        arrays["validation_scores_"] = np.asarray(estimator.validation_scores_, np.float64)
    classes_kind = None
    if hasattr(estimator, "classes_"):
        arrays["classes_"], classes_kind = _label_array(estimator.classes_)
    from . import __version__
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION,
            "class": type(estimator).__name__, "rnnumba_version": __version__,
            "params": params, "dropped_params": dropped, "fitted": fitted, "layers": layers,
            "head": [net.head.n_in, net.head.n_out], "classes_kind": classes_kind}
    arrays["__metadata__"] = np.array(json.dumps(meta))
    if hasattr(path, "write"):
        np.savez(path, **arrays)
    else:
        with open(path, "wb") as fh:
            np.savez(fh, **arrays)


def load(path):
    """Read an estimator written by ``save``; ``ValueError`` for anything else."""
    try:
        if hasattr(path, "read"):
            data = path.read()
        else:
            with open(path, "rb") as fh:
                data = fh.read()
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError, TypeError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise ValueError(f"not an rnnumba estimator file (unreadable archive): {exc}") from None
    try:
        return _build(arrays)
    except ValueError:
        raise
    except Exception as exc:  # malformed content of a readable archive
        raise ValueError(f"not a valid rnnumba estimator file: {type(exc).__name__}: "
                         f"{exc}") from None


def _build(arrays):
    from .estimators import RNNClassifier, RNNRegressor, _runnable_device
    from .training import SequenceNetwork

    if "__metadata__" not in arrays:
        raise ValueError("not an rnnumba estimator file: no metadata")
    meta = json.loads(str(arrays["__metadata__"]))
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError("not an rnnumba estimator file: wrong format tag")
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION or version < 1:
        raise ValueError(f"unsupported rnnumba file format version {version!r} (this "
                         f"rnnumba reads up to {FORMAT_VERSION})")
    classes = {"RNNRegressor": RNNRegressor, "RNNClassifier": RNNClassifier}
    cls = classes.get(meta.get("class"))
    if cls is None:
        raise ValueError(f"unknown estimator class {meta.get('class')!r}")
    params = {}
    for key, value in meta["params"].items():
        if isinstance(value, dict) and "__class_weight__" in value:
            labels, weights, kind = value["__class_weight__"]
            value = dict(zip(_restore_labels(np.asarray(labels), kind).tolist(), weights))
        else:
            value = _from_json(value)
        params[key] = value
    est = cls()
    valid = est.get_params(deep=False)
    unknown = set(params) - set(valid)
    if unknown:
        raise ValueError(f"unknown parameters in file: {sorted(unknown)}")
    est.set_params(**params)
    est._validate_params()
    for name, value in meta["fitted"].items():
        if name not in _SCALARS:
            raise ValueError(f"unexpected fitted attribute {name!r}")
        setattr(est, name, _from_json(value))
    if "classes_" in arrays:
        est.classes_ = _restore_labels(arrays["classes_"], meta.get("classes_kind"))
    est.loss_curve_ = [float(v) for v in arrays["loss_curve_"]]
    est.validation_scores_ = ([float(v) for v in arrays["validation_scores_"]]
                              if "validation_scores_" in arrays else None)
    sizes = est._hidden_sizes()
    layers_meta = meta["layers"]
    if len(layers_meta) != len(sizes):
        raise ValueError("layer count in the file does not match hidden_layer_sizes")
    n_in, n_out = (int(v) for v in meta["head"])
    if getattr(est, "device_", None) not in ("cpu", "cuda"):
        raise ValueError(f"unknown device_ {getattr(est, 'device_', None)!r} in file")
    # trained on a GPU, loaded where none works: the network runs on the CPU
    est.device_ = _runnable_device(est.device_)
    net = SequenceNetwork(
        est.cell, int(est.n_features_in_), sizes, n_out, bidirectional=bool(est.bidirectional),
        activation=est.activation, dropout=float(est.dropout),
        return_sequences=bool(est.return_sequences), dtype=est._network_dtype(),
        device=est.device_, random_state=np.random.RandomState(0))
    for i, layer in enumerate(net.layers):
        prefix = f"layer{i}/"
        state = {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}
        layer.load_state_dict(state)
    head = arrays["head/flat"]
    if head.shape != net.head.flat_params.shape or net.head.n_in != n_in:
        raise ValueError("output layer in the file does not match the network")
    if head.dtype.kind != "f" or not np.isfinite(head).all():
        raise ValueError("output layer weights must be finite floats")
    net.head.flat_params[...] = head
    net.train(False)
    est._net = net
    est._arch = est._architecture()
    est._optimizer = None
    est._best_weights = None
    est._random_state = np.random.RandomState(est.random_state if isinstance(
        est.random_state, numbers.Integral) else None)
    return est


def _restore_labels(labels, kind):
    if labels.dtype.kind not in "biufU":
        raise ValueError(f"class labels of dtype {labels.dtype} are not allowed")
    if kind == "object_str":
        return labels.astype(object)
    return labels
