"""The documentation's references hold: README.md and docs/*.md point only at what exists.

- Every relative link and image (`[text](docs/celery.md#configuration)`, `![chart](bench/io.png)`)
  names an existing file, from the document's own folder, and every `#anchor` a heading of that file,
  spelled as GitHub spells its anchors.
- Every repository path the text names, in prose, code or link text (`workers/processes/mp_queue.py`,
  `tests/drills/`, `docs/bench/*.png`), exists from the repository's root: a path is a word that starts
  with a top-level folder of the repository.
- Every file name in backquotes (`test_worker_faults.py`) is the name of a file of the repository, and
  every dotted module in backquotes (`workers.managers`, `workers.celery.app.CHUNK_RETRIES`) is a module
  of it, the name after the module (if any) occurring in that module; a dotted name the code itself
  gives as a string (the Celery task `conquer.chunk`) counts as one.

So when a module moves, this fails at each line that still names the old place — the list to sweep.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

from tests.test_readme import DOCUMENTS, ROOT

#: The front door's budget (issue 14): a newcomer sees what this is, the two commands and where to go
#: next; the depth is in docs/.
README_MAX_BYTES = 15 * 1024

LINK = re.compile(r"!?\[(?P<text>[^\]]*)\]\((?P<target>[^)\s]+)(?:\s+\"[^\"]*\")?\)")
CODE_SPAN = re.compile(r"`([^`\n]+)`")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)
FILE_NAME = re.compile(r"^[\w-]+\.(?:py|md|json|yaml|yml|toml|png|sh|cfg|ini|txt)$")


@dataclass(frozen=True)
class PageLine:
    path: Path
    number: int
    text: str
    in_code_block: bool

    def where(self) -> str:
        shown = self.path.relative_to(ROOT) if self.path.is_relative_to(ROOT) else self.path
        return f"{shown.as_posix()}:{self.number}"


def lines(path: Path) -> Iterator[PageLine]:
    """The lines of a Markdown file, each saying whether it is inside a fenced code block."""
    inside = False
    for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if text.startswith("```"):
            inside = not inside
            continue
        yield PageLine(path, number, text, inside)


# ------------------------------------------------------------------------------------------ links


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: its text (a link's text, no markup), lower case, with every
    character other than a letter, a digit, `_`, `-` or a space dropped, and spaces made hyphens."""
    text = LINK.sub(lambda match: match["text"], heading).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


@cache
def anchors(path: Path) -> frozenset[str]:
    """The anchors of a Markdown file's headings; a repeated heading's are suffixed -1, -2, ... ."""
    seen: dict[str, int] = {}
    found = set()
    for line in lines(path):
        heading = HEADING.match(line.text)
        if heading and not line.in_code_block:
            base = slug(heading[2])
            found.add(f"{base}-{seen[base]}" if base in seen else base)
            seen[base] = seen.get(base, 0) + 1
    return frozenset(found)


def links(path: Path) -> Iterator[tuple[PageLine, str]]:
    """Every link and image target of a Markdown file, with the line it is on: outside code blocks and
    code spans, a link's text running over lines as wrapped prose does."""
    prose = {line.number: line for line in lines(path) if not line.in_code_block}
    text = "\n".join(
        CODE_SPAN.sub(lambda span: "x" * len(span[0]), prose[number].text) if number in prose else ""
        for number in range(1, max(prose, default=0) + 1)
    )
    for match in LINK.finditer(text):
        yield prose[text.count("\n", 0, match.start("target")) + 1], match["target"]


def broken_links(path: Path, root: Path = ROOT) -> list[str]:
    """What is wrong with each relative link of `path`, a page of the tree at `root` ([] when every one
    resolves)."""
    broken = []
    for line, target in links(path):
        if EXTERNAL.match(target):
            continue
        file_part, _, anchor = target.partition("#")
        file = (path.parent / file_part).resolve() if file_part else path
        if not file.is_relative_to(root) or not file.exists():
            broken.append(f"{line.where()}: {target} — no such file")
        elif anchor and (file.suffix != ".md" or anchor not in anchors(file)):
            broken.append(f"{line.where()}: {target} — no heading #{anchor} in {file.name}")
    return broken


# ------------------------------------------------------------------------ paths, files and modules


@cache
def repository_files() -> frozenset[str]:
    """The repository's files (tracked, or new and not ignored), as paths from its root."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: which files belong to the repository is unknown")
    return frozenset(path for path in listed.splitlines() if (ROOT / path).exists())


@cache
def path_pattern() -> re.Pattern[str]:
    """A repository path: a top-level folder of the repository, a slash, then path characters — not
    preceded by anything that would make it part of another path or a URL."""
    folders = sorted({path.split("/")[0] for path in repository_files() if "/" in path})
    return re.compile(rf"(?<![\w./~:-])(?:{'|'.join(map(re.escape, folders))})/[\w./*-]*")


@cache
def module_pattern() -> re.Pattern[str]:
    """A dotted module of the repository: a top-level folder of Python modules, then `.name`s."""
    packages = sorted(
        {path.split("/")[0] for path in repository_files() if "/" in path and path.endswith(".py")}
    )
    return re.compile(rf"(?<![\w./-])(?:{'|'.join(map(re.escape, packages))})(?:\.[a-z_]\w*)+")


@cache
def code_strings() -> str:
    """The product's Python source, where a dotted name given as a string (a task name) is found."""
    sources = (ROOT / path for path in sorted(repository_files()) if path.endswith(".py"))
    return "\n".join(
        path.read_text(encoding="utf-8") for path in sources if not path.is_relative_to(ROOT / "tests")
    )


