"""The upstream boundary's readers (exporter/lynx/upstream.py): every value the API sends
comes out safe, or as a Rejected with a reason; nothing raises."""

from __future__ import annotations

import json
import unicodedata
from datetime import UTC, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exporter.lynx.upstream import (
    CUT_MARK,
    INT64_MAX,
    MAX_FIGURE,
    MAX_TEXT,
    MIN_TIMESTAMP,
    Rejected,
    read_float,
    read_id,
    read_int,
    read_text,
    read_timestamp,
    safe_text,
    short_repr,
)

NOW = 1_780_000_000.0  # 2026-05-28
# Any code point, the troublesome ones often (st.text() would never draw a lone surrogate).
ANY_TEXT = st.lists(
    st.characters(exclude_categories=()) | st.characters(categories=["Cs", "Cc", "Cf", "Zl", "Zp"]),
    max_size=300,
).map("".join)
UNSAFE = {"Cc", "Cf", "Cs", "Zl", "Zp"}


def reason(value: object) -> str:
    assert isinstance(value, Rejected), value
    return value.reason


@given(ANY_TEXT)
def test_safe_text_is_always_encodable_one_line_and_capped(text: str) -> None:
    safe = safe_text(text)
    safe.encode("utf-8")  # no lone surrogate survives
    assert len(safe) <= MAX_TEXT
    assert not any(unicodedata.category(c) in UNSAFE for c in safe)
    assert safe == safe.strip()


def test_a_lone_surrogate_from_json_becomes_a_replacement_character() -> None:
    name = json.loads('"bad\\ud800name"')
    assert safe_text(name) == "bad\ufffdname"
    assert read_text(name) == "bad\ufffdname"


def test_line_breaks_become_spaces_and_other_controls_a_marker() -> None:
    forged = 'x\rts=2026 level=info event="target up"\u2028y\x1b[31m\u200bz\x85w'
    assert safe_text(forged) == 'x ts=2026 level=info event="target up" y\ufffd[31m\ufffdz w'


def test_long_text_is_cut_and_marked() -> None:
    name = "a" * 1_000_000
    safe = safe_text(name)
    assert len(safe) == MAX_TEXT and safe.endswith(CUT_MARK)
    assert safe_text("b" * MAX_TEXT) == "b" * MAX_TEXT  # exactly at the cap: kept whole


def test_read_text_rejects_non_strings_and_blanks_are_absent() -> None:
    assert read_text(None) is None
    assert read_text("   ") is None
    assert reason(read_text(12)) == "not_text"
    assert reason(read_text(["a"])) == "not_text"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (7012, 7012),
        ("7012", 7012),
        (" 42 ", 42),
        (INT64_MAX, INT64_MAX),
        (str(INT64_MAX), INT64_MAX),
    ],
)
def test_ids_in_int64_are_read(raw: object, expected: int) -> None:
    assert read_id(raw) == expected


@pytest.mark.parametrize(
    "raw",
    ["²", "٣", "1_0", "1" * 4301, "-1", "0", 0, -5, INT64_MAX + 1, 7.0, True, "0x10", "", "1e3"],
)
def test_odd_ids_are_rejected_not_raised(raw: object) -> None:
    assert reason(read_id(raw)) == "bad_id"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(12, 12.0), (12.5, 12.5), ("12.5", 12.5), (" -3 ", -3.0), ("1e3", 1000.0), (0, 0.0)],
)
def test_numbers_are_read_exactly(raw: object, expected: float) -> None:
    assert read_float(raw) == expected


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ("1_0", "not_a_number"),
        ("٣", "not_a_number"),
        ("inf", "not_a_number"),
        ("NaN", "not_a_number"),
        ("0x10", "not_a_number"),
        (True, "not_a_number"),
        ([1], "not_a_number"),
        (float("nan"), "not_finite"),
        (float("inf"), "not_finite"),
        (1e308, "out_of_range"),
        (10**400, "out_of_range"),
        ("1e400", "not_finite"),
        (MAX_FIGURE * 10, "out_of_range"),
    ],
)
def test_odd_numbers_are_rejected_with_a_reason(raw: object, why: str) -> None:
    assert reason(read_float(raw)) == why


def test_read_int_keeps_to_its_range() -> None:
    assert read_int(-70, minimum=-(2**31), maximum=2**31 - 1) == -70
    assert read_int("3", minimum=0, maximum=10) == 3
    assert reason(read_int(11, minimum=0, maximum=10)) == "out_of_range"
    assert reason(read_int(10**400, minimum=0, maximum=2**31 - 1)) == "out_of_range"
    assert reason(read_int(2.5, minimum=0, maximum=10)) == "not_an_integer"


def test_timestamps_are_read_in_their_zone() -> None:
    assert read_timestamp("2026-05-14T22:17:02.877", UTC, NOW) == pytest.approx(1778797022.877)
    berlin = timezone(timedelta(hours=2))
    assert read_timestamp("2026-05-14T22:17:02", berlin, NOW) == 1778797022.0 - 7200
    assert read_timestamp("2026-05-14T22:17:02Z", berlin, NOW) == 1778797022.0


@pytest.mark.parametrize("zone", [UTC, timezone(timedelta(hours=1)), timezone(timedelta(hours=-5))])
def test_year_one_is_out_of_range_in_every_zone(zone: timezone) -> None:
    assert reason(read_timestamp("0001-01-01T00:00:00", zone, NOW)) == "timestamp_out_of_range"
    assert reason(read_timestamp("0001-01-01T00:00:00+01:00", UTC, NOW)) in (
        "timestamp_out_of_range",
        "not_a_timestamp",
    )


def test_timestamps_far_in_the_future_or_before_2000_are_out_of_range() -> None:
    assert reason(read_timestamp("1999-12-31T23:59:59Z", UTC, NOW)) == "timestamp_out_of_range"
    assert read_timestamp("2000-01-01T00:00:00Z", UTC, NOW) == MIN_TIMESTAMP
    assert reason(read_timestamp("9999-12-31T23:59:59", UTC, NOW)) == "timestamp_out_of_range"


@pytest.mark.parametrize(
    "raw", [12, "yesterday", "2026-13-45T00:00:00", "\uff12\uff10\uff12\uff16-05-14T22:17:02"]
)
def test_non_timestamps_are_rejected(raw: object) -> None:
    assert reason(read_timestamp(raw, UTC, NOW)) == "not_a_timestamp"


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | ANY_TEXT,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(ANY_TEXT, inner, max_size=3),
        max_leaves=10,
    )
)
def test_no_reader_raises_on_any_json_value(value: object) -> None:
    for read in (
        read_text,
        read_id,
        read_float,
        lambda v: read_int(v, minimum=0, maximum=100),
        lambda v: read_timestamp(v, UTC, NOW),
    ):
        result = read(value)
        assert result is None or isinstance(result, str | int | float | Rejected)
    shown = short_repr(value)
    shown.encode("utf-8")
    assert len(shown) <= 40
