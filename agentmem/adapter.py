"""Adapters: the LoRA of an adaptation on disk, merged into a backbone, and which backbone runs.

An `Adapter` keeps only what reproduces the merge: the LoRA weights
(``adapter.safetensors``, about 2 MB for SmolLM2-135M) and ``adapter.json`` (LoRA settings,
the base backbone's fingerprint, the training record). An adapted backbone's fingerprint
is derived from the base fingerprint and the adapter's hash (not from the merged floats,
which may differ in the last bit between machines), so banks learned on it refuse any other
backbone. The adapter made for the embedded backbone ships in ``agentmem/adaptations/``.

`resolve_backbone` is the one answer to "this backbone with this adapter": `AgentMem()`
(the shipped adapter by default), `AgentMem.load` (the bank's own adapter), the server's
bank registry and the evaluation all go through it. This module trains nothing: the
adaptation phase (`agentmem.adaptation`) and the LoRA trainer (`agentmem.lora`) build on it.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from agentmem import distributed
from agentmem.atomic import atomic_folder
from agentmem.backbone import Backbone, load_backbone
from agentmem.errors import BackboneError, BackboneMismatchError, BankError

__all__ = [
    "ADAPTER_CONFIG",
    "ADAPTER_WEIGHTS",
    "SHIPPED_DIR",
    "Adapter",
    "adapted_fingerprint",
    "apply_adapter",
    "inject_lora",
    "merge_lora",
    "resolve_backbone",
    "shipped_adapter",
]

ADAPTER_WEIGHTS = "adapter.safetensors"
ADAPTER_CONFIG = "adapter.json"
ADAPTER_FORMAT = 1
#: Adapters shipped with the package, one folder per backbone alias.
SHIPPED_DIR = Path(__file__).parent / "adaptations"


@dataclass
class Adapter:
    """The LoRA of an adaptation: enough to rebuild the adapted backbone from the base.

    Attributes:
        lora: ``{"r", "alpha", "dropout", "target_modules"}``.
        weights: The LoRA matrices, keyed as peft's ``get_peft_model_state_dict`` names them.
        base_name: The backbone it was trained on (alias, id or path).
        base_fingerprint: That backbone's fingerprint; the adapter refuses any other.
        training: How it was trained (command, corpus, steps, losses, seconds...).
    """

    lora: dict[str, Any]
    weights: dict[str, torch.Tensor]
    base_name: str
    base_fingerprint: str
    training: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        """Hash of the LoRA settings and weights."""
        digest = hashlib.sha256(json.dumps(self.lora, sort_keys=True).encode())
        for key in sorted(self.weights):
            digest.update(key.encode())
            digest.update(self.weights[key].detach().float().cpu().contiguous().numpy().tobytes())
        return "sha256:" + digest.hexdigest()[:24]

    def rescaled(self, factor: float) -> Adapter:
        """The same adapter merged at ``factor`` times its strength (LoRA alpha x ``factor``).

        A LoRA's update is ``alpha / r * B @ A``; scaling alpha interpolates between the
        plain backbone (0) and the trained adaptation (1). A new id follows (alpha is
        hashed), so banks learned on one strength never load onto another.

        Args:
            factor: The strength, > 0.

        Raises:
            ValueError: ``factor`` is not > 0.
        """
        if not factor > 0:
            raise ValueError(f"an adapter's merge scale must be > 0, got {factor}")
        lora = {**self.lora, "alpha": self.lora["alpha"] * factor}
        rescales = [*self.training.get("rescaled", []), {"from": self.id, "factor": factor}]
        return replace(self, lora=lora, training={**self.training, "rescaled": rescales})

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Writes ``adapter.safetensors`` and ``adapter.json`` into a folder, atomically.
        Under a multi-process launcher only the main process writes."""
        if not distributed.is_main_process():
            return Path(path)
        meta = {
            "format_version": ADAPTER_FORMAT,
            "id": self.id,
            "lora": self.lora,
            "base": {"name": self.base_name, "fingerprint": self.base_fingerprint},
            "training": self.training,
        }
        tensors = {k: v.detach().float().cpu().contiguous() for k, v in self.weights.items()}
        target = Path(path)
        with atomic_folder(target) as staging:
            save_file(tensors, str(staging / ADAPTER_WEIGHTS))
            (staging / ADAPTER_CONFIG).write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Adapter:
        """Reads an adapter folder; raises BankError naming what is missing or corrupted."""
        folder = Path(path)
        for name in (ADAPTER_CONFIG, ADAPTER_WEIGHTS):
            if not (folder / name).is_file():
                raise BankError(f"adapter folder {folder} is missing {name}")
        try:
            meta = json.loads((folder / ADAPTER_CONFIG).read_text())
            if meta.get("format_version") != ADAPTER_FORMAT:
                raise BankError(
                    f"{folder} has adapter format {meta.get('format_version')!r}; this agentmem reads {ADAPTER_FORMAT}"
                )
            adapter = cls(
                lora=dict(meta["lora"]),
                weights=load_file(str(folder / ADAPTER_WEIGHTS)),
                base_name=str(meta["base"]["name"]),
                base_fingerprint=str(meta["base"]["fingerprint"]),
                training=dict(meta.get("training", {})),
            )
        except (
            json.JSONDecodeError,
            UnicodeDecodeError,
            KeyError,
            TypeError,
            AttributeError,
            SafetensorError,
            OSError,
        ) as exc:
            raise BankError(f"adapter folder {folder} is corrupted: {type(exc).__name__}: {exc}") from exc
        if meta.get("id") != adapter.id:
            raise BankError(
                f"adapter folder {folder} is corrupted: its weights hash to {adapter.id}, not {meta.get('id')}"
            )
        return adapter


def adapted_fingerprint(base: str, adapter_id: str) -> str:
    """The fingerprint of a base backbone with an adapter merged in. Derived from the two
    hashes rather than from the merged floats, whose last bits may differ between machines."""
    return "sha256:" + hashlib.sha256(f"{base}+lora:{adapter_id}".encode()).hexdigest()[:24]


def inject_lora(model: torch.nn.Module, lora: dict[str, Any]) -> Any:
    """Injects a fresh LoRA (shape as in `Adapter.lora`) into ``model`` in place; returns the peft wrapper."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=int(lora["r"]),
        lora_alpha=lora["alpha"],
        lora_dropout=float(lora["dropout"]),
        target_modules=list(lora["target_modules"]),
        bias="none",
    )
    with warnings.catch_warnings():  # peft calls a transformers property deprecated in v5
        warnings.simplefilter("ignore", FutureWarning)
        return get_peft_model(model, config)


def merge_lora(peft_model: Any) -> torch.nn.Module:
    """Merges a peft LoRA into its model's weights; returns the plain model, frozen, in eval mode."""
    merged = peft_model.merge_and_unload()
    merged.eval()
    for param in merged.parameters():
        param.requires_grad_(False)
    return merged


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


def shipped_adapter(name: str) -> Adapter | None:
    """The adapter shipped with agentmem for a backbone alias, if there is one."""
    folder = SHIPPED_DIR / name
    return Adapter.load(folder) if (folder / ADAPTER_CONFIG).is_file() else None


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
