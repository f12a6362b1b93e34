"""Export to a plain Hugging Face checkpoint: token ids, logits, greedy generation, errors.

The tiny Llama cannot learn to write arguments (only its memory rows train), so greedy
generation is compared where agentmem's masks change nothing: the first routing step (a
tool token, over the whole vocabulary) and a text answer, token for token; everywhere
else the exported logits are checked against agentmem's on whole two-call sequences.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors import safe_open
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

from agentmem import AgentMem, cli, memory
from agentmem.adaptation.corpus import synthetic_examples, synthetic_tools
from agentmem.backbone import Backbone
from agentmem.encoding import argument_ids, prompt_ids
from agentmem.errors import BackboneError, BankError
from agentmem.export import EXPORT_META, GREEDY_OPTIONS, bank_fingerprint, export_checkpoint, parse_output, tool_token
from agentmem.tools import demo
from agentmem.tools.calls import InvalidToolCall, ToolCall
from agentmem.tools.spec import to_tool_spec
from tests.conftest import plan_signature, tiny_backbone

NAMES = ["get_weather", "convert_currency"]


def _learn(backbone: Backbone, names=NAMES, n: int = 6, **train) -> AgentMem:
    mem = AgentMem(backbone)
    mem.learn_tools([(demo.TOOLS[name], demo.training_examples(name, n=n)) for name in names], progress=False, **train)
    return mem


def _load(path: Path):
    return AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)


def _agentmem_logits(mem: AgentMem, ids: torch.Tensor) -> torch.Tensor:
    """The logits agentmem computes: memory rows spliced in, memory columns appended."""
    with torch.no_grad():
        hidden = memory.decoder(mem.backbone)(
            inputs_embeds=memory.embed(mem.backbone, mem.bank.rows, ids)
        ).last_hidden_state
        return memory.logits(mem.backbone, mem.bank.rows, hidden)


def _plan_sequence(mem: AgentMem, names=NAMES) -> torch.Tensor:
    """``chat(request) [MEM_a] {args} [MEM_b] {args} <eos>``, as agentmem trains and decodes it."""
    tokenizer = mem.backbone.tokenizer
    ids = prompt_ids(tokenizer, "Weather in Oslo, then 20 EUR in USD.")
    for name in names:
        ids += [mem.memory_token_id(name)] + argument_ids(tokenizer, demo.training_examples(name, n=1)[0]["arguments"])
    return torch.tensor([ids + [mem.backbone.eos_token_id]])


def _greedy(model, tokenizer, prompt: list[int], max_new_tokens: int) -> tuple[str, int]:
    """Plain transformers greedy decoding: the generated text and its number of tokens."""
    ids = torch.tensor([prompt])
    output = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens)
    return tokenizer.decode(output[0, len(prompt) :], skip_special_tokens=False), output.shape[1] - len(prompt)


@pytest.fixture(scope="module")
def routed(tokenizer, tmp_path_factory):
    """Two tools trained hard enough that the tiny model's first token is a tool token; exported."""
    mem = _learn(tiny_backbone(tokenizer), epochs=4, lr=2e-2)
    path = export_checkpoint(mem, tmp_path_factory.mktemp("exports") / "tiny")
    return mem, path, *_load(path)


def test_tool_tokens_sit_at_agentmem_ids_and_files_describe_them(routed, tokenizer):
    mem, path, model, exported = routed
    vocab = mem.backbone.vocab_size
    assert vocab == len(tokenizer)  # the real tokenizer fills the embedding matrix exactly: no fillers
    assert len(exported) == model.config.vocab_size == vocab + 2
    for name in NAMES:
        token, token_id = tool_token(name), mem.memory_token_id(name)
        assert exported.convert_tokens_to_ids(token) == token_id
        assert token_id in exported(f"call {token}{{}}", add_special_tokens=False)["input_ids"]  # never split
        assert exported.decode([token_id]) == token and exported.decode([token_id], skip_special_tokens=True) == ""
    assert (
        tool_token("get_weather") not in tokenizer.get_vocab() and len(tokenizer) == vocab
    )  # live tokenizer untouched
    messages = [{"role": "user", "content": "Weather in Oslo?"}]  # the README's recipe gives agentmem's prompt
    recipe = exported.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)["input_ids"]
    assert list(recipe) == prompt_ids(tokenizer, messages)

    assert json.loads((path / "tools.json").read_text()) == [spec.to_openai() for spec in mem.tools]
    meta = json.loads((path / EXPORT_META).read_text())
    assert meta["tools"] == [
        {"tool": name, "token": tool_token(name), "id": vocab + row, "row": row} for row, name in enumerate(NAMES)
    ]
    assert meta["source"]["bank_fingerprint"] == bank_fingerprint(mem)
    assert meta["source"]["backbone_fingerprint"] == mem.backbone.fingerprint and meta["source"]["adaptation"] is None
    assert meta["eos_token_id"] == mem.backbone.eos_token_id and meta["filler_tokens"] == 0
    assert "<|tool:convert_currency|>" in (path / "README.md").read_text()
    assert (
        model.generation_config.eos_token_id == mem.backbone.eos_token_id and model.generation_config.do_sample is False
    )
    assert (path / "model.safetensors").is_file()
    assert [p.name for p in path.parent.iterdir()] == ["tiny"]  # no staging folder left


