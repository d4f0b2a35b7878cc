"""Mode constants shared by the CPU and CUDA kernels (plain integers, importable anywhere).

Pooling over the steps of a recurrent output (``pool_forward``/``pool_backward`` in
``cpu/layers.py`` and ``cuda/layers.py``):

- ``POOL_LAST``: each row's final state (forward columns at its last step, reverse columns
  at step 0);
- ``POOL_MEAN``: the mean over the row's steps;
- ``POOL_MAX``: the per-column maximum over the row's steps;
- ``POOL_ATTENTION``: a softmax-weighted sum of the steps, scored by a learned vector.
"""

POOL_LAST = 0
POOL_MEAN = 1
POOL_MAX = 2
POOL_ATTENTION = 3

POOL_MODES = {"last": POOL_LAST, "mean": POOL_MEAN, "max": POOL_MAX,
              "attention": POOL_ATTENTION}
"""Mode names (as an estimator would spell them) mapped to their constants."""
