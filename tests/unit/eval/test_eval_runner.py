"""The evaluation runner end to end on the tiny Llama: every method, the report, resuming."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from agentmem.cli import main
from agentmem.core import AgentMem
from agentmem.eval.generation import generate
from agentmem.eval.methods import METHODS, MethodSettings
from agentmem.eval.runner import RunConfig, run
from agentmem.tools import demo
from tests.conftest import tiny_backbone

SETTINGS = dict(max_new_tokens=12, epochs=1, batch_size=4, demonstrations=2, rag_k=2, progress=False)


@pytest.fixture(scope="module")
def backbone(tokenizer):
    return tiny_backbone(tokenizer)


@pytest.fixture(scope="module")
def user_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The demo tools and 2-call requests as a user's JSONL dataset; one tool name needs
    sanitising, and a few requests pass a result reference (as NESTFUL plans do)."""
    folder = tmp_path_factory.mktemp("data")
    rename = {"get_weather": "get weather(now)"}
    tools = [{**tool, "name": rename.get(name, name)} for name, tool in demo.TOOLS.items()]
    requests = demo.multi_call_examples(n=24)
    for request in requests[:6]:
        # the second call's first string argument names the first call's result instead
        arguments = request["calls"][1]["arguments"]
        key = next(k for k, v in arguments.items() if isinstance(v, str))
        arguments[key] = "$var1.city$"
    for request in requests:
        for call in request["calls"]:
            call["name"] = rename.get(call["name"], call["name"])
    (folder / "tools.json").write_text(json.dumps(tools))
    (folder / "requests.jsonl").write_text("\n".join(json.dumps(r) for r in requests))
    return folder / "requests.jsonl", folder / "tools.json"


def _config(out: Path, user_data: tuple[Path, Path], **settings: object) -> RunConfig:
    return RunConfig(
        out=out,
        dataset="jsonl",
        requests=user_data[0],
        tools=user_data[1],
        methods=METHODS,
        limit=4,
        train_per_tool=3,
        backbone="tiny-llama",  # the name of the tiny backbone: a resumed run needs none loaded
        settings=MethodSettings(**{**SETTINGS, **settings}),
    )


