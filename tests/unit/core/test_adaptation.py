"""The adaptation phase on a tiny Llama: LoRA trained, merged, saved, applied again."""

from __future__ import annotations

import json
import shlex

import pytest
import torch
import torch.nn.functional as F

from agentmem import AgentMem, cli, memory
from agentmem.adaptation.adapt import AdaptConfig, read_corpus
from agentmem.adaptation.adapter import SHIPPED_DIR, Adapter, adapted_fingerprint, inject_lora
from agentmem.adaptation.corpus import synthetic_examples, synthetic_tools
from agentmem.adaptation.lora import shared_prefix_loss
from agentmem.adaptation.resolve import apply_adapter, resolve_backbone
from agentmem.encoding import common_prefix, encode_example
from agentmem.errors import BackboneError, BackboneMismatchError, InvalidExampleError
from agentmem.memory import MemoryBank
from agentmem.tools import demo
from tests.conftest import tiny_backbone

FAST = {"progress": False, "bf16": False, "lr": 1e-2}


def _corpus(n_tools: int = 4, n: int = 16):
    return synthetic_tools(n_tools, seed=0), synthetic_examples(n_tools, n, seed=0)


@pytest.fixture
def adapted(tiny):
    original = {k: v.clone() for k, v in tiny.model.state_dict().items()}
    mem = AgentMem(tiny)
    report = mem.adapt(_corpus(), epochs=1, batch_size=4, **FAST)
    return mem, report, original


def test_adapt_merges_the_lora_and_drops_the_temporary_rows(tiny, adapted):
    mem, report, original = adapted
    model = mem.backbone.model
    assert report.steps == 4 and report.examples == 16 and report.tools == 4
    assert report.trainable_parameters == 2 * 8 * (64 + 64 + 64 + 32)  # 2 layers, r=8, q: 64->64, v: 64->32
    assert not any("lora" in name for name, _ in model.named_modules())
    assert not hasattr(model, "peft_config") and type(model).__name__ == "LlamaForCausalLM"
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    merged = model.state_dict()
    assert set(merged) == set(original)
    changed = {k for k in merged if not torch.equal(merged[k], original[k])}
    assert changed == {f"model.layers.{i}.self_attn.{m}.weight" for i in range(2) for m in ("q_proj", "v_proj")}
    assert all(torch.equal(v, original[k]) for k, v in tiny.model.state_dict().items())  # given backbone untouched
    assert len(mem.bank) == 0 and mem.tools == []
    assert mem.backbone.fingerprint != tiny.fingerprint
    assert mem.backbone.fingerprint == adapted_fingerprint(tiny.fingerprint, mem.backbone.adapter.id)
    record = mem.backbone.adapter.training
    assert record["steps"] == 4 and record["examples"] == 16 and record["first_loss"] > 0 and record["loss_curve"]


def test_adapter_round_trip_rebuilds_the_same_weights(tiny, adapted, tmp_path):
    mem, _, _ = adapted
    path = mem.backbone.adapter.save(tmp_path / "adapter")
    meta = json.loads((path / "adapter.json").read_text())
    assert meta["lora"] == {"r": 8, "alpha": 32, "dropout": 0.1, "target_modules": ["q_proj", "v_proj"]}
    assert meta["base"]["fingerprint"] == tiny.fingerprint and meta["id"] == mem.backbone.adapter.id
    assert (path / "adapter.json").read_text() == json.dumps(meta, indent=2, ensure_ascii=False) + "\n"
    rebuilt = apply_adapter(tiny, Adapter.load(path))
    assert rebuilt.fingerprint == mem.backbone.fingerprint
    expected = mem.backbone.model.state_dict()
    assert all(torch.equal(v, expected[k]) for k, v in rebuilt.model.state_dict().items())
    with pytest.raises(BackboneMismatchError, match="trained on backbone"):
        apply_adapter(tiny_backbone(tiny.tokenizer, seed=1), Adapter.load(path))
    (path / "adapter.safetensors").write_bytes(b"broken")
    with pytest.raises(ValueError, match="corrupted"):
        Adapter.load(path)


def test_a_rescaled_adapter_merges_that_share_of_the_update(tiny, adapted):
    mem, _, original = adapted
    full = mem.backbone.adapter
    half = full.rescaled(0.5)
    assert half.lora["alpha"] == 16 and half.id != full.id and full.lora["alpha"] == 32
    assert half.training["rescaled"] == [{"from": full.id, "factor": 0.5}]
    merged_full = apply_adapter(tiny, full).model.state_dict()
    merged_half = apply_adapter(tiny, half).model.state_dict()
    key = "model.layers.0.self_attn.q_proj.weight"
    torch.testing.assert_close(merged_half[key] - original[key], 0.5 * (merged_full[key] - original[key]))
    with pytest.raises(ValueError, match="> 0"):
        full.rescaled(0)


