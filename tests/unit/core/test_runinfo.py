"""One machine description for every benchmark and record, and the Markdown record writer."""

from __future__ import annotations

import os
import platform
import sys

import pytest
import torch

from agentmem.runinfo import append_record, command, heading, machine, record, table


def test_machine_names_the_processor_cores_threads_torch_and_device():
    text = machine("cpu")
    assert text.startswith(f"{platform.machine()} ({os.cpu_count()} cores), {torch.get_num_threads()} torch threads")
    assert text.endswith(f"torch {torch.__version__}, cpu")
    assert machine(torch.device("cpu")) == text


def test_heading_names_the_date_and_the_machine_when_there_is_one():
    assert heading("learn_tool throughput", "2026-11-26", "x86_64 (2 cores)") == (
        "## learn_tool throughput (2026-11-26; x86_64 (2 cores))"
    )
    assert heading("Forgetting", "2026-11-26") == "## Forgetting (2026-11-26)"


def test_command_is_the_shell_line_of_the_arguments_given_or_of_the_process(monkeypatch):
    assert command("agentmem.eval.bench_x", ["--adapter", "my dir", "--n", "3"]) == (
        "python -m agentmem.eval.bench_x --adapter 'my dir' --n 3"
    )
    assert command("agentmem.eval.bench_x", []) == "python -m agentmem.eval.bench_x"
    monkeypatch.setattr(sys, "argv", ["bench_x.py", "--sizes", "10,40"])
    assert command("agentmem.eval.bench_x") == "python -m agentmem.eval.bench_x --sizes 10,40"


def test_table_has_a_separator_per_column_and_rejects_a_row_of_another_width():
    assert table(["tools", "latency"], [[10, "0.50"], [40, "0.61"]]) == [
        "| tools | latency |",
        "|---|---|",
        "| 10 | 0.50 |",
        "| 40 | 0.61 |",
    ]
    assert table(["a"], []) == ["| a |", "|---|"]
    with pytest.raises(ValueError, match="3 cells, its header 2"):
        table(["tools", "latency"], [[10, "0.50", "extra"]])


def test_a_record_is_its_paragraphs_and_tables_a_blank_line_apart():
    text = record(heading("one", "2026-11-26"), "`python -m x`.", table(["x"], [[1]]), ["- a", "- b"])
    assert text == "## one (2026-11-26)\n\n`python -m x`.\n\n| x |\n|---|\n| 1 |\n\n- a\n- b\n"


def test_records_of_a_day_stack_up_in_one_file(tmp_path, capsys):
    path = tmp_path / "runs" / "bench-2026-11-26.md"  # the folder does not exist yet
    first, second = record("## one (2026-11-26)", ["| x |"]), record("## two (2026-11-26)")
    assert append_record(first, path) == path
    append_record(second, path)
    assert path.read_text() == "## one (2026-11-26)\n\n| x |\n\n## two (2026-11-26)\n\n"
    assert capsys.readouterr().out == first + "\n" + second + "\n"  # print's newline after each
