"""Greedy text generation for the text baselines, with the prompts' shared start run once.

Every ICL prompt starts with the same system prompt (instruction, tool list) and the same
demonstrations; only the request differs. A serving engine with a prefix cache prefills
that shared start once; so does :func:`generate`: the longest common start of all prompts
is prefilled once (batch of one), its key/value cache broadcast to each batch, and each
prompt's own tokens follow. Prompt tokens are still counted in full: the model attends
over all of them at every step. Rows stop at end-of-sequence, at ``max_new_tokens``, at a
line longer than ``max_line_tokens`` (one call per line: TokMem's decoder likewise ends
a call whose arguments run past 128 tokens), or when ``stop(text)`` says so (checked at
each newline). :func:`generate_plans` puts it
together for the text baselines: generate, then parse each output into a `Prediction`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm
from transformers import DynamicCache

from agentmem.backbone import Backbone, cache_argument, returned_cache
from agentmem.encoding import common_prefix
from agentmem.eval.methods import MethodSettings, Prediction
from agentmem.eval.textplan import parse_plan, should_stop
from agentmem.tools.spec import ToolSpec

__all__ = ["Generation", "generate", "generate_plans"]


@dataclass
class Generation:
    """One prompt's output: the text and how many tokens were generated."""

    text: str
    generated_tokens: int


@torch.no_grad()
def _prefill_shared(backbone: Backbone, shared: Sequence[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    if not shared:
        return []
    body = backbone.model.get_decoder()
    out = body(input_ids=torch.tensor([list(shared)], device=backbone.device), use_cache=True)
    return [(layer.keys, layer.values) for layer in returned_cache(out).layers]


@torch.no_grad()
def generate(
    backbone: Backbone,
    prompts: Sequence[Sequence[int]],
    *,
    max_new_tokens: int,
    max_line_tokens: int | None = None,
    stop: Callable[[str], bool] | None = None,
    batch_size: int = 8,
    on_batch: Callable[[int], None] | None = None,
) -> list[Generation]:
    """Greedy decoding of many prompts, ``batch_size`` at a time.

    Args:
        backbone: The model (any causal LM with a KV cache).
        prompts: Token ids of each prompt.
        max_new_tokens: Most tokens generated per prompt.
        max_line_tokens: Most tokens in one line of output (None: no limit).
        stop: Called with a row's text at each newline; True ends the row.
        batch_size: Prompts decoded together.
        on_batch: Called with the number of prompts after each batch (progress bars).

    Returns:
        One `Generation` per prompt, in order.
    """
    if not prompts:
        return []
    shared = common_prefix(prompts)
    shared_cache = _prefill_shared(backbone, shared)
    out: list[Generation] = []
    for start in range(0, len(prompts), batch_size):
        chunk = [list(p[len(shared) :]) for p in prompts[start : start + batch_size]]
        out.extend(_generate_batch(backbone, shared_cache, len(shared), chunk, max_new_tokens, max_line_tokens, stop))
        if on_batch is not None:
            on_batch(len(chunk))
    return out


def _generate_batch(
    backbone: Backbone,
    shared_cache: list[tuple[torch.Tensor, torch.Tensor]],
    shared_length: int,
    own: list[list[int]],
    max_new_tokens: int,
    max_line_tokens: int | None,
    stop: Callable[[str], bool] | None,
) -> list[Generation]:
    device, tokenizer = backbone.device, backbone.tokenizer
    eos = backbone.eos_token_id
    stops = backbone.stop_token_ids  # a base model ends a text with its own eos, not the end of turn
    body, head = backbone.model.get_decoder(), backbone.model.get_output_embeddings()
    n, width = len(own), max(len(o) for o in own)

    # each prompt's own tokens, left-padded so that all end in the last column
    ids = torch.full((n, width), eos, dtype=torch.long)
    mask = torch.zeros(n, shared_length + width, dtype=torch.long)
    mask[:, :shared_length] = 1
    for row, tokens in enumerate(own):
        ids[row, width - len(tokens) :] = torch.tensor(tokens, dtype=torch.long)
        mask[row, shared_length + width - len(tokens) :] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, shared_length:]
    layers = [(k.expand(n, -1, -1, -1), v.expand(n, -1, -1, -1)) for k, v in shared_cache]
    cache = DynamicCache(layers, config=backbone.model.config) if layers else DynamicCache(config=backbone.model.config)
    result = body(
        input_ids=ids.to(device),
        attention_mask=mask.to(device),
        position_ids=positions.to(device),
        use_cache=True,
        **cache_argument(body, cache),
    )
    cache, hidden = returned_cache(result), result.last_hidden_state[:, -1]
    next_position = positions[:, -1] + 1

    generated: list[list[int]] = [[] for _ in range(n)]
    line_length = [0] * n
    done = [False] * n
    newline = set(tokenizer("\n", add_special_tokens=False)["input_ids"])
    for _ in range(max_new_tokens):
        tokens = head(hidden).argmax(-1).tolist()
        for row, token in enumerate(tokens):
            if done[row]:
                continue
            if token in stops:
                done[row] = True
                continue
            generated[row].append(token)
            ends_line = token in newline or "\n" in tokenizer.decode([token])
            line_length[row] = 0 if ends_line else line_length[row] + 1
            if (
                len(generated[row]) >= max_new_tokens
                or (max_line_tokens is not None and line_length[row] > max_line_tokens)
                or (stop is not None and ends_line and stop(tokenizer.decode(generated[row])))
            ):
                done[row] = True
        if all(done):
            break
        active = torch.tensor([not d for d in done], dtype=torch.long)
        step = torch.tensor([[t if not d else eos] for t, d in zip(tokens, done)], dtype=torch.long)
        mask = torch.cat([mask, active.unsqueeze(1)], dim=1)
        result = body(
            input_ids=step.to(device),
            attention_mask=mask.to(device),
            position_ids=next_position.unsqueeze(1).to(device),
            use_cache=True,
            **cache_argument(body, cache),
        )
        cache, hidden = returned_cache(result), result.last_hidden_state[:, -1]
        next_position = next_position + active
    return [Generation(text=tokenizer.decode(g, skip_special_tokens=True), generated_tokens=len(g)) for g in generated]


def generate_plans(
    backbone: Backbone,
    prompts: Sequence[Sequence[int]],
    specs: Mapping[str, ToolSpec],
    settings: MethodSettings,
    desc: str,
) -> list[Prediction]:
    """Generates a text plan per prompt and parses it (`parse_plan`) into a `Prediction`.

    Args:
        backbone: The model that writes the plans.
        prompts: Token ids of each prompt.
        specs: The tools calls are checked against, by name.
        settings: ``max_new_tokens``, ``max_calls``, ``batch_size``, ``progress``.
        desc: Label of the progress bar.
    """
    with tqdm(total=len(prompts), desc=desc, disable=not settings.progress, leave=False) as bar:
        outputs = generate(
            backbone,
            prompts,
            max_new_tokens=settings.max_new_tokens,
            max_line_tokens=settings.max_line_tokens,
            stop=lambda text: should_stop(text, settings.max_calls),
            batch_size=settings.batch_size,
            on_batch=bar.update,
        )
    predictions = []
    for prompt, output in zip(prompts, outputs):
        parsed = parse_plan(output.text, specs)
        calls = parsed.calls[: settings.max_calls] if parsed.calls is not None else None
        predictions.append(Prediction(calls, parsed.invalid, len(prompt), output.generated_tokens, output.text))
    return predictions
