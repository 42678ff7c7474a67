"""The docs hold together: relative links reach files (and headings) that exist, paths of
the repository they name exist, and none names a path of a developer's machine or a
package registry's host."""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from urllib.parse import unquote

import pytest

REPO = Path(__file__).resolve().parent.parent
MARKDOWN = sorted(
    [REPO / "README.md", REPO / "client" / "README.md", *(REPO / "docs").rglob("*.md")],
    key=lambda p: p.relative_to(REPO).as_posix(),
)
# Every text file of the docs, for the machine-path and registry checks.
DOC_FILES = sorted(
    {
        *MARKDOWN,
        *(p for p in (REPO / "docs").rglob("*") if p.suffix in {".yaml", ".yml", ".json", ".txt"}),
    },
    key=lambda p: p.relative_to(REPO).as_posix(),
)

# Paths that exist only on one machine: a reader's checkout is elsewhere.
MACHINE_PATHS = ("/work/", "/tmp/", "/root/")
# Registry hosts: docs name packages by name (pip install x), never by a registry URL.
REGISTRY_HOSTS = (
    "pypi.org",
    "pypi.python.org",
    "files.pythonhosted.org",
    "registry.npmjs.org",
    "npmjs.com",
    "deb.debian.org",
    "security.debian.org",
    "proxy.golang.org",
    "crates.io",
    "rubygems.org",
    "repo.maven.apache.org",
    "nuget.org",
)

_FENCE = re.compile(r"^\s*(```|~~~)")
_CODE_SPAN = re.compile(r"(`+)(.+?)\1")
_INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE_DEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)")
_HTML_REF = re.compile(r"""(?:href|src)\s*=\s*["']([^"']+)["']""", re.IGNORECASE)
_HTML_ID = re.compile(r"""<a\s[^>]*(?:name|id)\s*=\s*["']([^"']+)["']""", re.IGNORECASE)
_ATX = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:|^//")
# A path of this repository named in prose: docs/api.md, proxy/config.py, docs/adr/.
_REPO_PATH = re.compile(
    r"(?<![\w./-])((?:docs|client|proxy|policies|validators|tests|bench|loadtests)/[\w./-]*)"
)


def rel(path: Path) -> str:
    return path.relative_to(REPO).as_posix()


def prose_lines(text: str) -> Iterator[tuple[int, str]]:
    """(line number, line) outside fenced code blocks."""
    fenced = False
    for number, line in enumerate(text.splitlines(), 1):
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            yield number, line


def links(text: str) -> Iterator[tuple[int, str]]:
    for number, line in prose_lines(text):
        # Code spans are literal text, not links (and may hold brackets).
        plain = _CODE_SPAN.sub("code", line)
        for pattern in (_INLINE_LINK, _REFERENCE_DEF, _HTML_REF):
            for match in pattern.finditer(plain):
                yield number, match.group(1)