def path_exists(path: str) -> bool:
    if "*" in path:
        return any(ROOT.glob(path))
    return (ROOT / path).exists()


def module_exists(dotted: str) -> bool:
    """Does `a.b.c` name a module of the repository (or a name in one)? The longest prefix that is a
    module decides; the next name must then occur in it as a word."""
    if f'"{dotted}"' in code_strings():
        return True
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        base = ROOT.joinpath(*parts[:cut])
        source = next(
            (file for file in (base.with_suffix(".py"), base / "__init__.py") if file.is_file()), None
        )
        if source is None and not base.is_dir():
            continue
        rest = parts[cut:]
        if not rest:
            return True
        return source is not None and re.search(rf"\b{re.escape(rest[0])}\b", source.read_text()) is not None
    return False


def missing_names(path: Path) -> list[str]:
    """Each repository path, file name and module `path` names that does not exist ([] if none)."""
    missing = []
    names = {name.rsplit("/", 1)[-1] for name in repository_files()}
    for line in lines(path):
        for found in path_pattern().finditer(line.text):
            named = found[0].rstrip(".,:;")
            if not path_exists(named):
                missing.append(f"{line.where()}: {named} — no such path in the repository")
        if line.in_code_block:
            continue
        for span in CODE_SPAN.finditer(line.text):
            content = span[1].strip()
            if FILE_NAME.match(content) and content not in names:
                missing.append(f"{line.where()}: {content} — no file of that name in the repository")
            for module in module_pattern().finditer(content):
                if not module_exists(module[0]):
                    missing.append(f"{line.where()}: {module[0]} — no such module in the repository")
    return missing


# ------------------------------------------------------------------------------------------- tests


def test_the_readme_is_a_front_door() -> None:
    size = len((ROOT / "README.md").read_bytes())
    assert size <= README_MAX_BYTES, f"README.md is {size} bytes: move the depth to docs/"


def test_every_relative_link_and_anchor_resolves() -> None:
    checked = [target for path in DOCUMENTS for _, target in links(path) if not EXTERNAL.match(target)]
    assert len(checked) >= 20, checked  # the pages link to each other: finding none means a broken reader
    broken = [problem for path in DOCUMENTS for problem in broken_links(path)]
    assert not broken, "links that lead nowhere:\n" + "\n".join(broken)


def test_every_repository_path_file_and_module_named_exists() -> None:
    named = [
        found[0] for path in DOCUMENTS for line in lines(path) for found in path_pattern().finditer(line.text)
    ]
    assert len(named) >= 20, named
    missing = [problem for path in DOCUMENTS for problem in missing_names(path)]
    assert not missing, "names of nothing in the repository (sweep these lines):\n" + "\n".join(missing)


@pytest.mark.parametrize(
    ("heading", "anchor"),
    [
        ("`docker compose up`: Redis, workers and Flower", "docker-compose-up-redis-workers-and-flower"),
        ("Results on the project's machine", "results-on-the-projects-machine"),
        ("What is guaranteed, and what is not", "what-is-guaranteed-and-what-is-not"),
        ("Without Docker: `conquer up`", "without-docker-conquer-up"),
        ("`--on managers`: the chapter's last pointer", "--on-managers-the-chapters-last-pointer"),
    ],
)
def test_anchors_are_spelled_as_github_spells_them(heading: str, anchor: str) -> None:
    assert slug(heading) == anchor


def test_the_checks_find_what_is_broken(tmp_path: Path) -> None:
    """The checks on a page made wrong on purpose, beside a README, in a tree of its own."""
    (tmp_path / "README.md").write_text("# Title\n\n## Exit status\n", encoding="utf-8")
    (tmp_path / "docs").mkdir()
    page = tmp_path / "docs" / "page.md"
    page.write_text(
        "# A page\n\n## Its section\n\n"
        "[fine](#its-section) [fine too](../README.md#exit-status) [gone](nowhere.md) "
        "[no heading](../README.md#no-such-heading) [web](https://example.org/#x) [out](../../x.md) [a\n"
        "wrapped link](nowhere-either.md)\n"
        "`workers/serial.py` and `tasks/nowhere.py`, `test_load.py` and `no_such_test.py`,\n"
        "`workers.managers`, `workers.nowhere`, `workers.celery.settings.mask`,\n"
        "`workers.celery.settings.no_such_name`,\n"
        "`conquer.chunk` (a task name the code gives)\n\n"
        "```sh\nls tests/no-such-folder/  # [not a link](nowhere.md)\n```\n",
        encoding="utf-8",
    )
    where = page.as_posix()
    assert broken_links(page, root=tmp_path) == [
        f"{where}:5: nowhere.md — no such file",
        f"{where}:5: ../README.md#no-such-heading — no heading #no-such-heading in README.md",
        f"{where}:5: ../../x.md — no such file",
        f"{where}:6: nowhere-either.md — no such file",
    ]
    assert missing_names(page) == [
        f"{where}:7: tasks/nowhere.py — no such path in the repository",
        f"{where}:7: no_such_test.py — no file of that name in the repository",
        f"{where}:8: workers.nowhere — no such module in the repository",
        f"{where}:9: workers.celery.settings.no_such_name — no such module in the repository",
        f"{where}:13: tests/no-such-folder/ — no such path in the repository",
    ]
