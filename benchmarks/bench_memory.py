"""asv: memory of a training step (forward, backward without the input gradient, Adam
step) of ``Recurrent``.

``peakmem_*`` is asv's whole-process peak RSS; ``track_peak_over_activations`` is the
training step's own peak as ``tracemalloc`` sees it (NumPy reports to it) divided by the
activations BPTT must keep (hidden states plus the cell's gate cache), so 1.0 would mean no
memory beyond what backpropagation needs.
"""

from . import _common as c


class TrainingStepMemory:
    params = [list(c.CELLS), list(c.SIZES)]
    param_names = ["cell", "size"]
    timeout = 300

    def setup(self, cell, size):
        from rnnumba.optim import Adam
        self.rec, self.X, self.G = c.make_ours(cell, size)
        self.adam = Adam([self.rec.flat_params.shape])

    def peakmem_train_step(self, cell, size):
        self.rec.forward(self.X)
        self.rec.backward(self.G)
        self.adam.step([self.rec.flat_params], [self.rec.flat_grads])

    def track_peak_over_activations(self, cell, size):
        return c.peak_training_memory(cell, size)["ratio"]

    track_peak_over_activations.unit = "ratio"
