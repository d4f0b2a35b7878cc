"""The text suite: ``RNNLanguageModel`` with its defaults against a character bigram and the
same-size PyTorch recipe, on Python's own documentation.

The corpus is ``pydoc_data.topics`` (it ships with CPython; nothing is downloaded), one line
per sequence, split by paragraph: every 10th paragraph is held out
(:func:`benchmarks.realdata.datasets.load_text`: 250,000 training characters, the whole
held-out part, about 47,000). Every model reads the same ids (0 end of sequence and start
context, 1 unknown, then the training characters sorted, which is also our vocabulary's
order) and is scored by held-out per-character perplexity, the end of every line counted.

- character bigram, add-one and Witten-Bell smoothed (:func:`anchors.char_bigram`);
- the PyTorch recipe (:func:`anchors.torch_char_lm`): embedding 32, ``nn.LSTM(32, 128)``,
  linear head, Adam 2e-3, gradient clipping 1.0, batches of 32 lines of similar length,
  20 epochs;
- ours: ``RNNLanguageModel(cell=..., random_state=seed)`` and nothing else (``--set``
  overrides a parameter, to compare candidate defaults).

Fit wall time is measured around ``fit`` (PyTorch: around its training loop); the fits
alternate (ours, PyTorch, ours, ... with ``--repeats``) so that both see the same load.
Fit wall time is that of the fastest fit (the least disturbed), perplexity the median.
Sampling speed is tokens per second of one sequence at a time, temperature 1, the state
carried and restarted after each end of sequence, ``--sample-tokens`` tokens per round,
rounds alternating between the models; the best round counts (the least disturbed). The
PyTorch loop also samples from a copy of our trained LSTM (``state_dict``: the same model,
token for token), at ``--threads`` threads and at one.

Usage::

    python benchmarks/text_suite.py                      # 1-2 minutes on 2 idle cores
    python benchmarks/text_suite.py --cells lstm,gru --set learning_rate_init=0.002
    python benchmarks/text_suite.py --no-torch           # ours and the bigram only
    python benchmarks/text_suite.py --show benchmarks/results/<file>.json   # its table

The table goes to stdout, the raw results to
``benchmarks/results/<UTC time>-text-<machine>.json``.
"""

import argparse
import json
import math
import os
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.realdata import anchors, records  # noqa: E402
from benchmarks.realdata.datasets import encode_text, load_text, text_info  # noqa: E402


