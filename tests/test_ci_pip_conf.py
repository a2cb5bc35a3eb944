"""The base image's pip configuration (ci/container/pip_conf.py): what the image
gets from the host's pip settings. Fast: no container is built here.

The host's settings that name host files or folders must never reach the image,
whether the file exists on the host or not; reachable URLs, host names and numbers
must. tests/test_container.py builds the real image with whatever this machine's
pip configuration holds.
"""

from __future__ import annotations

import configparser
import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.harness import REPO

SCRIPT = REPO / "ci" / "container" / "pip_conf.py"
BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("pip_conf", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


pip_conf = load()


def host_paths(tmp_path: Path, exist: bool) -> dict[str, str]:
    constraint = tmp_path / "constraints.txt"
    requirement = tmp_path / "requirements.txt"
    wheels = tmp_path / "wheels"
    index = tmp_path / "index"
    cert = tmp_path / "my-ca.pem"
    client_cert = tmp_path / "client.pem"
    if exist:
        for path in (constraint, requirement, cert, client_cert):
            path.write_text("x\n", encoding="utf-8")
        wheels.mkdir()
        index.mkdir()
    return {
        "constraint": str(constraint),
        "requirement": str(requirement),
        "wheels": str(wheels),
        "index": str(index),
        "cert": str(cert),
        "client-cert": str(client_cert),
    }


def listing(paths: dict[str, str]) -> str:
    """What `pip config list` prints for a host config holding every kind of setting."""
    return "\n".join(
        [
            f"global.constraint='{paths['constraint']}'",
            f"global.requirement='{paths['requirement']}'",
            f"global.find-links='{paths['wheels']} https://wheels.example.org/simple'",
            f"global.extra-index-url='file://{paths['index']} https://mirror.example.org/simple'",
            "global.index-url='https://pypi.example.org/simple'",
            f"global.cert='{paths['cert']}'",
            f"global.client-cert='{paths['client-cert']}'",
            "global.trusted-host='pypi.example.org mirror.example.org'",
            "global.timeout='60'",
            "install.retries='7'",
            ":env:.default-timeout='180'",
            f":env:.find-links='{paths['wheels']}'",
        ]
    )


@pytest.mark.parametrize("exist", [True, False], ids=["files-exist", "files-missing"])
def test_host_paths_are_left_out_and_reachable_settings_kept(tmp_path: Path, exist: bool) -> None:
    paths = host_paths(tmp_path, exist)
    kept, dropped = pip_conf.translate(pip_conf.parse_listing(listing(paths)), BUNDLE)
    assert kept == {
        # PIP_FIND_LINKS (a host folder) overrides the file's value: nothing is left of it.
        ("global", "extra-index-url"): "https://mirror.example.org/simple",
        ("global", "index-url"): "https://pypi.example.org/simple",
        ("global", "cert"): BUNDLE,
        ("global", "trusted-host"): "pypi.example.org mirror.example.org",
        ("global", "timeout"): "60",
        ("global", "default-timeout"): "180",
        ("install", "retries"): "7",
    }
    rendered = pip_conf.render(kept)
    assert str(tmp_path) not in rendered
    # Every host path is named on stderr as left out, whether it exists or not.
    said = "\n".join(dropped)
    for key in ("constraint", "requirement", "client-cert"):
        assert f"global.{key} {paths[key]}" in said
    assert f"global.find-links {paths['wheels']}" in said
    assert f"global.extra-index-url file://{paths['index']}" in said


def test_a_host_with_no_pip_configuration_gets_only_the_bundle() -> None:
    kept, dropped = pip_conf.translate(pip_conf.parse_listing(""), BUNDLE)
    assert kept == {("global", "cert"): BUNDLE}
    assert dropped == []
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(pip_conf.render(kept))
    assert parser.get("global", "cert") == BUNDLE


@pytest.mark.parametrize("exist", [True, False], ids=["files-exist", "files-missing"])
def test_the_script_reads_the_real_pip_configuration(tmp_path: Path, exist: bool) -> None:
    """End to end through the real `pip config list`: a config file and PIP_*
    variables naming host paths; whatever else this machine's own pip
    configuration holds, no host path reaches the image's file."""
    paths = host_paths(tmp_path, exist)
    config = tmp_path / "pip.conf"
    config.write_text(
        "[global]\n"
        f"constraint = {paths['constraint']}\n"
        f"find-links = {paths['wheels']}\n"
        f"extra-index-url = file://{paths['index']}\n"
        "index-url = https://pypi.example.org/simple\n"
        f"client-cert = {paths['client-cert']}\n",
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env |= {"PIP_CONFIG_FILE": str(config), "PIP_REQUIREMENT": paths["requirement"]}
    result = subprocess.run(
        [sys.executable, str(SCRIPT), BUNDLE],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(result.stdout)
    values = [value for section in parser.sections() for value in parser[section].values()]
    assert parser.get("global", "cert") == BUNDLE
    assert parser.get("global", "index-url") == "https://pypi.example.org/simple"
    for value in values:
        for part in value.split():
            # Only URLs the build can reach, names and numbers; the one path is the bundle.
            assert part == BUNDLE or not part.startswith(("/", "file:")), (part, result.stdout)
    assert paths["constraint"] in result.stderr
    assert paths["requirement"] in result.stderr
