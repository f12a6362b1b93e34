"""Demo tool pack: four everyday tools with schemas, offline implementations and examples.

The tools (``get_weather``, ``convert_currency``, ``send_email``, ``create_reminder``) are
fake but deterministic, so demos and tests run offline and give the same answers every time.
Examples are drawn from templates and value pools with ``random.Random``; every argument value
appears verbatim in its query (the model learns to copy), except the ``unit`` enum, which is
implied by the word "celsius"/"fahrenheit". Held-out examples use their own templates and value
pools so that evaluation measures generalisation, not recall of training strings.
"""

from __future__ import annotations

import hashlib
import random
import string
from collections.abc import Callable
from functools import partial
from typing import Any


def _tool(name: str, description: str, properties: dict[str, dict[str, Any]], required: list[str]) -> dict[str, Any]:
    """An OpenAI-style function dict whose parameters reject unknown arguments."""
    return {
        "name": name,
        "description": description,
        "parameters": {"type": "object", "properties": properties, "required": required, "additionalProperties": False},
    }


def _text(description: str, **constraints: Any) -> dict[str, Any]:
    return {"type": "string", **constraints, "description": description}


_CODE = r"^[A-Z]{3}$"
TOOLS: dict[str, dict[str, Any]] = {
    tool["name"]: tool
    for tool in [
        _tool(
            "get_weather",
            "Get the current weather forecast for a city.",
            {
                "city": _text("City name, e.g. 'Paris'."),
                "unit": _text(
                    "Temperature unit; celsius when the request does not say.",
                    enum=["celsius", "fahrenheit"],
                    default="celsius",
                ),
            },
            ["city"],
        ),
        _tool(
            "convert_currency",
            "Convert an amount of money from one currency to another.",
            {
                "amount": {"type": "number", "exclusiveMinimum": 0, "description": "Amount to convert."},
                "from_currency": _text("3-letter ISO code to convert from, e.g. 'USD'.", pattern=_CODE),
                "to_currency": _text("3-letter ISO code to convert to, e.g. 'EUR'.", pattern=_CODE),
            },
            ["amount", "from_currency", "to_currency"],
        ),
        _tool(
            "send_email",
            "Send an email to one recipient.",
            {
                "to": _text("Recipient address.", format="email", pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$"),
                "subject": _text("Subject line."),
                "body": _text("Message text."),
            },
            ["to", "subject", "body"],
        ),
        _tool(
            "create_reminder",
            "Create a reminder that fires at a given time.",
            {
                "text": _text("What to be reminded of, e.g. 'call mom'."),
                "time": _text("24-hour time HH:MM, e.g. '18:30'.", pattern="^[0-2][0-9]:[0-5][0-9]$"),
                "date": _text("Day as the request says it, e.g. 'Friday' or '2025-06-14'; omit for today."),
            },
            ["text", "time"],
        ),
    ]
}

_CONDITIONS = ["sunny", "partly cloudy", "cloudy", "light rain", "showers", "windy", "fog", "snow"]
_KNOWN_WEATHER = {
    "paris": (18, "partly cloudy"),
    "london": (14, "light rain"),
    "tokyo": (22, "sunny"),
    "new york": (20, "windy"),
    "sydney": (25, "sunny"),
    "lisbon": (21, "showers"),
    "reykjavik": (4, "snow"),
    "cairo": (33, "sunny"),
}
# Units of each currency per 1 USD: fixed so conversions are reproducible.
_RATES = {
    "USD": 1.0,
    "EUR": 0.92,
    "GBP": 0.79,
    "JPY": 151.0,
    "CAD": 1.36,
    "AUD": 1.52,
    "CHF": 0.9,
    "CNY": 7.23,
    "SEK": 10.6,
    "NOK": 10.8,
    "INR": 83.3,
    "MXN": 16.9,
    "BRL": 5.05,
    "SGD": 1.35,
    "NZD": 1.66,
    "ZAR": 18.7,
}


def _digest(*parts: str) -> bytes:
    # hashlib rather than hash(): str hashes are salted per process.
    return hashlib.sha256("\x1f".join(parts).encode()).digest()


def get_weather(city: str, unit: str = "celsius") -> dict[str, Any]:
    """Return a fake forecast: a small table of cities, a hash of the name for any other."""
    if unit not in ("celsius", "fahrenheit"):
        raise ValueError(f"unit must be 'celsius' or 'fahrenheit', got {unit!r}")
    key = " ".join(city.lower().split())
    if key in _KNOWN_WEATHER:
        celsius, condition = _KNOWN_WEATHER[key]
    else:
        digest = _digest(key)
        celsius, condition = digest[0] % 36 - 5, _CONDITIONS[digest[1] % len(_CONDITIONS)]
    temperature = celsius if unit == "celsius" else round(celsius * 9 / 5 + 32)
    symbol = "C" if unit == "celsius" else "F"
    return {
        "city": city,
        "temperature": temperature,
        "unit": unit,
        "condition": condition,
        "summary": f"{condition.capitalize()}, {temperature}°{symbol} in {city}",
    }


def convert_currency(amount: float, from_currency: str, to_currency: str) -> dict[str, Any]:
    """Convert with the fixed rates table; unknown codes raise ``ValueError``."""
    for code in (from_currency, to_currency):
        if code not in _RATES:
            raise ValueError(f"unsupported currency {code!r}; supported: {', '.join(_RATES)}")
    rate = _RATES[to_currency] / _RATES[from_currency]
    return {
        "amount": amount,
        "from_currency": from_currency,
        "to_currency": to_currency,
        "rate": round(rate, 6),
        "converted": round(amount * rate, 2),
    }


def send_email(to: str, subject: str, body: str) -> dict[str, Any]:
    """Confirm an email as if sent; nothing leaves the machine."""
    return {
        "status": "sent",
        "simulated": True,
        "to": to,
        "subject": subject,
        "message_id": "msg_" + _digest(to, subject, body).hex()[:12],
    }


def create_reminder(text: str, time: str, date: str | None = None) -> dict[str, Any]:
    """Record a reminder; ``time`` must be a valid 24-hour ``HH:MM``."""
    hours, _, minutes = time.partition(":")
    if not (
        len(hours) == len(minutes) == 2
        and hours.isdigit()
        and minutes.isdigit()
        and int(hours) < 24
        and int(minutes) < 60
    ):
        raise ValueError(f"time must be 24-hour HH:MM, got {time!r}")
    return {
        "status": "created",
        "text": text,
        "time": time,
        "date": date or "today",
        "reminder_id": "rem_" + _digest(text, time, date or "").hex()[:12],
    }


IMPLEMENTATIONS: dict[str, Callable[..., dict[str, Any]]] = {
    tool.__name__: tool for tool in (get_weather, convert_currency, send_email, create_reminder)
}


def run_call(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """Execute one tool call.

    Args:
        name: Tool name, one of ``TOOLS``.
        arguments: Keyword arguments for the tool.

    Returns:
        The tool's result.

    Raises:
        KeyError: ``name`` is not a tool of this pack.
    """
    if name not in IMPLEMENTATIONS:
        raise KeyError(f"unknown tool {name!r}; allowed: {', '.join(IMPLEMENTATIONS)}")
    return IMPLEMENTATIONS[name](**arguments)


DEMO_REQUEST = "What's the weather in Lisbon in fahrenheit? Also remind me to pack an umbrella at 07:30."
DEMO_CALLS: list[dict[str, Any]] = [
    {"name": "get_weather", "arguments": {"city": "Lisbon", "unit": "fahrenheit"}},
    {"name": "create_reminder", "arguments": {"text": "pack an umbrella", "time": "07:30"}},
]

# Training and held-out pools are disjoint; DEMO_REQUEST's city and text are in neither.
_POOLS: dict[str, dict[str, list[Any]]] = {
    "train": {
        "city": [
            "Paris",
            "Tokyo",
            "London",
            "Berlin",
            "Madrid",
            "Rome",
            "Sydney",
            "Toronto",
            "Cairo",
            "Seoul",
            "Chicago",
            "Dublin",
            "San Francisco",
            "New York",
            "Mumbai",
        ],
        "amount": [20, 45, 75, 100, 150, 250, 300, 500, 1200, 12.5, 49.99, 8.75],
        "code": ["USD", "EUR", "GBP", "JPY", "CAD", "AUD", "CHF", "CNY"],
        "to": [
            "ana@example.com",
            "tom.lee@example.org",
            "sara@acme.io",
            "raj.patel@example.com",
            "mia@studio.dev",
            "ben@example.net",
            "lucy.w@company.com",
            "omar@example.com",
        ],
        "subject": ["Lunch tomorrow", "Project update", "Meeting notes", "Invoice", "Weekend plans", "Quick question"],
        # No end punctuation: joiners end the sentence.
        "body": [
            "See you at noon",
            "The report is attached",
            "Running ten minutes late",
            "Thanks for your help",
            "Please review the draft",
            "The slides are ready",
        ],
        "text": [
            "call mom",
            "take my medicine",
            "water the plants",
            "buy milk",
            "walk the dog",
            "submit the report",
            "book the dentist",
            "pay the rent",
            "back up my laptop",
        ],
        "time": ["06:45", "07:30", "08:00", "09:15", "12:00", "13:45", "17:00", "18:30", "21:15"],
        "date": ["Monday", "Wednesday", "Friday", "Saturday", "2025-06-14", "2025-12-24"],
    },
    "held": {
        "city": [
            "Nairobi",
            "Hanoi",
            "Lima",
            "Reykjavik",
            "Montreal",
            "Buenos Aires",
            "Cape Town",
            "Helsinki",
            "Osaka",
            "Vienna",
        ],
        "amount": [35, 64, 180, 420, 860, 2500, 7.25, 19.9, 333],
        "code": ["SEK", "NOK", "INR", "MXN", "BRL", "SGD", "NZD", "ZAR"],
        "to": [
            "priya.n@mailbox.org",
            "kenji@lab.jp",
            "elena.r@example.co",
            "dave@startup.ai",
            "noor@example.edu",
            "felix.b@post.de",
        ],
        "subject": ["Budget review", "Flight details", "Birthday party", "Team offsite"],
        "body": [
            "The venue is confirmed",
            "Please send the receipts",
            "I land at 6 pm",
            "Happy to join next week",
            "Please sign by Monday",
        ],
        "text": [
            "renew my passport",
            "feed the cat",
            "charge the car",
            "send the invoice",
            "pick up the dry cleaning",
            "check the oven",
        ],
        "time": ["05:50", "10:40", "11:35", "14:20", "16:05", "19:25", "22:10"],
        "date": ["Tuesday", "Thursday", "Sunday", "2025-08-05", "2025-10-17", "2026-01-09"],
    },
}

# Whole one-call requests. Slots: {city} {unit} {amount} {src} {dst} {to} {subject} {body}
# {text} {time} {date}; an optional argument is set exactly when its slot is in the template.
_TEMPLATES: dict[str, dict[str, list[str]]] = {
    "train": {
        "get_weather": [
            "What's the weather in {city}?",
            "What's the weather like in {city} in {unit}?",
            "Tell me the forecast for {city}.",
            "How hot is it in {city} right now, in {unit}?",
            "Is it raining in {city}?",
            "Give me the {city} weather in {unit}.",
            "Weather for {city} please.",
            "Check the temperature in {city} in degrees {unit}.",
            "Do I need a jacket in {city} today?",
        ],
        "convert_currency": [
            "Convert {amount} {src} to {dst}.",
            "How much is {amount} {src} in {dst}?",
            "What is {amount} {src} worth in {dst}?",
            "Change {amount} {src} into {dst}.",
            "I have {amount} {src}. How many {dst} is that?",
            "{amount} {src} to {dst}?",
            "Exchange {amount} {src} for {dst} please.",
            "Please convert {amount} {src} into {dst} for me.",
        ],
        "send_email": [
            'Email {to} with subject "{subject}" saying "{body}".',
            'Send an email to {to}, subject "{subject}", body "{body}".',
            'Write to {to}: subject "{subject}", message "{body}".',
            'Mail {to} about "{subject}" and tell them "{body}".',
            "Please email {to}. Subject: {subject}. Body: {body}.",
            'Shoot {to} an email titled "{subject}": "{body}".',
            'Send {to} a note with the subject "{subject}" that says "{body}".',
            'Compose an email to {to} with subject "{subject}" and text "{body}".',
        ],
        "create_reminder": [
            "Remind me to {text} at {time}.",
            "Remind me to {text} at {time} on {date}.",
            "Set a reminder to {text} at {time}.",
            "At {time} on {date}, remind me to {text}.",
            "Create a reminder: {text} at {time}.",
            "Please remind me at {time} to {text}.",
            "Don't let me forget to {text} at {time} on {date}.",
            "Add a reminder for {date} at {time}: {text}.",
            "Ping me at {time} to {text}.",
        ],
    },
    "held": {
        "get_weather": [
            "Could you look up the weather in {city}?",
            "Forecast in {unit} for {city}, please.",
            "I'm flying to {city}. What's it like there?",
            "Should I bring sunglasses to {city}?",
            "Current conditions in {city} using {unit}?",
        ],
        "convert_currency": [
            "Turn {amount} {src} into {dst}.",
            "What do I get for {amount} {src} in {dst}?",
            "Quick conversion: {amount} {src} -> {dst}.",
            "Rate check: {amount} {src} in {dst}?",
        ],
        "send_email": [
            'Drop a line to {to} titled "{subject}" reading "{body}".',
            'Can you message {to}? Subject "{subject}". Text: "{body}".',
            'Let {to} know by email ("{subject}"): "{body}".',
            'Reach {to} by mail, topic "{subject}", content "{body}".',
        ],
        "create_reminder": [
            "Make sure I {text} at {time}.",
            "Alert me on {date} at {time} to {text}.",
            "Schedule a reminder at {time}: {text}.",
            "Nudge me to {text} on {date} around {time}.",
        ],
    },
}

# Lower-case fragments that joiners glue into two-call requests.
_CLAUSES: dict[str, dict[str, list[str]]] = {
    "train": {
        "get_weather": [
            "check the weather in {city}",
            "get the temperature in {city}",
            "tell me the forecast for {city} in {unit}",
        ],
        "convert_currency": ["convert {amount} {src} to {dst}", "tell me what {amount} {src} is in {dst}"],
        "send_email": [
            'email {to} with subject "{subject}" saying "{body}"',
            'send {to} an email titled "{subject}": "{body}"',
        ],
        "create_reminder": ["remind me to {text} at {time}", "set a reminder to {text} at {time} on {date}"],
    },
    "held": {
        "get_weather": ["look up conditions in {city} in {unit}", "find out how warm {city} is"],
        "convert_currency": ["work out {amount} {src} in {dst}"],
        "send_email": ['message {to} ("{subject}"): "{body}"'],
        "create_reminder": ["make sure I {text} at {time}", "alert me on {date} at {time} to {text}"],
    },
}
_JOINERS = {
    "train": [
        "{a}, then {b}.",
        "{a}. Also, {b}.",
        "{a} and {b}.",
        "First {a}, then {b}.",
        "Please {a}. After that, {b}.",
    ],
    "held": ["{a}; afterwards {b}.", "Could you {a} and also {b}?", "{a}. Once done, {b}."],
}


def _fill(name: str, template: str, split: str, rng: random.Random) -> tuple[str, dict[str, Any]]:
    """Fill a template with values of one split; return the text and the call it asks for."""
    pools = _POOLS[split]
    values = {key: rng.choice(pool) for key, pool in pools.items()}
    values["src"], values["dst"] = rng.sample(pools["code"], 2)
    unit = rng.choice(["celsius", "fahrenheit"])
    arguments = {
        "get_weather": {"city": values["city"], "unit": unit},
        "convert_currency": {"amount": values["amount"], "from_currency": values["src"], "to_currency": values["dst"]},
        "send_email": {key: values[key] for key in ("to", "subject", "body")},
        "create_reminder": {key: values[key] for key in ("text", "time", "date")},
    }[name]
    slots = {slot for _, slot, _, _ in string.Formatter().parse(template) if slot}
    for optional in ("unit", "date"):  # each slot shares its argument's name
        if optional not in slots:
            arguments.pop(optional, None)
    text = template.format(**values, unit=rng.choice([unit, unit.capitalize()]))
    return text, {"name": name, "arguments": arguments}


def _single(name: str, split: str, rng: random.Random) -> dict[str, Any]:
    query, call = _fill(name, rng.choice(_TEMPLATES[split][name]), split, rng)
    return {"query": query, "calls": [call]}


def _double(split: str, rng: random.Random) -> dict[str, Any]:
    parts = [_fill(name, rng.choice(_CLAUSES[split][name]), split, rng) for name in rng.sample(sorted(TOOLS), 2)]
    query = rng.choice(_JOINERS[split]).format(a=parts[0][0], b=parts[1][0])
    return {"query": query[0].upper() + query[1:], "calls": [call for _, call in parts]}


def _distinct(make: Callable[[], dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """Call ``make`` until ``n`` examples with distinct queries are collected."""
    examples: dict[str, dict[str, Any]] = {}
    for _ in range(50 * n + 50):
        if len(examples) == n:
            break
        example = make()
        examples.setdefault(example["query"], example)
    if len(examples) < n:
        raise ValueError(f"cannot draw {n} distinct examples from the pools")
    return list(examples.values())


def training_examples(name: str, n: int = 20, seed: int = 0) -> list[dict[str, Any]]:
    """Single-call training examples of one tool.

    Args:
        name: Tool name, one of ``TOOLS``.
        n: Number of examples, all with distinct queries.
        seed: Seed of the draw; the same seed gives the same examples.

    Returns:
        ``[{"query": str, "arguments": dict}]``.

    Raises:
        KeyError: ``name`` is not a tool of this pack.
    """
    if name not in TOOLS:
        raise KeyError(f"unknown tool {name!r}; allowed: {', '.join(TOOLS)}")
    drawn = _distinct(partial(_single, name, "train", random.Random(f"{name}:{seed}")), n)
    return [{"query": ex["query"], "arguments": ex["calls"][0]["arguments"]} for ex in drawn]


def multi_call_examples(n: int = 12, seed: int = 0) -> list[dict[str, Any]]:
    """Training requests that need two different tools, calls in the order asked.

    Args:
        n: Number of examples, all with distinct queries.
        seed: Seed of the draw.

    Returns:
        ``[{"query": str, "calls": [{"name": str, "arguments": dict}, ...]}]``.
    """
    return _distinct(partial(_double, "train", random.Random(f"multi:{seed}")), n)


def held_out_examples(seed: int = 1) -> list[dict[str, Any]]:
    """Evaluation requests from templates and value pools never used in training.

    Args:
        seed: Seed of the draw.

    Returns:
        8 single-call examples per tool, then 8 two-call examples, each
        ``{"query": str, "calls": [{"name": str, "arguments": dict}, ...]}``.
    """
    rng = random.Random(f"held:{seed}")
    examples = [ex for name in TOOLS for ex in _distinct(partial(_single, name, "held", rng), 8)]
    return examples + _distinct(partial(_double, "held", rng), 8)


#: Held-out requests that need none of the demo tools: a good plan is an answer in words.
#: Written by hand; the adaptation corpus's requests of this kind (`agentmem.adaptation.corpus`) ask
#: about other countries and words, and most of these ask things it never asks.
NO_TOOL_REQUESTS: tuple[str, ...] = (
    "Who wrote Hamlet?",
    "What is the capital of Italy?",
    "How many legs does a spider have?",
    "Hello!",
    "Thanks, that's all for now.",
    "What's your name?",
    "Can you recommend a good book?",
    "What's the meaning of 'gregarious'?",
    "Tell me a fun fact about octopuses.",
    "Good night!",
    "Is a tomato a fruit or a vegetable?",
    "Who painted the Mona Lisa?",
    "What's the opposite of 'brave'?",
    "How do you say 'thank you' in Spanish?",
    "Write a haiku about autumn.",
    "Which planet is closest to the sun?",
    "What can you help me with?",
    "Okay, never mind.",
    "What is the largest ocean on Earth?",
    "Give me a synonym for 'happy'.",
)
