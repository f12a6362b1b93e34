"""bank.json and bank.safetensors checked whole: every damaged file is a BankError naming what
is wrong, and `agentmem plan`/`info` print it (exit 2), never a traceback."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from agentmem import AgentMem, cli
from agentmem.bank_io import MAX_DEPTH, ROWS_KEY, load_bank
from agentmem.errors import BankError
from agentmem.tools import demo


@pytest.fixture(scope="module")
def saved(tokenizer, tmp_path_factory) -> Path:
    """A valid two-tool bank on the tiny Llama; tests copy and damage its files."""
    from tests.conftest import tiny_backbone

    mem = AgentMem(tiny_backbone(tokenizer))
    mem.learn_tools(
        [(demo.TOOLS[n], demo.training_examples(n, n=4)) for n in ("get_weather", "convert_currency")],
        epochs=1,
        progress=False,
    )
    return mem.save(tmp_path_factory.mktemp("banks") / "good")


def _copy(saved: Path, to: Path, meta: object | str | None = None, rows: torch.Tensor | None = None) -> Path:
    """A copy of ``saved`` with bank.json (an object, or raw text) or the rows replaced."""
    to.mkdir(parents=True)
    text = (saved / "bank.json").read_text() if meta is None else meta if isinstance(meta, str) else json.dumps(meta)
    (to / "bank.json").write_text(text)
    if rows is None:
        (to / "bank.safetensors").write_bytes((saved / "bank.safetensors").read_bytes())
    else:
        save_file({ROWS_KEY: rows}, str(to / "bank.safetensors"))
    return to


def _meta(saved: Path) -> dict:
    return json.loads((saved / "bank.json").read_text())


def _damaged(saved: Path) -> dict[str, tuple[object, str]]:
    """Damaged bank.json contents (objects or raw text), each with the message it must give."""
    meta = _meta(saved)

    def edit(change) -> dict:
        copy = json.loads(json.dumps(meta))
        change(copy)
        return copy

    deep = "[" * 100_000 + "]" * 100_000
    return {
        "training is a string": (
            edit(lambda m: m["tools"][0].update(training="ab")),
            r"tools\[0\]\.training must be an object, got str",
        ),
        "kept arguments not an object": (
            edit(lambda m: m["tools"][0]["kept_examples"][0]["calls"][0].update(arguments="ab")),
            r"tools\[0\]\.kept_examples\[0\]\.calls\[0\]\.arguments must be an object",
        ),
        "kept example a number": (
            edit(lambda m: m["tools"][1]["kept_examples"].__setitem__(0, 7)),
            r"kept_examples\[0\] must be an object",
        ),
        "100k-deep nesting": (
            json.dumps(meta)[:-1] + ', "extra": ' + deep + "}",
            f"nested 100001 levels deep, over the limit of {MAX_DEPTH}",
        ),
        "deep nesting in a spec": (
            edit(
                lambda m: m["tools"][0]["spec"]["parameters"].update(
                    x=json.loads("[" * (MAX_DEPTH + 2) + "]" * (MAX_DEPTH + 2))
                )
            ),
            "levels deep",
        ),
        "format_version true": (edit(lambda m: m.update(format_version=True)), "format version True"),
        "format_version 2.0": (edit(lambda m: m.update(format_version=2.0)), "format version 2.0"),
        "row a float": (
            edit(lambda m: m["tools"][0].update(row=0.0)),
            r"tools\[0\]\.row must be an integer, got float",
        ),
        "row a bool": (edit(lambda m: m["tools"][1].update(row=True)), r"tools\[1\]\.row must be an integer, got bool"),
        "rows repeated": (edit(lambda m: m["tools"][1].update(row=0)), "rows must be 0..1"),
        "huge integer": (json.dumps(meta).replace('"row": 1', '"row": 1' + "0" * 5000), "not JSON"),
        "huge float": (json.dumps(meta).replace('"row": 1', '"row": 1e999'), "row must be an integer, got float inf"),
        "backbone a list": (edit(lambda m: m.update(backbone=["x"])), "bank.backbone must be an object, got list"),
        "backbone name a number": (
            edit(lambda m: m["backbone"].update(name=5)),
            "backbone.name must be a string, got int",
        ),
        "tools missing": (edit(lambda m: m.pop("tools")), "bank has no 'tools'"),
        "tools an object": (edit(lambda m: m.update(tools={})), "bank.tools must be a list, got dict"),
        "duplicate tool": (edit(lambda m: m["tools"][1].update(spec=m["tools"][0]["spec"])), "found get_weather twice"),
        "spec name a list": (edit(lambda m: m["tools"][0]["spec"].update(name=["x"])), "tool name .* is not valid"),
        "lone surrogate": (
            json.dumps(meta).replace('"description": "', '"description": "\\ud800', 1),
            r"\['tools'\]\[0\]\['spec'\]\['description'\] holds text that is not valid Unicode",
        ),
        "not an object": ([1, 2], "expected a JSON object, got list"),
        "truncated": (json.dumps(meta)[:100], "not JSON"),
        "empty": ("", "not JSON"),
    }


def test_every_damaged_bank_json_is_a_bank_error_naming_the_field(saved, tmp_path):
    assert [s.name for s in load_bank(_copy(saved, tmp_path / "same")).specs] == ["get_weather", "convert_currency"]
    for i, (label, (meta, message)) in enumerate(_damaged(saved).items()):
        try:
            load_bank(_copy(saved, tmp_path / f"bad{i}", meta=meta))
        except BankError as exc:
            assert re.search(message, str(exc)), (label, str(exc))
        else:
            pytest.fail(f"{label}: loaded")


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_rows_are_refused_naming_the_tool(saved, tmp_path, bad):
    rows = load_bank(saved).rows.clone()
    rows[1, 3] = bad
    with pytest.raises(BankError, match="rows of convert_currency hold NaN or infinite values"):
        load_bank(_copy(saved, tmp_path / "nan", rows=rows))
    with pytest.raises(BankError, match=r"dtype torch.int64"):
        load_bank(_copy(saved, tmp_path / "ints", rows=rows.nan_to_num().long()))


def test_plan_and_info_print_the_error_without_a_traceback(saved, tmp_path, capsys):
    damaged = _damaged(saved)
    for i, label in enumerate(["training is a string", "kept arguments not an object", "100k-deep nesting"]):
        bank = _copy(saved, tmp_path / f"bad{i}", meta=damaged[label][0])
        for argv in (["plan", str(bank), "weather in Paris?"], ["info", str(bank)]):
            assert cli.main(argv) == 2
            err = capsys.readouterr().err
            assert err.startswith(f"agentmem {argv[0]}: error: ") and "corrupted" in err and "Traceback" not in err
    rows = load_bank(saved).rows.clone()
    rows[0] = math.nan
    assert cli.main(["plan", str(_copy(saved, tmp_path / "nan", rows=rows)), "weather?"]) == 2
    assert "rows of get_weather hold NaN" in capsys.readouterr().err
