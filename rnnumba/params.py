"""One flat parameter buffer per network, with PyTorch's names, shapes and gate order.

The buffer is laid out in ``state_dict`` order (per layer, per direction: ``weight_ih``,
``weight_hh``, ``bias_ih``, ``bias_hh``) and every weight is a view of it, so optimizers
update the whole network with one vectorised operation and conversion to and from PyTorch
is exact.
"""

import math

GATES = {"rnn": 1, "lstm": 4, "gru": 3}


def parameter_shapes(cell, input_size, hidden_size, num_layers, bidirectional):
    """Return ``[(name, shape), ...]`` in PyTorch's ``state_dict`` order."""
    gate_rows = GATES[cell] * hidden_size
    directions = 2 if bidirectional else 1
    shapes = []
    for layer in range(num_layers):
        layer_input = input_size if layer == 0 else directions * hidden_size
        for direction in range(directions):
            suffix = f"l{layer}" + ("_reverse" if direction else "")
            shapes += [
                (f"weight_ih_{suffix}", (gate_rows, layer_input)),
                (f"weight_hh_{suffix}", (gate_rows, hidden_size)),
                (f"bias_ih_{suffix}", (gate_rows,)),
                (f"bias_hh_{suffix}", (gate_rows,)),
            ]
    return shapes


def make_views(flat, shapes):
    """Split the 1-D ``flat`` into named views with the given shapes."""
    views = {}
    offset = 0
    for name, shape in shapes:
        size = math.prod(shape)
        views[name] = flat[offset:offset + size].reshape(shape)
        offset += size
    if offset != flat.size:
        raise ValueError(f"parameter buffer has {flat.size} values, the layout needs {offset}")
    return views


def buffer_size(shapes):
    """Number of scalars in a buffer with these shapes."""
    return sum(math.prod(shape) for _, shape in shapes)


def init_uniform(flat, hidden_size, rng):
    """PyTorch's default: every weight and bias uniform in ``±1/sqrt(hidden_size)``."""
    bound = 1.0 / math.sqrt(hidden_size)
    flat[:] = rng.uniform(-bound, bound, size=flat.size)
