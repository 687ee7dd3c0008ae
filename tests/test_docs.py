"""The README and docs/ hold together: every command the README shows exists with the options
it uses, every link to a file or heading of the project resolves, and the front page stays a
front page."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from asr_init.cli import app

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
runner = CliRunner()


def _commands(page: Path) -> list[list[str]]:
    """`asr-init ...` lines of the page's code blocks (a console block's `$ asr-init ...` too),
    continuation lines joined, comments dropped."""
    out, block, text = [], False, page.read_text()
    lines = iter(text.splitlines())
    for line in lines:
        if line.startswith("```"):
            block = not block
            continue
        stripped = line.strip().removeprefix("$ ")
        if not block or not stripped.startswith("asr-init "):
            continue
        while stripped.endswith("\\"):
            stripped = stripped[:-1] + " " + next(lines).strip()
        words = shlex.split(stripped.split(" # ")[0].split(" && ")[0], comments=False)
        out.append(words[1:])
    return out


def _help_of(words: list[str]) -> tuple[list[str], str]:
    """(the subcommand's path, its --help text)."""
    path = [w for w in words[:2] if not w.startswith("-")]
    if path[:1] != ["bench"]:
        path = path[:1]
    result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, (path, result.output)
    return path, result.output


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_command_shown_exists_with_its_options(page):
    commands = _commands(page)
    for words in commands:
        path, text = _help_of(words)
        for word in words[len(path) :]:
            if word.startswith("--") and len(word) > 2:
                option = word.split("=")[0]
                assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text), f"{page.name}: {words}: {option}"
    if page.name == "README.md":
        shown = {tuple(_help_of(words)[0]) for words in commands}
        assert {("extract",), ("pretrain",), ("finetune",), ("evaluate",), ("export-kaldi",), ("report",)} <= shown


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    heads = [ln.lstrip("#").strip() for ln in page.read_text().splitlines() if re.match(r"#{1,6} ", ln)]
    return {_slug(h) for h in heads}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_link_to_the_project_resolves(page):
    links = re.findall(r"\]\(([^)\s]+)\)", page.read_text())
    local = [link for link in links if not re.match(r"[a-z]+:", link)]
    for link in local:
        target, _, anchor = link.partition("#")
        path = (page.parent / target).resolve() if target else page
        assert path.exists(), f"{page.name}: {link} does not exist"
        if anchor and path.suffix == ".md":
            assert anchor in _anchors(path), f"{page.name}: {link}: no heading #{anchor} in {path.name}"


def test_the_readme_is_a_front_page():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 300
    for page in ("findings", "reference", "kaldi", "gpu", "bench", "bad-inputs"):
        assert f"(docs/{page}.md" in text, page
