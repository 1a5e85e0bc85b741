"""The READMEs and docs/ hold together: every relative link and anchor resolves, the README's command
table is the one the ``paddle-mnist`` dispatcher prints, and the Chinese pages say what the English ones do."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from paddle_mnist import cli

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", ROOT / "README_cn.md", *sorted((ROOT / "docs").glob("*.md"))]
# Each page with its Chinese translation: the same commands, command tables, figures and links.
TRANSLATIONS = [(ROOT / "README.md", ROOT / "README_cn.md"), (ROOT / "docs/course.md", ROOT / "docs/course_cn.md")]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def prose(path: Path) -> str:
    """The page without its code blocks, where brackets and parentheses are code, not links."""
    return FENCE.sub("", path.read_text())


def anchors(path: Path) -> set[str]:
    """The anchors GitHub gives a page's headings: lower case, punctuation dropped, spaces as hyphens,
    a repeated heading numbered from -1."""
    seen: dict[str, int] = {}
    for heading in re.findall(r"^#{1,6} (.+)$", prose(path), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        if count:
            seen[f"{slug}-{count}"] = 1
    return set(seen)


def relative_links(path: Path) -> list[str]:
    return [t for t in LINK.findall(prose(path)) if not re.match(r"[a-z]+:", t)]


def test_the_docs_pages_exist():
    names = {p.name for p in PAGES}
    expected = "data training predicting serving reliability performance results architecture experiments"
    assert {f"{name}.md" for name in expected.split()} <= names


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_resolves(page):
    broken = []
    for target in relative_links(page):
        file, _, anchor = target.partition("#")
        resolved = (page.parent / file).resolve() if file else page
        if not resolved.exists():
            broken.append(f"{target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{target}: no heading with that anchor in {resolved.name}")
    assert not broken, broken


def test_the_link_checker_catches_what_it_is_for(tmp_path):
    """A page with a missing file, a missing anchor and a good link: the two bad ones are found."""
    (tmp_path / "other.md").write_text("# Other page\n\n## A `code` heading, with 99.70 %\n")
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](other.md#a-code-heading-with-9970-) [gone](missing.md) [no anchor](other.md#nowhere)\n"
        "```\n[inside code](not-a-link.md)\n```\n[web](https://example.org/x.md)\n"
    )
    assert relative_links(page) == ["other.md#a-code-heading-with-9970-", "missing.md", "other.md#nowhere"]
    assert "a-code-heading-with-9970-" in anchors(tmp_path / "other.md")
    assert "nowhere" not in anchors(tmp_path / "other.md")


def test_the_readme_lists_the_commands_of_the_dispatcher():
    """One line per command, with the help line ``paddle-mnist --help`` prints: the README cannot drift."""
    section = (ROOT / "README.md").read_text().split("\n## Commands\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(\w+)` \| (.+?) \|$", section, re.M)
    assert dict(rows) == cli.COMMANDS


def test_the_readme_stays_a_way_in():
    """Depth goes to docs/: the README a newcomer reads stays within 250 lines."""
    assert len((ROOT / "README.md").read_text().splitlines()) <= 250


def table_rows(text: str) -> list[str]:
    """The Markdown table rows of ``text`` outside code blocks."""
    return re.findall(r"^\|.*\|$", FENCE.sub("", text), re.M)


def commands(path: Path) -> list[str]:
    """The code blocks' lines without comments (those are translated), and every code span of a table row."""
    text = path.read_text()
    lines = [
        re.sub(r"\s+#.*$", "", line).rstrip()
        for block in FENCE.findall(text)
        for line in block.splitlines()[1:-1]
        if not line.lstrip().startswith("#")
    ]
    cells = [span for row in table_rows(text) for span in re.findall(r"`[^`]+`", row)]
    return [line for line in lines if line] + cells


def figures(path: Path) -> list[str]:
    """The numbers of the tables' rows, in order: a measurement updated on one page only shows here."""
    return [
        n
        for row in table_rows(path.read_text())
        for n in re.findall(r"\d+(?:[.,]\d+)*", re.sub(r"`[^`]+`|\([^)]*\.md[^)]*\)", "", row))
    ]


def links(path: Path) -> list[str]:
    """Every link's target, a translation's ``X_cn.md`` read as the ``X.md`` it translates, without the first
    line: the language switch, which links each page to the other."""
    body = "\n".join(path.read_text().splitlines()[1:])
    return [target.replace("_cn.md", ".md") for target in LINK.findall(FENCE.sub("", body))]


@pytest.mark.parametrize("english, chinese", TRANSLATIONS, ids=lambda p: p.name)
def test_a_translation_says_what_its_page_says(english, chinese):
    """The same commands, tables of commands, figures and links in the same order, and a language switch on
    the first line of each, linking to the other (as PaddleOCR's and the course's READMEs do)."""
    assert commands(chinese) == commands(english)
    assert figures(chinese) == figures(english)
    assert links(chinese) == links(english)
    assert english.read_text().splitlines()[0] == f"English | [简体中文]({chinese.name})"
    assert chinese.read_text().splitlines()[0] == f"[English]({english.name}) | 简体中文"


def test_the_translation_check_catches_a_drift(tmp_path):
    english, chinese = tmp_path / "a.md", tmp_path / "a_cn.md"
    english.write_text(
        "English | [简体中文](a_cn.md)\n\n```bash\nrun --lr 0.1   # fast\n```\n| `x` | 97.10 % |\n[d](b.md)\n"
    )
    chinese.write_text(
        "[English](a.md) | 简体中文\n\n```bash\nrun --lr 0.1   # 快\n```\n| `x` | 97.10 % |\n[d](b_cn.md)\n"
    )
    assert (commands(english), figures(english), links(english)) == (
        commands(chinese),
        figures(chinese),
        links(chinese),
    )
    chinese.write_text(chinese.read_text().replace("--lr 0.1", "--lr 1").replace("97.10", "97.18"))
    assert commands(english) != commands(chinese) and figures(english) != figures(chinese)
