"""The optional extras of the ``agentmem`` distribution, and the error for a missing one.

The core (`agentmem`, `agentmem.tools`, the ``agentmem`` command) needs only the core
install. The server, the LangChain adapter and the evaluation each need third-party
packages that a core install lacks; they are the extras ``[server]``, ``[langchain]`` and
``[eval]`` of pyproject.toml. A module of such a layer imports them under
``try``/``except ImportError`` and re-raises :func:`missing_extra`'s error, so that the
message says which extra to install, and how, instead of only naming a module.

This module imports nothing but `agentmem.errors`, so the core may use it freely.
"""

from __future__ import annotations

import importlib

from agentmem.errors import MissingExtraError

__all__ = ["EXTRAS", "missing_extra", "require_extra"]

#: extra -> (what needs it, the modules it provides that the layer imports). Kept in step
#: with [project.optional-dependencies] (tests/unit/core/test_packaging.py checks the names).
EXTRAS: dict[str, tuple[str, tuple[str, ...]]] = {
    "server": ("agentmem's server", ("fastapi", "uvicorn")),
    "langchain": ("agentmem's LangChain adapter", ("langchain_core",)),
    "eval": ("agentmem's evaluation", ("matplotlib",)),
}


def missing_extra(extra: str, cause: ImportError) -> MissingExtraError:
    """The error for a layer whose ``extra`` is missing; raise it ``from cause``.

    Args:
        extra: A key of :data:`EXTRAS`.
        cause: The ImportError of the missing module (its message ends the new one).

    Returns:
        A `MissingExtraError` (an ImportError) naming the extra and the pip command.
    """
    what, _ = EXTRAS[extra]
    return MissingExtraError(
        f"{what} needs the [{extra}] extra: pip install 'agentmem[{extra}]' ({cause})", name=cause.name
    )


def require_extra(extra: str) -> None:
    """Imports the modules of ``extra``; raises `MissingExtraError` if one is missing.

    For a command's first step (``agentmem serve``, ``agentmem eval``): it fails at once,
    not after minutes of work, when the layer's extra is not installed.

    Args:
        extra: A key of :data:`EXTRAS`.

    Raises:
        MissingExtraError: If a module of the extra cannot be imported.
    """
    for module in EXTRAS[extra][1]:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise missing_extra(extra, exc) from exc
