"""Hostile config files (issue 11, items 1, 2, 11-14): the config is input too.

Each test feeds the exporter a file an operator could write by mistake or an
attacker could plant: ``--config.check`` runs as a real subprocess, reloads go
to a real exporter process (tests/harness.py) whose memory is read from
``/proc/<pid>/status``. Every test is bounded in time: a hang is a failure.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Mapping
from pathlib import Path

import pytest
import yaml

from exporter.config import ConfigError, parse_config, yamlload
from exporter.config.yamlload import ALIAS_BUDGET, MAX_NODES, load_yaml
from tests.harness import (
    REPO,
    config_check,
    parse_exposition,
    running_exporter,
    wait_for,
    write_config,
)
from tests.test_web_security import bcrypt_hash

TOKEN = "TKN-hostile-4f7c2a"  # never printed, whole or in part
TOKEN_PARTS = (TOKEN, TOKEN[4:], "4f7c2a")

# A 577-byte "billion laughs": nine levels of nine aliases, 9^9 leaves expanded.
ALIAS_BOMB = (
    'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    "b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
    "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
    "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
    "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"
    "f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"
    "g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n"
    "h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]\n"
    "i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]\n"
    "lynx: {token: t, base_url: 'http://127.0.0.1:1'}\n"
    "actors: [{id: 1, name: *i}]\n"
)
LOADERS: list[type[yaml.SafeLoader] | type[yaml.CSafeLoader]] = [yaml.SafeLoader, yaml.CSafeLoader]


def check(*args: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``--config.check``; a hang past 20 s fails the test."""
    return config_check(*args, env=env, timeout=20)


def assert_no_token(text: str) -> None:
    for part in TOKEN_PARTS:
        assert part not in text, f"the token leaked: {text!r}"


def proc_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"{field} not in /proc/{pid}/status")


# --- item 1: tokens an HTTP header cannot carry -------------------------------------------


def test_token_file_is_read_as_a_secret_file(tmp_path: Path) -> None:
    """A byte-order mark (as Windows editors write it) and surrounding whitespace go."""
    (tmp_path / "token").write_bytes(b"\xef\xbb\xbf  " + TOKEN.encode() + b"\r\n\n")
    config = parse_config(
        "lynx: {token_file: token}\nactors: [{id: 1}]", environ={}, base_dir=tmp_path
    )
    assert config.lynx.token is not None and config.lynx.token.reveal() == TOKEN


BAD_TOKENS = {
    "zero-width space": (TOKEN[:5] + "\u200b" + TOKEN[5:], "a zero-width space at character 6"),
    "second line": (TOKEN + "\nsecond-line", "a line break"),
    "CR in the middle": (TOKEN[:3] + "\r" + TOKEN[3:], "a line break"),
    "byte-order mark inside": (TOKEN[:4] + "\ufeff" + TOKEN[4:], "a byte-order mark"),
    "control character": (TOKEN + "\x07", "a control character"),
    "non-latin-1": (TOKEN + "\u20ac", "a non-ASCII character"),
    "inner space": (TOKEN[:6] + " " + TOKEN[6:], "whitespace"),
}