def fit_ours(train, test, cell, params, seed):
    """Fit ``RNNLanguageModel`` and score it; returns ``(dict of numbers, model)``."""
    from rnnumba.text import RNNLanguageModel
    lm = RNNLanguageModel(cell=cell, random_state=seed, **params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        lm.fit(train)
        seconds = time.perf_counter() - start
    ppl = lm.perplexity(test)
    return {"perplexity": ppl, "bits_per_char": math.log2(ppl),
            "train_perplexity": lm.perplexity(train), "fit_seconds": seconds,
            "epochs": lm.n_iter_, "loss_curve": lm.loss_curve_,
            "validation_scores": lm.validation_scores_}, lm


def sample_ours(lm, n_tokens, seed):
    """``{"tokens_per_second", "n_tokens", "sequences"}`` of ``lm.sample`` one sequence at a
    time until ``n_tokens`` tokens (each end of sequence counted, as the PyTorch loop
    counts its steps)."""
    made, ends, round_ = 0, 0, 0
    start = time.perf_counter()
    while made < n_tokens:
        text = lm.sample(n_samples=1, max_length=n_tokens - made, random_state=seed + round_)
        made += len(text[0]) + 1
        ends += 1
        round_ += 1
    seconds = time.perf_counter() - start
    return {"tokens_per_second": made / seconds, "n_tokens": float(made),
            "sequences": float(ends)}


def run(args, params):
    train, test = load_text(train_chars=args.train_chars, seed=args.seed)
    train_ids, test_ids, vocab = encode_text(train, test)
    results = {"data": text_info(train, test), "vocabulary_size": len(vocab)}
    for smoothing in ("add_one", "witten_bell"):
        results[f"bigram_{smoothing}"] = anchors.char_bigram(train_ids, test_ids, len(vocab),
                                                             smoothing)
    cells = [c for c in args.cells.split(",") if c]
    ours = {cell: [] for cell in cells}
    models = {}
    torch_runs, torch_model = [], None
    for repeat in range(args.repeats):
        for cell in cells:
            row, lm = fit_ours(train, test, cell, params, args.seed)
            if "".join(lm.vocabulary_) != "".join(vocab[2:]):
                raise RuntimeError("our vocabulary differs from encode_text's")
            ours[cell].append(row)
            models[cell] = lm
            _log(f"ours {cell} fit {repeat + 1}: ppl {row['perplexity']:.4f}, "
                 f"{row['fit_seconds']:.1f} s, {row['epochs']} epochs")
        if not args.no_torch:
            row, torch_model = anchors.torch_char_lm(
                train_ids, test_ids, len(vocab), seed=args.seed, sample_tokens=0,
                threads=args.threads, return_model=True)
            torch_runs.append(row)
            _log(f"PyTorch fit {repeat + 1}: ppl {row['perplexity']:.4f}, "
                 f"{row['fit_seconds']:.1f} s")
    sampling = {cell: [] for cell in cells}
    torch_sampling = []
    # the PyTorch loop on our trained LSTM's weights: the same model, token for token
    same = _torch_copy(models["lstm"]) if "lstm" in models and not args.no_torch else None
    same_sampling = {args.threads: [], 1: []}
    for round_ in range(args.sample_rounds):
        for cell in cells:
            sampling[cell].append(sample_ours(models[cell], args.sample_tokens,
                                              args.seed + 1000 * round_))
        if torch_model is not None:
            torch_sampling.append(_torch_sampling(torch_model, args, round_, args.threads))
        if same is not None:
            for threads in same_sampling:
                same_sampling[threads].append(_torch_sampling(same, args, round_, threads))
    results["ours"] = {cell: {"fits": ours[cell], "sampling": sampling[cell],
                              "samples": models[cell].sample(n_samples=5, max_length=120,
                                                             random_state=args.seed)}
                       for cell in cells}
    if torch_runs:
        results["torch"] = {"fits": torch_runs, "sampling": torch_sampling}
    if same is not None:
        results["torch_sampling_our_weights"] = {str(k): v for k, v in same_sampling.items()}
    return results


def _torch_copy(lm):
    """The recipe's PyTorch model (``anchors.build_char_lm``) holding ``lm``'s weights, or
    None where the sizes differ."""
    sd = lm.state_dict()
    if sd["embedding.weight"].shape[1] != 32 or sd["recurrent.weight_hh_l0"].shape != (512, 128) \
            or "recurrent.weight_hh_l1" in sd:
        return None
    import torch
    model = anchors.build_char_lm(lm.vocabulary_size_, 32, 128)
    names = {"embedding": "embed", "recurrent": "lstm", "head": "head"}
    model.load_state_dict({names[k.split(".", 1)[0]] + "." + k.split(".", 1)[1]:
                           torch.from_numpy(v) for k, v in sd.items()})
    return model


def _torch_sampling(model, args, round_, threads):
    import torch
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return anchors.torch_char_lm_sampling(model, args.sample_tokens,
                                              seed=args.seed + round_)
    finally:
        torch.set_num_threads(previous)


def _median(rows, key):
    return float(np.median([row[key] for row in rows]))


def _best(rows, key):
    return float(max(row[key] for row in rows))


def _least(rows, key):
    return float(min(row[key] for row in rows))


def table(results, params):
    lines = [f"{'model':<38} {'held-out ppl':>12} {'bits/char':>9} {'fit s':>8} "
             f"{'epochs':>6} {'sampling tok/s':>14}"]

    def line(name, ppl, fit="", epochs="", tps=""):
        lines.append(f"{name:<38} {ppl:>12.3f} {math.log2(ppl):>9.3f} {fit:>8} {epochs:>6} "
                     f"{tps:>14}")
    line("char bigram, add-one", results["bigram_add_one"]["perplexity"])
    line("char bigram, Witten-Bell", results["bigram_witten_bell"]["perplexity"])
    torch = results.get("torch")
    if torch:
        fits = torch["fits"]
        line("PyTorch recipe (E32, LSTM 128)", _median(fits, "perplexity"),
             f"{_least(fits, 'fit_seconds'):.1f}", f"{fits[0]['epochs']}",
             f"{_best(torch['sampling'], 'tokens_per_second'):.0f}")
    for cell, row in results["ours"].items():
        fits = row["fits"]
        line(f"rnnumba RNNLanguageModel({cell!r})", _median(fits, "perplexity"),
             f"{_least(fits, 'fit_seconds'):.1f}", f"{fits[0]['epochs']}",
             f"{_best(row['sampling'], 'tokens_per_second'):.0f}")
        if torch:
            ppl = _median(fits, "perplexity") / _median(torch["fits"], "perplexity")
            fit = _least(fits, "fit_seconds") / _least(torch["fits"], "fit_seconds")
            tps = (_best(row["sampling"], "tokens_per_second")
                   / _best(torch["sampling"], "tokens_per_second"))
            lines.append(f"  {cell} vs PyTorch: perplexity {ppl:.3f}x, fit time {fit:.2f}x, "
                         f"sampling {tps:.1f}x as fast")
    same = results.get("torch_sampling_our_weights")
    if same:
        for threads, rows in same.items():
            lines.append(f"PyTorch sampling loop on our LSTM's weights, {threads} thread(s): "
                         f"{_best(rows, 'tokens_per_second'):.0f} tokens/s")
    if params:
        lines.append(f"(our parameters set: {params})")
    lines.append("(perplexity: median of the fits; fit time: the fastest fit; sampling: the "
                 "fastest round)")
    return "\n".join(lines)


def _log(message):
    print(message, file=sys.stderr, flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", default="lstm")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="a parameter of our model (a Python literal; repeatable)")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch recipe")
    parser.add_argument("--repeats", type=int, default=1, help="fits of each model")
    parser.add_argument("--sample-tokens", type=int, default=2000)
    parser.add_argument("--sample-rounds", type=int, default=3)
    parser.add_argument("--train-chars", type=int, default=250_000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--machine", default=f"{os.cpu_count()}-core-cpu")
    parser.add_argument("--output", help="JSON path (default benchmarks/results/...)")
    parser.add_argument("--show", metavar="JSON", help="print the table of a results file")
    args = parser.parse_args(argv)
    if args.show:
        with open(args.show, encoding="utf-8") as fh:
            record = json.load(fh)
        print(table(record["results"], record["params"]))
        return 0
    params = records.parse_params(args.set)
    from threadpoolctl import threadpool_limits
    with threadpool_limits(limits=args.threads, user_api="blas"):
        results = run(args, params)
    print(table(results, params))
    records.write_record("text", args.machine, args.output, {
        "params": params, "threads": args.threads, "seed": args.seed, "repeats": args.repeats,
        "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
