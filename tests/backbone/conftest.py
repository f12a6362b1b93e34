"""The real embedded backbone, plain and adapted: each loaded once per session."""

from __future__ import annotations

import pytest

from agentmem.backbone import DEFAULT_BACKBONE, Backbone, load_backbone


@pytest.fixture(scope="session")
def smollm() -> Backbone:
    """The real embedded backbone, loaded once per session."""
    return load_backbone(DEFAULT_BACKBONE, device="cpu")


@pytest.fixture(scope="session")
def smollm_adapted() -> Backbone:
    """The real embedded backbone with its shipped adaptation merged, loaded once per session."""
    from agentmem import AgentMem

    return AgentMem(DEFAULT_BACKBONE, device="cpu").backbone
