"""The command line every example shares: ``--real`` switches from the fake API to the real one."""

from __future__ import annotations

import argparse
import os


def arguments(description: str | None) -> argparse.ArgumentParser:
    """A parser with ``--real`` (default: ``ANTHROPIC_RX_REAL=1`` in the environment)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--real",
        action="store_true",
        default=os.environ.get("ANTHROPIC_RX_REAL") == "1",
        help="call the real API (needs ANTHROPIC_API_KEY)",
    )
    return parser


def use_real_api(description: str | None) -> bool:
    """Whether the example was asked to call the real API."""
    return bool(arguments(description).parse_args().real)
