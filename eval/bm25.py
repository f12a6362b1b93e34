"""BM25 (Okapi) over short documents, for the RAG baseline's tool retrieval. Pure Python.

Text is lower-cased and split into runs of letters and digits, with ``snake_case`` and
``camelCase`` words split too, so ``Search_Hotels_By_Coordinates`` and ``pickUpDate``
match the words of a request.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

__all__ = ["BM25", "words"]

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_WORD = re.compile(r"[a-z0-9]+")


def words(text: str) -> list[str]:
    """Lower-cased words of ``text`` (``snake_case`` and ``camelCase`` split)."""
    return _WORD.findall(_CAMEL.sub(" ", text).lower())


class BM25:
    """An index of documents scored against queries with BM25.

    Args:
        documents: The texts to index.
        k1: Term-frequency saturation.
        b: Length normalisation.
    """

    def __init__(self, documents: Sequence[str], k1: float = 1.5, b: float = 0.75) -> None:
        self.k1, self.b = k1, b
        self.docs = [Counter(words(d)) for d in documents]
        self.lengths = [sum(d.values()) for d in self.docs]
        self.mean_length = sum(self.lengths) / len(self.lengths) if self.docs else 0.0
        frequency = Counter(w for d in self.docs for w in d)
        n = len(self.docs)
        self.idf = {w: math.log(1 + (n - f + 0.5) / (f + 0.5)) for w, f in frequency.items()}

    def scores(self, query: str) -> list[float]:
        """The BM25 score of every document for ``query``."""
        terms = [w for w in words(query) if w in self.idf]
        out = []
        for doc, length in zip(self.docs, self.lengths):
            norm = self.k1 * (1 - self.b + self.b * length / (self.mean_length or 1.0))
            out.append(sum(self.idf[w] * doc[w] * (self.k1 + 1) / (doc[w] + norm) for w in terms if w in doc))
        return out

    def top(self, query: str, k: int) -> list[int]:
        """Indices of the ``k`` best documents, best first (ties: lower index first)."""
        scores = self.scores(query)
        return sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:k]
