"""asv: ``Recurrent`` forward and forward+backward against PyTorch, per cell and size.

Each class is parameterised by the implementation (``rnnumba`` or ``torch``), so that
``asv compare`` and the asv web pages show both side by side; the torch half is skipped
(``NotImplementedError`` in ``setup``) where torch is not installed. Sizes ``(B, T, I, H)``
are those of ``_common.SIZES``; float32 throughout, torch on 2 threads.
"""

from . import _common as c

IMPLS = ["rnnumba", "torch"]


class _Base:
    params = [IMPLS, list(c.CELLS), list(c.SIZES)]
    param_names = ["impl", "cell", "size"]
    num_layers, bidirectional = 1, False
    timeout = 300

    def setup(self, impl, cell, size):
        if impl == "torch" and not c.torch_available():
            raise NotImplementedError("torch is not installed")
        rec, X, G = c.make_ours(cell, size, self.num_layers, self.bidirectional)
        if impl == "rnnumba":
            self.forward = c.ours_forward(rec, X)
            self.forward_backward = c.ours_forward_backward(rec, X, G)
        else:
            module, x, g = c.make_torch(rec, X, G)
            self.forward = c.torch_forward(module, x)
            self.forward_backward = c.torch_forward_backward(module, x, g)
        self.forward_backward()  # compile / load the kernels outside the timing


class Forward(_Base):
    """``rec.forward(X)`` / ``module(x)`` (training mode: activations kept)."""

    def time_forward(self, impl, cell, size):
        self.forward()


class ForwardBackward(_Base):
    """``rec.forward(X); rec.backward(G)`` / ``out, h = m(x); out.backward(g)``."""

    def time_forward_backward(self, impl, cell, size):
        self.forward_backward()


class StackedBidirectional(_Base):
    """Two layers, bidirectional, at the medium size."""

    params = [IMPLS, list(c.CELLS), ["medium"]]
    num_layers, bidirectional = 2, True

    def time_forward(self, impl, cell, size):
        self.forward()

    def time_forward_backward(self, impl, cell, size):
        self.forward_backward()