def test_exported_logits_equal_agentmem_logits(routed):
    mem, _, model, _ = routed
    vocab = mem.backbone.vocab_size
    ids = _plan_sequence(mem)
    assert int((ids >= vocab).sum()) == 2
    with torch.no_grad():
        got = model(ids).logits
    torch.testing.assert_close(got, _agentmem_logits(mem, ids), atol=1e-5, rtol=1e-5)
    assert torch.equal(model.get_input_embeddings().weight[vocab:], mem.bank.rows)  # rows written as they are
    assert model.get_output_embeddings().weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()  # tied


def test_greedy_generation_routes_like_agentmem(routed):
    # At the first step agentmem (tool_choice="auto") chooses over the whole extended vocabulary,
    # as plain greedy decoding does; later steps are covered by the logits test above.
    mem, _, model, exported = routed
    request = "What's the weather in Oslo?"
    plan = mem.plan(request, **GREEDY_OPTIONS, max_calls=1)
    assert plan.steps, "the tiny model should route to a tool here"
    first, _ = _greedy(model, exported, prompt_ids(mem.backbone.tokenizer, request), max_new_tokens=1)
    assert first == tool_token(plan.steps[0].name)


def test_greedy_generation_reproduces_a_text_answer_token_for_token(tokenizer, tmp_path):
    # barely trained: this tiny model answers "Hello there" in words (it writes " cont" over and over)
    mem = _learn(tiny_backbone(tokenizer, seed=1), n=3, epochs=1)
    model, exported = _load(export_checkpoint(mem, tmp_path / "export"))
    request = "Hello there"
    plan = mem.plan(request, **GREEDY_OPTIONS, max_text_tokens=32)
    assert not plan.steps and "cont" in plan.text
    text, generated = _greedy(model, exported, prompt_ids(tokenizer, request), max_new_tokens=32)
    assert generated == plan.usage["generated_tokens"] == 32  # no eos on either side
    assert plan_signature(parse_output(text, mem.tools, exported.eos_token)) == plan_signature(plan)


def test_parse_output_reads_calls_text_and_eos():
    specs = [to_tool_spec(demo.TOOLS[name]) for name in NAMES]
    text = '<|tool:get_weather|>{"city":"Oslo"}<|tool:convert_currency|>{"amount":"x"}<|im_end|><|tool:get_weather|>{}'
    plan = parse_output(text, specs, "<|im_end|>")
    assert isinstance(plan.steps[0], ToolCall) and plan.steps[0].arguments == {"city": "Oslo"}
    assert isinstance(plan.steps[1], InvalidToolCall) and plan.steps[1].raw == '{"amount":"x"}'
    assert len(plan.steps) == 2 and plan.text == ""  # nothing after eos is read
    answer = parse_output("It is sunny.<|tool:nope|>{}", specs)
    assert answer.steps == [] and answer.text == "It is sunny.<|tool:nope|>{}"


def test_untied_model_with_padded_vocabulary(tokenizer, tmp_path):
    torch.manual_seed(0)
    padded = len(tokenizer) + 3  # embedding wider than the tokenizer, as many checkpoints pad it
    config = LlamaConfig(
        vocab_size=padded,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.eos_token_id,
    )
    mem = _learn(Backbone.from_model(LlamaForCausalLM(config), tokenizer, name="untied"), n=3, epochs=1)
    path = export_checkpoint(mem, tmp_path / "export")
    model, exported = _load(path)
    assert json.loads((path / EXPORT_META).read_text())["filler_tokens"] == 3
    assert [exported.convert_tokens_to_ids(tool_token(n)) for n in NAMES] == [padded, padded + 1]
    assert exported.convert_tokens_to_ids("<|agentmem_unused_49152|>") == len(tokenizer)
    assert torch.equal(model.get_output_embeddings().weight[padded:], mem.bank.rows)
    ids = _plan_sequence(mem)
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, _agentmem_logits(mem, ids), atol=1e-5, rtol=1e-5)

    half = export_checkpoint(mem, tmp_path / "bf16", dtype="bfloat16")
    with safe_open(str(half / "model.safetensors"), "pt") as weights:
        embedding = weights.get_tensor("model.embed_tokens.weight")
    assert embedding.dtype == torch.bfloat16 and torch.equal(embedding[padded:], mem.bank.rows.bfloat16())


