"""Log lines cannot be forged (issue 19, item B): one event is one physical line.

A machine name (configured, or listed by the API) or an upstream text inside an
error reaches log fields as sent. structlog's logfmt renderer passed CR, ESC,
NEL and U+2028 through, so ``x\\rts=... level=info event="target up"`` printed a
second, made-up line on a terminal or in a log shipper splitting on CR. The
exporter's own renderer escapes every character :meth:`str.isprintable`
refuses; these tests hold it to that for any text, and check that what it
writes reads back (as a logfmt parser would) to exactly what was logged.
"""

from __future__ import annotations

import io
import json
import re
import unicodedata

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from exporter.logs import LogfmtRenderer, SecretScrubber, configure, logfmt_key, logfmt_value

# What must never appear raw in a rendered line: controls (CR, LF, ESC, NEL...),
# format characters (zero-width, bidi), line and paragraph separators, surrogates.
FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})
NASTY = "\r\n\t\x00\x1b\x7f\x85\u2028\u2029\u200b\u200e\u202e\u2066\ufeff\ud800\udfff \"='\\"
FORGED = 'x\rts=2026-01-01T00:00:00Z level=info event="target up" machine=x'

SETTINGS = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# Any code point, lone surrogates included, with the dangerous ones made frequent.
ANY_TEXT = st.text(
    st.one_of(st.characters(codec=None, exclude_categories=()), st.sampled_from(NASTY))
)
KEYS = st.from_regex(r"[a-z_][a-z0-9_]{0,11}", fullmatch=True)


def forbidden_in(line: str) -> list[str]:
    return [c for c in line if unicodedata.category(c) in FORBIDDEN_CATEGORIES]


# A logfmt reader: bare values up to the next space; quoted values with Go's
# escapes (\xNN is only ever ASCII here, so byte and code point agree).
FIELD = re.compile(r'([^ ="]+)(?:=(?:"((?:[^"\\]|\\.)*)"|([^ "]*)))?(?: |$)')
ESCAPE = re.compile(r'\\(x[0-9a-f]{2}|u[0-9a-f]{4}|U[0-9a-f]{8}|[nrt"\\])')
SHORT = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\"}


def unescape(quoted: str) -> str:
    def one(match: re.Match[str]) -> str:
        code = match.group(1)
        return SHORT.get(code) or chr(int(code[1:], 16))

    return ESCAPE.sub(one, quoted)


def parse_logfmt(line: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    position = 0
    while position < len(line):
        match = FIELD.match(line, position)
        assert match is not None and match.end() > position, f"unparsable at {position}: {line!r}"
        key, quoted, bare = match.groups()
        fields[key] = unescape(quoted) if quoted is not None else (bare or "")
        position = match.end()
    return fields


@SETTINGS
@given(st.dictionaries(ANY_TEXT, ANY_TEXT, max_size=6))
@example({"machine": FORGED})
@example({'k\r\n="': "\u2028", "": "\ud800"})
def test_any_event_renders_to_one_line_without_a_control_character(
    event: dict[str, str],
) -> None:
    line = LogfmtRenderer()(None, "info", dict(event))
    assert len(line.splitlines()) <= 1, line
    assert not forbidden_in(line), forbidden_in(line)
    line.encode("utf-8")  # no lone surrogate left: any stream can write it


@SETTINGS
@given(st.dictionaries(KEYS, ANY_TEXT, min_size=1, max_size=6))
@example({"machine": FORGED, "error": 'HTTP 502: text/html\u2028level=error event="x"'})
@example({"empty": "", "backslash": "C:\\dir", "quote": '"', "equals": "a=b"})
def test_values_read_back_exactly(event: dict[str, str]) -> None:
    line = LogfmtRenderer()(None, "info", dict(event))
    assert parse_logfmt(line) == event


@SETTINGS
@given(ANY_TEXT)
def test_a_key_is_one_token_whatever_it_holds(key: str) -> None:
    rendered = logfmt_key(key)
    assert rendered
    assert not any(c in rendered for c in ' ="'), rendered
    assert not forbidden_in(rendered)


def test_order_flags_and_missing_keys_as_before() -> None:
    """ts, level, event first (absent ones dropped), the rest in logged order;
    True is a bare flag, None and "" an empty value, False ``false``."""
    renderer = LogfmtRenderer()
    event = {"b": 1, "event": "x y", "flag": True, "off": False, "none": None, "level": "info"}
    assert renderer(None, "info", event) == 'level=info event="x y" b=1 flag off=false none='


def test_plain_values_stay_bare() -> None:
    assert logfmt_value("target-7") == "target-7"
    assert logfmt_value("Zürich") == "Zürich"  # letters of any script are printable
    assert logfmt_value("C:\\dir") == "C:\\dir"  # a bare value is literal
    assert logfmt_value("a b") == '"a b"'
    assert logfmt_value("\x85") == '"\\u0085"'  # NEL as a code point, not a byte


@pytest.mark.parametrize("fmt", ["logfmt", "json"])
def test_a_forged_machine_name_stays_on_its_line(fmt: str) -> None:
    """Through the process's own logging set-up, into a strict UTF-8 stream
    (a lone surrogate must not raise there either). JSON was one line already;
    it is held to that here too."""
    buffer = io.BytesIO()
    stream = io.TextIOWrapper(buffer, encoding="utf-8", errors="strict", newline="\n")
    log = configure("info", fmt, SecretScrubber(), stream)
    log.warning("target down", machine=FORGED, error="bad\u2028payload\x1b[2J\ud800")
    log.info("next event")
    stream.flush()
    lines = buffer.getvalue().decode("utf-8").split("\n")
    assert lines[-1] == ""
    assert len(lines) == 3, lines
    first = json.loads(lines[0]) if fmt == "json" else parse_logfmt(lines[0])
    assert first["event"] == "target down"
    assert first["machine"] == FORGED
    assert first["error"] == "bad\u2028payload\x1b[2J\ud800"
    assert all(not forbidden_in(line) for line in lines)