@pytest.mark.parametrize("where", ["token_file", "env", "actor"])
@pytest.mark.parametrize("shape", sorted(BAD_TOKENS))
def test_a_token_a_header_cannot_carry_is_a_config_error(
    tmp_path: Path, where: str, shape: str
) -> None:
    value, reason = BAD_TOKENS[shape]
    config = tmp_path / "config.yaml"
    env: dict[str, str] = {}
    if where == "token_file":
        (tmp_path / "token").write_text(value + "\n", encoding="utf-8")
        config.write_text("lynx: {token_file: token}\nactors: [{id: 1}]\n")
        key = "lynx.token_file"
    elif where == "env":
        env["NAYAX_LYNX_TOKEN"] = value
        config.write_text("lynx: {token: '${NAYAX_LYNX_TOKEN}'}\nactors: [{id: 1}]\n")
        key = "lynx.token"
    else:
        config.write_text(
            yaml.safe_dump({"lynx": {"token": "ok"}, "actors": [{"id": 1, "token": value}]})
        )
        key = "actors[0].token"
    result = check(f"--config.file={config}", env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"error: {key}: the token holds {reason}" in result.stderr
    assert "cannot carry" in result.stderr
    assert_no_token(result.stdout + result.stderr)


# --- item 2: YAML errors never quote the source ----------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        f"lynx: {{token: !{TOKEN}}}\nactors: [{{id: 1}}]\n",  # reads as a tag
        f"lynx:\n  token: !{TOKEN}\nactors: [{{id: 1}}]\n",
        f"lynx: {{token: *{TOKEN}}}\nactors: [{{id: 1}}]\n",  # reads as an alias
        f"lynx: {{token: {TOKEN}: x}}\nactors: [{{id: 1}}]\n",
        f"lynx:\n  token: '{TOKEN}\nactors: [{{id: 1}}]\n",  # unclosed quote
        f"lynx:\n  token: {TOKEN}\n\tbase_url: x\n",  # a tab
        f"lynx:\n  token: %{TOKEN}\n",
        f"lynx:\n  token: {TOKEN}\x00\n",  # a character YAML refuses
    ],
)
def test_yaml_errors_never_echo_a_value(tmp_path: Path, text: str) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(text, encoding="utf-8")
    result = check(f"--config.file={config}")
    assert result.returncode == 1
    assert "error: <yaml> line " in result.stderr
    assert_no_token(result.stdout + result.stderr)
    for loader in LOADERS:
        with pytest.raises(ConfigError) as caught:
            load_yaml(text, loader=loader)
        assert_no_token("\n".join(caught.value.errors))


# --- item 11: aliases expand within a budget ---------------------------------------------


@pytest.mark.parametrize("loader", LOADERS, ids=lambda c: c.__name__)
def test_alias_bomb_is_refused_at_once(loader: type[yaml.SafeLoader]) -> None:
    started = time.monotonic()
    with pytest.raises(ConfigError) as caught:
        load_yaml(ALIAS_BOMB, loader=loader)
    assert time.monotonic() - started < 1.0
    assert caught.value.errors == (
        f"<yaml>: aliases expand the document beyond {ALIAS_BUDGET} extra nodes; "
        "refused (write the repeated parts out, or share less)",
    )
    # A bomb built from `<<` merge keys is counted the same way.
    merge_bomb = "a: &a {x: 1, y: 2}\n" + "".join(
        f"{chr(98 + n)}: &{chr(98 + n)} {{<<: [{', '.join([f'*{chr(97 + n)}'] * 9)}], k{n}: 1}}\n"
        for n in range(9)
    )
    with pytest.raises(ConfigError, match="aliases expand"):
        load_yaml(merge_bomb, loader=loader)
    # Sharing within the budget still works.
    shared = "m: &m [{id: 1}, {id: 2}]\nx: *m\ny: *m\n"
    assert load_yaml(shared, loader=loader) == {"m": [{"id": 1}, {"id": 2}]} | {
        "x": [{"id": 1}, {"id": 2}],
        "y": [{"id": 1}, {"id": 2}],
    }


def test_alias_bomb_config_check_returns_quickly(tmp_path: Path) -> None:
    config = tmp_path / "bomb.yaml"
    config.write_text(ALIAS_BOMB)
    assert len(ALIAS_BOMB.encode()) < 600
    started = time.monotonic()
    result = check(f"--config.file={config}")
    assert time.monotonic() - started < 10
    assert result.returncode == 1
    assert "aliases expand the document beyond" in result.stderr


