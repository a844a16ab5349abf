"""Operators for streams of Messages API events, each a factory for ``Observable.pipe``.

```python
from anthropic_rx import operators as ops

text = events.pipe(ops.raise_on_error(), ops.take_until_cancel(stop), ops.text_deltas())
```

Only the operators that know this stream live here; the general ones (``share``, ``last``,
``filter``...) come from ``reactivex.operators``.
"""

from .. import _publish
from ._accumulate import accumulate
from ._coalesce import coalesce
from ._idle_timeout import idle_timeout
from ._of_type import of_type
from ._raise_on_error import raise_on_error
from ._smooth import smooth
from ._take_until_cancel import take_until_cancel
from ._text_deltas import text_deltas
from ._thinking_deltas import thinking_deltas
from ._tool_inputs import ToolInput, tool_inputs

__all__ = [
    "ToolInput",
    "accumulate",
    "coalesce",
    "idle_timeout",
    "of_type",
    "raise_on_error",
    "smooth",
    "take_until_cancel",
    "text_deltas",
    "thinking_deltas",
    "tool_inputs",
]

_publish(__name__, [globals()[name] for name in __all__])
