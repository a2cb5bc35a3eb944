"""Exposition: render the data when it changes, serve bytes on every scrape.

The data families (thousands of series) are rendered in the background after a
batch of polls lands (debounced) and kept as segments of bytes plus their gzip
form; a scrape only renders the exporter's small request counters and writes
the segments as they are. Lines are cached per block of consecutive targets,
keyed by their immutable state objects, so a render only formats and compresses
the blocks in which a poll landed; a segment (one family's lines of a run of
blocks) in which none landed is the same bytes object in the next bodies.

The data families are gauges without units, whose lines are identical in the
text 0.0.4 and OpenMetrics formats; the same bytes serve both. The counter
families of cumulative windows are not: text 0.0.4 types ``x_total`` (``# TYPE
x_total counter``), OpenMetrics types the family ``x`` and carries ``x_created``
after each ``x_total`` (the same label set's samples must be adjacent). They are
rendered with the same blocks, once per format, into a part of their own that
follows the data (empty, so absent, without a cumulative window). A gzip body is
the pre-compressed data member followed by small members for the counters and
the self families: RFC 1952 allows several members and every client we met (Go's
compress/gzip in Prometheus, urllib3, curl, zlib) reads them as one stream.
"""

from __future__ import annotations

import gzip
import math
import struct
import threading
import time
import zlib
from collections.abc import Callable, Hashable
from dataclasses import dataclass, replace

from prometheus_client import CollectorRegistry
from prometheus_client import exposition as text_format
from prometheus_client.openmetrics import exposition as openmetrics_format
from prometheus_client.utils import floatToGoString

from exporter.kinds.base import CounterSample, Sample
from exporter.metrics.crc32 import crc32_combine
from exporter.metrics.families import (
    COUNTER_FAMILIES,
    COUNTER_INDEX,
    DATA_FAMILIES,
    FAMILY_INDEX,
    TARGET_UP,
    state_samples,
)
from exporter.metrics.render_guard import RenderGuard
from exporter.polling.store import Snapshot, SnapshotStore, TargetState
from exporter.targets import TargetKey

TEXT_CONTENT_TYPE = text_format.CONTENT_TYPE_LATEST
OPENMETRICS_CONTENT_TYPE = openmetrics_format.CONTENT_TYPE_LATEST
OPENMETRICS_EOF = b"# EOF\n"
GZIP_LEVEL = (
    1  # the fastest: the render stays cheap at 10,000 machines; LAN bandwidth is not the limit
)


