"""Regenerate ``tests/expected/<fixture>.json``: what the official SDK makes of each fixture.

For every ``tests/fixtures/*.sse`` the bytes are served to ``anthropic.Anthropic`` through an
in-memory transport (nothing leaves the process) and ``messages.stream(...).get_final_message()``
is dumped with ``model_dump(mode="json", exclude_none=True)``. When the SDK raises instead, the
file records the exception's class and the SDK's message snapshot at that point.

Usage: ``.venv/bin/python scripts/make_sdk_expectations.py`` from the repository root.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
EXPECTED = ROOT / "tests" / "expected"


def sdk_outcome(data: bytes) -> dict[str, Any]:
    """What the SDK's stream helper gives for ``data``: the final message or the error."""
    import anthropic
    import httpx2

    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=data)

    http_client = httpx2.Client(transport=httpx2.MockTransport(handler))
    client = anthropic.Anthropic(api_key="k", http_client=http_client, max_retries=0)
    with client.messages.stream(
        model="claude-rx-test", max_tokens=1024, messages=[{"role": "user", "content": "Hi"}]
    ) as stream:
        try:
            message = stream.get_final_message()
        except Exception as exc:
            try:
                snapshot = stream.current_message_snapshot
            except AssertionError:  # no message_start yet
                partial = None
            else:
                partial = snapshot.model_dump(mode="json", exclude_none=True)
            return {"sdk_error": type(exc).__name__, "sdk_partial_message": partial}
    return {"message": message.model_dump(mode="json", exclude_none=True)}


def main() -> int:
    import anthropic

    EXPECTED.mkdir(exist_ok=True)
    for path in sorted(FIXTURES.glob("*.sse")):
        outcome = {"fixture": path.name, "sdk_version": anthropic.__version__}
        outcome.update(sdk_outcome(path.read_bytes()))
        target = EXPECTED / f"{path.stem}.json"
        target.write_text(
            json.dumps(outcome, indent=2, sort_keys=True, ensure_ascii=False) + "\n",
            encoding="utf-8",
        )
        print(f"{target.relative_to(ROOT)}: {'message' if 'message' in outcome else 'error'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
