"""A bank saved on disk, for the server's tests that load banks as an operator would."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentmem import AgentMem
from agentmem.backbone import Backbone
from tests.conftest import LIGHT, UNIT, tiny_backbone


@pytest.fixture(scope="module")
def saved_home(tokenizer, tmp_path_factory) -> tuple[Backbone, Path]:
    """The tiny backbone and a folder of banks holding ``home`` (two tools, enum and boolean
    arguments: constrained decoding stays short), learned in one quick epoch."""
    backbone = tiny_backbone(tokenizer)
    memory = AgentMem(backbone)
    memory.learn_tools(
        [
            (
                UNIT,
                [
                    {"query": q, "arguments": {"unit": u}}
                    for q, u in [("use celsius", "celsius"), ("fahrenheit please", "fahrenheit")] * 2
                ],
            ),
            (
                LIGHT,
                [{"query": q, "arguments": {"on": o}} for q, o in [("lights on", True), ("lights out", False)] * 2],
            ),
        ],
        epochs=1,
        progress=False,
    )
    root = tmp_path_factory.mktemp("served")
    memory.save(root / "home")
    return backbone, root