def github_slug(heading: str) -> str:
    """GitHub's anchor of a heading: the rendered text, lower-cased, punctuation but
    ``-`` and ``_`` dropped, spaces turned into hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link reads as its text
    text = re.sub(r"<[^>]+>", "", text)
    text = text.lower()
    text = "".join(c for c in text if c.isalnum() or c in "-_ ")
    return text.replace(" ", "-")


@cache
def anchors(path: Path) -> frozenset[str]:
    """Every anchor a Markdown file offers: its headings' slugs (repeats numbered -1, -2,
    as GitHub does) and explicit ``<a name|id>`` anchors."""
    found: set[str] = set()
    counts: dict[str, int] = {}
    previous = ""
    for _, line in prose_lines(path.read_text(encoding="utf-8")):
        heading = None
        atx = _ATX.match(line)
        if atx:
            heading = atx.group(2)
        elif re.fullmatch(r"\s{0,3}(=+|-+)\s*", line) and previous.strip() and "|" not in previous:
            heading = previous.strip()  # a setext heading
        if heading is not None:
            slug = github_slug(heading)
            n = counts.get(slug, 0)
            counts[slug] = n + 1
            found.add(slug if n == 0 else f"{slug}-{n}")
        found.update(match.group(1) for match in _HTML_ID.finditer(line))
        previous = line
    return frozenset(found)


def broken_link(source: Path, target: str) -> str | None:
    """Why ``target``, a link in ``source``, leads nowhere; None when it is fine or not relative."""
    if not target or _SCHEME.match(target):
        return None
    path_part, _, anchor = target.partition("#")
    path_part = unquote(path_part.split("?", 1)[0])
    if path_part.startswith("/"):
        resolved = (REPO / path_part.lstrip("/")).resolve()  # GitHub: from the repository root
    elif path_part:
        resolved = (source.parent / path_part).resolve()
    else:
        resolved = source
    if not resolved.is_relative_to(REPO):
        return f"{target} leaves the repository"
    if not resolved.exists():
        return f"{target}: no such file {rel(resolved) if resolved.is_relative_to(REPO) else resolved}"
    if (
        anchor
        and resolved.is_file()
        and resolved.suffix == ".md"
        and unquote(anchor) not in anchors(resolved)
    ):
        return f"{target}: no heading #{anchor} in {rel(resolved)}"
    return None


@pytest.mark.parametrize("doc", MARKDOWN, ids=rel)
def test_relative_links_reach_files_and_headings_that_exist(doc: Path) -> None:
    problems = [
        f"{rel(doc)}:{number}: {why}"
        for number, target in links(doc.read_text(encoding="utf-8"))
        if (why := broken_link(doc, target)) is not None
    ]
    assert not problems, "broken links:\n" + "\n".join(problems)


@pytest.mark.parametrize("doc", MARKDOWN, ids=rel)
def test_repository_paths_named_in_prose_exist(doc: Path) -> None:
    problems = []
    for number, line in prose_lines(doc.read_text(encoding="utf-8")):
        for match in _REPO_PATH.finditer(line):
            name = match.group(1).rstrip(".,;:")
            if not (REPO / name).exists():
                problems.append(f"{rel(doc)}:{number}: {name} does not exist")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("doc", DOC_FILES, ids=rel)
def test_no_doc_names_a_machine_path_or_a_registry_host(doc: Path) -> None:
    problems = []
    for number, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), 1):
        lowered = line.lower()
        problems += [f"{rel(doc)}:{number}: names {p}" for p in MACHINE_PATHS if p in line]
        problems += [
            f"{rel(doc)}:{number}: names the registry host {host}"
            for host in REGISTRY_HOSTS
            if re.search(rf"(?<![\w.-]){re.escape(host)}(?![\w-])", lowered)
        ]
    assert not problems, "\n".join(problems)


def test_the_slugs_follow_github() -> None:
    assert github_slug("`GET /v8/finance/chart/{symbol}` — Yahoo-compatible") == (
        "get-v8financechartsymbol--yahoo-compatible"
    )
    assert github_slug("[rate_limit]") == "rate_limit"
    assert github_slug("What a chart answer carries") == "what-a-chart-answer-carries"
    assert github_slug("See [the API](docs/api.md) now") == "see-the-api-now"


def test_the_checker_sees_broken_links() -> None:
    # The checks above pass on the real docs; prove they would fail on bad ones.
    doc = REPO / "docs" / "api.md"
    assert broken_link(doc, "configuration.md#server") is None
    assert broken_link(doc, "configuration.md#no-such-heading") is not None
    assert broken_link(doc, "no-such-file.md") is not None
    assert broken_link(doc, "../../outside.md") is not None
    assert broken_link(doc, "#own-routes") is None
    assert broken_link(doc, "https://example.com/missing") is None
    found = list(links("[a](x.md) `[b](y.md)` [`[c]`](#c)\n```\n[d](z.md)\n```\n[e]: w.md\n"))
    assert [target for _, target in found] == ["x.md", "#c", "w.md"]
