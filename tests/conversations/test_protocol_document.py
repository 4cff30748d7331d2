"""docs/protocol.md and the frame classes in the code say the same thing: every frame type the
document lists exists in the code with exactly the fields listed, and the other way round."""

import re
from dataclasses import fields
from pathlib import Path

import pytest

from conversations.frames import SERVER_FRAMES
from conversations.protocol import CLIENT_FRAMES

DOCUMENT = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
# Backticked words of a table cell that name fields (not `null`, not other frames' types).
FIELD = re.compile(r"`([a-z_]+)`")


def _table(section: str) -> dict[str, set[str]]:
    """The `type` → fields table under a `## section` heading of the document."""
    text = DOCUMENT.read_text(encoding="utf-8").split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) < 2 or not cells[0].startswith("`") or cells[0] == "`type`":
            continue
        rows[cells[0].strip("`")] = set(FIELD.findall(cells[1])) - {"null"}
    return rows


def _client_fields(cls) -> set[str]:
    # request_id is documented once for every request, not in each row.
    return {f.name for f in fields(cls) if "within" not in f.metadata} - {"request_id"}


def test_every_client_frame_type_and_field_is_documented_and_nothing_else():
    documented = {kind: names - {"request_id"} for kind, names in _table("Client → server").items()}
    in_code = {cls.type: _client_fields(cls) for cls in CLIENT_FRAMES}
    assert documented == in_code


def test_every_client_frame_may_carry_a_request_id_as_the_document_says():
    assert all("request_id" in {f.name for f in fields(cls)} for cls in CLIENT_FRAMES)
    assert "Every request may carry `request_id`" in DOCUMENT.read_text(encoding="utf-8")


def test_every_server_frame_type_and_field_is_documented_and_nothing_else():
    documented = _table("Server → client")
    in_code = {cls.type: {f.name for f in fields(cls)} for cls in SERVER_FRAMES}
    assert documented == in_code


@pytest.mark.parametrize("section", ["Client → server", "Server → client"])
def test_the_document_tables_are_read(section):
    # Guards the test itself: a reworded heading must not turn the comparisons into {} == {}.
    assert len(_table(section)) >= 5
