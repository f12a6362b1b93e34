"""The evaluation run behind ``agentmem eval``: data, methods, scores, results on disk.

One run:

1. loads the dataset (a NESTFUL subset, or a user's JSONL requests + JSON tools);
2. splits it by request (`split`, seeded; by default the standard subset of 2-4-call
   requests, every test tool seen in training), cuts each training plan before its first
   call holding a result reference (`resolvable_prefixes`: no method is taught a value no
   executor resolves, and a plan stops where it needs a tool's result, as the product's
   plans do; how many were cut or left out is in the setup and the report), caps them at about
   ``train_per_tool`` per tool (`cap_per_tool`, after the filter so that the cap counts
   usable requests) and draws ``limit`` test requests (seeded sample, kept in dataset
   order). Test requests keep their gold plans as the dataset gives them, references
   included: a gold call holding one cannot be matched by any method;
3. takes as the tool inventory every tool the kept training requests call: every method
   chooses among the same tools. A test request may call a tool outside it (one that
   every training request calls only after a reference): no method can match that call;
4. for each method: fit, predict every test request, score (`agentmem.eval.metrics`),
   and write ``methods/<name>.json`` (scores, costs, every prediction) atomically;
5. computes the ceiling of the test requests (`agentmem.eval.metrics.ceiling`: the share
   of gold argument values readable from the request, and the argument F1 of an oracle
   writing exactly the reachable calls), and writes ``results.json``, ``report.md`` and
   the plots (`agentmem.eval.report`).

Resuming: a method whose file exists with the same setup (data, split, settings,
backbone) is read back instead of recomputed; change anything and it runs again. A
method that cannot run here (`MethodUnavailableError`) is reported as unavailable, with
the reason, and tried again on the next run.

Costs: prompt tokens per request are the tokens the model reads for the request (for ICL,
the tool list and demonstrations too); seconds per request are the wall-clock seconds of
predicting all test requests (batches of ``batch_size``) divided by their number;
training seconds are those of `Method.fit`.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import random
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from agentmem import runinfo
from agentmem.backbone import Backbone
from agentmem.eval.datasets import (
    NESTFUL_SUBSETS,
    Dataset,
    cap_per_tool,
    load_jsonl,
    load_nestful,
    resolvable_prefixes,
    split,
)
from agentmem.eval.methods import MethodSettings, MethodUnavailableError, Prediction, build_method, check_methods
from agentmem.eval.metrics import ceiling, score

__all__ = ["Data", "RunConfig", "evaluate_method", "prepare_data", "run", "write_json"]

RESULTS_FILE = "results.json"
METHODS_DIR = "methods"


@dataclass
class RunConfig:
    """What to evaluate and how (defaults: the published CPU run)."""

    out: Path
    """Folder of results (created; reused to resume)."""
    dataset: str = "complexfuncbench"
    """A NESTFUL subset, or ``"jsonl"`` with ``requests`` and ``tools``."""
    requests: Path | None = None
    """JSONL requests file of a user's dataset (`load_jsonl`)."""
    tools: Path | None = None
    """JSON tools file of a user's dataset."""
    methods: tuple[str, ...] = ("icl", "rag", "lora", "tokmem")
    """Methods to run, in report order."""
    limit: int | None = 50
    """Test requests to evaluate (a seeded sample); None for all."""
    full: bool = False
    """All requests instead of the standard subset of 2-4 calls."""
    test_fraction: float = 0.2
    """Share of the requests held out for testing."""
    train_per_tool: int | None = 5
    """Cap the training requests at about this many per tool; None for all."""
    backbone: str = "smollm2-135m"
    """The frozen backbone every method runs on (its plain weights)."""
    settings: MethodSettings = field(default_factory=MethodSettings)
    """Settings of the methods."""
    command: str = ""
    """The command line, recorded in the results."""

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        check_methods(self.methods)
        if self.dataset not in (*NESTFUL_SUBSETS, "jsonl"):
            raise ValueError(f"unknown dataset {self.dataset!r}; allowed: {', '.join(NESTFUL_SUBSETS)}, jsonl")
        if self.dataset == "jsonl" and (self.requests is None or self.tools is None):
            raise ValueError("dataset 'jsonl' needs a requests file and a tools file")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be >= 1, got {self.limit}")


@dataclass
class Data:
    """The requests and tools of one run."""

    dataset: Dataset
    train: list[dict]
    test: list[dict]
    inventory: dict[str, dict]
    cut_train: int = 0
    """Training requests whose plan was cut before a call holding a result reference."""
    skipped_train: int = 0
    """Training requests left out because their first call held a result reference."""


def prepare_data(config: RunConfig, dataset: Dataset | None = None) -> Data:
    """Loads (unless given), splits, caps and limits the data (steps 1-3 of the module docstring)."""
    if dataset is None:
        if config.dataset == "jsonl":
            dataset = load_jsonl(config.requests, config.tools)  # type: ignore[arg-type]
        else:
            dataset = load_nestful(config.dataset)
    bounds = (None, None) if config.full else (2, 4)
    train, test = split(dataset, config.test_fraction, config.settings.seed, *bounds)
    train, cut, skipped = resolvable_prefixes(train)
    if config.train_per_tool is not None:
        train = cap_per_tool(train, config.train_per_tool, config.settings.seed)
    if config.limit is not None and len(test) > config.limit:
        chosen = set(random.Random(f"limit:{config.settings.seed}").sample(range(len(test)), config.limit))
        test = [ex for i, ex in enumerate(test) if i in chosen]
    used = {c["name"] for ex in train for c in ex["calls"]}
    inventory = {name: tool for name, tool in dataset.tools.items() if name in used}
    if not train or not test:
        raise ValueError(
            f"{dataset.name}: the split left {len(train)} training requests ({skipped} more began with a result "
            f"reference) and {len(test)} test requests"
        )
    return Data(dataset=dataset, train=train, test=test, inventory=inventory, cut_train=cut, skipped_train=skipped)