def _escape_label(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _escape_help(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n")


_HEADERS: tuple[bytes, ...] = tuple(
    f"# HELP {f.name} {_escape_help(f.help)}\n# TYPE {f.name} gauge\n".encode()
    for f in DATA_FAMILIES
)
# The counters' headers: text 0.0.4 names the series (x_total), OpenMetrics the family.
_TEXT_COUNTER_HEADERS: tuple[bytes, ...] = tuple(
    f"# HELP {f.name}_total {_escape_help(f.help)}\n# TYPE {f.name}_total counter\n".encode()
    for f in COUNTER_FAMILIES
)
_OPENMETRICS_COUNTER_HEADERS: tuple[bytes, ...] = tuple(
    f"# HELP {f.name} {_escape_help(f.help)}\n# TYPE {f.name} counter\n".encode()
    for f in COUNTER_FAMILIES
)
# A block's lines, by section: the data families, then the counter families in
# text 0.0.4, then in OpenMetrics.
_TEXT_AT = len(DATA_FAMILIES)
_OPENMETRICS_AT = _TEXT_AT + len(COUNTER_FAMILIES)
_SECTIONS = _OPENMETRICS_AT + len(COUNTER_FAMILIES)
TAIL_MAX_AGE = 1.0  # seconds the process metrics may be reused between scrapes


def format_value(value: float) -> str:
    """Go's float formatting: client_python's own ``floatToGoString``."""
    text: str = floatToGoString(value)  # type: ignore[no-untyped-call]
    return text


def label_text(labels: tuple[tuple[str, str], ...]) -> str:
    """Pure. ``{a="1",b="x"}``: sorted by label name, as client_python writes them."""
    pairs = ",".join(f'{name}="{_escape_label(value)}"' for name, value in sorted(labels))
    return f"{{{pairs}}}"


def sample_line(sample: Sample, labels: str | None = None) -> str:
    """Pure. One exposition line; ``labels``: ``label_text(sample.labels)`` if known."""
    text = label_text(sample.labels) if labels is None else labels
    return f"{sample.family.name}{text} {format_value(sample.value)}\n"


# Targets per cached block. Polls land in config order (schedule.phases), so
# between two renders the changed targets are one contiguous run: only the few
# blocks it spans are rendered again, the rest are reused without visiting
# their targets one by one (that visit alone was most of a render).
BLOCK_SIZE = 64

# The gzip body is one gzip member whose deflate stream is the concatenation of
# independently compressed, byte-aligned segments (one per family and block,
# each ended by a sync flush), closed by an empty final block: RFC 1951 allows
# it, and every inflater reads it as one stream. A render then compresses only
# the blocks it rendered again, and combines the trailer's CRC-32 from the
# segments' (exporter/metrics/crc32.py) instead of compressing the whole body.
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x04\xff"  # deflate, mtime 0, fastest, OS unknown
_DEFLATE_END = b"\x03\x00"  # an empty final block with fixed codes


def _deflate(data: bytes) -> bytes:
    """Pure. ``data`` as a raw deflate segment that can start anywhere in a stream."""
    if not data:
        return b""
    compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)


@dataclass(frozen=True)
class _BodyPart:
    """Where a part of the body sits in a block's sections, and its headers."""

    first: int  # its first section
    headers: tuple[bytes, ...]
    deflated: tuple[bytes, ...]  # the headers, each a deflate segment
    checksums: tuple[int, ...]  # the headers' CRC-32s


def _body_part(first: int, headers: tuple[bytes, ...]) -> _BodyPart:
    deflated = tuple(_deflate(header) for header in headers)
    return _BodyPart(first, headers, deflated, tuple(zlib.crc32(header) for header in headers))


_PARTS = (  # the data, the counters in text 0.0.4, in OpenMetrics
    _body_part(0, _HEADERS),
    _body_part(_TEXT_AT, _TEXT_COUNTER_HEADERS),
    _body_part(_OPENMETRICS_AT, _OPENMETRICS_COUNTER_HEADERS),
)


@dataclass(frozen=True)
class _Block:
    """What the lines of consecutive targets were rendered from."""

    states: tuple[TargetState, ...]  # immutable: equal states render equal lines
    stale_after: float
    rendered_at: float  # wall time; a clock stepped back before it renders again
    expires: float  # when its earliest fresh reading goes stale (inf: none)
    counters: bool = False  # whether it has counter lines


@dataclass(frozen=True)
class _RenderedBlock:
    """A block's fresh lines, one bytes per data family, plain and deflated."""

    block: _Block
    plain: tuple[bytes, ...]
    deflated: tuple[bytes, ...]


def _state_lines(
    state: TargetState, now: float, stale_after: float, per_family: list[list[str]]
) -> None:
    """Append one target's exposition lines to their sections' lists."""
    if state.target.window.cumulative is not None:
        _counter_state_lines(state, now, stale_after, per_family)
        return
    # A target's samples share a few label sets: each is escaped and sorted once.
    texts: dict[tuple[tuple[str, str], ...], str] = {}
    for sample in state_samples(state, now, stale_after):
        text = texts.get(sample.labels)
        if text is None:
            text = texts[sample.labels] = label_text(sample.labels)
        per_family[FAMILY_INDEX[sample.family]].append(sample_line(sample, text))


def _counter_state_lines(
    state: TargetState, now: float, stale_after: float, per_family: list[list[str]]
) -> None:
    """:func:`_state_lines` for a target of a cumulative window: its counters in
    both formats, its gauges (up, last success, info, operator status) as usual."""
    texts: dict[tuple[tuple[str, str], ...], str] = {}
    for sample in state_samples(state, now, stale_after):
        text = texts.get(sample.labels)
        if text is None:
            text = texts[sample.labels] = label_text(sample.labels)
        if not isinstance(sample, CounterSample):
            per_family[FAMILY_INDEX[sample.family]].append(sample_line(sample, text))
            continue
        index, name = COUNTER_INDEX[sample.family], sample.family.name
        total = f"{name}_total{text} {format_value(sample.value)}\n"
        per_family[_TEXT_AT + index].append(total)
        if sample.created is not None:
            total += f"{name}_created{text} {format_value(sample.created)}\n"
        per_family[_OPENMETRICS_AT + index].append(total)


def _render_block(
    states: tuple[TargetState, ...], now: float, stale_after: float, guard: RenderGuard | None
) -> _RenderedBlock:
    expires = math.inf
    for state in states:
        if state.last_success is not None and state.fresh(now, stale_after):
            expires = min(expires, state.last_success + state.stale_limit(stale_after))
    try:
        per_family: list[list[str]] = [[] for _ in range(_SECTIONS)]
        for state in states:
            _state_lines(state, now, stale_after, per_family)
        plain = tuple("".join(family_lines).encode() for family_lines in per_family)
        if guard is not None:
            guard.rendered((state.target.key for state in states), "metrics")
    except Exception:  # one target's failure must not cost the others their series
        plain = _render_guarded(states, now, stale_after, guard)
    block = _Block(states, stale_after, now, expires, any(plain[_TEXT_AT:]))
    return _RenderedBlock(block, plain, tuple(_deflate(lines) for lines in plain))


def _render_guarded(
    states: tuple[TargetState, ...], now: float, stale_after: float, guard: RenderGuard | None
) -> tuple[bytes, ...]:
    """A block target by target: one that fails to render is shown as down."""
    per_family: list[list[bytes]] = [[] for _ in range(_SECTIONS)]
    fine: list[TargetKey] = []
    for state in states:
        try:
            lines: list[list[str]] = [[] for _ in range(_SECTIONS)]
            _state_lines(state, now, stale_after, lines)
            encoded = ["".join(family_lines).encode() for family_lines in lines]
            fine.append(state.target.key)
        except Exception as error:
            if guard is not None:
                guard.failed(state.target.key, "metrics", error)
            encoded = _down_lines(state)
        for family, data in enumerate(encoded):
            per_family[family].append(data)
    if guard is not None:
        guard.rendered(fine, "metrics")
    return tuple(b"".join(parts) for parts in per_family)


def _down_lines(state: TargetState) -> list[bytes]:
    """Pure: only ``nayax_ev_target_up ... 0`` for a target that failed to render,
    its label values made encodable whatever they hold."""
    out = [b""] * _SECTIONS
    target = state.target

    def safe(text: object) -> str:
        return str(text).encode("utf-8", "backslashreplace").decode("utf-8")

    labels = (
        ("actor_id", safe(target.actor_id)),
        ("actor", safe(target.actor)),
        ("machine", safe(target.machine_label)),
        ("window", safe(target.window.name)),
    )
    out[FAMILY_INDEX[TARGET_UP]] = sample_line(Sample(TARGET_UP, labels, 0.0)).encode()
    return out


@dataclass(frozen=True)
class DataBodies:
    """One part of the data exposition, as segments shared between renders: an
    unchanged run of blocks is the same bytes object in the next bodies."""

    segments: tuple[bytes, ...]  # the plain body, in order
    gzip_segments: tuple[bytes, ...]  # together one gzip member of the plain body
    # The counter families in text 0.0.4 and in OpenMetrics; None: there are none.
    counters: tuple[DataBodies, DataBodies] | None = None

    @property
    def plain(self) -> bytes:
        """The plain body as one bytes (a copy: tests and tools, not the scrape path)."""
        return b"".join(self.segments)

    @property
    def gzipped(self) -> bytes:
        return b"".join(self.gzip_segments)


# Blocks per served segment. A segment holds one family's lines of up to this many
# consecutive blocks; the bodies are lists of segments, so that a render copies only
# the segments it touched and an unchanged one is shared with the last bodies.
# Fewer, larger segments: fewer writes per scrape (sendmsg takes at most IOV_MAX,
# 1024, at once) and fewer checksums to combine per render (crc32_combine);
# smaller: less copied per render. Measured: docs/performance.md.
SEGMENT_BLOCKS = 8


@dataclass(frozen=True, slots=True)
class _Segment:
    """One family's lines in a run of consecutive blocks, plain and deflated."""

    plain: bytes
    deflated: bytes  # byte-aligned deflate segments, one per block
    checksum: int  # zlib.crc32(plain)
    plain_ends: tuple[int, ...]  # where each block's lines end in ``plain``
    deflated_ends: tuple[int, ...]


# A part's segments by family, then by run of blocks (index // SEGMENT_BLOCKS).
_Segments = tuple[tuple[_Segment, ...], ...]


class DataRenderer:
    """Renders the data families; reuses each block of targets' lines while its
    states (immutable objects) are unchanged and none of its readings went stale.

    A reused block's lines are not kept apart: they sit in the segments of the
    last bodies (placed by each segment's block ends), so the lines are held in
    memory once, in the bodies served."""

    def __init__(self, guard: RenderGuard | None = None) -> None:
        self._guard = guard
        self._blocks: list[_Block] = []
        # Per part (data, text counters, OpenMetrics counters): its segments.
        self._segments: list[_Segments] = [(), (), ()]

    def render_bodies(self, snapshot: Snapshot, now: float) -> DataBodies:
        states = tuple(snapshot.states.values())
        blocks: list[_Block] = []
        # Per part (data, text counters, OpenMetrics counters), per family: its segments.
        rows: list[list[list[_Segment]]] = [[[] for _ in part.headers] for part in _PARTS]
        per_run = BLOCK_SIZE * SEGMENT_BLOCKS
        for run, start in enumerate(range(0, len(states), per_run)):
            # A run at a time: its fresh blocks' lines are let go once in its segments,
            # so a render holds the new bodies and one run's lines, not the lines twice.
            current = self._run(states[start : start + per_run], len(blocks), snapshot, now)
            for part, last, part_rows in zip(_PARTS, self._segments, rows, strict=True):
                for family, row in enumerate(part_rows):
                    old = last[family][run] if last and run < len(last[family]) else None
                    row.append(_segment(current, part.first + family, old))
            blocks += (b.block if isinstance(b, _RenderedBlock) else b for b in current)
        self._blocks = blocks
        self._segments = [tuple(tuple(row) for row in part_rows) for part_rows in rows]
        data, text, openmetrics = (
            _bodies(part, segments) for part, segments in zip(_PARTS, self._segments, strict=True)
        )
        if any(block.counters for block in blocks):
            return replace(data, counters=(text, openmetrics))
        return data  # removed targets dropped out with their block

    def _run(
        self, states: tuple[TargetState, ...], first: int, snapshot: Snapshot, now: float
    ) -> list[_Block | _RenderedBlock]:
        """The blocks of a run of states (``first``: the index of its first block),
        each the last render's or rendered again."""
        previous, stale_after = self._blocks, snapshot.stale_after
        blocks: list[_Block | _RenderedBlock] = []
        for index, start in enumerate(range(0, len(states), BLOCK_SIZE), start=first):
            chunk = states[start : start + BLOCK_SIZE]
            block = previous[index] if index < len(previous) else None
            if (
                block is None
                or not block.rendered_at <= now < block.expires
                or block.stale_after != stale_after
                or block.states != chunk  # identical objects compare in C, no __eq__
            ):
                blocks.append(_render_block(chunk, now, stale_after, self._guard))
            else:
                blocks.append(block)
        return blocks


def _bodies(part: _BodyPart, segments: _Segments) -> DataBodies:
    """Both bodies of one part, family by family, from its segments. The gzip
    trailer's checksum is combined from the segments' (a few µs each), never
    computed over the body."""
    plain: list[bytes] = []
    gzipped: list[bytes] = [_GZIP_HEADER]
    checksum, length = 0, 0
    for family, header in enumerate(part.headers):
        plain.append(header)
        gzipped.append(part.deflated[family])
        checksum = crc32_combine(checksum, part.checksums[family], len(header))
        length += len(header)
        for segment in segments[family] if segments else ():
            if segment.plain:
                plain.append(segment.plain)
                gzipped.append(segment.deflated)
                checksum = crc32_combine(checksum, segment.checksum, len(segment.plain))
                length += len(segment.plain)
    gzipped += (_DEFLATE_END, struct.pack("<II", checksum, length & 0xFFFFFFFF))
    return DataBodies(tuple(plain), tuple(gzipped))


def _segment(
    blocks: list[_Block | _RenderedBlock], section: int, last: _Segment | None
) -> _Segment:
    """One section's segment of a run of blocks: the last one if no block in the
    run was rendered again, else built from the fresh blocks' lines and the
    reused blocks' lines sliced from the last segment."""
    fresh = any(isinstance(block, _RenderedBlock) for block in blocks)
    if last is not None and not fresh and len(last.plain_ends) == len(blocks):
        return last
    plain: list[bytes | memoryview] = []
    deflated: list[bytes | memoryview] = []
    plain_ends: list[int] = []
    deflated_ends: list[int] = []
    plain_at = deflated_at = 0  # where the block starts in the last segment
    plain_end = deflated_end = 0
    for offset, block in enumerate(blocks):
        if isinstance(block, _RenderedBlock):
            lines: bytes | memoryview = block.plain[section]
            compressed: bytes | memoryview = block.deflated[section]
        else:  # reused: a run's blocks are the same as in the last render (see render_bodies)
            assert last is not None
            lines = memoryview(last.plain)[plain_at : last.plain_ends[offset]]
            compressed = memoryview(last.deflated)[deflated_at : last.deflated_ends[offset]]
        if last is not None and offset < len(last.plain_ends):
            plain_at, deflated_at = last.plain_ends[offset], last.deflated_ends[offset]
        plain.append(lines)
        deflated.append(compressed)
        plain_end += len(lines)
        deflated_end += len(compressed)
        plain_ends.append(plain_end)
        deflated_ends.append(deflated_end)
    body = b"".join(plain)
    ends = tuple(plain_ends)
    if last is not None and body == last.plain:
        # Rendered again to the same lines (a reload that changed every target's
        # state but no line): keep the served bytes, hold the lines once.
        if ends == last.plain_ends:
            return last  # the same blocks' deflate segments too
        return _Segment(last.plain, b"".join(deflated), last.checksum, ends, tuple(deflated_ends))
    return _Segment(body, b"".join(deflated), zlib.crc32(body), ends, tuple(deflated_ends))


@dataclass(frozen=True)
class RenderedData:
    data: DataBodies  # the data families (and the counters), as segments
    generation: int
    rendered_at: float  # wall time
    seconds: float  # CPU-ish cost of the render (perf_counter)
    ready: bool  # every target had been polled once in the rendered snapshot

    @property
    def body(self) -> bytes:
        """The plain data body as one bytes (a copy: tests and tools)."""
        return self.data.plain

    @property
    def gzipped(self) -> bytes:
        return self.data.gzipped

    @property
    def counters(self) -> tuple[DataBodies, DataBodies] | None:  # text 0.0.4, OpenMetrics
        return self.data.counters


@dataclass(frozen=True)
class _Part:
    """A rendered piece of the self families, plain and gzipped."""

    key: Hashable  # what it was rendered for (a counters version), if anything
    rendered_at: float  # time.monotonic()
    plain: bytes
    gzipped: bytes


class _PartCache:
    """One registry's rendering per format, reused while ``valid`` says so."""

    def __init__(self, registry: CollectorRegistry, *, keep_eof: bool = False) -> None:
        self._registry = registry
        self._keep_eof = keep_eof  # only the last part ends the OpenMetrics body
        self._parts: dict[bool, _Part] = {}

    def get(self, openmetrics: bool, key: Hashable, valid: Callable[[_Part], bool]) -> _Part:
        cached = self._parts.get(openmetrics)
        if cached is not None and valid(cached):
            return cached
        plain = _render(self._registry, openmetrics, keep_eof=self._keep_eof)
        part = _Part(key, time.monotonic(), plain, _gzip(plain))
        # A new dict swapped in whole: concurrent scrapes never see a half update.
        self._parts = {**self._parts, openmetrics: part}
        return part


class ExpositionCache:
    """Holds the latest rendered data; a background thread keeps it current."""

    def __init__(
        self,
        store: SnapshotStore,
        self_registry: CollectorRegistry,
        *,
        errors_registry: CollectorRegistry | None = None,
        errors_version: Callable[[], Hashable] = lambda: None,
        process_registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.time,
        min_gap: Callable[[], float] = lambda: 1.0,
        guard: RenderGuard | None = None,
        on_error: Callable[[BaseException], None] = lambda _error: None,
    ) -> None:
        self._store = store
        self._self_registry = self_registry
        self._clock = clock
        self._min_gap = min_gap
        self._on_error = on_error
        self._renderer = DataRenderer(guard)
        self._render_lock = threading.Lock()
        self._rendered = self._render_now(store.current())
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._errors = None if errors_registry is None else _PartCache(errors_registry)
        self._errors_version = errors_version
        self._process = (
            None if process_registry is None else _PartCache(process_registry, keep_eof=True)
        )

    def _render_now(self, snapshot: Snapshot) -> RenderedData:
        with self._render_lock:
            started = time.perf_counter()
            now = self._clock()
            bodies = self._renderer.render_bodies(snapshot, now)
            return RenderedData(
                bodies, snapshot.generation, now, time.perf_counter() - started, snapshot.ready
            )

    def refresh(self) -> RenderedData:
        """Render the current snapshot now (used at start, by tests and --once)."""
        self._rendered = self._render_now(self._store.current())
        return self._rendered

    @property
    def rendered(self) -> RenderedData:
        return self._rendered

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="exposition", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)

    @property
    def alive(self) -> bool:
        """False once the render thread has died (a bug): /-/healthy says so."""
        return self._thread is None or self._thread.is_alive() or self._stop.is_set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._render_when_due()
            except Exception as error:  # data never ends this thread; a scrape serves the last
                self._on_error(error)
                self._stop.wait(1.0)

    def _render_when_due(self) -> None:
        """Wait for a change (or a reading going stale), then render once."""
        last = self._rendered
        snapshot = self._store.current()
        now = self._clock()
        if snapshot.generation == last.generation:
            # Nothing new arrived; only a kept reading going stale needs a
            # render. (Scanned here only: a changed snapshot renders anyway.)
            expiry = snapshot.next_expiry(last.rendered_at)
            if expiry is None or expiry > now:
                timeout = 1.0 if expiry is None else max(0.01, min(1.0, expiry - now))
                self._store.wait_for_change(snapshot.generation, timeout)
                return
        # Debounce: let a burst of poll completions land as one render, and
        # never spend more than ~1/10 of the time rendering.
        gap = max(self._min_gap(), 10 * last.seconds) - (now - last.rendered_at)
        if gap > 0 and self._stop.wait(gap):
            return
        self._rendered = self._render_now(self._store.current())

    # --- serving ---------------------------------------------------------------

    def serve_chunks(
        self, accept: str | None, accept_encoding: str | None
    ) -> tuple[tuple[bytes, ...], dict[str, str]]:
        """Body (as chunks: the rendered segments, never copied per scrape, then
        the self families) and headers for one scrape, negotiated like
        prometheus_client."""
        data = self._rendered.data
        content_type, openmetrics, zipped = negotiate(accept, accept_encoding)
        headers = {"Content-Type": content_type}
        if zipped:
            headers["Content-Encoding"] = "gzip"
        chunks = data.gzip_segments if zipped else data.segments
        if data.counters is not None:
            counters = data.counters[openmetrics]
            chunks += counters.gzip_segments if zipped else counters.segments
        # The self families in one chunk: the server writes the chunks with as
        # few sendmsg calls as IOV_MAX allows, each a GIL hand-off.
        return (*chunks, b"".join(self._tail(openmetrics, zipped))), headers

    def serve(
        self, accept: str | None, accept_encoding: str | None
    ) -> tuple[bytes, dict[str, str]]:
        chunks, headers = self.serve_chunks(accept, accept_encoding)
        return b"".join(chunks), headers

    def _tail(self, openmetrics: bool, zipped: bool) -> tuple[bytes, ...]:
        """The self families. Only the few request counters and gauges are rendered
        per scrape: rendering Python objects is slow while pollers hold the GIL, so
        the poll-error counters (one per actor and reason) are reused until one of
        them moves, and the process metrics for up to TAIL_MAX_AGE (reading /proc
        releases and re-takes the GIL several times)."""
        counters = _render(self._self_registry, openmetrics)
        errors = self._errors_part(openmetrics)
        process = self._process_part(openmetrics)
        if zipped:
            return _gzip(counters), errors.gzipped, process.gzipped
        return counters, errors.plain, process.plain

    def _errors_part(self, openmetrics: bool) -> _Part:
        if self._errors is None:
            return _EMPTY
        version = self._errors_version()  # read first: a change while rendering re-renders
        return self._errors.get(openmetrics, version, lambda part: part.key == version)

    def _process_part(self, openmetrics: bool) -> _Part:
        if self._process is None:
            return _EOF if openmetrics else _EMPTY
        now = time.monotonic()
        return self._process.get(
            openmetrics, None, lambda part: now - part.rendered_at < TAIL_MAX_AGE
        )


