"""Which backbone runs: an adapter merged into a backbone, and the one answer to "this
backbone with this adapter".

`resolve_backbone` is that answer: `AgentMem()` (the shipped adapter by default),
`AgentMem.load` (the bank's own adapter), the server's bank registry and the evaluation all
go through it. This module trains nothing: the adaptation phase
(`agentmem.adaptation.adapt`) and the LoRA trainer (`agentmem.adaptation.lora`) build on it.
"""

from __future__ import annotations

import copy
import warnings

import torch

from agentmem.adaptation.adapter import (
    SHIPPED_DIR,
    Adapter,
    adapted_fingerprint,
    inject_lora,
    merge_lora,
    shipped_adapter,
)
from agentmem.backbone import Backbone, load_backbone
from agentmem.errors import BackboneError, BackboneMismatchError

__all__ = ["adapted_backbone", "apply_adapter", "resolve_backbone"]


def adapted_backbone(base: Backbone, merged: torch.nn.Module, adapter: Adapter) -> Backbone:
    """The backbone of ``base``'s tokenizer on ``merged`` (``base``'s model with ``adapter``
    merged in, see `merge_lora`), with the adapted fingerprint."""
    return Backbone(
        name=base.name,
        model=merged,
        tokenizer=base.tokenizer,
        fingerprint=adapted_fingerprint(base.fingerprint, adapter.id),
        adapter=adapter,
    )


def apply_adapter(backbone: Backbone, adapter: Adapter, *, copy_model: bool = True) -> Backbone:
    """Merges an adapter into a base backbone.

    Args:
        backbone: The base backbone the adapter was trained on.
        adapter: The adapter.
        copy_model: Merge into a copy (default) so that ``backbone`` stays as it was;
            pass False for a backbone nobody else holds.

    Raises:
        BackboneError: The backbone is already adapted.
        BackboneMismatchError: The adapter was trained on other base weights.
    """
    from peft import set_peft_model_state_dict

    if backbone.adapter is not None:
        raise BackboneError(f"backbone {backbone.name!r} is already adapted ({backbone.adapter.id})")
    if backbone.fingerprint != adapter.base_fingerprint:
        raise BackboneMismatchError(
            f"adapter {adapter.id} was trained on backbone {adapter.base_name!r} ({adapter.base_fingerprint}), "
            f"not on {backbone.name!r} ({backbone.fingerprint})"
        )
    model = copy.deepcopy(backbone.model) if copy_model else backbone.model
    peft_model = inject_lora(model, adapter.lora)
    result = set_peft_model_state_dict(peft_model, {k: v.to(backbone.device) for k, v in adapter.weights.items()})
    missing = [k for k in result.missing_keys if "lora_" in k]
    if missing or result.unexpected_keys:
        raise BackboneMismatchError(
            f"adapter {adapter.id} does not fit backbone {backbone.name!r}: "
            f"missing {missing[:3]}, unexpected {list(result.unexpected_keys)[:3]}"
        )
    return adapted_backbone(backbone, merge_lora(peft_model), adapter)


def resolve_backbone(
    backbone: str | Backbone, adapter: Adapter | bool | None = None, *, device: str | None = None
) -> Backbone:
    """This backbone with this adapter: the one place that decides what a bank runs on.

    Args:
        backbone: A name (loaded here) or a `Backbone` (never modified: an adapter is
            merged into a copy).
        adapter: An `Adapter`: that one, merged into the base (a `Backbone` that already
            carries it is returned as is). Otherwise the adaptation shipped for the backbone:
            ``None`` (default): a name gets it when one is shipped, a `Backbone` is used as
            given; ``True``: require it; ``False``: the plain backbone.
        device: Where to load a named backbone.

    Raises:
        BackboneError: ``adapter=True`` but nothing is shipped for this backbone, or
            ``adapter=False`` for a `Backbone` that is already adapted.
        BackboneMismatchError: The adapter was trained on other weights, or the `Backbone`
            already carries another adapter.
    """
    if isinstance(adapter, Adapter):
        return _with_adapter(backbone, adapter, device)
    if isinstance(backbone, Backbone):
        if adapter is False and backbone.adapter is not None:
            raise BackboneError(
                f"backbone {backbone.name!r} is already adapted ({backbone.adapter.id}); load the base one"
            )
        if adapter and backbone.adapter is None:
            return apply_adapter(backbone, _require_shipped(backbone.name))
        return backbone
    base = load_backbone(backbone, device=device)
    if adapter is False:
        return base
    shipped = _require_shipped(backbone) if adapter else shipped_adapter(backbone)
    if shipped is None:
        return base
    if adapter is None and shipped.base_fingerprint != base.fingerprint:
        warnings.warn(
            f"the shipped adaptation of {backbone!r} was made for weights {shipped.base_fingerprint}, these are "
            f"{base.fingerprint}; running without it (pass adapted=False to silence this)",
            stacklevel=3,
        )
        return base
    return apply_adapter(base, shipped, copy_model=False)


def _with_adapter(backbone: str | Backbone, adapter: Adapter, device: str | None) -> Backbone:
    if not isinstance(backbone, Backbone):
        return apply_adapter(load_backbone(backbone, device=device), adapter, copy_model=False)
    if backbone.adapter is None:
        return apply_adapter(backbone, adapter)
    if backbone.adapter.id != adapter.id:
        raise BackboneMismatchError(
            f"backbone {backbone.name!r} carries adapter {backbone.adapter.id}, not {adapter.id}; give its base backbone"
        )
    return backbone


def _require_shipped(name: str) -> Adapter:
    adapter = shipped_adapter(name)
    if adapter is None:
        have = sorted(p.name for p in SHIPPED_DIR.iterdir() if p.is_dir()) if SHIPPED_DIR.is_dir() else []
        raise BackboneError(
            f"no shipped adaptation for backbone {name!r} (shipped: {', '.join(have) or 'none'}); "
            "make one with AgentMem.adapt(corpus) or `agentmem adapt`"
        )
    return adapter