def test_adapted_backbone_is_exported_with_its_lora_merged(tiny, tmp_path):
    base = {k: v.clone() for k, v in tiny.model.state_dict().items()}
    mem = AgentMem(tiny)
    mem.adapt(
        (synthetic_tools(2, seed=0), synthetic_examples(2, 4, seed=0)),
        batch_size=4,
        progress=False,
        bf16=False,
        lr=1e-2,
    )
    mem.learn_tool(demo.TOOLS["get_weather"], demo.training_examples("get_weather", n=3), epochs=1, progress=False)
    path = export_checkpoint(mem, tmp_path / "export")
    model, _ = _load(path)
    key = "model.layers.0.self_attn.q_proj.weight"
    assert torch.equal(model.state_dict()[key], mem.backbone.model.state_dict()[key])
    assert not torch.equal(model.state_dict()[key], base[key])
    assert json.loads((path / EXPORT_META).read_text())["source"]["adaptation"] == mem.backbone.adapter.id
    ids = _plan_sequence(mem, ["get_weather"])
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, _agentmem_logits(mem, ids), atol=1e-5, rtol=1e-5)


def test_errors_leave_nothing_behind(tiny, tmp_path, monkeypatch):
    with pytest.raises(BankError, match="no tools"):
        export_checkpoint(AgentMem(tiny), tmp_path / "empty")
    assert not (tmp_path / "empty").exists()

    mem = _learn(tiny, ["get_weather"], n=2, epochs=1)
    before = {k: v.clone() for k, v in mem.backbone.model.state_dict().items()}
    with pytest.raises(ValueError, match="dtype"):
        export_checkpoint(mem, tmp_path / "x", dtype="float8")
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty"):
        export_checkpoint(mem, taken)
    with pytest.raises(FileExistsError, match="not an agentmem export"):
        export_checkpoint(mem, taken, overwrite=True)
    assert [p.name for p in taken.iterdir()] == ["keep.txt"]
    with pytest.raises(FileExistsError, match="is a file"):
        export_checkpoint(mem, taken / "keep.txt")

    empty = tmp_path / "empty-dir"
    empty.mkdir()
    assert export_checkpoint(mem, empty) == empty and (empty / EXPORT_META).is_file()
    first = (empty / "model.safetensors").read_bytes()

    def crash(_meta):
        raise RuntimeError("disk full")

    monkeypatch.setattr("agentmem.export._readme", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        export_checkpoint(mem, tmp_path / "half")
    with pytest.raises(RuntimeError, match="disk full"):
        export_checkpoint(mem, empty, overwrite=True)
    assert (empty / "model.safetensors").read_bytes() == first  # the earlier export is whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty-dir", "taken"]  # no half folder, no staging
    monkeypatch.undo()
    assert export_checkpoint(mem, empty, overwrite=True) == empty

    after = mem.backbone.model.state_dict()  # the live model was never touched
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)
    assert mem.backbone.vocab_size == len(mem.backbone.tokenizer)


def test_gguf_marker_is_dropped_on_the_copy_only(tiny, tmp_path):
    mem = _learn(tiny, ["get_weather"], n=2, epochs=1)
    model = mem.backbone.model
    model.hf_quantizer = SimpleNamespace(
        quantization_config=SimpleNamespace(quant_method="gguf"), packed_modules={}, is_serializable=lambda *_: False
    )
    model.config.quantization_config = {"quant_method": "gguf"}
    path = export_checkpoint(mem, tmp_path / "export")
    assert "quantization_config" not in json.loads((path / "config.json").read_text())
    assert model.hf_quantizer is not None and model.config.quantization_config == {"quant_method": "gguf"}
    model.hf_quantizer.packed_modules = {"model.layers.0.mlp.up_proj": object()}  # weights still in GGUF blocks
    with pytest.raises(BackboneError, match="de-quantized"):
        export_checkpoint(mem, tmp_path / "packed")
    assert not (tmp_path / "packed").exists()


def test_cli_export(tokenizer, tmp_path, capsys):
    folder = tmp_path / "tiny-model"  # a backbone the bank can name and reload
    backbone = tiny_backbone(tokenizer, name=str(folder))
    backbone.model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    bank = _learn(backbone, ["get_weather"], n=2, epochs=1).save(tmp_path / "bank")
    out = tmp_path / "exported"
    assert cli.main(["export", str(bank), "--out", str(out)]) == 0
    assert f"{tool_token('get_weather')} = id {len(tokenizer)}" in capsys.readouterr().out
    assert AutoTokenizer.from_pretrained(out).convert_tokens_to_ids(tool_token("get_weather")) == len(tokenizer)
    assert cli.main(["export", str(bank), "--out", str(out)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert cli.main(["export", str(bank), "--out", str(out), "--overwrite", "--dtype", "bfloat16"]) == 0
    assert cli.main(["export", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x")]) == 2