def _setup(config: RunConfig, data: Data, backbone_name: str) -> dict[str, Any]:
    digest = hashlib.sha256(json.dumps([data.train, data.test, data.inventory], sort_keys=True).encode()).hexdigest()[
        :16
    ]
    settings = config.settings.as_dict()
    settings.pop("progress")
    return {
        "dataset": data.dataset.name,
        "subset": "all requests" if config.full else "2-4 calls",
        "test_fraction": config.test_fraction,
        "train_per_tool": config.train_per_tool,
        "limit": config.limit,
        "train_requests": len(data.train),
        "train_requests_cut_at_references": data.cut_train,
        "train_requests_skipped_for_references": data.skipped_train,
        "test_requests": len(data.test),
        "tools": len(data.inventory),
        "renamed_tools": {n: data.dataset.original_name(n) for n in data.inventory if n in data.dataset.original_names},
        "backbone": backbone_name,
        "settings": settings,
        "data_hash": digest,
    }


def _setup_key(setup: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(setup, sort_keys=True).encode()).hexdigest()[:16]


def write_json(path: Path, data: Any) -> None:
    """Atomic: a temporary file in the same folder, then renamed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, ensure_ascii=False)
        os.chmod(tmp, 0o644)  # mkstemp makes files private; results are for everyone
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _scores(golds: Sequence[list[dict]], predictions: Sequence[Prediction]) -> dict[str, Any]:
    result = score(golds, [p.calls for p in predictions], [len(p.invalid) for p in predictions])
    return result.as_dict()


def evaluate_method(name: str, backbone: Backbone, config: RunConfig, data: Data) -> dict[str, Any]:
    """Fits and runs one method; returns its result record (scores, costs, predictions)."""
    method = build_method(name, backbone, config.settings)
    fit = method.fit(data.train, data.inventory)
    queries = [ex["query"] for ex in data.test]
    started = time.perf_counter()
    predictions = method.predict(queries)
    seconds = time.perf_counter() - started
    golds = [ex["calls"] for ex in data.test]
    by_calls: dict[str, Any] = {}
    for n in sorted({len(g) for g in golds}):
        chosen = [i for i, g in enumerate(golds) if len(g) == n]
        by_calls[str(n)] = _scores([golds[i] for i in chosen], [predictions[i] for i in chosen])
    n = len(queries)
    return {
        "method": name,
        "status": "ok",
        "scores": _scores(golds, predictions),
        "by_calls": by_calls,
        "cost": {
            "prompt_tokens_per_request": sum(p.prompt_tokens for p in predictions) / n,
            "generated_tokens_per_request": sum(p.generated_tokens for p in predictions) / n,
            "seconds_per_request": seconds / n,
            "trainable_parameters": fit.trainable_parameters,
            "training_seconds": fit.seconds,
            "training_examples": fit.examples,
        },
        "fit": fit.details,
        "predictions": [{"query": q, "gold": g, **asdict(p)} for q, g, p in zip(queries, golds, predictions)],
    }


def run(config: RunConfig, *, dataset: Dataset | None = None, backbone: Backbone | None = None) -> dict[str, Any]:
    """Runs (or resumes) an evaluation and writes its results, report and plots.

    Args:
        config: What to run.
        dataset: Use this dataset instead of loading ``config.dataset``.
        backbone: Use this loaded `Backbone` instead of loading ``config.backbone``.

    Returns:
        The content of ``results.json``.

    Raises:
        MissingExtraError: If the [eval] extra is not installed (the plots need it; checked
            first, not after the run).
    """
    from tqdm.auto import tqdm

    from agentmem.extras import require_extra

    require_extra("eval")

    from agentmem.eval.report import write_report

    data = prepare_data(config, dataset)
    backbone_name = backbone.name if backbone is not None else config.backbone
    setup = _setup(config, data, backbone_name)
    key = _setup_key(setup)
    results: dict[str, Any] = {}
    for name in tqdm(config.methods, desc="methods", disable=not config.settings.progress):
        path = config.out / METHODS_DIR / f"{name}.json"
        if path.is_file():
            saved = json.loads(path.read_text(encoding="utf-8"))
            if saved.get("setup_key") == key and saved.get("status") == "ok":
                tqdm.write(f"{name}: finished before, read from {path}")
                results[name] = saved
                continue
        if backbone is None:
            from agentmem.backbone import load_backbone

            backbone = load_backbone(config.backbone)
        tqdm.write(f"{name}: fitting on {len(data.train)} requests, then planning {len(data.test)}")
        try:
            record = evaluate_method(name, backbone, config, data)
        except MethodUnavailableError as exc:
            record = {"method": name, "status": "unavailable", "reason": str(exc)}
            tqdm.write(f"{name}: unavailable: {exc}")
        record.update(setup_key=key, machine=runinfo.machine(backbone.device), date=datetime.date.today().isoformat())
        write_json(path, record)
        results[name] = record

    summary = {
        "command": config.command,
        "setup": setup,
        "ceiling": ceiling(
            [ex["query"] for ex in data.test], [ex["calls"] for ex in data.test], data.inventory
        ).as_dict(),
        "methods": {n: {k: v for k, v in r.items() if k != "predictions"} for n, r in results.items()},
    }
    write_json(config.out / RESULTS_FILE, summary)
    write_report(summary, config.out)
    return summary
