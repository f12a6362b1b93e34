"""The embedded backbone comes with its shipped adaptation merged unless asked not to."""

from __future__ import annotations

import pytest

from agentmem import AgentMem
from agentmem.adaptation.adapter import adapted_fingerprint


@pytest.mark.backbone
def test_embedded_backbone_is_adapted_by_default(smollm):
    mem = AgentMem("smollm2-135m", device="cpu")
    assert mem.backbone.adapter is not None
    assert mem.backbone.fingerprint == adapted_fingerprint(smollm.fingerprint, mem.backbone.adapter.id)
    assert AgentMem("smollm2-135m", device="cpu", adapted=False).backbone.fingerprint == smollm.fingerprint
