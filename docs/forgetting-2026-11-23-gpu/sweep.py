"""Sweep of learn_tools settings on the forgetting task (GPU scratch script, not shipped)."""

import json
import os
import sys
import time

from agentmem.core import AgentMem
from agentmem.eval.bench_forgetting import make_task, run_agentmem

test = int(os.environ.get("TEST", 5))
task = make_task(4, 10, 15, test, 0)
backbone = AgentMem("smollm2-135m").backbone
print("device", backbone.device, flush=True)
results = {}
for label in sys.argv[1:]:
    settings = json.loads(label)
    started = time.perf_counter()
    results[label] = run_agentmem(task, backbone, label, **{"epochs": 3, **settings})
    print(label, f"{time.perf_counter() - started:.0f} s", flush=True)
    json.dump(results, open(os.path.join(os.environ.get("OUT", "."), "sweep.json"), "w"), indent=1)
