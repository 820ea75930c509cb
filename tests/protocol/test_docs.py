"""PROTOCOL.md's state machines and timer defaults match the code."""

from __future__ import annotations

from pathlib import Path

from vnstitch.protocol.docs import generated_section

DOC = Path(__file__).resolve().parents[2] / "PROTOCOL.md"


def test_protocol_md_matches_code() -> None:
    text = DOC.read_text()
    start = text.index("<!-- generated:start -->\n") + len("<!-- generated:start -->\n")
    end = text.index("<!-- generated:end -->")
    assert text[start:end] == generated_section(), "run: python -m vnstitch.protocol.docs"
