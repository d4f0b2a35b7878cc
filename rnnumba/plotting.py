"""Figures of :func:`rnnumba.profile` results (matplotlib, imported on first use).

:func:`plot_profile` draws three panels:

1. where a training step spends its time: each phase's share, one bar per cell, hidden
   size and device, the step's median time written on top;
2. the training step's median time against the hidden size, CPU and GPU per cell, with
   the IQR as error bars and a marker where the GPU starts to win;
3. achieved GFLOP/s of the training step against the hidden size.

The figure is built on the Agg canvas, so saving works headless (no display, no pyplot
state); ``show=True`` goes through pyplot and the interactive backend instead.
"""

import textwrap

import numpy as np

__all__ = ["plot_profile", "plot_forecast"]

_PHASES = ("input_projection", "forward_recurrence", "bptt_recurrence", "weight_gradients",
           "optimizer_step")
_LABELS = {"input_projection": "input projection", "forward_recurrence": "forward recurrence",
           "bptt_recurrence": "BPTT recurrence", "weight_gradients": "weight-gradient GEMMs",
           "optimizer_step": "optimizer step"}
_COLORS = {"input_projection": "#4c72b0", "forward_recurrence": "#55a868",
           "bptt_recurrence": "#c44e52", "weight_gradients": "#8172b2",
           "optimizer_step": "#ccb974"}
_LINE = {"cpu": "-", "cuda": "--"}
_MARKER = {"cpu": "o", "cuda": "s"}


def plot_profile(result, path=None, show=False, dpi=120):
    """Draw a :func:`rnnumba.profile` result; save it to ``path`` when given.

    Parameters
    ----------
    result : dict
        What :func:`rnnumba.profile` returns (or its JSON read back).
    path : str or path-like, optional
        File to write; the format follows the extension (``.png``, ``.pdf``, ``.svg``).
    show : bool, default=False
        Open a window through pyplot (needs a display).
    dpi : int, default=120

    Returns
    -------
    matplotlib.figure.Figure
    """
    if show:
        import matplotlib.pyplot as plt
        fig = plt.figure(figsize=(17, 5.5))
    else:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        fig = Figure(figsize=(17, 5.5))
        FigureCanvasAgg(fig)
    ax_share, ax_time, ax_rate = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1.3, 1, 1]})
    results = result["results"]
    available = [r for r in results if r.get("available")]

    _draw_shares(ax_share, available)
    _draw_scaling(ax_time, ax_rate, result, available)

    s = result["settings"]
    title = (f"rnnumba {result.get('environment', {}).get('rnnumba', '')} training step: "
             f"B={s['batch_size']} T={s['seq_len']} I={s['input_size']} "
             f"layers={s['num_layers']}{' bidirectional' if s['bidirectional'] else ''} "
             f"{s['dtype']}")
    missing = [f"{name}: not available ({info['reason']})"
               for name, info in result["devices"].items() if not info["available"]]
    if missing:
        title += "\n" + "; ".join(textwrap.shorten(m, 120) for m in missing)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=dpi)
    if show:
        import matplotlib.pyplot as plt
        plt.show()
    return fig


def _draw_shares(ax, available):
    ax.set_title("Share of the training step per phase", fontsize=10)
    if not available:
        ax.text(0.5, 0.5, "no device available", ha="center", va="center",
                transform=ax.transAxes)
        ax.set_axis_off()
        return
    labels, bottoms = [], [0.0] * len(available)
    for i, r in enumerate(available):
        labels.append(f"{r['cell']}\nH={r['hidden_size']}\n{r['device']}")
    xs = list(range(len(available)))
    for phase in _PHASES:
        shares = []
        for r in available:
            t = r["timings"]
            total = sum(t[p]["median"] for p in _PHASES) or 1.0
            shares.append(100.0 * t[phase]["median"] / total)
        ax.bar(xs, shares, bottom=bottoms, color=_COLORS[phase], label=_LABELS[phase],
               width=0.7)
        bottoms = [b + s for b, s in zip(bottoms, shares)]
    for x, r in zip(xs, available):
        ax.text(x, 101, _fmt_ms(r["timings"]["train_step"]["median"]), ha="center",
                va="bottom", fontsize=7, rotation=90 if len(available) > 8 else 0)
    ax.set_xticks(xs)
    ax.set_xticklabels(labels, fontsize=7)
    ax.set_ylim(0, 118)
    ax.set_ylabel("% of the summed phase medians (step median on top)")
    ax.legend(fontsize=7, loc="upper center", ncol=3, bbox_to_anchor=(0.5, -0.16),
              frameon=False)


