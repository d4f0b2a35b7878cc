"""What the real-data suites share around their runs: ``--set`` parameters and the JSON
result file each writes to ``benchmarks/results/``."""

import ast
import datetime
import json
import os
import platform

RESULTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "results")


def parse_params(items):
    """``["name=value", ...]`` as a dict; values are Python literals where they parse,
    else strings."""
    params = {}
    for item in items:
        key, _, value = item.partition("=")
        try:
            params[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            params[key] = value
    return params


def write_record(suite, machine, output, fields):
    """Write ``fields`` with the run's time, machine and versions to ``output`` (default
    ``benchmarks/results/<UTC time>-<suite>-<machine>.json``); returns the path."""
    import rnnumba
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = output or os.path.join(RESULTS, f"{stamp}-{suite}-{machine}.json")
    record = {"created": stamp, "machine": machine, "cpu": platform.processor(),
              "python": platform.python_version(), "rnnumba": rnnumba.__version__, **fields}
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(record, fh, indent=1, default=str)
        fh.write("\n")
    print(f"\nresults written to {path}")
    return path
