"""Blanking the API key in what is shown: error messages, echoed headers, error bodies.

A key too short to tell from ordinary text is left alone (a test's ``"k"`` is in every
``keep-alive``).
"""

from __future__ import annotations

_REDACTED = "[redacted]"
_MIN_REDACTED_KEY = 8  # real keys are about a hundred characters


def _echoable(secret: str | None) -> str | None:
    """The key to blank in what a proxy echoes back; ``None`` for one too short to tell from
    ordinary text (a test's ``"k"`` is in every ``keep-alive``)."""
    return secret if secret is not None and len(secret) >= _MIN_REDACTED_KEY else None


def _redacted(text: str, secret: str | None) -> str:
    secret = _echoable(secret)
    return text.replace(secret, _REDACTED) if secret else text


def _shown_name(name: str, secret: str | None) -> str:
    """A header name fit for an error message: quoted, short, the API key blanked."""
    shown = repr(_redacted(name, secret))
    return shown if len(shown) <= 60 else shown[:57] + "..."