def test_a_reload_to_a_hostile_file_leaves_the_process_untouched(tmp_path: Path) -> None:
    """An alias bomb, then an absurd interval: each reload is refused at once,
    memory stays put (read from /proc), and SIGTERM still ends the process."""
    config = write_config(
        tmp_path / "config.yaml",
        {
            "lynx": {"token": "hostile-test-token", "base_url": "http://127.0.0.1:1"},
            "actors": [{"id": 1}],
        },
    )
    with running_exporter(config) as exporter:
        assert exporter.process is not None
        pid = exporter.process.pid
        time.sleep(1.0)  # let start-up allocations settle
        rss, peak = proc_kib(pid, "VmRSS"), proc_kib(pid, "VmHWM")
        for hostile in (
            ALIAS_BOMB,
            "lynx: {token: hostile-test-token}\npoll: {interval: 1000000000000d}\n",
        ):
            failures = len([e for e in exporter.logs() if e.get("event") == "config reload failed"])
            config.write_text(hostile)
            exporter.signal(signal.SIGHUP)
            wait_for(
                lambda failures=failures: (
                    len(  # type: ignore[misc]
                        [e for e in exporter.logs() if e.get("event") == "config reload failed"]
                    )
                    > failures
                ),
                timeout=5,
                what="the reload to be refused",
            )
            series = parse_exposition(exporter.scrape())
            reloaded = [v for k, v in series.items() if k[0].endswith("last_reload_successful")]
            assert reloaded == [0.0]
        grown = proc_kib(pid, "VmRSS") - rss
        peak_grown = proc_kib(pid, "VmHWM") - peak
        print(f"reloads to hostile files: VmRSS {grown:+d} KiB, VmHWM {peak_grown:+d} KiB")
        assert grown < 8 * 1024 and peak_grown < 8 * 1024, (grown, peak_grown)
        started = time.monotonic()
        assert exporter.stop() == 0
        assert time.monotonic() - started < 5


# --- issue 19: a document's nodes are counted before any is built -------------------------


