"""The report of a run: a Markdown table of accuracy and cost side by side, and plots.

Written by the runner next to ``results.json``:

* ``report.md``: the setup (with the training requests left out for holding a result
  reference), one row per method (tool F1, argument F1, exact match, schema-valid rate,
  parse-failure rate; prompt tokens and seconds per request, trainable parameters,
  training seconds) and two ceiling rows (`agentmem.eval.metrics.ceiling`: the argument
  F1 and exact match of an oracle writing exactly the reachable gold calls, and argument
  F1 when only references count as unreachable), with the share of gold values reachable
  stated above the table; argument and tool F1 per number of calls, with the ceiling's
  argument F1; the methods that could not run and why, and the machine and date of each
  method's run;
* ``accuracy.png``: the three accuracy metrics per method, and tool/argument F1 per number
  of gold calls, each panel with the ceiling's argument F1 as a dotted line;
* ``cost.png``: argument and tool F1 against prompt tokens per request and against seconds
  per request (log scales).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agentmem.runinfo import table

__all__ = ["markdown", "plot", "write_report"]

_ACCURACY = (("tool_f1", "tool F1"), ("argument_f1", "argument F1"), ("exact_match", "exact match"))


def _ok(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n: r for n, r in summary["methods"].items() if r.get("status") == "ok"}


def _count(n: float) -> str:
    if n >= 1e6:
        return f"{n / 1e6:.2f} M"
    if n >= 1e3:
        return f"{n / 1e3:.1f} k"
    return f"{n:.0f}"


def markdown(summary: dict[str, Any]) -> str:
    """The report as Markdown (see the module docstring)."""
    setup = summary["setup"]
    lines = [f"# Evaluation: {setup['dataset']} ({setup['subset']})", ""]
    if summary.get("command"):
        lines += [f"`{summary['command']}`", ""]
    cap = f" (at least {setup['train_per_tool']} per tool where there are)" if setup["train_per_tool"] else ""
    skipped = setup.get("train_requests_skipped_for_references", 0)
    cut = setup.get("train_requests_cut_at_references", 0)
    lines += [
        f"{setup['train_requests']} training requests{cap}, "
        f"{setup['test_requests']} test requests, {setup['tools']} tools, backbone `{setup['backbone']}`. "
        'No method trains on or is shown a result reference (`"$varN.field$"`, which no executor resolves): '
        f"before the cap, {cut} training plans were cut before their first call holding one (a plan stops "
        f"where it needs a tool's result; an agent resumes it with the results) and {skipped} training "
        "requests whose first call held one were left out.",
        "",
    ]
    top = summary.get("ceiling")
    if top:
        lines += [
            f"Ceiling of the test requests: of their {top['n_values']} gold argument values, "
            f"{top['reference_free_share']:.1%} hold no result reference and {top['reachable_share']:.1%} can be "
            "read from the request (a string or number whose text appears in it, case-insensitively; booleans, "
            "null and enum values count as reachable; dates written otherwise do not). An oracle writing exactly "
            "the reachable calls of inventory tools scores the ceiling rows below.",
            "",
        ]
    header = (
        "method | tool F1 | argument F1 | exact match | schema-valid | parse failures | prompt tokens/request "
        "| s/request | trainable params | training s"
    ).split(" | ")
    rows = []
    for name, r in _ok(summary).items():
        s, c = r["scores"], r["cost"]
        rates = ("tool_f1", "argument_f1", "exact_match", "schema_valid_rate", "parse_failure_rate")
        scores = [f"{s[k]:.3f}" for k in rates]
        per_request = [f"{c['prompt_tokens_per_request']:.0f}", f"{c['seconds_per_request']:.2f}"]
        rows.append([name, *scores, *per_request, _count(c["trainable_parameters"]), f"{c['training_seconds']:.0f}"])
    if top:
        rest = ["-"] * 6  # no schema-valid rate, failures or costs: the oracle is not run
        rows += [
            [
                "ceiling (verbatim from the request)",
                "-",
                f"{top['argument_f1']:.3f}",
                f"{top['exact_match']:.3f}",
                *rest,
            ],
            ["ceiling (no references)", "-", f"{top['argument_f1_reference_free']:.3f}", "-", *rest],
        ]
    lines += table(header, rows)
    counts = sorted({int(k) for r in _ok(summary).values() for k in r["by_calls"]})
    if counts:
        lines += [
            "",
            "Argument F1 / tool F1 by number of gold calls (test requests per count: "
            + ", ".join(f"{k}: {_examples_with(summary, k)}" for k in counts)
            + "):",
            "",
        ]
        rows = []
        for name, r in _ok(summary).items():
            cells = []
            for k in counts:
                s = r["by_calls"].get(str(k))
                cells.append(f"{s['argument_f1']:.2f} / {s['tool_f1']:.2f}" if s else "-")
            rows.append([name, *cells])
        if top:
            by = top["argument_f1_by_calls"]
            rows.append(["ceiling (verbatim)", *(f"{by[str(k)]:.2f} / -" if str(k) in by else "-" for k in counts)])
        lines += table(["method", *(f"{k} calls" for k in counts)], rows)
    unavailable = {n: r for n, r in summary["methods"].items() if r.get("status") != "ok"}
    if unavailable:
        lines += ["", "Not run:", ""] + [f"- {n}: {r.get('reason', r.get('status'))}" for n, r in unavailable.items()]
    lines += ["", "Runs:", ""] + [f"- {n}: {r.get('date')}, {r.get('machine')}" for n, r in summary["methods"].items()]
    return "\n".join(lines) + "\n"


def _examples_with(summary: dict[str, Any], calls: int) -> int:
    for r in _ok(summary).values():
        if str(calls) in r["by_calls"]:
            return r["by_calls"][str(calls)]["n_examples"]
    return 0


def plot(summary: dict[str, Any], out: Path) -> list[Path]:
    """Draws ``accuracy.png`` and ``cost.png`` into ``out``; returns their paths."""
    try:
        import matplotlib
    except ImportError as exc:  # a core install: say which extra to install, not only the module
        from agentmem.extras import missing_extra

        raise missing_extra("eval", exc) from exc

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    methods = _ok(summary)
    if not methods:
        return []
    names = list(methods)
    title = f"{summary['setup']['dataset']} ({summary['setup']['subset']}), {summary['setup']['test_requests']} test requests"

    fig, (bars, lines) = plt.subplots(1, 2, figsize=(12, 4.5))
    width = 0.8 / len(_ACCURACY)
    for j, (key, label) in enumerate(_ACCURACY):
        xs = [i + (j - 1) * width for i in range(len(names))]
        bars.bar(xs, [methods[n]["scores"][key] for n in names], width, label=label)
    bars.set_xticks(range(len(names)), names)
    bars.set_ylim(0, 1)
    bars.set_ylabel("score")
    bars.set_title("accuracy per method")
    for i, n in enumerate(names):
        counts = sorted(int(k) for k in methods[n]["by_calls"])
        color = f"C{i}"
        lines.plot(
            counts,
            [methods[n]["by_calls"][str(k)]["argument_f1"] for k in counts],
            "o-",
            color=color,
            label=f"{n} argument F1",
        )
        lines.plot(
            counts,
            [methods[n]["by_calls"][str(k)]["tool_f1"] for k in counts],
            "s--",
            color=color,
            alpha=0.6,
            label=f"{n} tool F1",
        )
    top = summary.get("ceiling")
    if top:
        bars.axhline(top["argument_f1"], color="black", linestyle=":", label="ceiling (argument F1)")
        by = {int(k): v for k, v in top["argument_f1_by_calls"].items()}
        lines.plot(sorted(by), [by[k] for k in sorted(by)], "x:", color="black", label="ceiling argument F1")
    bars.legend(loc="upper left")
    lines.set_xlabel("gold calls per request")
    lines.set_ylim(0, 1)
    lines.set_title("accuracy per number of calls")
    lines.xaxis.get_major_locator().set_params(integer=True)
    lines.legend(fontsize=7, ncol=2)
    fig.suptitle(title)
    fig.tight_layout()
    paths = [out / "accuracy.png"]
    fig.savefig(paths[0], dpi=110)
    plt.close(fig)

    paths.append(out / "cost.png")
    _plot_cost(plt, methods, title, paths[1])
    return paths


def _plot_cost(plt: Any, methods: dict[str, Any], title: str, path: Path) -> None:
    """Draws each method's accuracy against its prompt tokens and its seconds per request into ``path``."""
    names = list(methods)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, (key, label) in zip(
        axes,
        (("prompt_tokens_per_request", "prompt tokens per request"), ("seconds_per_request", "seconds per request")),
    ):
        for i, n in enumerate(names):
            x = max(methods[n]["cost"][key], 1e-3)
            tool, argument = methods[n]["scores"]["tool_f1"], methods[n]["scores"]["argument_f1"]
            ax.plot([x, x], [argument, tool], "-", color=f"C{i}", alpha=0.5)
            ax.scatter([x], [argument], marker="o", s=60, color=f"C{i}")
            ax.scatter([x], [tool], marker="s", s=60, color=f"C{i}")
            ax.annotate(n, (x, tool), textcoords="offset points", xytext=(7, -3), fontsize=9, color=f"C{i}")
        ax.set_xscale("log")
        ax.set_xlabel(label + " (log)")
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("F1")
        ax.set_title(f"accuracy against {label}")
    axes[0].scatter([], [], marker="s", color="gray", label="tool F1")
    axes[0].scatter([], [], marker="o", color="gray", label="argument F1")
    axes[0].legend(fontsize=8, loc="upper right")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(summary: dict[str, Any], out: Path) -> list[Path]:
    """Writes ``report.md`` and the plots into ``out``; returns the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    report = out / "report.md"
    report.write_text(markdown(summary), encoding="utf-8")
    return [report, *plot(summary, out)]
