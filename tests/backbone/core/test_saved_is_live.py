"""A saved bank plans exactly like the live one: directly, through the server, through LangChain.

The tool's properties are deliberately not in alphabetical order (restaurant, people, time):
a bank that sorted them on save (format 1) decoded the keys in an order the row never
trained on, and its plans changed ("for 2 at Spice Route" went from people 2 to people 1).
Real backbone: the order only matters once the model has learned one.
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from agentmem import AgentMem
from agentmem.adapters.langchain import ChatAgentMem
from agentmem.adapters.server import BankRegistry, create_app

pytestmark = pytest.mark.backbone

BOOK_TABLE = {
    "name": "book_table",
    "description": "Book a table at a restaurant.",
    "parameters": {
        "type": "object",
        "properties": {
            "restaurant": {"type": "string", "description": "Restaurant name."},
            "people": {"type": "integer", "description": "Party size."},
            "time": {"type": "string", "description": "Time, e.g. 8pm."},
        },
        "required": ["restaurant", "people", "time"],
    },
}
_TRAIN = [
    ("Book a table for {p} at {r} at {t}.", 2, "Nopa", "7pm"),
    ("Table at {r} for {p} people, {t}.", 4, "Zuni", "6pm"),
    ("Reserve {r} for {p} at {t} please", 3, "Lucca", "9pm"),
    ("Can you get us {r} at {t}? We are {p}.", 5, "Ramen Bar", "8pm"),
    ("{p} people at {r} tonight at {t}", 6, "Kin Khao", "7:30pm"),
    ("I need a table for {p} at {r}, {t}", 2, "Flour", "1pm"),
    ("Get me a booking at {r} for {p} at {t}", 8, "Delfina", "8:15pm"),
    ("Book {r}, party of {p}, {t}", 4, "Cotogna", "6:45pm"),
    ("Dinner at {r} for {p} at {t}", 3, "Souvla", "9:30pm"),
    ("Reserve a table at {r} for {p} at {t}", 7, "Tartine", "noon"),
    ("We'd like {r} at {t} for {p}", 2, "Mister Jiu", "10pm"),
    ("Lunch for {p} at {r}, {t}", 5, "Namu", "12:30pm"),
    ("Could you book {r} for {p} guests at {t}?", 6, "Aziza", "7:45pm"),
    ("Table for {p}, {r}, at {t}", 3, "Burma Love", "5pm"),
    ("Please reserve {r} at {t}, {p} of us", 4, "Octavia", "8:30pm"),
]
REQUESTS = [
    "Book a table for 2 at Spice Route at 8pm.",
    "Reserve Saffron for 4 at 7pm please",
    "Dinner at Blue Door for 6 at 9pm",
    "Can you get us Olive Tree at 6pm? We are 3.",
    "Table at Harbor Grill for 5 people, 7:30pm.",
]


def _examples() -> list[dict]:
    return [
        {"query": q.format(p=p, r=r, t=t), "arguments": {"restaurant": r, "people": p, "time": t}}
        for q, p, r, t in _TRAIN
    ]


def _signature(calls: list[tuple[str, dict]]) -> list[tuple[str, list]]:
    return [(name, list(arguments.items())) for name, arguments in calls]  # key order counts


@pytest.fixture(scope="module")
def live_and_saved(smollm, tmp_path_factory):
    live = AgentMem(smollm)
    live.learn_tool(BOOK_TABLE, _examples(), epochs=3, progress=False)
    path = live.save(tmp_path_factory.mktemp("banks") / "tables")
    return live, path


def test_loaded_bank_plans_like_the_live_one(live_and_saved, smollm):
    live, path = live_and_saved
    expected = [
        _signature([(c.name, c.arguments) for c in p.calls]) for p in live.plan_batch(REQUESTS, tool_choice="any")
    ]
    assert sum(bool(e) for e in expected) >= 4  # the live bank does call the tool
    loaded = AgentMem.load(path, backbone=smollm)
    assert [
        _signature([(c.name, c.arguments) for c in p.calls]) for p in loaded.plan_batch(REQUESTS, tool_choice="any")
    ] == expected

    registry = BankRegistry(smollm)
    registry.add("tables", path)
    client = TestClient(create_app(registry))
    served = []
    for request in REQUESTS:
        body = {"model": "tables", "messages": [{"role": "user", "content": request}], "tool_choice": "required"}
        message = client.post("/v1/chat/completions", json=body).json()["choices"][0]["message"]
        served.append(
            _signature(
                [(c["function"]["name"], _ordered(c["function"]["arguments"])) for c in message.get("tool_calls") or []]
            )
        )
    assert served == expected

    chat = ChatAgentMem(model=str(path)).bind_tools([BOOK_TABLE], tool_choice="any")
    through_langchain = [_signature([(c["name"], c["args"]) for c in chat.invoke(r).tool_calls]) for r in REQUESTS]
    assert through_langchain == expected


def _ordered(arguments: str) -> dict:
    import json

    return json.loads(arguments)  # json keeps the order the server wrote