def _draw_scaling(ax_time, ax_rate, result, available):
    gpu_measured = any(r["device"] == "cuda" for r in available)
    ax_time.set_title("Training step vs hidden size: where the GPU starts to win"
                      if gpu_measured else "Training step vs hidden size", fontsize=10)
    ax_rate.set_title("Achieved GEMM GFLOP/s (training step)", fontsize=10)
    cells = result["settings"]["cells"]
    colors = {}
    palette = ["#4c72b0", "#dd8452", "#55a868", "#c44e52"]
    for i, cell in enumerate(cells):
        colors[cell] = palette[i % len(palette)]
    drawn = False
    for cell in cells:
        for device in result["settings"]["devices"]:
            rows = sorted((r for r in available if r["cell"] == cell and r["device"] == device),
                          key=lambda r: r["hidden_size"])
            if not rows:
                continue
            drawn = True
            hs = [r["hidden_size"] for r in rows]
            med = [1e3 * r["timings"]["train_step"]["median"] for r in rows]
            lo = [m - 1e3 * r["timings"]["train_step"]["q1"] for m, r in zip(med, rows)]
            hi = [1e3 * r["timings"]["train_step"]["q3"] - m for m, r in zip(med, rows)]
            style = dict(color=colors[cell], linestyle=_LINE.get(device, ":"),
                         marker=_MARKER.get(device, "^"), label=f"{cell} {device}")
            ax_time.errorbar(hs, med, yerr=[[max(v, 0) for v in lo], [max(v, 0) for v in hi]],
                             capsize=3, **style)
            rate = [r["gflops"].get("train_step") or float("nan") for r in rows]
            ax_rate.plot(hs, rate, **style)
    wins = {}
    for cell, cross in result.get("crossover", {}).items():
        if cross.get("hidden_size") is not None:
            wins.setdefault(cross["hidden_size"], []).append(cell)
    for h, win_cells in sorted(wins.items()):
        ax_time.axvline(h, color="gray", alpha=0.5, linewidth=1.5, linestyle=":")
        ax_time.annotate(f"GPU wins from H={h}\n({', '.join(win_cells)})", xy=(h, 0.97),
                         xycoords=("data", "axes fraction"), fontsize=8, ha="right",
                         va="top", xytext=(-4, 0), textcoords="offset points")
    missing = [f"{name}: not available\n"
               + textwrap.fill(textwrap.shorten(info["reason"], 150), 56)
               for name, info in result["devices"].items() if not info["available"]]
    if missing:
        ax_time.text(0.5, -0.16, "\n".join(missing), transform=ax_time.transAxes,
                     fontsize=7, va="top", ha="center", color="#a00")
    for ax, ylabel in ((ax_time, "median step time (ms), IQR bars"),
                       (ax_rate, "GFLOP/s")):
        ax.set_xlabel("hidden size H")
        ax.set_ylabel(ylabel)
        if drawn:
            from matplotlib.ticker import FuncFormatter, NullFormatter
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            sizes = sorted({r["hidden_size"] for r in available})
            ax.set_xticks(sizes)
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.legend(fontsize=7)
        ax.grid(True, which="both", alpha=0.3)


def _fmt_ms(seconds):
    ms = 1e3 * seconds
    return f"{ms:.3g} ms"


# --------------------------------------------------------------------------- forecasts


