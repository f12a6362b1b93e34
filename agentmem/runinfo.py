"""What a figure was measured on, and the Markdown record a benchmark files it in.

One machine description for every benchmark and record, and the parts every benchmark's
Markdown block is made of: a heading with date and machine, the command line that ran it,
tables, and the ``runs/<kind>-<date>.md`` file the block is appended to (BENCHMARKS.md
quotes those files).
"""

from __future__ import annotations

import datetime
import os
import platform
import shlex
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any


def machine(device: Any = "cpu") -> str:
    """``"x86_64 (2 cores), 2 torch threads, torch 2.13.0+cpu, cpu"``; a CUDA device by name.

    Args:
        device: A ``torch.device`` or its name, where the work ran.
    """
    import torch  # here, so that importing agentmem.runinfo stays light

    where = torch.device(device)
    name = torch.cuda.get_device_name(where) if where.type == "cuda" else str(where)
    return f"{platform.machine()} ({os.cpu_count()} cores), {torch.get_num_threads()} torch threads, torch {torch.__version__}, {name}"


def today() -> str:
    """The date a record is filed under: ISO, ``"2026-11-26"`` (its heading and its file name)."""
    return datetime.date.today().isoformat()


def heading(title: str, date: str, machine: str | None = None) -> str:
    """A record's heading: ``## title (date; machine)``.

    Args:
        title: What was measured.
        date: When (`today`).
        machine: Where (`machine`); None for a record whose parts ran on several machines
            and name them below the table.
    """
    return f"## {title} ({date}; {machine})" if machine else f"## {title} ({date})"


def command(module: str, argv: Sequence[str] | None = None) -> str:
    """The command line that ran ``module``, quoted for a shell: ``python -m module args``.

    Args:
        module: The benchmark's module, ``agentmem.eval.bench_learning``.
        argv: The arguments its ``main`` was given; None (run from a shell): this process's.
    """
    return shlex.join(["python", "-m", module, *(sys.argv[1:] if argv is None else argv)])


def table_row(cells: Sequence[Any]) -> str:
    """One Markdown table row, ``| a | b |``; benchmarks print each row as it is measured."""
    return "| " + " | ".join(str(cell) for cell in cells) + " |"


def table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    """A Markdown table's lines: the header, its separator, a row a line.

    Raises:
        ValueError: A row has another number of cells than the header (Markdown would shift
            its cells under the wrong columns without a word).
    """
    lines = [table_row(header), "|" + "---|" * len(header)]
    for cells in rows:
        if len(cells) != len(header):
            raise ValueError(f"a table row has {len(cells)} cells, its header {len(header)}: {list(cells)}")
        lines.append(table_row(cells))
    return lines


def record(*paragraphs: str | Sequence[str]) -> str:
    """A record's text: its paragraphs, each a string or a list of lines (a `table`), a blank
    line between two, a newline at the end."""
    return "\n\n".join(p if isinstance(p, str) else "\n".join(p) for p in paragraphs) + "\n"


def append_record(text: str, path: Path) -> Path:
    """Prints a record and appends it to ``path`` (folders made), a blank line after it, so
    that the runs of a day stack up in one file.

    Returns:
        ``path``.
    """
    print(text)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(text + "\n")
    return path


__all__ = ["append_record", "command", "heading", "machine", "record", "table", "table_row", "today"]
