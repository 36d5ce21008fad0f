"""docs/console.md says what the code does: its roles table is hq/access/roles.py's
ROLES (names, Chinese labels, scopes, permissions), its permissions table is PERMISSIONS
(names, Chinese text, the roles holding each), and its public endpoints are the guard's."""

from __future__ import annotations

import re
from pathlib import Path

from hq.access.guard import PUBLIC_ENDPOINTS
from hq.access.roles import PERMISSIONS, ROLES

DOC = Path(__file__).resolve().parents[2] / "docs" / "console.md"
CODE = re.compile(r"`([^`]+)`")


def table(header: str) -> list[list[str]]:
    """The rows of the Markdown table whose header row starts with ``| header |``."""
    lines = DOC.read_text("utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {header} |"))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split(" | ")])
    return rows


def test_the_roles_table_is_roles_py():
    rows = table("Role")
    documented = {CODE.fullmatch(row[0]).group(1): row for row in rows}
    assert set(documented) == set(ROLES), "a role missing from docs/console.md, or one too many"
    for name, row in documented.items():
        role = ROLES[name]
        assert row[1] == role.label, name
        scope = {None: "the chain", "store": "one store", "area": "one area"}[role.scoped]
        assert row[2].startswith(scope), (name, row[2])
        listed = CODE.findall(row[4])
        assert len(listed) == len(set(listed)), name
        assert set(listed) == set(role.permissions), (
            name,
            sorted(set(listed) - role.permissions),
            sorted(role.permissions - set(listed)),
        )


def test_the_permissions_table_is_permissions():
    rows = table("Permission")
    documented = {CODE.fullmatch(row[0]).group(1): row for row in rows}
    assert set(documented) == set(PERMISSIONS)
    for name, row in documented.items():
        assert row[1] == PERMISSIONS[name], name
        holders = {r.strip() for r in row[2].split(",")}
        assert holders == {r.name for r in ROLES.values() if name in r.permissions}, name


def test_the_public_endpoints_are_the_guards():
    documented = {CODE.fullmatch(row[0]).group(1) for row in table("endpoint")}
    assert documented == set(PUBLIC_ENDPOINTS)


def test_every_screen_has_its_section_and_every_command_its_row():
    text = DOC.read_text("utf-8")
    for screen in (
        "Dashboard",
        "Stores",
        "Members",
        "Sales",
        "Exceptions and dead letters",
        "Programme setup",
        "Reports",
        "Audit",
        "Users",
    ):
        assert re.search(rf"^### {screen} \(", text, re.M), screen
    from hq.cli_users import COMMANDS

    commands = {row[0].strip("`").split()[1] for row in table("command")}
    assert commands == {c.name for c in COMMANDS}
