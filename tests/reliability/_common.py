"""Shared by the reliability suite: the soak switch, the marker key, and process counters.

``ANTHROPIC_RX_SOAK=1`` (``make soak``) runs the heavy variants: every byte offset, ten times
the streams. The counters read ``/proc/self``, so they count what the kernel holds for this
process (Linux only; elsewhere the tests that need them skip).
"""

from __future__ import annotations

import gc
import os
from pathlib import Path
from typing import Any

import pytest

SOAK = os.environ.get("ANTHROPIC_RX_SOAK") == "1"

# An API key shaped like a real one, and a piece of it no legitimate output would hold: a
# leak of any part of the key shows up as this marker.
MARKER = "MARKERxq7Zk9"
API_KEY = f"sk-ant-api03-{MARKER}-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGH-{MARKER}AA"

PARAMS: dict[str, Any] = {
    "model": "claude-test",
    "max_tokens": 64,
    "messages": [{"role": "user", "content": "Hi"}],
}

_PROC = Path("/proc/self")


def need_proc() -> None:
    """Skip the calling test where ``/proc/self`` is not there to count with."""
    if not (_PROC / "fd").is_dir():
        pytest.skip(reason="/proc/self/fd is not available on this system")


def fd_count() -> int:
    """File descriptors this process holds now."""
    return len(os.listdir(_PROC / "fd"))


def socket_count() -> int:
    """Sockets among them (TCP, Unix and the event loop's self-pipe pair alike)."""
    count = 0
    for name in os.listdir(_PROC / "fd"):
        try:
            if os.readlink(_PROC / "fd" / name).startswith("socket:"):
                count += 1
        except OSError:  # closed between the listing and the look
            continue
    return count


def rss_kib() -> int:
    """Resident memory of this process, KiB, after a full collection."""
    gc.collect()
    for line in (_PROC / "status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")
