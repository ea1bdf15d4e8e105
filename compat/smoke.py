"""Smoke test: start Llama Stack 0.7.x on loopback and talk to it with the OpenAI SDK.

Run ``/work/main/.venv/bin/python compat/smoke.py``; exits 0 when every check passes, 1 when
one fails, and 2 (printing one line) when Llama Stack cannot be installed here.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openai

sys.path.insert(0, str(Path(__file__).resolve().parent))
from llamastack import MODEL, Unavailable, ensure_venv, start_llamastack

KEYS = {"key-alice": "alice", "key-bob": "bob"}
FAILURES: list[str] = []


def check(what: str, ok: bool, detail: object = "") -> None:
    """Print one check and remember failures."""
    print(f"{'ok  ' if ok else 'FAIL'} {what}{': ' if detail != '' else ''}{detail}")
    if not ok:
        FAILURES.append(what)


def status_of(call: Callable[[], Any]) -> int:
    """The HTTP status an SDK call ends with (200 when it returns)."""
    try:
        call()
    except openai.APIStatusError as exc:
        return exc.status_code
    return 200


def responses(alice: openai.OpenAI, bob: openai.OpenAI, refused: openai.OpenAI) -> None:
    """Stored and unstored responses, streaming, other principals, deletion."""
    kept = alice.responses.create(model=MODEL, input="Say something.", store=True)
    check(
        "responses.create store=True",
        kept.id.startswith("resp_"),
        f"{kept.id} {kept.output_text!r}",
    )
    got = alice.responses.retrieve(kept.id)
    check("responses.retrieve", got.id == kept.id and got.usage is not None, got.usage)
    loose = alice.responses.create(model=MODEL, input="Do not keep this.", store=False)
    code = status_of(lambda: alice.responses.retrieve(loose.id))
    check("store=False response is not retrievable", code == 404, f"{loose.id} -> {code}")
    stream = alice.responses.create(model=MODEL, input="Stream it.", store=True, stream=True)
    events = [event.type for event in stream]
    check("streamed response ends completed", events[-1] == "response.completed", events)
    code = status_of(lambda: bob.responses.retrieve(kept.id))
    check("another principal's key gets 404", code == 404, code)
    code = status_of(lambda: refused.responses.retrieve(kept.id))
    check("a refused key gets 401", code == 401, code)
    page: dict[str, Any] = alice.get("/responses", cast_to=dict)
    listed = [item["id"] for item in page["data"]]
    check("GET /responses lists alice's stored ones", kept.id in listed, len(listed))
    deleted: dict[str, Any] = alice.delete(f"/responses/{kept.id}", cast_to=dict)
    check("DELETE /responses/{id}", deleted.get("deleted") is True, deleted)
    code = status_of(lambda: alice.responses.retrieve(kept.id))
    check("deleted response is gone", code == 404, code)


def conversations(alice: openai.OpenAI) -> None:
    """A conversation with items, and a response that continues it."""
    conv = alice.conversations.create(
        items=[{"type": "message", "role": "user", "content": "First message."}]
    )
    check("conversations.create", conv.id.startswith("conv_"), conv.id)
    added = alice.conversations.items.create(
        conv.id, items=[{"type": "message", "role": "user", "content": "Second message."}]
    )
    check("conversations.items.create", len(added.data) == 1, [item.id for item in added.data])
    reply = alice.responses.create(model=MODEL, input="Third.", conversation=conv.id)
    check("response in the conversation", reply.id.startswith("resp_"), reply.output_text)
    items = alice.conversations.items.list(conv.id, order="asc")
    check("conversation items", len(items.data) >= 4, [item.type for item in items.data])
    gone = alice.conversations.delete(conv.id)
    check("conversations.delete", gone.deleted, gone)


def chat(alice: openai.OpenAI) -> None:
    """A stored chat completion, read back and listed."""
    done = alice.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Hi."}], store=True
    )
    check("chat.completions.create store=True", bool(done.id), f"{done.id} {done.usage}")
    time.sleep(0.5)  # the inference store writes in the background
    got = alice.chat.completions.retrieve(done.id)
    check("chat.completions.retrieve", got.id == done.id, got.choices[0].message.content)
    listed = [item.id for item in alice.chat.completions.list().data]
    check("chat.completions.list", done.id in listed, len(listed))


def main() -> int:
    """Start everything, run the checks, stop everything."""
    started = time.monotonic()
    try:
        venv = ensure_venv()
    except Unavailable as exc:
        print(f"SKIP llama stack unavailable: {exc}")
        return 2
    print(f"venv ready in {time.monotonic() - started:.1f}s: {venv}")
    with tempfile.TemporaryDirectory(prefix="llamastack-smoke-") as tmp:
        started = time.monotonic()
        with start_llamastack(Path(tmp), auth=KEYS) as base_url:
            print(f"llama stack up in {time.monotonic() - started:.1f}s at {base_url}")

            def client(key: str) -> openai.OpenAI:
                """An SDK client for one key, without retries."""
                return openai.OpenAI(base_url=base_url, api_key=key, max_retries=0)

            alice = client("key-alice")
            models = [model.id for model in alice.models.list().data]
            check("models.list", MODEL in models, models)
            responses(alice, client("key-bob"), client("key-refused"))
            conversations(alice)
            chat(alice)
    print(f"{len(FAILURES)} failed: {FAILURES}" if FAILURES else "all checks passed")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
