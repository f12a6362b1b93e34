"""The prompting baselines: in-context learning (ICL) and retrieval-augmented prompting (RAG).

Prompt, in the backbone's chat template (SmolLM2's has no tool section, so the tools go in
the system message in the compact format of `agentmem.eval.textplan`):

* system: the instruction and one line per tool: every tool of the inventory (ICL), or
  the ``rag_k`` tools retrieved for the request (RAG, below);
* demonstrations: ``demonstrations`` training requests as earlier user/assistant turns, the
  assistant writing the gold plan as text, each plan at most 160 tokens (training requests
  hold no result reference: the runner leaves those out, so no demonstration shows one). ICL draws them
  once: in a seeded shuffle of the training requests, the first ones that each bring a
  tool not shown yet (variety at little cost). RAG retrieves them per request: the most
  similar training requests (the most similar last, next to the request);
* the request as the last user turn.

RAG retrieval, with BM25 (`agentmem.eval.bm25`). Matching the request against the tools'
own text (name, description, parameter names and descriptions) finds few of the tools a
ComplexFuncBench request needs (recall@5 of about 0.27 on the standard split), because
requests state goals ("a hotel near Tokyo Tower") while plans need helper tools
(``Search_Hotel_Destination`` first). So RAG retrieves through the training requests, as
one would with a log of solved requests: the 10 training requests most similar to the
request (BM25 over their queries) vote for the tools they call, each with its BM25 score;
the tools' own text breaks ties (weight 1e-3). Recall@5 is then about 0.85.

Output: one ``name {json}`` line per call, parsed by `parse_plan` against the whole
inventory. Generation is greedy; the prompt start shared by all requests (for ICL, all
but the request) is prefilled once (`agentmem.eval.generation`), prompt tokens are
still counted in full.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from typing import Any

from agentmem.encoding import prompt_ids
from agentmem.eval.bm25 import BM25
from agentmem.eval.generation import generate_plans
from agentmem.eval.methods import FitRecord, Method, MethodUnavailableError, Prediction
from agentmem.eval.textplan import render_plan, system_prompt
from agentmem.tools.spec import ToolSpec, to_tool_spec

__all__ = ["ICLMethod", "RAGMethod"]

_MAX_DEMO_TOKENS = 160
_VOTERS = 10  # training requests that vote for tools in RAG
_TIE_WEIGHT = 1e-3  # weight of the tools' own text in RAG's ranking


class ICLMethod(Method):
    """Every tool schema in the prompt, plus a few demonstrations."""

    name = "icl"

    def fit(self, train: Sequence[dict], tools: dict[str, dict]) -> FitRecord:
        started = time.perf_counter()
        self.tools = dict(tools)
        self.specs: dict[str, ToolSpec] = {name: to_tool_spec(tool) for name, tool in tools.items()}
        self.schemas = {name: spec.parameters for name, spec in self.specs.items()}
        self._prepare(train)
        return FitRecord(seconds=time.perf_counter() - started, trainable_parameters=0, examples=len(train))

    def _prepare(self, train: Sequence[dict]) -> None:
        """Draws the demonstrations (RAG builds its indexes instead)."""
        self.demos = self._demonstrations(train)

    def _tools_for(self, query: str) -> list[str]:
        return list(self.tools)

    def _demos_for(self, query: str) -> list[dict]:
        return self.demos

    def _short(self, example: dict) -> bool:
        text = render_plan(example["calls"], self.schemas)
        return len(self.backbone.tokenizer(text, add_special_tokens=False)["input_ids"]) <= _MAX_DEMO_TOKENS

    def _demonstrations(self, train: Sequence[dict]) -> list[dict]:
        order = list(range(len(train)))
        random.Random(f"demos:{self.settings.seed}").shuffle(order)
        shown: set[str] = set()
        demos: list[dict] = []
        for i in order:
            if len(demos) == self.settings.demonstrations:
                break
            names = {c["name"] for c in train[i]["calls"]}
            if not names <= shown and self._short(train[i]):
                demos.append(train[i])
                shown |= names
        return demos

    def _messages(self, query: str, tool_names: Sequence[str], demos: Sequence[dict]) -> list[dict[str, Any]]:
        messages = [{"role": "system", "content": system_prompt([self.tools[n] for n in tool_names])}]
        for demo in demos:
            messages.append({"role": "user", "content": demo["query"]})
            messages.append({"role": "assistant", "content": render_plan(demo["calls"], self.schemas)})
        messages.append({"role": "user", "content": query})
        return messages

    def predict(self, queries: Sequence[str]) -> list[Prediction]:
        tokenizer = self.backbone.tokenizer
        prompts = [prompt_ids(tokenizer, self._messages(q, self._tools_for(q), self._demos_for(q))) for q in queries]
        context = getattr(self.backbone.model.config, "max_position_embeddings", None)
        longest = max((len(p) for p in prompts), default=0)
        if context is not None and longest + self.settings.max_new_tokens > context:
            raise MethodUnavailableError(
                f"{self.name}: a prompt of {longest} tokens plus {self.settings.max_new_tokens} generated "
                f"exceeds the backbone's {context}-token context"
            )
        return generate_plans(self.backbone, prompts, self.specs, self.settings, self.name)


class RAGMethod(ICLMethod):
    """Tools and demonstrations retrieved per request (BM25), then as ICL."""

    name = "rag"

    def _prepare(self, train: Sequence[dict]) -> None:
        self.train = list(train)
        self.short = [self._short(ex) for ex in self.train]
        self.requests = BM25([ex["query"] for ex in self.train])
        self.names = list(self.tools)
        self.documents = BM25([_document(self.tools[n]) for n in self.names])

    def _tools_for(self, query: str) -> list[str]:
        votes = self.requests.scores(query)
        score = {name: _TIE_WEIGHT * s for name, s in zip(self.names, self.documents.scores(query))}
        for i in sorted(range(len(votes)), key=lambda i: (-votes[i], i))[:_VOTERS]:
            for name in {c["name"] for c in self.train[i]["calls"]}:
                score[name] += votes[i]
        return sorted(self.names, key=lambda n: -score[n])[: self.settings.rag_k]

    def _demos_for(self, query: str) -> list[dict]:
        ranked = self.requests.top(query, len(self.train))
        demos = [self.train[i] for i in ranked if self.short[i]][: self.settings.demonstrations]
        return demos[::-1]  # the most similar one last, next to the request


def _document(tool: dict) -> str:
    properties = (tool.get("parameters") or {}).get("properties") or {}
    parts = [tool["name"], tool.get("description") or ""]
    for name, schema in properties.items():
        parts.append(name)
        if isinstance(schema, dict) and isinstance(schema.get("description"), str):
            parts.append(schema["description"])
    return " ".join(parts)
