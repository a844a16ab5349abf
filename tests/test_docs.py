"""The documentation's code runs as written, against the fake API, and prints what it shows.

Every ```` ```python ```` block of the pages below is run in a fresh namespace with no API key
in the environment. A block whose info string says ``not run`` is skipped on purpose (the
real-API ones); a block titled ``test_*.py`` is a pytest module and is run by pytest. When a
````` ```text title="Output" ````` block follows a Python block, every line of it must be a
line of what the block printed (``…`` stands for any text); a block that prints must show its
output that way.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import anthropic_rx
from anthropic_rx import operators

from ._services import redis_url

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = [
    ROOT / "README.md",
    DOCS / "index.md",
    DOCS / "getting-started.md",
    DOCS / "recipes.md",
    DOCS / "sse.md",
    DOCS / "broadcast-and-save.md",
    DOCS / "operators.md",
    DOCS / "errors.md",
    DOCS / "testing.md",
    DOCS / "demo.md",
    DOCS / "cli.md",
    DOCS / "many-processes.md",
    DOCS / "laravel-guide.md",
    DOCS / "reliability.md",
]
# Pages whose every Python block must run (the ones users copy from).
MUST_RUN = {"getting-started.md", "recipes.md", "operators.md", "testing.md"}

_FENCE = re.compile(r"^```(?P<info>[^`\n]*)\n(?P<body>.*?)^```[ \t]*$", re.M | re.S)


@dataclass(frozen=True)
class Block:
    page: str
    line: int
    info: str
    code: str
    output: str | None  # the ```text title="Output" block right after it

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"

    @property
    def title(self) -> str:
        found = re.search(r'title="([^"]*)"', self.info)
        return found.group(1) if found else ""

    @property
    def runs(self) -> bool:
        return "not run" not in self.info


def blocks(page: Path) -> list[Block]:
    text = page.read_text(encoding="utf-8")
    fences = list(_FENCE.finditer(text))
    found: list[Block] = []
    for index, fence in enumerate(fences):
        info = fence["info"].strip()
        if info.split(" ", 1)[0] != "python":
            continue
        output = None
        if index + 1 < len(fences):
            after = fences[index + 1]
            between = text[fence.end() : after.start()]
            if not between.strip() and 'title="Output"' in after["info"]:
                output = after["body"]
        line = text.count("\n", 0, fence.start()) + 1
        found.append(Block(page.name, line, info, fence["body"], output))
    return found


ALL = [block for page in PAGES for block in blocks(page)]
RUNNABLE = [block for block in ALL if block.runs]


def matches(expected: str, printed: str) -> bool:
    """Whether ``expected`` is one whole line of ``printed``; ``…`` matches any text."""
    pattern = ".*".join(re.escape(part) for part in expected.strip().split("…"))
    return any(re.fullmatch(pattern, line.strip()) for line in printed.splitlines())


@pytest.fixture
def no_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)


@pytest.mark.usefixtures("no_api_key")
@pytest.mark.parametrize("block", RUNNABLE, ids=lambda b: b.id)
def test_block_runs_and_prints_what_it_shows(block: Block, tmp_path: Path) -> None:
    if "redis://127.0.0.1:6379" in block.code:
        redis_url()  # a block that runs against the local Redis needs it (CI has it)
    runner = _run_pytest if block.title.startswith("test_") else _exec_in
    printed = runner(block, tmp_path)
    if block.output is None:
        assert "print(" not in block.code, f"{block.id} prints: show its output after it"
        return
    expected = [line for line in block.output.splitlines() if line.strip()]
    assert expected, f"{block.id}: empty Output block"
    missing = [line for line in expected if not matches(line, printed)]
    assert not missing, f"{block.id} did not print {missing!r}; it printed:\n{printed}"


def _exec_in(block: Block, _tmp_path: Path) -> str:
    namespace: dict[str, object] = {"__name__": "__main__"}
    stdout = io.StringIO()
    code = compile(block.code, f"<{block.id}>", "exec")
    with contextlib.redirect_stdout(stdout):
        exec(code, namespace)
    return stdout.getvalue()


def _run_pytest(block: Block, tmp_path: Path) -> str:
    module = tmp_path / block.title
    module.write_text(block.code, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC_")}
    result = subprocess.run(
        [
            *(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error"),
            # pytest-asyncio warns without this setting, and -W error makes that fatal.
            *("-o", "asyncio_default_fixture_loop_scope=function", str(module)),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


# --- the documentation as a whole ------------------------------------------------------------


def test_every_page_users_copy_from_has_runnable_code() -> None:
    for name in MUST_RUN:
        page = [b for b in ALL if b.page == name]
        assert page, f"{name} has no Python block"
        skipped = [b.id for b in page if not b.runs]
        assert len(skipped) <= 1, f"{name}: only the real-API block may be skipped: {skipped}"
        assert any(b.output is not None for b in page), f"{name} shows no output"


def test_skipped_blocks_are_only_the_real_api_ones() -> None:
    for block in ALL:
        if not block.runs:
            assert "arx.Client(" in block.code, f"{block.id} is skipped but not a real-API call"


def test_nav_lists_every_page_and_only_existing_ones() -> None:
    config = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    nav = config[config.index("\nnav:") :]
    listed = re.findall(r":\s*([\w./-]+\.md)\s*$", nav, re.M)
    assert sorted(listed) == sorted(p.name for p in DOCS.glob("*.md"))
    assert "mkdocstrings" in config
    assert re.search(r"paths:\s*\[src\]", config)


def test_reference_names_resolve() -> None:
    reference = (DOCS / "reference.md").read_text(encoding="utf-8")
    names = re.findall(r"^::: ([\w.]+)", reference, re.M)
    assert names == [
        "anthropic_rx",
        "anthropic_rx.operators",
        "anthropic_rx.cancel",
        "anthropic_rx.sinks",
        "anthropic_rx.testing",
    ]
    for name in names:
        __import__(name)


def test_links_between_pages_resolve() -> None:
    for page in [*DOCS.glob("*.md"), ROOT / "README.md"]:
        text = page.read_text(encoding="utf-8")
        for target in re.findall(r"\]\(((?!https?:)[^)#\s]+)(?:#[^)]*)?\)", text):
            assert (page.parent / target).exists(), f"{page.name} links to missing {target}"


def test_operators_page_covers_every_operator() -> None:
    text = (DOCS / "operators.md").read_text(encoding="utf-8")
    for name in operators.__all__:
        if name != "ToolInput":
            assert f"## `{name}(" in text, f"operators.md has no section for {name}"


def test_errors_page_names_every_exception() -> None:
    text = (DOCS / "errors.md").read_text(encoding="utf-8")
    for name in anthropic_rx.__all__:
        if name.endswith("Error") and isinstance(getattr(anthropic_rx, name), type):
            assert name in text, f"errors.md does not mention {name}"
