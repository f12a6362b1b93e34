"""A memory bank on disk: a folder like a peft adapter's.

``bank.safetensors`` holds the rows (``[n_tools, hidden]``); ``bank.json`` holds the format
version, the backbone's name, fingerprint and adaptation, and each tool's spec, training
record and the requests kept for rehearsal (`AgentMem.learn_tools`), in row order. A bank
learned on an adapted backbone also holds ``adapter/``: the LoRA of the adaptation phase, so
that the bank can rebuild its backbone from the base. A save writes a hidden sibling folder
and swaps it into place (`agentmem.atomic`), so a crash never leaves half a bank.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from agentmem.adapter import Adapter
from agentmem.atomic import atomic_folder, recover
from agentmem.errors import BankError, BankFormatWarning, SchemaError
from agentmem.tools.examples import Call, Example
from agentmem.tools.spec import ToolSpec

# Version 2 keeps each schema's property order (the order the rows were trained to write
# arguments in); version 1 wrote bank.json with sorted keys, so that order is lost.
FORMAT_VERSION = 2
_SORTED_FORMAT = 1
ROWS_FILE = "bank.safetensors"
META_FILE = "bank.json"
ROWS_KEY = "rows"
ADAPTER_DIR = "adapter"


@dataclass
class SavedBank:
    """What a bank folder holds."""

    backbone_name: str
    fingerprint: str
    specs: list[ToolSpec]
    training: dict[str, dict[str, Any]]
    rows: torch.Tensor
    adapter: Adapter | None = None  # the adaptation merged into the backbone, if any
    kept: dict[str, list[Example]] = field(default_factory=dict)  # requests for rehearsal, per tool


def save_bank(path: str | os.PathLike[str], bank: SavedBank) -> Path:
    """Writes the bank folder atomically (replacing an existing one); returns its path."""
    target = Path(path)
    meta = {
        "format_version": FORMAT_VERSION,
        "backbone": {
            "name": bank.backbone_name,
            "fingerprint": bank.fingerprint,
            "adaptation": bank.adapter.id if bank.adapter is not None else None,
        },
        "tools": [
            {
                "row": i,
                "spec": spec.to_dict(),
                "training": bank.training.get(spec.name, {}),
                "kept_examples": [asdict(ex) for ex in bank.kept.get(spec.name, [])],
            }
            for i, spec in enumerate(bank.specs)
        ],
    }
    with atomic_folder(target) as staging:
        save_file({ROWS_KEY: bank.rows.detach().float().contiguous().cpu()}, str(staging / ROWS_FILE))
        (staging / META_FILE).write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
        if bank.adapter is not None:
            bank.adapter.save(staging / ADAPTER_DIR)
    return target


def load_bank(path: str | os.PathLike[str]) -> SavedBank:
    """Reads a bank folder, checking every part; raises BankError naming what is wrong."""
    folder = recover(path)  # a save killed mid-swap on a file system without atomic exchange
    if not folder.is_dir():
        raise BankError(f"no memory bank at {folder}: expected a folder with {META_FILE} and {ROWS_FILE}")
    for name in (META_FILE, ROWS_FILE):
        if not (folder / name).is_file():
            raise BankError(f"memory bank {folder} is missing {name}")
    try:
        meta = json.loads((folder / META_FILE).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BankError(f"{folder / META_FILE} is corrupted (not JSON): {exc}") from exc
    if not isinstance(meta, dict) or "format_version" not in meta:
        raise BankError(f"{folder / META_FILE} is not an agentmem bank: no format_version")
    if meta["format_version"] == _SORTED_FORMAT:
        warnings.warn(
            f"{folder} was saved in bank format {_SORTED_FORMAT}, which sorted each schema's properties "
            "alphabetically; the order the tools were learned with is lost, so arguments are decoded in "
            "alphabetical key order and plans may differ from the bank it was saved from. Learn the tools "
            "again (their kept requests are in bank.json) or save again from a session that learned them.",
            BankFormatWarning,
            stacklevel=2,
        )
    elif meta["format_version"] != FORMAT_VERSION:
        raise BankError(
            f"{folder} has bank format version {meta['format_version']!r}; this agentmem reads versions "
            f"{_SORTED_FORMAT} and {FORMAT_VERSION}"
        )
    try:
        backbone = meta["backbone"]
        entries = sorted(meta["tools"], key=lambda t: t["row"])
        specs = [ToolSpec.from_dict(t["spec"]) for t in entries]
        training = {spec.name: dict(t.get("training", {})) for spec, t in zip(specs, entries)}
        kept = {spec.name: [_example(e) for e in t.get("kept_examples", [])] for spec, t in zip(specs, entries)}
        name, fingerprint = str(backbone["name"]), str(backbone["fingerprint"])
    except (KeyError, TypeError, AttributeError, SchemaError) as exc:
        raise BankError(f"{folder / META_FILE} is corrupted: {type(exc).__name__}: {exc}") from exc
    try:
        rows = load_file(str(folder / ROWS_FILE))[ROWS_KEY]
    except (SafetensorError, OSError, KeyError) as exc:
        raise BankError(f"{folder / ROWS_FILE} is corrupted: {exc}") from exc
    if rows.ndim != 2 or rows.shape[0] != len(specs):
        raise BankError(f"{folder} is inconsistent: {len(specs)} tools in {META_FILE} but rows of shape {tuple(rows.shape)}")
    if [t["row"] for t in entries] != list(range(len(specs))):
        raise BankError(f"{folder / META_FILE} is corrupted: tool rows are not 0..{len(specs) - 1}")
    adaptation = backbone.get("adaptation")
    adapter = Adapter.load(folder / ADAPTER_DIR) if adaptation is not None or (folder / ADAPTER_DIR).exists() else None
    if (adapter.id if adapter is not None else None) != adaptation:
        found = adapter.id if adapter is not None else "no adapter folder"
        raise BankError(f"{folder} is inconsistent: {META_FILE} names adaptation {adaptation}, {ADAPTER_DIR}/ holds {found}")
    return SavedBank(backbone_name=name, fingerprint=fingerprint, specs=specs, training=training, rows=rows, adapter=adapter, kept=kept)


def _example(raw: dict[str, Any]) -> Example:
    calls = tuple(Call(name=str(c["name"]), arguments=dict(c["arguments"])) for c in raw["calls"])
    return Example(query=str(raw["query"]), calls=calls)
