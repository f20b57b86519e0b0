"""Runs every code example in README.md and docs/**/*.md, so a snippet that does not work fails.

A page's examples run in order in one namespace and on one event loop (a grpc.aio channel belongs
to the loop it was made on), as a reader would type them into ``python -m asyncio``: top-level
``await`` works. Each page is one test; a failure names the page and the example's line.

The rules, as a page writes them:

- a ```` ```python ```` fence runs; a block that calls ``asyncio.run()`` (or ``uvloop.run()``)
  itself runs as a script would, outside the page's loop;
- every other fence must be preceded by ``<!-- docs-test: not run, <why> -->`` (a shell command,
  a Kubernetes manifest, program output): nothing is left out silently;
- ``<!-- docs-test: hidden`` ... ``-->`` is code that runs at that point but is not shown (an
  Echo server to talk to, a SIGTERM to send, a clean-up): PyPI and MkDocs both hide comments;
- ``<!-- docs-test: temporal -->`` anywhere on a page: the page needs the Temporal dev server
  (marker ``temporal``); its address is ``temporal_target``.

Why a collector of our own rather than pytest-examples or Sybil: both would add a dependency
(and its pins) for what is a hundred lines here, and neither gives those rules as they are.
pytest-examples runs and lints each example on its own, without a shared event loop for a page;
Sybil would need a custom evaluator for top-level ``await`` on one loop and a custom parser for
"every fence is run or marked". Every example is bounded: ``EXAMPLE_TIMEOUT`` each on the loop,
and the test's own timeout for the whole page (examples that run ``asyncio.run()`` themselves).
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_TIMEOUT = 30.0
PAGE_TIMEOUT = 90

_FENCE = re.compile(r"^(?P<indent> *)(?P<fence>```+|~~~+)(?P<info>[^\n`]*)$")
_NOT_RUN = re.compile(r"^<!-- docs-test: not run, (?P<why>\S.*?) -->$")
_HIDDEN = "<!-- docs-test: hidden"
_TEMPORAL = "<!-- docs-test: temporal -->"


@dataclass(frozen=True)
class Example:
    """One piece of code to run: a ``python`` fence, or a hidden block."""

    line: int  # 1-based line of the code's first line in the page
    source: str
    hidden: bool


@dataclass(frozen=True)
class Page:
    path: Path
    examples: tuple[Example, ...]
    not_run: int
    needs_temporal: bool

    @property
    def name(self) -> str:
        return (
            self.path.relative_to(ROOT).as_posix()
            if self.path.is_relative_to(ROOT)
            else str(self.path)
        )


class PageError(Exception):
    """A page breaks the rules above (an unmarked fence, an unclosed block)."""


def parse(path: Path) -> Page:
    """The examples of one Markdown page, in order.

    Raises:
        PageError: a fence that is neither ``python`` nor marked as not run, or a fence or hidden
            block that is never closed.
    """
    lines = path.read_text(encoding="utf-8").splitlines()
    examples: list[Example] = []
    not_run = 0
    needs_temporal = False
    marked: str | None = None  # the reason of a not-run marker waiting for its fence
    index = 0
    while index < len(lines):
        line = lines[index]
        stripped = line.strip()
        if stripped == _TEMPORAL:
            needs_temporal = True
        if stripped.startswith(_HIDDEN):
            end = _find(lines, index + 1, "-->", path, "hidden block")
            examples.append(Example(index + 2, "\n".join(lines[index + 1 : end]), hidden=True))
            index = end + 1
            continue
        if match := _NOT_RUN.match(stripped):
            marked = match["why"]
            index += 1
            continue
        if fence := _FENCE.match(line):
            end = _find(lines, index + 1, fence["fence"], path, "fence")
            body = [text.removeprefix(fence["indent"]) for text in lines[index + 1 : end]]
            language = fence["info"].strip().split(" ")[0]
            if marked is not None:
                not_run += 1
            elif language == "python":
                examples.append(Example(index + 2, "\n".join(body), hidden=False))
            else:
                raise PageError(
                    f"{path}:{index + 1}: a ```{language} fence that is not run: make it python "
                    "or mark it with <!-- docs-test: not run, <why> --> on the line before"
                )
            marked = None
            index = end + 1
            continue
        if stripped and marked is not None:
            raise PageError(f"{path}:{index + 1}: a not-run marker not followed by a fence")
        index += 1
    return Page(path, tuple(examples), not_run, needs_temporal)


def _find(lines: list[str], start: int, closing: str, path: Path, what: str) -> int:
    """The index of the first line from ``start`` that is ``closing`` (indentation aside)."""
    for index in range(start, len(lines)):
        if lines[index].strip() == closing:
            return index
    raise PageError(f"{path}:{start}: {what} never closed")


def pages() -> list[Path]:
    """README.md and every page of the docs site."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def compile_example(page: Page, example: Example) -> Any:
    """The example's code object; its line numbers are the page's, so tracebacks point there."""
    padded = "\n" * (example.line - 1) + example.source
    return compile(padded, str(page.path), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


def runs_its_own_loop(example: Example) -> bool:
    """Whether the example calls ``asyncio.run()`` (or ``uvloop.run()``) at its top level."""
    for node in ast.parse(example.source).body:
        call = node.value if isinstance(node, ast.Expr) else None
        if (
            isinstance(call, ast.Call)
            and isinstance(call.func, ast.Attribute)
            and call.func.attr == "run"
            and isinstance(call.func.value, ast.Name)
            and call.func.value.id in ("asyncio", "uvloop")
        ):
            return True
    return False


async def _on_loop(code: Any, namespace: dict[str, Any]) -> None:
    result = eval(code, namespace)
    if inspect.iscoroutine(result):
        await result


def run_page(page: Page, namespace: dict[str, Any]) -> None:
    """Runs the page's examples in order; each one on the loop is bounded by EXAMPLE_TIMEOUT.

    sys.stdout and sys.stderr are put back afterwards, also when an example that redirected them
    (to check what it prints) failed before it could.
    """
    streams = sys.stdout, sys.stderr
    try:
        _run_examples(page, namespace)
    finally:
        sys.stdout, sys.stderr = streams


def _run_examples(page: Page, namespace: dict[str, Any]) -> None:
    with asyncio.Runner() as runner:
        for example in page.examples:
            code = compile_example(page, example)
            if runs_its_own_loop(example):
                eval(code, namespace)
                continue
            try:
                runner.run(asyncio.wait_for(_on_loop(code, namespace), EXAMPLE_TIMEOUT))
            except TimeoutError:
                raise AssertionError(
                    f"{page.name}:{example.line}: the example did not finish within "
                    f"{EXAMPLE_TIMEOUT} s"
                ) from None


def _param(path: Path) -> Any:
    marks = []
    try:
        if parse(path).needs_temporal:
            marks.append(pytest.mark.temporal)
    except PageError:
        pass  # reported by the test itself
    return pytest.param(path, id=path.relative_to(ROOT).as_posix(), marks=marks)


@pytest.mark.timeout(PAGE_TIMEOUT)
@pytest.mark.parametrize("path", [_param(path) for path in pages()])
def test_examples_run(path: Path, request: pytest.FixtureRequest) -> None:
    page = parse(path)
    namespace: dict[str, Any] = {"__name__": "__docs_example__", "__file__": str(path)}
    if page.needs_temporal:
        from .conftest import TEMPORAL_INSTALLED

        if not TEMPORAL_INSTALLED:
            pytest.skip("needs the temporal extra")
        namespace["temporal_target"] = request.getfixturevalue("temporal_server").target
    run_page(page, namespace)


# -- the collector's own rules ---------------------------------------------------------------------


def test_every_page_has_its_examples_found() -> None:
    """The pages the site builds are the ones collected, and the README has an example."""
    found = {path.relative_to(ROOT).as_posix() for path in pages()}
    assert "README.md" in found
    assert "docs/index.md" in found
    assert parse(ROOT / "README.md").examples


def test_unmarked_fence_is_refused(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("text\n\n```yaml\nkind: Pod\n```\n")
    with pytest.raises(PageError, match=r"page.md:3: a ```yaml fence that is not run"):
        parse(page)


def test_marked_fence_is_skipped_and_hidden_code_runs(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "<!-- docs-test: not run, a manifest -->\n```yaml\nkind: Pod\n```\n"
        "<!-- docs-test: hidden\nimport asyncio\n-->\n"
        "```python\nvalue = await asyncio.sleep(0, result=42)\n```\n"
    )
    parsed = parse(page)
    assert parsed.not_run == 1
    assert [e.hidden for e in parsed.examples] == [True, False]
    namespace: dict[str, Any] = {}
    run_page(parsed, namespace)
    assert namespace["value"] == 42


def test_a_broken_example_fails_at_its_line(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("# title\n\n```python\nx = 1\nprint(undefined_name)\n```\n")
    with pytest.raises(NameError, match="undefined_name") as failure:
        run_page(parse(page), {})
    assert failure.traceback[-1].path == page
    assert failure.traceback[-1].lineno + 1 == 5


def test_an_example_that_hangs_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.modules[__name__], "EXAMPLE_TIMEOUT", 0.05)
    page = tmp_path / "page.md"
    page.write_text("```python\nawait asyncio.Event().wait()\n```\n")
    with pytest.raises(AssertionError, match=r"did not finish within 0\.05 s"):
        run_page(parse(page), {"asyncio": asyncio})


def test_streams_are_restored_after_a_failing_page(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "<!-- docs-test: hidden\nimport contextlib, io\n"
        "contextlib.redirect_stdout(io.StringIO()).__enter__()\n-->\n"
        "```python\nraise RuntimeError('the example broke')\n```\n"
    )
    stdout = sys.stdout
    with pytest.raises(RuntimeError, match="the example broke"):
        run_page(parse(page), {})
    assert sys.stdout is stdout


def test_every_nav_page_is_collected() -> None:
    """Every page of the site's navigation (mkdocs.yml) is a page whose examples run."""
    nav = re.findall(r"^\s*- (?:[^\n]*: )?([\w./-]+\.md)$", (ROOT / "mkdocs.yml").read_text(), re.M)
    collected = {path.relative_to(ROOT / "docs").as_posix() for path in pages()[1:]}
    published = {"BENCHMARKS.md"}  # the record, published from the repository root by a hook
    assert nav, "no pages found in mkdocs.yml's nav"
    assert set(nav) - published <= collected, set(nav) - published - collected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("<!-- docs-test: hidden\nx = 1\n", "hidden block never closed"),
        ("```python\nx = 1\n", "fence never closed"),
        ("<!-- docs-test: not run, a manifest -->\nsome text\n", "not followed by a fence"),
    ],
)
def test_malformed_pages_are_refused(tmp_path: Path, text: str, problem: str) -> None:
    page = tmp_path / "page.md"
    page.write_text(text)
    with pytest.raises(PageError, match=problem):
        parse(page)