def plot_forecast(y, y_pred, lower=None, upper=None, *, y_true=None, fh=None, coverage=None,
                  ax=None, title=None, path=None, show=False, dpi=120):
    """Draw a series' history, its forecast and the prediction-interval band.

    Parameters
    ----------
    y : array-like of shape (T,) or (T, k), pandas Series or DataFrame
        The history the forecast starts from.
    y_pred : array-like of shape (h,) or (h, k), pandas Series or DataFrame
        The forecast (:meth:`RNNForecaster.predict <rnnumba.RNNForecaster.predict>`).
    lower, upper : array-like shaped as ``y_pred``, optional
        The interval (:meth:`~rnnumba.RNNForecaster.predict_interval`), drawn as a band.
    y_true : array-like shaped as ``y_pred``, optional
        What happened at the forecast steps, drawn as points.
    fh : array-like of int, optional
        The steps ahead of ``y_pred`` when it is a plain array (default ``1..h``); a pandas
        forecast carries its own index.
    coverage : float, optional
        The interval's coverage, for the legend.
    ax : matplotlib Axes, optional
        Draw there; by default a new figure.
    title : str, optional
    path : str or path-like, optional
        File to write (format from the extension).
    show : bool, default=False
        Open a window through pyplot (needs a display).
    dpi : int, default=120

    Returns
    -------
    matplotlib.figure.Figure
    """
    if ax is None:
        if show:
            import matplotlib.pyplot as plt
            fig = plt.figure(figsize=(9, 4))
        else:
            from matplotlib.backends.backend_agg import FigureCanvasAgg
            from matplotlib.figure import Figure
            fig = Figure(figsize=(9, 4))
            FigureCanvasAgg(fig)
        ax = fig.add_subplot(1, 1, 1)
    else:
        fig = ax.figure
    hist_x, hist_v, names = _forecast_axis(y)
    pred_x, pred_v, _ = _forecast_axis(y_pred)
    if not _has_index(y_pred):
        steps = np.arange(1, pred_v.shape[0] + 1) if fh is None else np.asarray(fh)
        pred_x = (hist_x[-1] + steps) if not _has_index(y) else pred_x
        if _has_index(y):
            raise ValueError("y has a pandas index: pass the forecast as pandas too (as "
                             "predict returns it) so that it can be placed on that axis")
    colors = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b2", "#937860"]
    band_label = "prediction interval" if coverage is None else \
        f"{100 * coverage:g}% prediction interval"
    for c in range(hist_v.shape[1]):
        color = colors[c % len(colors)]
        label = names[c] if names[c] is not None else ("history" if hist_v.shape[1] == 1
                                                       else f"channel {c}")
        ax.plot(hist_x, hist_v[:, c], color=color, linewidth=1.2, label=label)
        ax.plot(np.concatenate([hist_x[-1:], pred_x]),
                np.concatenate([hist_v[-1:, c], pred_v[:, c]]), color=color, linestyle="--",
                linewidth=1.5, label="forecast" if c == 0 else None)
        if lower is not None and upper is not None:
            lo = _forecast_axis(lower)[1][:, c]
            up = _forecast_axis(upper)[1][:, c]
            ax.fill_between(pred_x, lo, up, color=color, alpha=0.2,
                            label=band_label if c == 0 else None)
        if y_true is not None:
            truth = _forecast_axis(y_true)[1][:, c]
            ax.plot(pred_x, truth, "o", color="black" if hist_v.shape[1] == 1 else color,
                    markersize=3,
                    label="held-out truth" if c == 0 else None)
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=dpi)
    if show:
        import matplotlib.pyplot as plt
        plt.show()
    return fig


def _has_index(values):
    return type(values).__module__.split(".")[0] == "pandas" and hasattr(values, "index")


def _forecast_axis(values):
    """``(x, values (n, k), names)`` of a series: x from a pandas index (periods as
    timestamps), else positions ``0..n-1``."""
    names = [None]
    if _has_index(values):
        import pandas as pd
        index = values.index
        x = index.to_timestamp() if isinstance(index, pd.PeriodIndex) else index
        x = np.asarray(x)
        if isinstance(values, pd.DataFrame):
            names = [str(c) for c in values.columns]
        elif values.name is not None:
            names = [str(values.name)]
        v = values.to_numpy(dtype=float)
    else:
        v = np.asarray(values, dtype=float)
        x = np.arange(v.shape[0])
    if v.ndim == 1:
        v = v[:, None]
    if len(names) != v.shape[1]:
        names = [None] * v.shape[1]
    return x, v, names