def test_a_request_that_needs_no_tool_trains_its_answer_in_words(tiny):
    tools, examples = _corpus(3, 2)
    answered = {"query": "What is the capital of Peru?", "calls": [], "answer": "The capital of Peru is Lima."}
    specs, read = read_corpus((tools, [answered, *examples]))
    assert len(read) == len(examples) + 1
    words = next(e for e in read if not e.calls)
    assert words.answer == answered["answer"]
    encoded = encode_example(tiny.tokenizer, words, lambda n: 10**6, tiny.eos_token_id)
    # the target is the answer's tokens then end of turn: no memory token, nothing else
    assert encoded.target == (
        *tiny.tokenizer(answered["answer"], add_special_tokens=False)["input_ids"],
        tiny.eos_token_id,
    )
    assert max(encoded.target) < tiny.vocab_size


def test_shared_prefix_loss_and_gradient_equal_full_sequences(tiny):
    specs, examples = read_corpus(_corpus(3, 6))
    bank = MemoryBank(tiny.hidden_size)
    bank.add([s.name for s in specs], torch.randn(tiny.hidden_size))
    schemas = {s.name: s.parameters for s in specs}
    encoded = [
        encode_example(tiny.tokenizer, e, lambda n: tiny.vocab_size + bank.index(n), tiny.eos_token_id, schemas)
        for e in examples
    ]
    shared = common_prefix([e.prefix for e in encoded])
    assert len(shared) > 10  # the chat template's system prompt
    torch.manual_seed(0)
    inject_lora(tiny.model, {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]})
    for name, param in tiny.model.named_parameters():
        if "lora_B" in name:  # B starts at zero; make the LoRA count
            param.data.normal_(0, 0.1)
    lora = [p for p in tiny.model.parameters() if p.requires_grad]

    fast = shared_prefix_loss(tiny, bank.rows, encoded, shared)
    fast_grads = torch.autograd.grad(fast, lora)
    total, count = 0.0, 0
    for example in encoded:
        ids = torch.tensor([example.prefix + example.target])
        hidden = memory.decoder(tiny)(inputs_embeds=memory.embed(tiny, bank.rows, ids)).last_hidden_state[0]
        start = len(example.prefix) - 1
        scored = memory.logits(tiny, bank.rows, hidden[start : start + len(example.target)])
        total = total + F.cross_entropy(scored, torch.tensor(example.target), reduction="sum")
        count += len(example.target)
    slow = total / count
    slow_grads = torch.autograd.grad(slow, lora)
    assert torch.allclose(fast, slow, atol=1e-5)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(fast_grads, slow_grads))


def test_adapted_bank_carries_its_adapter(tiny, adapted, tmp_path):
    mem, _, _ = adapted
    mem.learn_tool(demo.TOOLS["get_weather"], demo.training_examples("get_weather", n=6), epochs=1, progress=False)
    request = "What's the weather in Paris?"
    plan = mem.plan(request, max_calls=1)
    path = mem.save(tmp_path / "bank")
    assert json.loads((path / "bank.json").read_text())["backbone"]["adaptation"] == mem.backbone.adapter.id
    assert (path / "adapter" / "adapter.safetensors").is_file()

    fresh_base = tiny_backbone(tiny.tokenizer)  # the plain base: the bank merges its adapter again
    loaded = AgentMem.load(path, backbone=fresh_base)
    assert loaded.backbone.fingerprint == mem.backbone.fingerprint
    assert torch.equal(loaded.bank.rows, mem.bank.rows)
    again = loaded.plan(request, max_calls=1)
    assert [(c.name, c.arguments) for c in again.calls] == [(c.name, c.arguments) for c in plan.calls]
    assert AgentMem.load(path, backbone=mem.backbone).backbone is mem.backbone
    with pytest.raises(BackboneMismatchError):
        AgentMem.load(path, backbone=tiny_backbone(tiny.tokenizer, seed=1))

    plain = AgentMem(tiny_backbone(tiny.tokenizer))
    plain.learn_tool(demo.TOOLS["get_weather"], demo.training_examples("get_weather", n=4), epochs=1, progress=False)
    plain_path = plain.save(tmp_path / "plain")
    with pytest.raises(BackboneMismatchError, match="learned on backbone"):
        AgentMem.load(plain_path, backbone=mem.backbone)


def test_resolve_backbone_merges_an_adapter_once(tiny, adapted):
    mem, _, _ = adapted
    adapter = mem.backbone.adapter
    rebuilt = resolve_backbone(tiny, adapter)  # a copy: the base given stays plain
    assert rebuilt.fingerprint == mem.backbone.fingerprint and tiny.adapter is None
    assert resolve_backbone(rebuilt, adapter) is rebuilt  # already carries it
    other = Adapter(
        adapter.lora, {k: v + 1 for k, v in adapter.weights.items()}, adapter.base_name, adapter.base_fingerprint
    )
    with pytest.raises(BackboneMismatchError, match="carries adapter"):
        resolve_backbone(rebuilt, other)