def test_every_method_runs_and_is_reported(tmp_path: Path, backbone, user_data) -> None:
    summary = run(_config(tmp_path, user_data), backbone=backbone)
    setup, methods = summary["setup"], summary["methods"]
    assert setup["test_requests"] == 4 and setup["tools"] == 4
    assert setup["renamed_tools"] == {"get_weather_now": "get weather(now)"}
    # training plans are cut before a reference (or left out) for every method, and counted
    cut, skipped = setup["train_requests_cut_at_references"], setup["train_requests_skipped_for_references"]
    assert cut + skipped >= 1
    assert list(methods) == list(METHODS)

    # no adaptation ships for the tiny model: reported, not faked
    adapted = methods["tokmem-adapted"]
    assert adapted["status"] == "unavailable" and "no shipped adaptation" in adapted["reason"]

    ok = {n: r for n, r in methods.items() if r["status"] == "ok"}
    assert list(ok) == ["icl", "rag", "lora", "tokmem"]
    for name, r in ok.items():
        scores = r["scores"]
        assert scores["n_examples"] == 4
        assert all(0.0 <= scores[k] <= 1.0 for k in ("tool_f1", "argument_f1", "exact_match", "schema_valid_rate"))
        assert r["by_calls"]["2"]["n_examples"] == 4  # every demo request has 2 calls
        saved = json.loads((tmp_path / "methods" / f"{name}.json").read_text())
        assert len(saved["predictions"]) == 4
        assert all(p["gold"] and p["prompt_tokens"] > 0 for p in saved["predictions"])

    cost = {n: r["cost"] for n, r in ok.items()}
    assert cost["icl"]["trainable_parameters"] == cost["rag"]["trainable_parameters"] == 0
    assert cost["tokmem"]["trainable_parameters"] == 4 * backbone.hidden_size
    # LoRA r=8 on q (64 -> 64) and v (64 -> 32) in each of 2 layers
    assert cost["lora"]["trainable_parameters"] == 2 * 8 * ((64 + 64) + (64 + 32))
    # ICL reads every schema and RAG only rag_k=2: both far more than the bare request
    assert cost["icl"]["prompt_tokens_per_request"] > cost["rag"]["prompt_tokens_per_request"]
    assert cost["rag"]["prompt_tokens_per_request"] > 2 * cost["tokmem"]["prompt_tokens_per_request"]
    assert cost["lora"]["prompt_tokens_per_request"] == cost["tokmem"]["prompt_tokens_per_request"]

    # TokMem's own guard finds nothing more to leave out: the runner already did
    assert methods["tokmem"]["fit"]["skipped"] == 0

    # the ceiling of the same test requests, beside the methods
    top = summary["ceiling"]
    assert top["n_examples"] == 4 and 0.0 <= top["reachable_share"] <= top["reference_free_share"] <= 1.0
    assert 0.0 <= top["argument_f1"] <= top["argument_f1_reference_free"] <= 1.0

    report = (tmp_path / "report.md").read_text()
    assert "| method | tool F1 | argument F1 |" in report
    assert f"{cut} training plans were cut" in report and f"{skipped} training requests whose first" in report
    assert (
        f"| ceiling (verbatim from the request) | - | {top['argument_f1']:.3f} | {top['exact_match']:.3f} |" in report
    )
    assert f"| ceiling (no references) | - | {top['argument_f1_reference_free']:.3f} |" in report
    assert f"{top['reachable_share']:.1%} can be read from the request" in report
    header = next(line for line in report.splitlines() if line.startswith("| method | tool F1"))
    rows = [line for line in report.splitlines() if line.startswith("| ceiling (")]
    assert len(rows) == 3 and all(row.count("|") == header.count("|") for row in rows[:2])
    assert all(f"| {n} |" in report for n in ok)
    assert "tokmem-adapted: tokmem-adapted" not in report and "- tokmem-adapted: " in report
    for png in ("accuracy.png", "cost.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["methods"]["icl"]["scores"] == ok["icl"]["scores"] and saved["ceiling"] == top


def test_finished_methods_are_read_back_not_recomputed(tmp_path: Path, backbone, user_data) -> None:
    config = _config(tmp_path, user_data)
    config.methods = ("icl", "tokmem")
    first = run(config, backbone=backbone)
    files = {n: tmp_path / "methods" / f"{n}.json" for n in config.methods}
    stamps = {n: f.stat().st_mtime_ns for n, f in files.items()}

    files["tokmem"].unlink()  # as if the run had stopped during tokmem
    second = run(config, backbone=backbone)
    assert files["icl"].stat().st_mtime_ns == stamps["icl"]
    assert files["tokmem"].is_file()
    assert second["methods"]["icl"] == first["methods"]["icl"]

    # all finished: nothing runs, so no backbone is needed
    third = run(config)
    assert third["methods"] == second["methods"]

    # another setting is another setup: recomputed
    changed = _config(tmp_path, user_data, seed=1)
    changed.methods = ("icl",)
    run(changed, backbone=backbone)
    assert files["icl"].stat().st_mtime_ns != stamps["icl"]


def test_tokmem_adapted_runs_on_an_adapter_folder(tmp_path: Path, backbone, user_data) -> None:
    mem = AgentMem(backbone)
    mem.adapt((demo.TOOLS, demo.multi_call_examples(n=8, seed=3)), batch_size=4, progress=False)
    folder = mem.backbone.adapter.save(tmp_path / "adapter")
    config = _config(tmp_path / "run", user_data, adapter=str(folder))
    config.methods = ("tokmem-adapted",)
    record = run(config, backbone=backbone)["methods"]["tokmem-adapted"]
    assert record["status"] == "ok"
    assert record["fit"]["adapter"] == mem.backbone.adapter.id
    assert record["cost"]["trainable_parameters"] == 4 * backbone.hidden_size

    config = _config(tmp_path / "bad", user_data, adapter=str(tmp_path / "missing"))
    config.methods = ("tokmem-adapted",)
    record = run(config, backbone=backbone)["methods"]["tokmem-adapted"]
    assert record["status"] == "unavailable" and "missing adapter.json" in record["reason"]


def test_generation_with_a_shared_prefix_matches_one_by_one(backbone) -> None:
    tokenizer = backbone.tokenizer
    start = tokenizer("You plan tool calls. Tools: a, b, c.", add_special_tokens=False)["input_ids"]
    prompts = [
        start + tokenizer(q, add_special_tokens=False)["input_ids"]
        for q in ("hi", "what is the weather in Paris", "x y z")
    ]
    together = generate(backbone, prompts, max_new_tokens=8, batch_size=3)
    alone = [generate(backbone, [p], max_new_tokens=8)[0] for p in prompts]
    assert [g.text for g in together] == [g.text for g in alone]
    assert all(g.generated_tokens == 8 for g in together)  # the random model never says eos here
    capped = generate(backbone, prompts, max_new_tokens=8, max_line_tokens=2, batch_size=3)
    assert not any("\n" in g.text for g in together)  # one line each, so the cap ends them all
    assert all(c.generated_tokens == 3 and g.text.startswith(c.text) for c, g in zip(capped, together))

    # the same prompts from scratch (no shared start) give the same text
    with torch.no_grad():
        ids = torch.tensor([prompts[1]])
        reference = backbone.model.generate(ids, max_new_tokens=8, do_sample=False, eos_token_id=None, pad_token_id=0)
    assert tokenizer.decode(reference[0, len(prompts[1]) :], skip_special_tokens=True) == together[1].text


def test_cli_eval_rejects_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "--out", str(tmp_path), "--methods", "icl,bogus"]) == 2
    assert "unknown methods ['bogus']" in capsys.readouterr().err
    assert main(["eval", "--out", str(tmp_path), "--dataset", "jsonl"]) == 2
    assert "needs a requests file and a tools file" in capsys.readouterr().err


def test_cli_eval_prints_the_report_and_fails_only_when_no_method_ran(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from argparse import Namespace

    from agentmem.eval.cli import _run_and_report

    args = Namespace(out=tmp_path)

    def run(statuses: list[str]):
        (tmp_path / "report.md").write_text("the report", encoding="utf-8")
        return {"methods": {f"m{i}": {"status": s} for i, s in enumerate(statuses)}}

    assert _run_and_report(args, lambda: ["ok", "unavailable"], run) == 0
    assert "the report" in capsys.readouterr().out
    assert _run_and_report(args, lambda: ["unavailable", "unavailable"], run) == 1

    def bad() -> None:
        raise ValueError("limit must be >= 1, got 0")

    assert _run_and_report(args, bad, run) == 2
    assert "agentmem eval: error: limit must be >= 1" in capsys.readouterr().err
