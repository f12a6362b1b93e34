"""Multi-tool training requests composed from single-tool ones (the TokMem recipe).

A request that needs several tools is written as its parts in order, joined by connectors:
``"What's the weather in Oslo? Then, remind me to call mom at 18:00."`` with the calls of
each part, in the same order. `learn_tools(..., compose=n)` uses it to teach a bank to
chain memory tokens from single-call examples alone; the adaptation corpus uses it for its
2-4-call requests. Torch-free.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

from agentmem.tools.examples import Example

#: Words that open the second and later parts of a composed request.
CONNECTORS: tuple[str, ...] = ("Then,", "Also,", "After that,", "Next,", "And then")


def join_requests(parts: Sequence[tuple[str, Sequence[Any]]], rng: random.Random) -> str:
    """Joins the texts of single requests into one, each later part after a connector.

    Args:
        parts: ``(text, values)`` per part, in call order; ``values`` are the part's
            argument values, so that a first word that is a value (``"Paris weather?"``)
            keeps its capital when the part is lower-cased after a connector.
        rng: Chooses the connectors.

    Returns:
        The composed request, e.g. ``"Book a table for 4. Then, track parcel QX-1."``.
    """
    texts = []
    for i, (text, values) in enumerate(parts):
        text = text.strip()
        if text[-1] not in ".?!":  # each part becomes a sentence of its own
            text += "."
        texts.append(text if i == 0 else f"{rng.choice(CONNECTORS)} {_lower_first(text, values)}")
    return " ".join(texts)


def _lower_first(text: str, values: Sequence[Any]) -> str:
    """Lower-cases the first letter unless the first word is a name, an acronym or a value."""
    word = text.split(maxsplit=1)[0].strip(".,;:!?\"'")
    protected = {str(v) for v in values} | {w for v in values if isinstance(v, str) for w in v.split()}
    if not word[:1].isupper() or word == "I" or word.startswith("I'") or not word[1:].islower() or word in protected:
        return text
    return text[0].lower() + text[1:]


def compose_examples(
    examples: Mapping[str, Sequence[Example]],
    n: int,
    seed: int = 0,
    min_calls: int = 2,
    max_calls: int = 4,
) -> list[Example]:
    """Draws requests that chain 2-4 different tools from single-call examples.

    Args:
        examples: Single-call examples by tool name (other examples are ignored).
        n: How many requests to draw.
        seed: Seeds the draw; the same inputs and seed give the same requests.
        min_calls: Fewest calls in a request (at least 2).
        max_calls: Most calls in a request (capped by the number of tools).

    Returns:
        ``n`` examples, each with the calls of its parts in order.

    Raises:
        ValueError: Fewer than two tools have single-call examples, or bad bounds.
    """
    singles = {
        # a conversation's request leans on its context: it is no request on its own
        name: [e for e in exs if len(e.calls) == 1 and e.calls[0].name == name and not e.messages]
        for name, exs in examples.items()
    }
    singles = {name: exs for name, exs in singles.items() if exs}
    if n > 0 and len(singles) < 2:
        raise ValueError(
            f"composing multi-tool requests needs single-call examples of at least 2 tools, got {sorted(singles) or 'none'}"
        )
    if not 2 <= min_calls <= max_calls:
        raise ValueError(f"need 2 <= min_calls <= max_calls, got min_calls={min_calls}, max_calls={max_calls}")
    rng = random.Random(f"compose:{seed}")
    names = sorted(singles)
    out: list[Example] = []
    for _ in range(n):
        k = rng.randint(min(min_calls, len(names)), min(max_calls, len(names)))
        parts = [rng.choice(singles[name]) for name in rng.sample(names, k)]
        query = join_requests([(p.query, list(p.calls[0].arguments.values())) for p in parts], rng)
        out.append(Example(query=query, calls=tuple(p.calls[0] for p in parts)))
    return out