def test_adapt_refuses_what_it_cannot_do(tiny, adapted):
    mem, _, _ = adapted
    with pytest.raises(BackboneError, match="already adapted"):
        mem.adapt(_corpus(), progress=False)
    learned = AgentMem(tiny)
    learned.learn_tool(demo.TOOLS["get_weather"], demo.training_examples("get_weather", n=4), epochs=1, progress=False)
    with pytest.raises(BackboneError, match="adapt first"):
        learned.adapt(_corpus(), progress=False)
    with pytest.raises(ValueError, match="r must be >= 1, got 0"):
        AdaptConfig(r=0)
    with pytest.raises(ValueError, match="dropout must be in"):
        AdaptConfig(dropout=1.5)
    tools, examples = _corpus()
    with pytest.raises(InvalidExampleError, match="corpus request 0"):
        read_corpus((tools, [{"query": "x", "calls": [{"name": "nope", "arguments": {}}]}]))
    with pytest.raises(InvalidExampleError, match="corpus request 1: a request answered in words needs"):
        read_corpus((tools, [examples[0], {"query": "Hi!", "calls": [], "answer": ""}]))
    with pytest.raises(InvalidExampleError, match="corpus request 0: give 'answer' \\(no tool\\) or 'calls'"):
        read_corpus((tools, [{"query": "Hi!", "calls": examples[0]["calls"], "answer": "Hello!"}]))
    with pytest.raises(BackboneError, match="no shipped adaptation for backbone 'tiny-llama'"):
        resolve_backbone(tiny, adapter=True)
    with pytest.raises(BackboneError, match="already adapted"):
        resolve_backbone(mem.backbone, adapter=False)
    assert resolve_backbone(tiny) is tiny and resolve_backbone(mem.backbone) is mem.backbone


def test_cli_adapt_writes_the_adapter_and_its_record(tiny, tmp_path, capsys):
    folder = tmp_path / "tiny"
    tiny.model.save_pretrained(folder)
    tiny.tokenizer.save_pretrained(folder)
    out = tmp_path / "adapter"
    argv = [
        "adapt",
        "--backbone",
        str(folder),
        "--synthetic",
        "8",
        "--synthetic-tools",
        "3",
        "--no-tool",
        "4",
        "--agent",
        "3",
        "--subsets",
        "",
        "--batch-size",
        "4",
        "--out",
        str(out),
    ]
    assert cli.main(argv) == 0
    assert "saved adapter sha256:" in capsys.readouterr().out
    adapter = Adapter.load(out)
    assert adapter.training["command"] == "agentmem " + shlex.join(argv)
    corpus = adapter.training["corpus"]
    assert (corpus["n_synthetic"], corpus["n_no_tool"], corpus["n_agent"], corpus["requests"]) == (8, 4, 3, 15)
    assert adapter.training["steps"] == 4  # 8 + 4 + 3 requests, batches of 4
    assert cli.main(["adapt", "--synthetic", "4", "--subsets", "apigen", "--out", str(out)]) == 2
    assert "apigen" in capsys.readouterr().err

    tools, examples = _corpus(3, 4)
    (tmp_path / "corpus.json").write_text(json.dumps({"tools": list(tools.values()), "examples": examples}))
    argv = [
        "adapt",
        "--backbone",
        str(folder),
        "--corpus",
        str(tmp_path / "corpus.json"),
        "--out",
        str(tmp_path / "mine"),
    ]
    assert cli.main(argv) == 0 and "3 tools, 4 requests" in capsys.readouterr().out
    assert Adapter.load(tmp_path / "mine").training["corpus"]["file"] == str(tmp_path / "corpus.json")
    (tmp_path / "corpus.json").write_text(json.dumps({"tools": []}))
    assert cli.main(argv) == 2 and "must hold a JSON object" in capsys.readouterr().err


def test_shipped_adapter_is_well_formed():
    adapter = Adapter.load(SHIPPED_DIR / "smollm2-135m")  # checks the weights against the recorded id
    # trained at alpha 32, shipped at 0.85 of its strength (BENCHMARKS.md, "Decoding levers")
    assert adapter.lora == {"r": 8, "alpha": 27.2, "dropout": 0.1, "target_modules": ["q_proj", "v_proj"]}
    assert adapter.training["rescaled"] == [{"from": "sha256:bb4b5a59ee401c72976f5f3c", "factor": 0.85}]
    assert adapter.base_name == "smollm2-135m"
    assert adapter.training["command"].startswith("agentmem adapt ")
    assert adapter.training["steps"] > 0 and adapter.training["last_loss"] < adapter.training["first_loss"]
    assert sum(v.numel() for v in adapter.weights.values()) == 30 * 8 * (576 + 576 + 576 + 192)
