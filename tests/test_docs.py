"""The README and docs/: links that resolve, and the facts a newcomer acts on
first (the Quick start's commands and side effects, the flags) kept in step with
the code they describe."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from exporter.cli import parse_args
from tests.harness import REPO

DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
# Linked before it exists: the counters page comes with the counters work (issue 20).
PENDING = {REPO / "docs" / "counters.md"}
LINK = re.compile(r"\]\(([^)\s]+)\)")


def anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"(?ms)^```.*?^```", "", path.read_text(encoding="utf-8"))
    headings = re.findall(r"(?m)^#{1,6} (.+)$", text)
    return {
        re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-") for heading in headings
    }


def section(title: str) -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else len(text)]


def test_every_relative_link_and_anchor_resolves() -> None:
    broken = []
    for document in DOCUMENTS:
        for target in LINK.findall(document.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+:", target):
                continue  # http(s), mailto: not checked here
            name, _, anchor = target.partition("#")
            path = (document.parent / name).resolve() if name else document
            if path in PENDING and not path.exists():
                continue
            if not path.exists():
                broken.append(f"{document.name}: {target} (no such file)")
            elif anchor and path.suffix == ".md" and anchor not in anchors(path):
                broken.append(f"{document.name}: {target} (no such heading)")
    assert not broken, broken


def test_the_quick_start_leads_with_the_two_commands() -> None:
    quick = section("Quick start")
    block = quick[quick.index("```sh\n") + 6 :]
    commands = [line.split()[0] for line in block[: block.index("```")].splitlines()]
    assert commands == ["scripts/demo.sh", "scripts/test.sh"]


def test_the_quick_start_states_what_the_test_command_installs_and_how_long_it_takes() -> None:
    setup = (REPO / "scripts" / "setup.sh").read_text(encoding="utf-8")
    listed = re.search(r"apt_packages=\(([^)]*)\)", setup)
    assert listed is not None
    quick = section("Quick start")
    for package in listed.group(1).split():
        assert f"`{package}`" in quick, package
    assert "as root" in quick.replace("\n", " ") and re.search(r"about \d+ minutes", quick)


def test_the_flag_table_lists_every_flag_with_its_default(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        parse_args(["--help"])
    parser_flags = set(re.findall(r"(--[a-z][\w.-]+)", capsys.readouterr().out)) - {"--help"}
    table = re.findall(r"(?m)^\| `(--[\w.-]+)` \|([^|]*)\|", section("Command line"))
    assert {flag for flag, _ in table} == parser_flags
    defaults = dict(table)
    plain, demo = parse_args([]), parse_args(["--demo"])
    assert f"`{plain.listen_address}`" in defaults["--web.listen-address"]
    assert f"`{demo.listen_address}`" in defaults["--web.listen-address"]
    assert defaults["--web.max-connections"].strip() == f"`{plain.max_connections}`"
    assert defaults["--config.file"].strip() == f"`{plain.config_file}`"
    assert defaults["--demo.simulator-address"].strip() == f"`{plain.demo_simulator_address}`"


def test_the_architecture_names_files_that_exist() -> None:
    architecture = section("Architecture")
    for name in re.findall(r"`(exporter/[\w/.]+\.py)`", architecture):
        assert (REPO / name).is_file(), name
    pyproject = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    contracts = re.findall(r'\*"([^"]+)"\*', architecture)
    assert len(contracts) == len(re.findall(r"\[\[tool\.importlinter\.contracts\]\]", pyproject))
    for contract in contracts:
        assert f'name = "{" ".join(contract.split())}"' in pyproject, contract
