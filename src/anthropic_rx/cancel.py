"""Cancel flags: ask, by name, for a stream to stop, from wherever the stop is pressed.

A web request that streams a reply watches a flag named after its conversation; the request
that handles the Stop button sets it:

```python
flags = cancel.MemoryCancelFlags()
events.pipe(ops.take_until_cancel(flags.watch(f"stop-stream-{conversation_id}")))
await flags.request_stop(f"stop-stream-{conversation_id}")     # elsewhere
```

A flag is consumed once: a stop reaches the streams watching its name at that moment, or, when
none is, the next :meth:`~CancelFlags.watch` of that name (Laravel's ``Cache::pull``).
"""

from __future__ import annotations

import math
import threading
import time
from typing import Protocol, runtime_checkable

from . import _publish
from ._cancel import CancelToken
from ._names import check_name
from ._redis_flags import RedisCancelFlags

__all__ = ["CancelFlags", "CancelToken", "MemoryCancelFlags", "RedisCancelFlags"]

STOP_REASON = "stop requested"


@runtime_checkable
class CancelFlags(Protocol):
    """Named stop flags shared by the code that streams and the code that stops it."""

    async def request_stop(self, name: str) -> None:
        """Set the flag ``name``: stop the streams watching it, or the next one to watch it."""
        ...

    def watch(self, name: str) -> CancelToken:
        """A token cancelled when ``request_stop(name)`` is called.

        Pass it to ``ops.take_until_cancel``. A stop requested before the call (and not yet
        consumed) cancels the token at once and is consumed.
        """
        ...


class MemoryCancelFlags:
    """Cancel flags for one process (every worker that streams and stops is in it).

    Thread-safe. A token listens for stops while something waits on it (a subscribed
    ``take_until_cancel``, :meth:`CancelToken.wait`, a callback); a stop requested while no
    token of the name listens is kept for the next one, up to ``ttl`` seconds.

    Args:
        ttl: seconds an unconsumed stop is kept; ``None`` keeps it until consumed.

    Example:
        >>> flags = MemoryCancelFlags(); events.pipe(ops.take_until_cancel(flags.watch("s-1")))
    """

    def __init__(self, *, ttl: float | None = 30.0) -> None:
        if ttl is not None and not ttl > 0:
            raise ValueError("ttl must be positive or None")
        self._ttl = math.inf if ttl is None else ttl
        self._lock = threading.Lock()
        self._listening: dict[str, set[_FlagToken]] = {}
        self._pending: dict[str, float] = {}  # name -> expiry on the monotonic clock

    async def request_stop(self, name: str) -> None:
        """Set the flag ``name``: cancel the tokens listening to it, else keep it for one.

        Raises:
            ValueError: ``name`` does not match ``[A-Za-z0-9._:-]{1,200}`` (the names
                :class:`RedisCancelFlags` takes, so an app moves to it unchanged).
        """
        check_name(name)
        now = time.monotonic()
        with self._lock:
            listeners = self._listening.pop(name, None)
            if not listeners:
                # Expired stops are dropped here, so stops nobody watches cannot pile up.
                for stale in [n for n, expiry in self._pending.items() if expiry <= now]:
                    del self._pending[stale]
                self._pending[name] = now + self._ttl
        for token in listeners or ():
            token.cancel(STOP_REASON)

    def watch(self, name: str) -> CancelToken:
        """A token for ``name``; already cancelled when a stop was pending (it is consumed).

        Raises:
            ValueError: ``name`` is not a valid flag name (see :meth:`request_stop`).
        """
        token = _FlagToken(self, check_name(name))
        if self._consume(name):
            token.cancel(STOP_REASON)
        return token

    def _consume(self, name: str) -> bool:
        with self._lock:
            expiry = self._pending.pop(name, None)
        return expiry is not None and expiry > time.monotonic()

    def _listen(self, token: _FlagToken) -> None:
        with self._lock:
            expiry = self._pending.pop(token.name, None)
            pending = expiry is not None and expiry > time.monotonic()
            if not pending:
                self._listening.setdefault(token.name, set()).add(token)
        if pending:
            token.cancel(STOP_REASON)

    def _unlisten(self, token: _FlagToken) -> None:
        with self._lock:
            listeners = self._listening.get(token.name)
            if listeners is not None:
                listeners.discard(token)
                if not listeners:
                    del self._listening[token.name]


class _FlagToken(CancelToken):
    """A token that listens to its flag while watched."""

    def __init__(self, flags: MemoryCancelFlags, name: str) -> None:
        super().__init__()
        self._flags = flags
        self.name = name

    def _start_watching(self) -> None:
        self._flags._listen(self)

    def _stop_watching(self) -> None:
        self._flags._unlisten(self)


_publish(__name__, [globals()[name] for name in __all__])
