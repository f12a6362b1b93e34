"""A memory bank on disk: a folder like a peft adapter's.

``bank.safetensors`` holds the rows (``[n_tools, hidden]``); ``bank.json`` holds the format
version, the backbone's name, fingerprint and adaptation, and each tool's spec, training
record and the requests kept for rehearsal (`AgentMem.learn_tools`), in row order. A bank
learned on an adapted backbone also holds ``adapter/``: the LoRA of the adaptation phase, so
that the bank can rebuild its backbone from the base. A save writes a hidden sibling folder
and swaps it into place (`agentmem.atomic`), so a crash never leaves half a bank.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import reprlib
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from agentmem.adaptation.adapter import Adapter
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
# Bounds on what a bank.json may hold. A bank is data a server may be pointed at, so a
# hostile or damaged file must be refused before it can exhaust memory or the stack.
MAX_META_BYTES = 64 << 20
MAX_DEPTH = 64  # JSON nesting; a tool's schema rarely goes past 10
MAX_TOOLS = 65_536
MAX_KEPT = 10_000  # kept requests per tool


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
    """Reads a bank folder, checking every part.

    Every field of ``bank.json`` is checked for its type before it is used, its size and
    nesting depth are bounded before it is parsed, and every row must be finite, so a
    damaged or hostile folder is a `BankError`, never another exception or a bank that
    plans garbage.

    Raises:
        BankError: The folder is missing, corrupted or inconsistent; the message names the
            file, the field and what is allowed.
    """
    folder = recover(path)  # a save killed mid-swap on a file system without atomic exchange
    if not folder.is_dir():
        raise BankError(f"no memory bank at {folder}: expected a folder with {META_FILE} and {ROWS_FILE}")
    for name in (META_FILE, ROWS_FILE):
        if not (folder / name).is_file():
            raise BankError(f"memory bank {folder} is missing {name}")
    meta = _read_meta(folder / META_FILE)
    _check_version(folder, meta)
    try:
        name, fingerprint, adaptation, entries = _check_meta(meta)
        specs = [ToolSpec.from_dict(t["spec"]) for t in entries]
    except (_Invalid, SchemaError) as exc:
        raise BankError(f"{folder / META_FILE} is corrupted: {exc}") from None
    duplicates = sorted({s.name for s in specs if sum(t.name == s.name for t in specs) > 1})
    if duplicates:
        raise BankError(
            f"{folder / META_FILE} is corrupted: tool names must be unique, found {', '.join(duplicates)} twice"
        )
    training = {spec.name: dict(t.get("training", {})) for spec, t in zip(specs, entries)}
    kept = {spec.name: [_example(e) for e in t.get("kept_examples", [])] for spec, t in zip(specs, entries)}
    rows = _read_rows(folder, specs)
    try:
        adapter = (
            Adapter.load(folder / ADAPTER_DIR) if adaptation is not None or (folder / ADAPTER_DIR).exists() else None
        )
    except BankError:
        raise
    except (ValueError, TypeError, RecursionError) as exc:  # Adapter.load checks less of its JSON than this module does
        raise BankError(f"adapter folder {folder / ADAPTER_DIR} is corrupted: {type(exc).__name__}: {exc}") from None
    if (adapter.id if adapter is not None else None) != adaptation:
        found = adapter.id if adapter is not None else "no adapter folder"
        raise BankError(
            f"{folder} is inconsistent: {META_FILE} names adaptation {adaptation}, {ADAPTER_DIR}/ holds {found}"
        )
    return SavedBank(
        backbone_name=name,
        fingerprint=fingerprint,
        specs=specs,
        training=training,
        rows=rows,
        adapter=adapter,
        kept=kept,
    )


def _check_version(folder: Path, meta: dict[str, Any]) -> None:
    """Refuses a bank format this agentmem does not read; warns about the sorted one."""
    version = meta.get("format_version")
    if version is None:
        raise BankError(f"{folder / META_FILE} is not an agentmem bank: no format_version")
    if version == _SORTED_FORMAT and _is(version, int):
        warnings.warn(
            f"{folder} was saved in bank format {_SORTED_FORMAT}, which sorted each schema's properties "
            "alphabetically; the order the tools were learned with is lost, so arguments are decoded in "
            "alphabetical key order and plans may differ from the bank it was saved from. Learn the tools "
            "again (their kept requests are in bank.json) or save again from a session that learned them.",
            BankFormatWarning,
            stacklevel=3,  # load_bank's caller
        )
    elif not (_is(version, int) and version == FORMAT_VERSION):
        raise BankError(
            f"{folder} has bank format version {reprlib.repr(version)}; this agentmem reads versions "
            f"{_SORTED_FORMAT} and {FORMAT_VERSION}"
        )


def _read_rows(folder: Path, specs: list[ToolSpec]) -> torch.Tensor:
    """The rows of ``bank.safetensors``, one per spec, every value finite."""
    try:
        rows = load_file(str(folder / ROWS_FILE))[ROWS_KEY]
    except (SafetensorError, OSError, KeyError) as exc:
        raise BankError(f"{folder / ROWS_FILE} is corrupted: {exc}") from exc
    if rows.ndim != 2 or rows.shape[0] != len(specs) or not rows.dtype.is_floating_point:
        raise BankError(
            f"{folder} is inconsistent: {len(specs)} tools in {META_FILE} but rows of shape "
            f"{tuple(rows.shape)} and dtype {rows.dtype} (expected [{len(specs)}, hidden], floating point)"
        )
    # A NaN or infinite row would not fail later: it plans calls made of whatever token wins.
    broken = [spec.name for spec, finite in zip(specs, torch.isfinite(rows).all(dim=1).tolist()) if not finite]
    if broken:
        raise BankError(
            f"{folder / ROWS_FILE} is corrupted: the rows of {', '.join(broken[:8])}"
            f"{' and others' if len(broken) > 8 else ''} hold NaN or infinite values; learn "
            f"{'that tool' if len(broken) == 1 else 'those tools'} again or restore the bank from a copy"
        )
    return rows


class _Invalid(Exception):
    """A field of bank.json of the wrong type or size; the message names it."""


# A JSON string, escapes included (the unrolled form: linear time on any input).
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


def _read_meta(path: Path) -> dict[str, Any]:
    """bank.json as an object, its size and nesting bounded before it is parsed."""
    size = path.stat().st_size
    if size > MAX_META_BYTES:
        raise BankError(f"{path} is {size} bytes, over the limit of {MAX_META_BYTES}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise BankError(f"{path} is corrupted (not UTF-8): {exc}") from None
    # Bracket depth outside strings, counted before parsing: deep nesting would otherwise
    # exhaust the parser's stack, or every recursive walk after it.
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", text))
    depth = max(itertools.accumulate(1 if c in "[{" else -1 for c in brackets), default=0)
    if depth > MAX_DEPTH:
        raise BankError(f"{path} is corrupted: JSON nested {depth} levels deep, over the limit of {MAX_DEPTH}")
    try:
        meta = json.loads(text)
    except (ValueError, RecursionError) as exc:  # ValueError: also integers past Python's digit limit
        raise BankError(f"{path} is corrupted (not JSON): {exc}") from None
    if not isinstance(meta, dict):
        raise BankError(f"{path} is not an agentmem bank: expected a JSON object, got {type(meta).__name__}")
    try:
        json.dumps(meta, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate (\ud800) written as an escape: no tokenizer takes it
        raise BankError(
            f"{path} is corrupted: {_surrogate_path(meta)} holds text that is not valid Unicode "
            "(a lone surrogate escape)"
        ) from None
    return meta


def _surrogate_path(value: Any) -> str:
    """The JSON path of the first string (key or value) that cannot be encoded as UTF-8."""
    stack: list[tuple[str, Any]] = [("(root)", value)]
    while stack:
        where, item = stack.pop()
        pairs = item.items() if isinstance(item, dict) else enumerate(item) if isinstance(item, list) else ()
        for key, child in pairs:
            step = f"{where}[{key!r}]" if isinstance(key, str) else f"{where}[{key}]"
            if isinstance(key, str) and not _encodable(key) or isinstance(child, str) and not _encodable(child):
                return step
            stack.append((step, child))
    return "(root)"


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _is(value: Any, kind: type | tuple[type, ...]) -> bool:
    """isinstance, except that a JSON true/false is not a number."""
    return isinstance(value, kind) and not (
        isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,))
    )


_KIND_NAMES = {dict: "an object", list: "a list", str: "a string", int: "an integer", type(None): "null"}


def _get(obj: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str, default: Any = ...) -> Any:
    """``obj[key]``, checked to be of ``kind``; raises _Invalid naming the field otherwise."""
    if key not in obj:
        if default is ...:
            raise _Invalid(f"{where} has no {key!r}")
        return default
    value = obj[key]
    if not _is(value, kind):
        kinds = kind if isinstance(kind, tuple) else (kind,)
        raise _Invalid(
            f"{where}.{key} must be {' or '.join(_KIND_NAMES.get(k, k.__name__) for k in kinds)}, "
            f"got {type(value).__name__} {reprlib.repr(value)}"
        )
    return value


def _check_meta(meta: dict[str, Any]) -> tuple[str, str, str | None, list[dict[str, Any]]]:
    """The backbone's name, fingerprint and adaptation, and the tool entries in row order."""
    backbone = _get(meta, "backbone", dict, "bank")
    name = _get(backbone, "name", str, "backbone")
    fingerprint = _get(backbone, "fingerprint", str, "backbone")
    adaptation = _get(backbone, "adaptation", (str, type(None)), "backbone", None)
    if not name:
        raise _Invalid("backbone.name is empty")
    tools = _get(meta, "tools", list, "bank")
    if len(tools) > MAX_TOOLS:
        raise _Invalid(f"{len(tools)} tools, over the limit of {MAX_TOOLS}")
    for i, entry in enumerate(tools):
        where = f"tools[{i}]"
        if not isinstance(entry, dict):
            raise _Invalid(f"{where} must be an object, got {type(entry).__name__} {reprlib.repr(entry)}")
        _get(entry, "row", int, where)
        _get(entry, "spec", dict, where)
        _get(entry, "training", dict, where, {})
        kept = _get(entry, "kept_examples", list, where, [])
        if len(kept) > MAX_KEPT:
            raise _Invalid(f"{where}.kept_examples holds {len(kept)} requests, over the limit of {MAX_KEPT}")
        for j, example in enumerate(kept):
            at = f"{where}.kept_examples[{j}]"
            if not isinstance(example, dict):
                raise _Invalid(f"{at} must be an object, got {type(example).__name__} {reprlib.repr(example)}")
            _get(example, "query", str, at)
            _get(example, "messages", list, at, [])
            for k, call in enumerate(_get(example, "calls", list, at)):
                if not isinstance(call, dict):
                    raise _Invalid(f"{at}.calls[{k}] must be an object, got {type(call).__name__} {reprlib.repr(call)}")
                _get(call, "name", str, f"{at}.calls[{k}]")
                _get(call, "arguments", dict, f"{at}.calls[{k}]")
    entries = sorted(tools, key=lambda t: t["row"])
    if [t["row"] for t in entries] != list(range(len(entries))):
        raise _Invalid(
            f"tool rows must be 0..{len(entries) - 1}, each once; got {reprlib.repr([t['row'] for t in tools])}"
        )
    return name, fingerprint, adaptation, entries


def _example(raw: dict[str, Any]) -> Example:
    calls = tuple(Call(name=c["name"], arguments=dict(c["arguments"])) for c in raw["calls"])
    return Example(query=raw["query"], calls=calls, messages=tuple(raw.get("messages", ())))
