"""The banks a server serves, by name, on backbones loaded once and shared."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agentmem.adapters.server.errors import APIError
from agentmem.adapters.server.protocol import FOLDER_NAME
from agentmem.backbone import Backbone, check_weights
from agentmem.bank_io import META_FILE, load_bank
from agentmem.core import AgentMem
from agentmem.errors import BankError

__all__ = ["BankRegistry"]


class BankRegistry:
    """Banks by name, on backbones loaded once and shared.

    A bank loaded from disk goes onto the loaded backbone with its fingerprint, else onto its
    base backbone (loaded once per name; a bank that carries an adapter gets the adapted
    copy, which banks with the same adapter then share). Banks on one backbone plan on one
    copy of its ``int8`` or ``bfloat16`` weights too (`Backbone.with_weights` keeps it).

    Args:
        backbone: A backbone already loaded (e.g. a test model) that banks may run on.
        device: Where to load backbones named by banks.
        weights: The backbone weights every bank plans with (`AgentMem.weights`: one of
            `agentmem.backbone.WEIGHTS`), whether loaded from a folder at start or at run time,
            or added as an `AgentMem` (whose ``weights`` `add` sets). None (default): banks
            loaded from folders plan with ``float32``, an `AgentMem` with its own.

    Attributes:
        roots: The folders given to `add_paths`: the only place `find` looks for banks.
        weights: The ``weights`` given.

    Raises:
        ValueError: ``weights`` is not one of `agentmem.backbone.WEIGHTS` (the message names them).
    """

    def __init__(
        self, backbone: Backbone | None = None, *, device: str | None = None, weights: str | None = None
    ) -> None:
        if weights is not None:
            check_weights(weights)  # at start, before any bank loads
        self.device = device
        self.weights = weights
        self._banks: dict[str, tuple[AgentMem, int]] = {}  # name -> (bank, when it was added)
        self._backbones: dict[str, Backbone] = {}  # by fingerprint, and plain ones by name too
        self.roots: list[Path] = []
        if backbone is not None:
            self._remember(backbone)

    def _remember(self, backbone: Backbone) -> None:
        for key in [backbone.fingerprint] + ([f"name:{backbone.name}"] if backbone.adapter is None else []):
            self._backbones.setdefault(key, backbone)

    def add(self, name: str, source: str | Path | AgentMem, *, new_backbones: bool = True) -> AgentMem:
        """Adds (or replaces) the bank ``name``: a saved bank folder, or an `AgentMem`.

        Args:
            name: The bank's name (requests' ``model``).
            source: A bank folder or an `AgentMem` (switched to the registry's `weights`,
                when set).
            new_backbones: Whether a bank whose backbone the registry does not hold may load
                it (and fetch it, for a Hugging Face id). At run time it may not: a bank is
                data, and must not make the server load or download a model.

        Raises:
            BankError: The folder is not a bank.
            BackboneMismatchError: The bank does not fit the backbone it names.
            APIError: 400 ``backbone_not_served``, with ``new_backbones=False``.
            ValueError: The registry's ``weights`` are ``int8`` and the backbone is not on the CPU.
        """
        with AgentMem.lock:  # loading is a model call too; and the registry changes as one step
            memory = source if isinstance(source, AgentMem) else None
            if memory is None:
                saved = load_bank(source)
                if not new_backbones and saved.fingerprint not in self._backbones:
                    raise APIError(
                        400,
                        f"bank {name!r} was learned on backbone {saved.backbone_name!r} ({saved.fingerprint}), "
                        "which this server does not run; a bank loaded at run time must run on a backbone "
                        "the server already holds (start the server with it to load its backbone)",
                        code="backbone_not_served",
                    )
                backbone = self._backbones.get(saved.fingerprint) or self._backbones.get(f"name:{saved.backbone_name}")
                weights = self.weights or "float32"
                memory = AgentMem.from_saved(saved, backbone, device=self.device, path=source, weights=weights)
            elif self.weights is not None and memory.weights != self.weights:
                memory.weights = self.weights
            self._remember(memory.backbone)
            self._banks[name] = (memory, int(time.time()))
            return memory

    def add_paths(self, paths: Sequence[str | Path]) -> list[str]:
        """Adds each bank folder (named after it) or each bank inside a folder of banks."""
        added: list[str] = []
        for path in map(Path, paths):
            # Dot folders are saves in progress or left by a crash (agentmem.atomic), never banks.
            folders = (
                [path]
                if (path / META_FILE).is_file()
                else sorted(p for p in path.glob("*") if not p.name.startswith(".") and (p / META_FILE).is_file())
            )
            if not folders:
                raise BankError(f"no memory bank at {path}: expected a bank folder or a folder of banks")
            for folder in folders:
                if folder.name in added:
                    raise BankError(f"two banks are named {folder.name!r}; bank names come from folder names")
                self.add(folder.name, folder)
                added.append(folder.name)
            self.roots.append(path)
        return added

    def find(self, folder: str) -> Path | None:
        """The bank folder named ``folder`` among `roots` (a root itself, or a folder in one).

        Only a plain folder name is looked up, and only where it resolves inside its root (no
        symbolic link out of it), so no request can reach elsewhere in the file system.
        """
        if not re.fullmatch(FOLDER_NAME, folder):
            return None
        for root in self.roots:
            if (root / META_FILE).is_file():
                if root.name == folder:
                    return root
                continue
            candidate = root / folder
            if (candidate / META_FILE).is_file() and candidate.resolve().parent == root.resolve():
                return candidate
        return None

    def remove(self, name: str) -> None:
        """Removes a bank (its backbone stays loaded for the others)."""
        with AgentMem.lock:
            self.get(name)
            del self._banks[name]

    def get(self, name: str) -> AgentMem:
        """The bank ``name``; a 404 `APIError` naming the banks served if there is none."""
        return self._entry(name)[0]

    def _entry(self, name: str) -> tuple[AgentMem, int]:
        entry = self._banks.get(name)
        if entry is None:
            raise APIError(
                404,
                f"the model {name!r} does not exist: this server serves the banks "
                f"{', '.join(self.names()) or '(none)'}",
                param="model",
                code="model_not_found",
            )
        return entry

    def names(self) -> list[str]:
        return sorted(self._banks.copy())

    def models(self, name: str | None = None) -> list[dict[str, Any]]:
        """Every bank (or the one named) as an OpenAI model object, plus its tools, its backbone
        (name and fingerprint) and the backbone weights it plans with (``weights``: one of
        `agentmem.backbone.WEIGHTS`)."""
        entries = sorted(self._banks.copy().items()) if name is None else [(name, self._entry(name))]
        return [
            {
                "id": n,
                "object": "model",
                "created": created,
                "owned_by": "agentmem",
                "tools": list(memory.bank.names),
                "backbone": memory.backbone.name,
                "fingerprint": memory.backbone.fingerprint,
                "weights": memory.weights,
            }
            for n, (memory, created) in entries
        ]

    def backbones(self) -> int:
        """How many distinct backbones the banks run on."""
        return len({id(memory.backbone) for memory, _ in self._banks.copy().values()})
