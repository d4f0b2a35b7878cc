"""The safe single-file format of fitted estimators: ``est.save(path)``, ``rnnumba.load(path)``.

A file is a NumPy ``.npz`` archive holding only numeric (or fixed-width string) arrays and
one JSON metadata string with a format tag and version. It is read with
``allow_pickle=False``, so loading never runs code; a corrupt, truncated or foreign file
raises ``ValueError`` (a missing one ``FileNotFoundError``).

Layout (format version 2)::

    __metadata__            0-d unicode array: JSON {"format", "format_version", "class",
                            "rnnumba_version", "params", "fitted", ...}
    model/{part}.{name}     the network's parameters (``SequenceModel.state_dict``)
    loss_curve_, validation_scores_, classes_, ...   fitted arrays

This module knows the format, not the estimators: each estimator writes its own
``(class name, params, fitted, arrays)`` (``_to_archive``) and rebuilds itself from them
(``_from_archive``); :func:`rnnumba.load` picks the class. Files of format version 1
(rnnumba 0.1: one recurrent layer per archive prefix, the head as one flat array) are
upgraded when read.
"""

import io
import json
import numbers
import zipfile

import numpy as np

FORMAT = "rnnumba-estimator"
FORMAT_VERSION = 2

__all__ = ["write_archive", "read_archive", "FORMAT", "FORMAT_VERSION"]


class LabelledWeights(dict):
    """A ``{label: weight}`` parameter (``class_weight``) whose labels need their type kept."""


def write_archive(path, class_name, params, fitted, arrays):
    """Write one estimator: ``params`` (``get_params``), ``fitted`` scalars and ``arrays``."""
    from . import __version__
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "class": class_name,
            "rnnumba_version": __version__, "params": {}, "dropped_params": [],
            "fitted": {name: _json_value(value) for name, value in fitted.items()}}
    for key, value in params.items():
        if key == "random_state" and not (value is None or isinstance(value, numbers.Integral)):
            meta["dropped_params"].append(key)
            value = None
        if isinstance(value, LabelledWeights):
            labels, kind = _label_array(list(value.keys()))
            meta["params"][key] = {"__labelled__": [labels.tolist(),
                                                    [float(v) for v in value.values()], kind]}
            continue
        meta["params"][key] = _json_value(value)
    arrays = dict(arrays)
    for name, value in list(arrays.items()):
        if name == "classes_":
            arrays[name], meta["classes_kind"] = _label_array(value)
    arrays["__metadata__"] = np.array(json.dumps(meta))
    if hasattr(path, "write"):
        np.savez(path, **arrays)
    else:
        with open(path, "wb") as fh:
            np.savez(fh, **arrays)


def read_archive(path):
    """``(class name, params, fitted, arrays)`` of a file :func:`write_archive` wrote;
    ``ValueError`` for anything else."""
    try:
        if hasattr(path, "read"):
            data = path.read()
        else:
            with open(path, "rb") as fh:
                data = fh.read()
        if not data.startswith(b"PK"):
            raise ValueError("not an rnnumba estimator file: not an .npz archive (load reads "
                             "what an estimator's save wrote)")
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except FileNotFoundError:
        raise
    except ValueError as exc:
        if "allow_pickle" in str(exc):  # never repeat NumPy's hint to load it unsafely
            raise ValueError("not an rnnumba estimator file: it holds Python objects, which "
                             "rnnumba never writes and never loads") from None
        if str(exc).startswith("not an rnnumba"):
            raise
        raise ValueError("not an rnnumba estimator file (unreadable archive)") from None
    except (OSError, EOFError, zipfile.BadZipFile, KeyError, TypeError):
        raise ValueError("not an rnnumba estimator file (unreadable archive)") from None
    try:
        return _parse(arrays)
    except ValueError:
        raise
    except Exception as exc:  # malformed content of a readable archive
        raise ValueError(f"not a valid rnnumba estimator file: {type(exc).__name__}: "
                         f"{exc}") from None


def _parse(arrays):
    if "__metadata__" not in arrays:
        raise ValueError("not an rnnumba estimator file: no metadata")
    meta = json.loads(str(arrays.pop("__metadata__")))
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError("not an rnnumba estimator file: wrong format tag")
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION or version < 1:
        raise ValueError(f"unsupported rnnumba file format version {version!r} (this "
                         f"rnnumba reads up to {FORMAT_VERSION})")
    if version == 1:
        meta, arrays = _upgrade_from_1(meta, arrays)
    params = {}
    for key, value in meta["params"].items():
        if isinstance(value, dict) and "__labelled__" in value:
            labels, weights, kind = value["__labelled__"]
            value = dict(zip(_restore_labels(np.asarray(labels), kind).tolist(), weights))
        else:
            value = _from_json(value)
        params[key] = value
    fitted = {name: _from_json(value) for name, value in meta["fitted"].items()}
    if "classes_" in arrays:
        arrays["classes_"] = _restore_labels(arrays["classes_"], meta.get("classes_kind"))
    for name, value in arrays.items():
        if name.startswith("model/") and (value.dtype.kind != "f"
                                          or not np.isfinite(value).all()):
            raise ValueError(f"{name} must hold finite floats")
    return meta["class"], params, fitted, arrays


