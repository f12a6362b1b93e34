"""What machine a figure was measured on: one description for every benchmark and record."""

from __future__ import annotations

import os
import platform
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


__all__ = ["machine"]
