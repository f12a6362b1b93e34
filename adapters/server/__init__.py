"""An OpenAI-compatible HTTP server over memory banks: ``agentmem serve``.

Input flow: ``POST /v1/chat/completions`` -> `ChatRequest` (a malformed body is a 400 in
OpenAI's error shape) -> the bank ``model`` names (`BankRegistry`) -> `request_options` (``tools``
must be learned in that bank; ``tool_choice`` by `agentmem.chat.plan_options`) -> the chat
boundary's `read_turn` and `prompt_messages` (earlier ``tool_calls`` are written back as
memory token + arguments) -> `AgentMem.submit` (at most ``max_prompt_tokens``): the bank's
scheduler (`agentmem.scheduler`) decodes it in one batch with the other requests in flight,
which it joins at the next step, while the handler waits without holding a thread and stops
the request when the client disconnects. Output flow: Plan -> `agentmem.chat.plan_to_dict` -> `to_completion`
(a ``chat.completion``), or with ``stream`` -> `to_chunks` (role and text, one chunk per call,
a last chunk with ``finish_reason``, an optional usage chunk) as server-sent events.

Where it differs from OpenAI's API, by design:

* ``model`` names a bank; banks on the same weights share one backbone, loaded once.
  ``agentmem serve --weights bfloat16`` (or ``int8``, CPU only; `BankRegistry`'s ``weights``)
  makes every bank plan on those backbone weights, the banks of one backbone on one copy of
  them; ``GET /v1/models`` gives each bank's ``weights``. Under ``int8`` the rows decoding
  together share one input scale, so an answer can differ with what it is batched with
  (BENCHMARKS, "int8 decoding steps, bfloat16 prompts": 12 of 32 at 16 clients).
  With ``admin=True`` (off by default), ``POST /v1/banks`` loads or reloads a bank at run time
  (a bank folder, by name, inside the folders the server was started with, on a backbone the
  server already holds) and ``DELETE /v1/banks/{name}`` drops it.
* With ``api_key``, every route but ``/health`` needs ``Authorization: Bearer <key>``.
  Bodies are limited in bytes however they are sent (``Content-Length`` or chunked).
* Each tool in ``tools`` must be learned in the bank, by name; its arguments are decoded under
  the schema the bank learned. Without ``tools``, any tool of the bank may be called.
* Extensions: ``choices[0].message.invalid_tool_calls`` (calls whose arguments failed
  validation: ``{"id", "type", "function": {"name", "arguments"}, "error"}``; when streaming,
  in the last chunk's ``delta``) and ``agentmem`` (notes, timings); in requests, ``max_calls``
  and ``continue_plans``.
* Decoding is greedy (``temperature``, ``top_p``, ``seed`` are ignored); ``n`` > 1 and
  ``logprobs`` are refused. ``max_tokens`` bounds a text answer; arguments have their own bound.
  The operator sets the other decoding options for every request (``create_app(decoding=...)``,
  ``agentmem serve --no-jump-forward --copy-bias 3``...: `SERVER_OPTIONS`).
* Streaming is not token by token: the plan is made, then its chunks are sent.
* Load: ``ServerLimits`` bounds each bank's batch (``max_batch``) and queue (``max_queue``); a
  request finding the queue full, or still queued when its ``time_limit`` passes, gets a 503
  with ``Retry-After``. One decoding when its time limit passes ends with the calls made so
  far, ``finish_reason`` ``"length"`` and ``agentmem.plan_finish_reason`` ``"time_limit"``.
* An agent run in progress (the conversation ends in results of calls made since the last user
  message) resumes its plan: the model emits its next call or ends the plan (shown the results
  when the bank learned to read them, `AgentMem.reads_results`).

The package's modules, in the order a request meets them: `gate` (API key, body size, the
last word on errors), `protocol` (the request bodies), `banks` (`BankRegistry`), `options`
(`ServerLimits`, a request's planning options, its messages as turns), `app` (the routes),
`responses` (completions, chunks, server-sent events), `errors` (`APIError`, and any
exception as one).
"""

from __future__ import annotations

from agentmem.extras import missing_extra

try:  # a core install: say which extra to install, not only the module
    import fastapi  # noqa: F401
    import starlette  # noqa: F401
except ImportError as exc:
    raise missing_extra("server", exc) from exc

from agentmem.adapters.server.app import API_KEY_ENV, create_app
from agentmem.adapters.server.banks import BankRegistry
from agentmem.adapters.server.options import ServerLimits
from agentmem.adapters.server.protocol import ChatRequest

__all__ = ["API_KEY_ENV", "BankRegistry", "ChatRequest", "ServerLimits", "create_app"]
