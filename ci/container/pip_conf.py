"""The pip configuration a container base image gets from the host that builds it.

    python3 ci/container/pip_conf.py CA_BUNDLE_IN_IMAGE   # prints /etc/pip.conf on stdout

The image's pip must reach the same package index as the host's (a host behind a
mirror or a proxy has no other way out), so the host's effective settings (config
files, then PIP_* variables, which win, as in pip) are carried over, but only those
the image can use: an allow-list of settings whose value is a reachable URL, a host
name, a number or a flag. Settings that name a file or folder on the host
(`constraint`, `requirement`, `find-links` or index URLs with `file:` or a bare path,
`client-cert`, a `cert` other than the bundle the image gets) are left out, not copied
into the image with their files: a constraint file or a wheel folder is the host
user's own business, can be large (a local wheel mirror) and would silently change
what the image resolves. Every setting left out is named on stderr, never fatal.
"""

from __future__ import annotations

import configparser
import io
import subprocess
import sys
from collections.abc import Iterable

URL_SCHEMES = ("http://", "https://")
# Settings whose value is one or more URLs: kept when the URL is http(s).
URL_LISTS = frozenset({"index-url", "extra-index-url", "find-links", "proxy"})
# Settings that hold no path: host names, numbers, flags.
PLAIN = frozenset(
    {
        "trusted-host",
        "timeout",
        "default-timeout",
        "retries",
        "disable-pip-version-check",
        "no-input",
        "progress-bar",
        "prefer-binary",
        "only-binary",
        "no-binary",
    }
)
CERT = "cert"


def parse_listing(listing: str) -> dict[tuple[str, str], str]:
    """`pip config list` output as {(section, key): value}; PIP_* variables
    (section ``:env:``) override the files' values under ``global``. Pure."""
    files: dict[tuple[str, str], str] = {}
    environment: dict[str, str] = {}
    for line in listing.splitlines():
        name, sep, value = line.partition("=")
        if not sep:
            continue
        section, _, key = name.partition(".")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        if section == ":env:":
            environment[key] = value
        else:
            files[(section, key)] = value
    for key, value in environment.items():
        files[("global", key)] = value
    return files


def translate(
    settings: dict[tuple[str, str], str], ca_bundle: str
) -> tuple[dict[tuple[str, str], str], list[str]]:
    """The settings the image can use, and a line for each one left out. Pure."""
    kept: dict[tuple[str, str], str] = {}
    dropped: list[str] = []
    for (section, key), value in sorted(settings.items()):
        if key in URL_LISTS:
            urls = value.split()
            reachable = [url for url in urls if url.startswith(URL_SCHEMES)]
            dropped += [f"{section}.{key} {url}" for url in urls if url not in reachable]
            if reachable:
                kept[(section, key)] = " ".join(reachable)
        elif key in PLAIN:
            kept[(section, key)] = value
        elif key != CERT:  # cert is set below, to the bundle copied into the image
            dropped.append(f"{section}.{key} {value}")
    kept[("global", CERT)] = ca_bundle
    return kept, dropped


def render(settings: dict[tuple[str, str], str]) -> str:
    """An ini file for /etc/pip.conf. Pure."""
    parser = configparser.ConfigParser(interpolation=None)
    for (section, key), value in sorted(settings.items()):
        if not parser.has_section(section):
            parser.add_section(section)
        parser.set(section, key, value)
    out = io.StringIO()
    parser.write(out)
    return out.getvalue()


def main(argv: Iterable[str]) -> int:
    (ca_bundle,) = argv
    listing = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=True
    ).stdout
    kept, dropped = translate(parse_listing(listing), ca_bundle)
    for line in dropped:
        print(
            f"build-base-image: not copied (a host path, or not for the image): {line}",
            file=sys.stderr,
        )
    sys.stdout.write(render(kept))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
