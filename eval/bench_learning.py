"""Speed of learning a tool, against a naive implementation of the same loss.

Both run in the same process on the same backbone and the same encoded examples:

* **agentmem**: `train_rows` (prompts encoded once without gradient and cached across
  epochs, target tokens batched on top, logits only at labelled positions, gradient only
  into the rows being trained);
* **naive**: what adding a special token and training it usually looks like: one table
  ``[vocabulary; memory rows]`` as a trainable tied embedding, whole sequences (prompt
  and target, right-padded) through the model every step, logits over the whole sequence,
  cross-entropy on the target tokens, gradient masked to the new rows before AdamW.

Both run in float32. Then the user-facing figure, one ``learn_tool`` call from scratch
(encoding included), is timed in float32 and under bfloat16 autocast (`TrainConfig.bf16`,
`agentmem.precision`), alternately ``--repeats`` times each in the same process, and the
median seconds of each and their ratio are reported.

Results print as a Markdown table with the ratio and are appended (with machine and date)
to ``runs/bench-<date>.md``; BENCHMARKS.md quotes them.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from agentmem import memory, precision, runinfo
from agentmem.backbone import DEFAULT_BACKBONE, Backbone, load_backbone
from agentmem.core import AgentMem
from agentmem.encoding import EncodedExample, encode_example
from agentmem.memory import MemoryBank
from agentmem.tools import demo
from agentmem.tools.examples import normalize_examples
from agentmem.tools.spec import to_tool_spec
from agentmem.training import TrainConfig, train_rows


def naive_train(backbone: Backbone, examples: list[EncodedExample], config: TrainConfig) -> float:
    """The naive baseline (see module docstring); returns tokens per second."""
    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    vocab_table = backbone.model.get_input_embeddings().weight.detach()
    table = torch.nn.Parameter(torch.cat([vocab_table, memory.mean_embedding(backbone).unsqueeze(0)]))
    optimizer = torch.optim.AdamW([table], lr=config.lr, weight_decay=0.0)
    body = memory.decoder(backbone)
    vocab = backbone.vocab_size
    started, tokens = time.perf_counter(), 0
    for _ in range(config.epochs):
        order = list(range(len(examples)))
        rng.shuffle(order)
        for start in range(0, len(order), config.batch_size):
            batch = [examples[i] for i in order[start : start + config.batch_size]]
            width = max(e.length for e in batch)
            ids = torch.full((len(batch), width), backbone.eos_token_id, dtype=torch.long)
            labels = torch.full((len(batch), width), -100, dtype=torch.long)
            mask = torch.zeros(len(batch), width, dtype=torch.long)
            for row, e in enumerate(batch):
                seq = list(e.prefix + e.target)
                ids[row, : len(seq)] = torch.tensor(seq)
                labels[row, len(e.prefix) - 1 : len(seq) - 1] = torch.tensor(e.target)
                mask[row, : len(seq)] = 1
            hidden = body(inputs_embeds=F.embedding(ids, table), attention_mask=mask).last_hidden_state
            logits = hidden @ table.T
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            table.grad[:vocab] = 0  # only the new row may learn
            optimizer.step()
            tokens += sum(e.length for e in batch)
    return tokens / (time.perf_counter() - started)


def bench_learning(backbone: Backbone, n_examples: int, epochs: int, repeats: int = 1) -> dict[str, float]:
    """Learns ``get_weather`` from ``n_examples`` both ways (float32), then times ``learn_tool``
    in float32 and in bfloat16, alternately ``repeats`` times each; returns throughputs and
    (median) seconds."""
    spec = to_tool_spec(demo.TOOLS["get_weather"])
    examples = normalize_examples(spec, demo.training_examples("get_weather", n=n_examples))
    bank = MemoryBank(backbone.hidden_size)
    rows = bank.add([spec.name], memory.mean_embedding(backbone))
    encoded = [
        encode_example(
            backbone.tokenizer, e, lambda _: backbone.vocab_size, backbone.eos_token_id, {spec.name: spec.parameters}
        )
        for e in examples
    ]
    config = TrainConfig(epochs=epochs, bf16=False, progress=False)
    naive_tps = naive_train(backbone, encoded, config)
    report = train_rows(backbone, bank, rows, encoded, config)

    # The user-facing figure: one learn_tool call from scratch, encoding included.
    seconds: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(repeats):
        for bf16 in (False, True):
            mem = AgentMem(backbone)
            started = time.perf_counter()
            mem.learn_tool(
                demo.TOOLS["get_weather"],
                demo.training_examples("get_weather", n=n_examples),
                epochs=epochs,
                bf16=bf16,
                progress=False,
            )
            seconds[bf16].append(time.perf_counter() - started)
    float32, bfloat16 = statistics.median(seconds[False]), statistics.median(seconds[True])
    return {
        "naive_tps": naive_tps,
        "agentmem_tps": report.tokens_per_second,
        "speedup": report.tokens_per_second / naive_tps,
        "learn_tool_seconds": float32,
        "learn_tool_seconds_bf16": bfloat16,
        "bf16_ratio": bfloat16 / float32,
        "bf16_native": float(precision.native_bf16(backbone.device)),
        "tokens_per_example": sum(e.length for e in encoded) / len(encoded),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default=DEFAULT_BACKBONE)
    parser.add_argument("--examples", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument(
        "--repeats", type=int, default=1, help="learn_tool timings per precision, alternated (the median is reported)"
    )
    parser.add_argument("--out", type=Path, default=Path("runs"))
    args = parser.parse_args(argv)

    backbone = load_backbone(args.backbone)
    result = bench_learning(backbone, args.examples, args.epochs, args.repeats)
    today = runinfo.today()
    naive = "naive (full sequence, full logits, gradient through the prompt)"
    text = runinfo.record(
        runinfo.heading("learn_tool throughput", today, runinfo.machine(backbone.device)),
        f"`{runinfo.command('agentmem.eval.bench_learning', argv)}` on {args.backbone}, "
        f"tool `get_weather`, {result['tokens_per_example']:.0f} tokens per example.",
        runinfo.table(
            ["implementation", "tokens/s", "ratio"],
            [
                [naive, f"{result['naive_tps']:.0f}", "1.00x"],
                ["agentmem `train_rows`", f"{result['agentmem_tps']:.0f}", f"{result['speedup']:.2f}x"],
            ],
        ),
        f"One `learn_tool` from {args.examples} examples, {args.epochs} epochs, encoding included "
        f"(median of {args.repeats}, the two precisions alternated):",
        runinfo.table(
            ["learn_tool", "seconds", "ratio"],
            [
                ["float32", f"{result['learn_tool_seconds']:.1f}", "1.00x"],
                [
                    f"bf16 autocast ({'native' if result['bf16_native'] else 'emulated: no native bfloat16 here'})",
                    f"{result['learn_tool_seconds_bf16']:.1f}",
                    f"{result['bf16_ratio']:.2f}x",
                ],
            ],
        ),
        "Target: float32 under 30 s; bf16 at most 0.4x float32.",
    )
    runinfo.append_record(text, args.out / f"bench-{today}.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