@pytest.mark.parametrize("loader", LOADERS, ids=lambda c: c.__name__)
def test_nodes_are_counted_as_written(
    loader: type[yaml.SafeLoader], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A list and its items, a mapping and its keys and values, an alias: one each."""
    monkeypatch.setattr(yamlload, "MAX_NODES", 10)
    assert load_yaml("[" + ",".join("1" * 9) + "]", loader=loader) == [1] * 9
    assert load_yaml("{a: &x 1, b: *x, c: 3, d: 4}", loader=loader)  # 1 + 4 keys + 4 values
    for over in ("[" + ",".join("1" * 10) + "]", "{a: &x 1, b: *x, c: 3, d: 4, e: 5}"):
        with pytest.raises(ConfigError) as caught:
            load_yaml(over, loader=loader)
        assert caught.value.errors == ("<yaml>: more than 10 nodes (values, lists, mappings)",)


def test_a_document_of_too_many_nodes_is_refused_before_it_is_built() -> None:
    """1 MB of ``[1,1,1,...]`` used to be built in full (~400 MB, seconds);
    16 MiB, within the file size cap, would have taken some 3 GB."""
    text = "[" + "1," * MAX_NODES + "1]"
    tracemalloc.start()
    try:
        with pytest.raises(ConfigError, match=f"more than {MAX_NODES} nodes"):
            load_yaml(text)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * 1024 * 1024, peak


# --- item 12: every duration is bounded ----------------------------------------------------

DURATION_KEYS = {
    "lynx.timeout": ("lynx", "timeout", "must be between 1ms and 5m"),
    "lynx.retry_backoff": ("lynx", "retry_backoff", "must be between 1ms and 10m"),
    "lynx.retry_backoff_max": ("lynx", "retry_backoff_max", "must be between 1ms and 1h"),
    "poll.interval": ("poll", "interval", "must be between 10ms and 1d"),
    "poll.stale_after": ("poll", "stale_after", "must be between 10ms and 1w"),
    "windows[0].rolling": ("windows", "rolling", "must be between 1s and 1y"),
}


@pytest.mark.parametrize("key", sorted(DURATION_KEYS))
@pytest.mark.parametrize("value", ["1000000000000d", "400d", 1e300, "999999999999999999999y"])
def test_durations_have_upper_bounds(tmp_path: Path, key: str, value: object) -> None:
    section, name, message = DURATION_KEYS[key]
    document: dict[str, object] = {"lynx": {"token": "t"}, "actors": [{"id": 1}]}
    if section == "windows":
        document["windows"] = [{"name": "w", "rolling": value}]
    else:
        document.setdefault(section, {})[name] = value  # type: ignore[index]
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(document))
    result = check(f"--config.file={config}")
    assert result.returncode == 1
    assert f"error: {key}: {message}" in result.stderr, result.stderr


# --- item 13: duplicate keys ------------------------------------------------------------


@pytest.mark.parametrize("loader", LOADERS, ids=lambda c: c.__name__)
def test_duplicate_keys_are_errors_with_their_key_path(loader: type[yaml.SafeLoader]) -> None:
    text = (
        "lynx:\n  token: a\n  timeout: 5s\n  token: b\n"
        "actors:\n  - id: 1\n    name: x\n    id: 2\n"
        "poll: {interval: 1m}\npoll: {interval: 2m}\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_yaml(text, loader=loader)
    assert set(caught.value.errors) == {
        "lynx.token: duplicate key (lines 2 and 4); YAML keys must be unique",
        "actors[0].id: duplicate key (lines 6 and 8); YAML keys must be unique",
        "poll: duplicate key (lines 9 and 10); YAML keys must be unique",
    }
    # A merge key may override what it merges: that is not a duplicate.
    assert load_yaml("base: &b {x: 1}\nm: {<<: *b, x: 2}\n", loader=loader) == {
        "base": {"x": 1},
        "m": {"x": 2},
    }


def test_config_check_reports_duplicate_keys(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f"lynx: {{token: {TOKEN}}}\nactors: [{{id: 1}}]\nactors: [{{id: 2}}]\n")
    result = check(f"--config.file={config}")
    assert result.returncode == 1
    assert "error: actors: duplicate key (lines 2 and 3)" in result.stderr
    assert_no_token(result.stderr)


# --- item 14: --config.check checks the web config; bcrypt cost bounded -------------------


def test_config_check_also_checks_the_web_config(tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.yaml", {"lynx": {"token": "t"}, "actors": [{"id": 1}]})
    web = tmp_path / "web.yml"
    web.write_text("tls_server_config: {cert_file: missing.crt}\nbasic_auth_users: {a: plain}\n")
    result = check(f"--config.file={config}", f"--web.config.file={web}")
    assert result.returncode == 1
    assert f"error: {web}: tls_server_config.key_file: is required" in result.stderr
    assert f"error: {web}: basic_auth_users.a: must be a bcrypt hash" in result.stderr
    web.write_text(yaml.safe_dump({"basic_auth_users": {"a": bcrypt_hash("pw")}}))
    ok = check(f"--config.file={config}", f"--web.config.file={web}")
    assert ok.returncode == 0, ok.stderr


def test_an_absurd_bcrypt_cost_is_refused_fast(tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.yaml", {"lynx": {"token": "t"}, "actors": [{"id": 1}]})
    web = tmp_path / "web.yml"
    cost_24 = "$2y$24$" + bcrypt_hash("pw")[7:]
    web.write_text(yaml.safe_dump({"basic_auth_users": {"alice": cost_24}}))
    started = time.monotonic()
    result = check(f"--config.file={config}", f"--web.config.file={web}")
    assert result.returncode == 1
    assert "basic_auth_users.alice: bcrypt cost 24 is outside 4..18" in result.stderr
    assert cost_24[7:] not in result.stderr
    # Serving refuses it too, at once, instead of never listening.
    served = subprocess.run(
        [
            sys.executable,
            "-m",
            "exporter",
            f"--config.file={config}",
            f"--web.config.file={web}",
            "--web.listen-address=127.0.0.1:0",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=20,
        check=False,
    )
    assert served.returncode == 1
    assert "bcrypt cost 24" in served.stderr
    assert time.monotonic() - started < 15
