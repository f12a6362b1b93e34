"""One machine description for every benchmark and record."""

from __future__ import annotations

import os
import platform

import torch

from agentmem.runinfo import machine


def test_machine_names_the_processor_cores_threads_torch_and_device():
    text = machine("cpu")
    assert text.startswith(f"{platform.machine()} ({os.cpu_count()} cores), {torch.get_num_threads()} torch threads")
    assert text.endswith(f"torch {torch.__version__}, cpu")
    assert machine(torch.device("cpu")) == text
