"""rnnumba's benchmark suite: asv modules (``bench_*.py``) and a plain runner (``run.py``).

See ``docs/benchmarks.md``.
"""
