"""Export a bank as a standard Hugging Face checkpoint: one added special token per tool.

The exported folder loads with plain ``AutoModelForCausalLM.from_pretrained`` and
``AutoTokenizer.from_pretrained`` (and so in any runtime that reads Hugging Face
checkpoints), with no agentmem installed:

* every memory token is an added special token ``<|tool:NAME|>`` (`tool_token`), at the id
  agentmem gives it: ``vocab_size + row``. Tool names never hold ``|`` or ``>``, so the form
  is unambiguous, and the export refuses a string the tokenizer already knows. A model whose
  embedding matrix is wider than its tokenizer gets filler tokens ``<|agentmem_unused_ID|>``
  for the unused ids in between, so that the tool tokens still land on agentmem's ids;
* the embedding matrix is resized and each memory row written at its token's id; the output
  row is the same vector (tied, as in agentmem), written to the LM head as well when the
  backbone does not tie its embeddings;
* an adapted backbone is exported with its LoRA merged (as agentmem runs it);
* a tokenizer without a chat template (a base model) is given the one agentmem wrote its
  prompts in (`agentmem.encoding.prompt_format`), so ``apply_chat_template`` builds the
  same prompts outside agentmem;
* ``tools.json`` (OpenAI function format), ``agentmem_export.json`` (the source bank's
  fingerprint, the token <-> tool map, how to read the output) and a short ``README.md``
  sit beside the weights; ``generation_config.json`` asks for plain greedy decoding ending
  at the backbone's eos, as agentmem's loop decodes.

Output: ``<|tool:a|>{"x":1}<|tool:b|>{...}<eos>``: the text after each tool token, up to
the next tool token or eos, is that call's JSON arguments (`parse_output`).

What plain greedy decoding reproduces: agentmem's *unconstrained* plan
(``mem.plan(q, **GREEDY_OPTIONS)``: no schema constraint, no copy bonus, no optional bonus,
nothing left out, rerouted or added), token for token, as long as the plain model's argmax is what
agentmem's masks would allow anyway: a tool token or eos right after each call's
arguments close, and no tool token inside arguments or a text answer. agentmem's default
plan also decodes the arguments under each tool's JSON Schema; a runtime with guided
decoding (xgrammar, outlines) can apply ``tools.json``'s schemas to the same effect. It
also stops (by default) at 8 calls, 128 argument tokens, 256 text tokens, and at an
immediate repeat of a call; set ``max_new_tokens`` accordingly.

The folder is written to a staging sibling and renamed into place, so a failure never
leaves half an export; the live backbone is never modified (the export works on a copy).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
from transformers import GenerationConfig, PreTrainedModel, PreTrainedTokenizerBase

from agentmem.atomic import atomic_folder
from agentmem.decoding.settings import LEVERS, PRESETS
from agentmem.encoding import prompt_format
from agentmem.errors import BackboneError, BankError
from agentmem.tools.calls import Plan
from agentmem.tools.parsing import parse_call
from agentmem.tools.spec import ToolSpec

if TYPE_CHECKING:
    from agentmem.core import AgentMem, PlanOptions

EXPORT_FORMAT = 1
EXPORT_META = "agentmem_export.json"
TOOLS_FILE = "tools.json"
README_FILE = "README.md"
#: The `AgentMem.plan` options whose plan plain greedy decoding of the exported checkpoint
#: reproduces (see the module docstring): agentmem's own decoding levers all off, the
#: "greedy" preset (`agentmem.decoding.PRESETS`).
GREEDY_OPTIONS = cast("PlanOptions", {name: getattr(PRESETS["greedy"], name) for name in ("constrained", *LEVERS)})
#: The string of a tool's token in the exported tokenizer.
TOKEN_FORMAT = "<|tool:{name}|>"
#: Fills ids between the tokenizer's length and the embedding matrix's width.
FILLER_FORMAT = "<|agentmem_unused_{id}|>"
_TOKEN_PATTERN = re.compile(r"<\|tool:([A-Za-z0-9_.-]+)\|>")
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def tool_token(name: str) -> str:
    """The token string of a tool in an exported checkpoint: ``<|tool:NAME|>``."""
    return TOKEN_FORMAT.format(name=name)


def export_checkpoint(
    mem: AgentMem, out: str | os.PathLike[str], *, overwrite: bool = False, dtype: str | torch.dtype | None = None
) -> Path:
    """Writes a Hugging Face checkpoint in which every learned tool is a special token.

    Args:
        mem: The AgentMem whose backbone and bank to export (left unchanged).
        out: The folder to write; it must not exist or be empty, unless ``overwrite``.
        overwrite: Replace an earlier export at ``out`` (a folder holding
            ``agentmem_export.json``); any other non-empty folder is refused.
        dtype: ``"float32"``, ``"bfloat16"``, ``"float16"`` or a torch dtype for the saved
            weights (default: the backbone's; agentmem runs in float32).

    Returns:
        The folder written.

    Raises:
        BankError: The bank holds no tools.
        FileExistsError: ``out`` is a non-empty folder (or a file) that may not be replaced.
        BackboneError: The backbone cannot be exported as is (a tool token string already
            in its tokenizer, a tokenizer longer than its embeddings, packed quantized weights).
    """
    if not len(mem.bank):
        raise BankError("nothing to export: the bank holds no tools; learn at least one first (mem.learn_tool)")
    target = Path(out)
    _check_target(target, overwrite)
    dtype = _DTYPES.get(dtype, dtype) if isinstance(dtype, str) else dtype
    if dtype is not None and not isinstance(dtype, torch.dtype):
        raise ValueError(f"dtype must be one of {', '.join(_DTYPES)} or a torch dtype, got {dtype!r}")

    tokenizer, fillers = extended_tokenizer(mem.backbone.tokenizer, mem.backbone.vocab_size, mem.bank.names)
    supplied = prompt_format(mem.backbone.tokenizer).template
    if supplied is not None:  # the copy only: the live tokenizer keeps choosing its format by itself
        tokenizer.chat_template = supplied
    model = extended_model(mem.backbone.model, mem.bank.rows, dtype)
    model.generation_config = _greedy_config(mem.backbone.model, tokenizer, mem.backbone.eos_token_id)
    meta = _export_meta(mem, tokenizer, fillers)

    with atomic_folder(target) as staging:
        model.save_pretrained(staging)  # safetensors
        tokenizer.save_pretrained(staging)
        (staging / TOOLS_FILE).write_text(_json([spec.to_openai() for spec in mem.tools]), encoding="utf-8")
        (staging / EXPORT_META).write_text(_json(meta), encoding="utf-8")
        (staging / README_FILE).write_text(_readme(meta), encoding="utf-8")
    return target


def extended_tokenizer(
    tokenizer: PreTrainedTokenizerBase, vocab_size: int, names: Sequence[str]
) -> tuple[PreTrainedTokenizerBase, list[str]]:
    """A copy of ``tokenizer`` with one special token per tool at ids ``vocab_size + row``.

    Returns:
        The tokenizer, and the filler tokens added before the tool tokens (when the
        embedding matrix is wider than the tokenizer).
    """
    known = tokenizer.get_vocab()
    if len(tokenizer) > vocab_size:
        raise BackboneError(
            f"the tokenizer has {len(tokenizer)} tokens but the model embeds only {vocab_size}: "
            "agentmem would read the extra ids as memory tokens; export a backbone whose tokenizer fits its embeddings"
        )
    tokens = [tool_token(name) for name in names]
    taken = [t for t in tokens if t in known]
    if taken:
        raise BackboneError(
            f"the backbone's tokenizer already holds {', '.join(taken)}; cannot add them as tool tokens"
        )
    fillers = [FILLER_FORMAT.format(id=i) for i in range(len(tokenizer), vocab_size)]
    extended = copy.deepcopy(tokenizer)
    extended.add_special_tokens({"extra_special_tokens": fillers + tokens}, replace_extra_special_tokens=False)
    ids = extended.convert_tokens_to_ids(tokens)
    expected = list(range(vocab_size, vocab_size + len(tokens)))
    if ids != expected or len(extended) != vocab_size + len(tokens):
        raise BackboneError(f"the tokenizer put the tool tokens at ids {ids}, not at agentmem's ids {expected}")
    return extended, fillers


def extended_model(model: PreTrainedModel, rows: torch.Tensor, dtype: torch.dtype | None = None) -> PreTrainedModel:
    """A copy of ``model`` whose embedding (and LM head) has the memory rows appended, at
    ids ``vocab_size + row``; ``model`` itself is left as it was."""
    vocab = model.get_output_embeddings().weight.shape[0]
    if model.get_input_embeddings().weight.shape[0] != vocab:
        raise BackboneError(
            f"the model's input embeddings have {model.get_input_embeddings().weight.shape[0]} rows and its "
            f"LM head {vocab}; agentmem's memory ids need them equal"
        )
    copied = copy.deepcopy(model)
    _drop_gguf_marker(copied)
    copied.resize_token_embeddings(vocab + rows.shape[0], mean_resizing=False)  # new rows overwritten below
    with torch.no_grad():
        embedding = copied.get_input_embeddings().weight
        embedding[vocab:] = rows.to(embedding)
        head = copied.get_output_embeddings()
        if head.weight.data_ptr() != embedding.data_ptr():  # untied: the output row is the same vector
            head.weight[vocab:] = rows.to(head.weight)
        if getattr(head, "bias", None) is not None:
            head.bias[vocab:] = 0.0  # agentmem's memory logits are h @ row, no bias
    if dtype is not None:
        copied.to(dtype)
    return copied


def parse_output(text: str, specs: Sequence[ToolSpec], eos_token: str | None = None) -> Plan:
    """Reads the text an exported model generated (decoded with ``skip_special_tokens=False``).

    Text before the first tool token is the plan's text; the text after each tool token,
    up to the next tool token (or ``eos_token``), is parsed and validated as that call's
    arguments. A token of a tool not in ``specs`` is kept as text. Never raises.
    """
    if eos_token:
        text = text.split(eos_token, 1)[0]
    by_name = {spec.name: spec for spec in specs}
    pieces = _TOKEN_PATTERN.split(text)  # text, name, arguments, name, arguments, ...
    plan = Plan(text=pieces[0].strip())
    for i in range(1, len(pieces), 2):
        name, raw = pieces[i], pieces[i + 1]
        if name in by_name:
            plan.steps.append(parse_call(by_name[name], raw))
        else:
            plan.text += tool_token(name) + raw
    return plan


def bank_fingerprint(mem: AgentMem) -> str:
    """Identifies a bank: its rows, its tool specs and its backbone's fingerprint."""
    digest = hashlib.sha256(mem.backbone.fingerprint.encode())
    digest.update(json.dumps([spec.to_dict() for spec in mem.tools], sort_keys=True).encode())
    digest.update(mem.bank.rows.detach().float().cpu().contiguous().numpy().tobytes())
    return "sha256:" + digest.hexdigest()[:24]


def _check_target(target: Path, overwrite: bool) -> None:
    if not target.exists():
        return
    if not target.is_dir():
        raise FileExistsError(f"cannot export to {target}: it is a file; choose a folder path")
    if not any(target.iterdir()):
        return
    if not overwrite:
        raise FileExistsError(
            f"{target} exists and is not empty; choose another folder, or pass overwrite=True (--overwrite)"
        )
    if not (target / EXPORT_META).is_file():
        raise FileExistsError(f"{target} is not an agentmem export (no {EXPORT_META}); not replacing it")


def _drop_gguf_marker(model: PreTrainedModel) -> None:
    """save_pretrained refuses a model loaded from GGUF until its quantizer marker is gone;
    that is only safe when the weights were de-quantized (not packed in GGUF blocks)."""
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is None:
        return
    method = getattr(quantizer.quantization_config, "quant_method", None)
    if str(getattr(method, "value", method)) == "gguf" and not getattr(quantizer, "packed_modules", None):
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
    elif not quantizer.is_serializable():
        raise BackboneError(
            f"the backbone's weights are quantized ({method}) in a form transformers cannot save; "
            "load it de-quantized (agentmem's own GGUF loading does) and export again"
        )


def _greedy_config(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, eos: int) -> GenerationConfig:
    """Plain greedy decoding to the backbone's eos, as agentmem decodes (no sampling, no
    repetition penalty carried over from the backbone's own generation config)."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    return GenerationConfig(bos_token_id=model.config.bos_token_id, eos_token_id=eos, pad_token_id=pad, do_sample=False)


def _export_meta(mem: AgentMem, tokenizer: PreTrainedTokenizerBase, fillers: list[str]) -> dict[str, Any]:
    import agentmem

    backbone = mem.backbone
    return {
        "format_version": EXPORT_FORMAT,
        "agentmem_version": getattr(agentmem, "__version__", None),
        "source": {
            "backbone": backbone.name,
            "backbone_fingerprint": backbone.fingerprint,
            "adaptation": backbone.adapter.id if backbone.adapter is not None else None,
            "bank_fingerprint": bank_fingerprint(mem),
        },
        "vocab_size": backbone.vocab_size,
        "filler_tokens": len(fillers),
        "tools": [
            {"tool": name, "token": tool_token(name), "id": mem.memory_token_id(name), "row": row}
            for row, name in enumerate(mem.bank.names)
        ],
        "eos_token": tokenizer.convert_ids_to_tokens(backbone.eos_token_id),
        "eos_token_id": backbone.eos_token_id,
        "output": (
            "Decode with skip_special_tokens=False. Text before the first tool token is a text answer; "
            "the text after each tool token, up to the next tool token or the eos token, is that call's "
            "arguments as one JSON object, validated against the tool's parameters in tools.json."
        ),
        "decoding": (
            "Greedy decoding reproduces agentmem's plan(..., constrained=False, copy_bias=0, drop_unfounded=False, "
            "reroute_unfounded=False, optional_bias=0) token for token while the model's "
            "argmax is a tool token or eos right after each call's arguments close, and is never a tool token inside "
            "arguments or a text answer; agentmem masks everything else at those steps. agentmem's default plan "
            "also constrains the arguments to each tool's JSON Schema (use guided decoding with tools.json for that), "
            "and by default stops at 8 calls, 128 argument tokens, 256 text tokens and at an immediate repeat of a call."
        ),
    }


def _readme(meta: dict[str, Any]) -> str:
    rows = "\n".join(f"| `{t['token']}` | {t['id']} | `{t['tool']}` |" for t in meta["tools"])
    source = meta["source"]
    adapted = f", adapted ({source['adaptation']})" if source["adaptation"] else ""
    return f"""# {len(meta["tools"])} tools as memory tokens (agentmem export)

Backbone `{source["backbone"]}` ({source["backbone_fingerprint"]}{adapted}); bank {source["bank_fingerprint"]}.
Each tool is one added special token, trained by agentmem (TokMem) on a frozen backbone;
the model emits it when a request needs the tool, followed by the arguments as JSON.

| token | id | tool |
|---|---|---|
{rows}

```python
from transformers import AutoModelForCausalLM, AutoTokenizer

tokenizer = AutoTokenizer.from_pretrained("THIS_FOLDER")
model = AutoModelForCausalLM.from_pretrained("THIS_FOLDER")
messages = [{{"role": "user", "content": "your request"}}]
inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
output = model.generate(**inputs, max_new_tokens=256)  # greedy, ends at {meta["eos_token"]}
text = tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=False)
```

Reading the output: {meta["output"]}

Decoding: {meta["decoding"]}

Files: `tools.json` (the tools, OpenAI function format), `agentmem_export.json` (this map, machine-readable).
"""


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False) + "\n"