def _upgrade_from_1(meta, arrays):
    """A version-1 file in version 2's layout: the recurrent layers ``layer{i}/{name}`` (one
    single-layer network each) become the stack's layer ``i``, the head's flat ``W`` (n_in,
    n_out) then ``b`` becomes ``head.weight`` (transposed) and ``head.bias``."""
    upgraded = {}
    for name, value in arrays.items():
        if name.startswith("layer"):
            index, key = name[len("layer"):].split("/", 1)
            upgraded[f"model/recurrent.{key.replace('_l0', f'_l{int(index)}')}"] = value
        elif name == "head/flat":
            n_in, n_out = (int(v) for v in meta["head"])
            if value.shape != (n_in * n_out + n_out,):
                raise ValueError("output layer in the file does not match the network")
            upgraded["model/head.weight"] = value[:n_in * n_out].reshape(n_in, n_out).T.copy()
            upgraded["model/head.bias"] = value[n_in * n_out:].copy()
        else:
            upgraded[name] = value
    fitted = dict(meta["fitted"])
    if "_y_ndim" in fitted:
        fitted["y_ndim"] = fitted.pop("_y_ndim")
    if "_no_improvement_count" in fitted:
        fitted["no_improvement_count"] = fitted.pop("_no_improvement_count")
    params = dict(meta["params"])
    for key, value in params.items():
        if isinstance(value, dict) and "__class_weight__" in value:
            params[key] = {"__labelled__": value["__class_weight__"]}
    # what version-1 networks were, whatever the parameters' defaults are now
    params.update(pooling="last", embedding_dim=None, scale=False, patch_size=1)
    fitted["patch_size_"] = 1
    return dict(meta, params=params, fitted=fitted), upgraded


# --------------------------------------------------------------------------- values


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
    if labels.dtype.kind in "biufU":
        return labels, "native"
    if labels.dtype == object and all(isinstance(v, str) for v in labels.tolist()):
        return labels.astype(str), "object_str"
    raise TypeError("only numeric, boolean or string class labels can be saved; got "
                    f"dtype {labels.dtype}")


def _restore_labels(labels, kind):
    if labels.dtype.kind not in "biufU":
        raise ValueError(f"class labels of dtype {labels.dtype} are not allowed")
    if kind == "object_str":
        return labels.astype(object)
    return labels


def label_array(labels):
    """Restored labels, checked to be a 1-D array."""
    if labels.ndim != 1 or labels.size == 0:
        raise ValueError(f"labels must be a non-empty 1-D array, got shape {labels.shape}")
    return labels


#: Parameters added after format version 2 was written, with the value that reproduces what
#: an estimator saved before them did.
_FORMER_DEFAULTS = {"forget_bias": None}


def estimator_from_params(cls, params):
    """A new ``cls`` with the stored ``params``, checked by the estimator's own validation
    (an unknown name or a bad value is a ``ValueError``)."""
    est = cls()
    known = est.get_params(deep=False)
    unknown = set(params) - set(known)
    if unknown:
        raise ValueError(f"unknown parameters in file: {sorted(unknown)}")
    # a file written before a parameter existed: what the estimator did then
    former = {name: value for name, value in _FORMER_DEFAULTS.items()
              if name in known and name not in params}
    est.set_params(**former, **params)
    est._validate_params()
    return est


def set_fitted_counts(est, fitted, names):
    """Set each fitted attribute of ``names`` from the metadata, checked to be an int >= 0."""
    for name in names:
        value = fitted.get(name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"fitted attribute {name} must be an int >= 0, got {value!r}")
        setattr(est, name, value)


def optional_float(value, name):
    """A fitted float (or None) from the metadata, checked."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"fitted attribute {name} must be a number, got {value!r}")
    return float(value)


def float_array(arrays, name):
    """``arrays[name]`` as a 1-D float array, checked."""
    value = arrays.get(name)
    if value is None or value.ndim != 1 or value.dtype.kind not in "fiu":
        raise ValueError(f"{name} must be a 1-D array of numbers in the file")
    return value.astype(np.float64)


def scaling(arrays, name, width):
    """The ``(mean, scale)`` standardisation stored as ``scaling/{name}_mean`` and
    ``_scale`` (checked: ``width`` finite values each, positive scales), or None."""
    keys = (f"scaling/{name}_mean", f"scaling/{name}_scale")
    if not any(key in arrays for key in keys):
        return None
    values = []
    for key in keys:
        value = arrays.get(key)
        if (value is None or value.shape != (width,) or value.dtype.kind != "f"
                or not np.isfinite(value).all()):
            raise ValueError(f"{key} must hold {width} finite floats")
        values.append(value.astype(np.float64))
    if (values[1] <= 0).any():
        raise ValueError(f"{keys[1]} must be positive")
    return tuple(values)
