"""Banks on disk as `AgentMem`s: `AgentMem.save`, `AgentMem.load` and `AgentMem.from_saved`.

The folder format itself (files, format version, atomic writes) is `agentmem.bank_io`'s;
this module puts a bank read from disk onto its backbone (with the adapter it carries,
through `agentmem.adaptation.resolve.resolve_backbone`) and checks that they fit.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from typing_extensions import Self

from agentmem import distributed
from agentmem.adaptation.resolve import resolve_backbone
from agentmem.backbone import Backbone
from agentmem.bank_io import SavedBank, load_bank, save_bank
from agentmem.errors import BackboneMismatchError
from agentmem.memory import MemoryBank, mean_embedding
from agentmem.tools.examples import Example
from agentmem.tools.spec import ToolSpec

__all__ = ["PersistenceMixin"]


class PersistenceMixin:
    """`AgentMem`'s methods that save a bank and load one (the state is `AgentMem`'s)."""

    backbone: Backbone
    bank: MemoryBank
    _specs: dict[str, ToolSpec]
    _training: dict[str, dict[str, Any]]
    _kept: dict[str, list[Example]]

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Saves the bank (rows, specs, training records, backbone fingerprint, and the
        adapter of an adapted backbone) atomically. Under a multi-process launcher only the
        main process writes (every process holds the same bank)."""
        if not distributed.is_main_process():
            return Path(path)
        return save_bank(
            path,
            SavedBank(
                backbone_name=self.backbone.name,
                fingerprint=self.backbone.fingerprint,
                specs=self.tools,
                training=self._training,
                kept=self._kept,
                rows=self.bank.rows,
                adapter=self.backbone.adapter,
            ),
        )

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        backbone: str | Backbone | None = None,
        *,
        device: str | None = None,
        weights: str = "float32",
    ) -> Self:
        """Loads a saved bank onto its backbone.

        A bank learned on an adapted backbone carries its adapter, which is merged into
        the base backbone again (so the bank keeps working whatever adapter ships later).

        Args:
            path: The bank folder.
            backbone: The backbone to load onto (default: the one the bank names): its
                base, for a bank that carries an adapter.
            device: As in the constructor.
            weights: The weights planning computes with, as in the constructor (``"float32"``,
                ``"int8"`` or ``"bfloat16"``). A bank does not record them: its fingerprint is
                that of the float32 weights its rows were learned on, which the other planners
                are made from, so any bank plans at any of them; a bank saved from an
                int8-planning `AgentMem` loaded with ``weights="int8"`` plans as the live one did
                (likewise bfloat16).

        Raises:
            BankError: The folder is missing, corrupted, or of an unknown format version.
            BackboneMismatchError: The bank was learned on other backbone weights.
            ValueError: ``weights`` is not an allowed value.
        """
        return cls.from_saved(load_bank(path), backbone, device=device, path=path, weights=weights)

    @classmethod
    def from_saved(
        cls,
        saved: SavedBank,
        backbone: str | Backbone | None = None,
        *,
        device: str | None = None,
        path: str | os.PathLike[str] | None = None,
        weights: str = "float32",
    ) -> Self:
        """A bank already read from disk (`load_bank`), on its backbone; as `load`.

        Args:
            saved: The bank.
            backbone: As in `load`.
            device: As in the constructor.
            path: Where the bank was read from, for messages.
            weights: As in `load`.

        Raises:
            BackboneMismatchError: The bank was learned on other backbone weights.
        """
        source = backbone if backbone is not None else saved.backbone_name
        # a bank without adapter runs on the plain backbone it names, or on the one given as is
        adapter = saved.adapter if saved.adapter is not None else (None if isinstance(source, Backbone) else False)
        mem = cls(resolve_backbone(source, adapter, device=device), weights=weights)  # type: ignore[call-arg]
        where = f"the bank at {path}" if path is not None else "the bank"
        if mem.backbone.fingerprint != saved.fingerprint:
            raise BackboneMismatchError(
                f"{where} was learned on backbone {saved.backbone_name!r} ({saved.fingerprint}), "
                f"not on {mem.backbone.name!r} ({mem.backbone.fingerprint}); load it onto the backbone it was learned on"
            )
        if saved.rows.shape[1] != mem.backbone.hidden_size:
            raise BackboneMismatchError(
                f"{where} has rows of width {saved.rows.shape[1]}, the backbone's hidden size is {mem.backbone.hidden_size}"
            )
        mem.bank.add([s.name for s in saved.specs], mean_embedding(mem.backbone))
        mem.bank.rows = saved.rows.to(mem.bank.rows)
        mem._specs.update({s.name: s for s in saved.specs})
        mem._training.update(saved.training)
        mem._kept.update(saved.kept)
        return mem