def _gzip(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=GZIP_LEVEL, mtime=0)


_EMPTY = _Part(None, 0.0, b"", b"")
_EOF = _Part(None, 0.0, OPENMETRICS_EOF, _gzip(OPENMETRICS_EOF))


def _render(registry: CollectorRegistry, openmetrics: bool, *, keep_eof: bool = False) -> bytes:
    """prometheus_client's rendering; in OpenMetrics without the closing EOF
    unless asked, as the body has exactly one, at the very end."""
    if not openmetrics:
        text: Callable[[CollectorRegistry], bytes] = text_format.generate_latest
        return text(registry)
    om: Callable[[CollectorRegistry], bytes] = openmetrics_format.generate_latest
    body = om(registry)
    return body if keep_eof else body[: -len(OPENMETRICS_EOF)]


def negotiate(accept: str | None, accept_encoding: str | None) -> tuple[str, bool, bool]:
    """Pure. (Content-Type, OpenMetrics?, gzip?) for a scrape's headers, chosen by
    client_python's ``choose_encoder`` and ``gzip_accepted`` as its own server does,
    except that a gzip refused with ``q=0`` is not sent (the library's slip)."""
    _, content_type = text_format.choose_encoder(accept or "")
    openmetrics = content_type.startswith("application/openmetrics-text")
    zipped = text_format.gzip_accepted(accept_encoding or "") and not _gzip_refused(
        accept_encoding or ""
    )
    return content_type, openmetrics, zipped


def _gzip_refused(accept_encoding: str) -> bool:
    """Pure. True if ``gzip`` is listed with a quality of 0 (``gzip;q=0``, ``q=0.000``)."""
    for coding in accept_encoding.split(","):
        name, *params = coding.split(";")
        if name.strip().lower() != "gzip":
            continue
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q" and _is_zero(value.strip()):
                return True
    return False


def _is_zero(quality: str) -> bool:
    try:
        return float(quality) == 0.0
    except ValueError:
        return False
