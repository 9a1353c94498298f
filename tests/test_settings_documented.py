"""One source of truth for settings: every variable compose or the flows read is in .env.example,
and every one of those is in the README's configuration table."""

from __future__ import annotations

import re

from tests.support import REPO

EXAMPLE = (REPO / ".env.example").read_text()
DOCUMENTED = set(re.findall(r"^([A-Z][A-Z0-9_]*)=", EXAMPLE, flags=re.MULTILINE))


def test_every_compose_variable_is_in_env_example() -> None:
    compose = "\n".join(
        line
        for line in (REPO / "docker-compose.yml").read_text().splitlines()
        if not line.lstrip().startswith("#")
    )
    used = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", compose))
    assert used - DOCUMENTED == set()


def test_every_variable_has_a_comment_in_env_example() -> None:
    lines = EXAMPLE.splitlines()
    for index, line in enumerate(lines):
        if re.match(r"^[A-Z][A-Z0-9_]*=", line):
            above = lines[index - 1] if index else ""
            # A group of related variables may share the comment block right above the first one.
            assert above.startswith("#") or re.match(r"^[A-Z][A-Z0-9_]*=", above), (
                f"{line.split('=')[0]} has no comment"
            )


def test_readme_configuration_table_lists_every_variable() -> None:
    readme = (REPO / "README.md").read_text()
    assert {name for name in DOCUMENTED if f"`{name}`" not in readme} == set()


def test_readme_names_the_two_commands_first() -> None:
    readme = (REPO / "README.md").read_text()
    first_block = readme.split("```", 2)[1]
    assert first_block.split().count("./scripts/up") == 1 and "./scripts/test" in first_block
    assert readme.index("./scripts/up") < readme.index("## Architecture")
