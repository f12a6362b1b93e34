"""Data-parallel training: two processes under `accelerate launch` (gloo, CPU) give what one gives."""

from __future__ import annotations

import os
import runpy
import socket
import subprocess
import sys

import torch

from agentmem import AgentMem, distributed
from tests.conftest import ROOT, tiny_backbone

# Written to tmp_path and run twice: under the launcher (2 processes) and in the test process.
JOB = f"""
import os, sys
from pathlib import Path

import torch
from transformers import AutoTokenizer

sys.path.insert(0, {str(ROOT)!r})
from agentmem import AgentMem, distributed
from agentmem.backbone import DEFAULT_BACKBONE, resolve
from agentmem.adaptation.corpus import synthetic_examples, synthetic_tools
from tests.conftest import tiny_backbone


def run(out):
    out = Path(out)
    tokenizer = AutoTokenizer.from_pretrained(resolve(DEFAULT_BACKBONE))
    result = {{"world": distributed.world_size()}}
    tools = synthetic_tools(2, seed=0, split="eval")
    examples = synthetic_examples(list(tools), 9, seed=0, split="eval", multi=0.0)
    pairs = [(schema, [e for e in examples if e["calls"][0]["name"] == name]) for name, schema in tools.items()]
    # 9 examples: batches of 4 end with one of 1 (an empty part on rank 1), of 3 split 1 + 2
    for batch_size in (4, 3):
        mem = AgentMem(tiny_backbone(tokenizer))
        report = mem.learn_tools(pairs, epochs=2, batch_size=batch_size, lr=2e-2, progress=False)
        result[f"rows{{batch_size}}"] = mem.bank.rows.clone()
        result[f"losses{{batch_size}}"] = [report.first_loss, report.last_loss]
    mem.save(out / "bank")  # every process calls it; only the main one writes

    corpus = synthetic_tools(3, seed=0), synthetic_examples(3, 10, seed=0)
    mem = AgentMem(tiny_backbone(tokenizer))
    report = mem.adapt(corpus, epochs=1, batch_size=4, dropout=0.0, lr=1e-2, bf16=False, progress=False)
    result["adapt_losses"] = report.losses
    result["lora"] = mem.backbone.adapter.weights
    result["adapter_id"] = mem.backbone.adapter.id
    torch.save(result, out / f"rank{{os.environ.get('RANK', 'single')}}.pt")


if __name__ == "__main__":
    run(sys.argv[1])
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_train_like_one(tmp_path, tokenizer):
    job = tmp_path / "job.py"
    job.write_text(JOB)
    launched = tmp_path / "launched"
    launched.mkdir()
    # --multi_gpu is accelerate's multi-process launcher (torchrun); on a CPU it runs gloo
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(_free_port()),
        str(job),
        str(launched),
    ]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    single = tmp_path / "single"
    single.mkdir()
    runpy.run_path(str(job))["run"](single)
    one = torch.load(single / "ranksingle.pt")
    ranks = [torch.load(launched / f"rank{r}.pt") for r in (0, 1)]
    assert one["world"] == 1 and all(r["world"] == 2 for r in ranks)

    # Every process took the same steps on the same averaged gradients: bit-identical.
    for key in ("rows4", "rows3"):
        assert torch.equal(ranks[0][key], ranks[1][key]), key
    assert ranks[0]["adapter_id"] == ranks[1]["adapter_id"]
    assert ranks[0]["adapt_losses"] == ranks[1]["adapt_losses"]

    # Against one process: the same sums in another order (per-part means recombined by token
    # counts, batches of other shapes), float32 rounding of ~1e-7 relative per step that Adam,
    # which normalises the update, does not shrink; 1e-4 is far above it and far below one
    # step's change (lr 1e-2 to 2e-2 per coordinate).
    launched0 = ranks[0]
    for size in (4, 3):
        assert torch.allclose(launched0[f"rows{size}"], one[f"rows{size}"], atol=1e-4), size
        assert torch.allclose(torch.tensor(launched0[f"losses{size}"]), torch.tensor(one[f"losses{size}"]), atol=1e-4)
        assert not torch.allclose(one[f"rows{size}"], one[f"rows{size}"][0])  # trained, not left at the initial row
    assert len(launched0["adapt_losses"]) == len(one["adapt_losses"]) == 3
    assert torch.allclose(torch.tensor(launched0["adapt_losses"]), torch.tensor(one["adapt_losses"]), atol=1e-4)
    assert launched0["lora"].keys() == one["lora"].keys()
    assert any(v.abs().max() > 0 for k, v in one["lora"].items() if "lora_B" in k)  # B starts at zero
    for key, value in one["lora"].items():
        assert torch.allclose(launched0["lora"][key], value, atol=1e-4), key

    # Only the main process wrote the bank, and it holds the trained rows.
    saved = AgentMem.load(launched / "bank", backbone=tiny_backbone(tokenizer))
    assert torch.equal(saved.bank.rows, launched0["rows3"])


def test_without_a_launcher_the_helpers_pass_through(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    assert distributed.world_size() == 1 and distributed.is_main_process()
    assert distributed.shard([3, 1, 2]) == [3, 1, 2]
    param = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    loss = (param**2).sum() / 2
    assert distributed.backward(loss, 2, [param]) == loss.item()
    assert torch.equal(param.grad, torch.tensor([1.0, 2.0]))
    assert distributed.default_device("cpu") == "cpu"
