"""Adapters on disk: the LoRA of an adaptation, and the adaptations shipped with agentmem.

An `Adapter` keeps only what reproduces the merge: the LoRA weights
(``adapter.safetensors``, about 2 MB for SmolLM2-135M) and ``adapter.json`` (LoRA settings,
the base backbone's fingerprint, the training record). An adapted backbone's fingerprint
is derived from the base fingerprint and the adapter's hash (not from the merged floats,
which may differ in the last bit between machines), so banks learned on it refuse any other
backbone. The adapter made for the embedded backbone ships in ``agentmem/adaptations/``.

This module needs no backbone (`agentmem.backbone` names an `Adapter` without importing
this module's users): merging an adapter into a backbone and choosing which
backbone runs are `agentmem.adaptation.resolve`'s; here are only the peft steps
(`inject_lora`, `merge_lora`) that the trainer shares.
"""

from __future__ import annotations

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
from agentmem.errors import BankError

__all__ = [
    "ADAPTER_CONFIG",
    "ADAPTER_WEIGHTS",
    "SHIPPED_DIR",
    "Adapter",
    "adapted_fingerprint",
    "inject_lora",
    "merge_lora",
    "shipped_adapter",
]

ADAPTER_WEIGHTS = "adapter.safetensors"
ADAPTER_CONFIG = "adapter.json"
ADAPTER_FORMAT = 1
#: Adapters shipped with the package, one folder per backbone alias.
SHIPPED_DIR = Path(__file__).parent.parent / "adaptations"


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


def shipped_adapter(name: str) -> Adapter | None:
    """The adapter shipped with agentmem for a backbone alias, if there is one."""
    folder = SHIPPED_DIR / name
    return Adapter.load(folder) if (folder / ADAPTER_CONFIG).is_file() else None
