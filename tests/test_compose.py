"""Structure of docker-compose.yml (no Docker engine is needed or used).

Checks the four services, their ports, and that every bind mount points to a
file or directory in the repository that holds what the container expects.
The stack's configs point at each other by service name: Prometheus scrapes
exporter:9877 and alerts alertmanager:9093, and Grafana queries
prometheus:9090. Those names and ports must match the services.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
SERVICES = {"exporter", "prometheus", "alertmanager", "grafana"}


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    return data


def service(name: str) -> dict[str, Any]:
    services: dict[str, dict[str, Any]] = compose()["services"]
    return services[name]


def mounts(name: str) -> dict[str, Path]:
    """Container path -> host path for the service's bind mounts (short syntax)."""
    result: dict[str, Path] = {}
    for volume in service(name).get("volumes", []):
        assert isinstance(volume, str), f"{name}: use the short volume syntax"
        host, container, *_mode = volume.split(":")
        assert host.startswith("./"), f"{name}: {volume} is not a bind mount of a repo path"
        result[container] = ROOT / host
    return result


def command(name: str) -> list[str]:
    cmd = service(name).get("command", [])
    return cmd.split() if isinstance(cmd, str) else [str(part) for part in cmd]


def flag(name: str, option: str) -> str:
    prefix = f"--{option}="
    values = [part.removeprefix(prefix) for part in command(name) if part.startswith(prefix)]
    assert len(values) == 1, f"{name}: expected one {prefix}... argument"
    return values[0]


def in_container(name: str, container_path: str) -> Path:
    """The repo path that a container path of a service is served from."""
    for target, host in sorted(mounts(name).items(), key=lambda item: -len(item[0])):
        if container_path == target:
            return host
        if container_path.startswith(target.rstrip("/") + "/"):
            return host / container_path[len(target.rstrip("/")) + 1 :]
    pytest.fail(f"{name}: {container_path} is not mounted from the repository")


def published_ports(name: str) -> set[str]:
    return {str(port) for port in service(name).get("ports", [])}


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def test_four_services() -> None:
    assert set(compose()["services"]) == SERVICES


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_bind_mounts_exist_in_repo(name: str) -> None:
    for container, host in mounts(name).items():
        assert host.exists(), f"{name}: {host.relative_to(ROOT)} (for {container}) is missing"


@pytest.mark.parametrize("name", sorted(SERVICES - {"exporter"}))
def test_images_are_pinned(name: str) -> None:
    image = service(name)["image"]
    repository, _, tag = image.partition(":")
    assert tag and tag != "latest", f"{name}: pin the image tag ({image})"
    expected = {
        "prometheus": "prom/prometheus",
        "alertmanager": "prom/alertmanager",
        "grafana": "grafana/grafana",
    }[name]
    assert repository == expected


def test_exporter_service() -> None:
    exporter = service("exporter")
    build = exporter["build"]
    context = build if isinstance(build, str) else build["context"]
    assert (ROOT / context).resolve() == ROOT
    assert "--demo" in command("exporter")
    assert flag("exporter", "web.listen-address") == ":9877"
    assert "9877:9877" in published_ports("exporter")


def test_prometheus_service() -> None:
    assert "9090:9090" in published_ports("prometheus")
    config_path = in_container("prometheus", flag("prometheus", "config.file"))
    assert config_path == ROOT / "prometheus" / "prometheus.compose.yml"
    config = load_yaml(config_path)
    # Rule files resolve relative to the config file, inside the same mount.
    for rule_file in config["rule_files"]:
        assert (config_path.parent / rule_file).is_file(), rule_file
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "nayax-ev"
    assert job["static_configs"] == [{"targets": ["exporter:9877"]}]
    alertmanagers = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert alertmanagers == ["alertmanager:9093"]


def test_alertmanager_service() -> None:
    assert "9093:9093" in published_ports("alertmanager")
    config_path = in_container("alertmanager", flag("alertmanager", "config.file"))
    assert config_path == ROOT / "prometheus" / "alertmanager.yml"
    config = load_yaml(config_path)
    receivers = {receiver["name"] for receiver in config["receivers"]}
    assert config["route"]["receiver"] in receivers
    for route in config["route"].get("routes", []):
        assert route["receiver"] in receivers


def test_grafana_service() -> None:
    assert "3000:3000" in published_ports("grafana")
    grafana_mounts = mounts("grafana")
    assert grafana_mounts["/etc/grafana/provisioning"] == ROOT / "grafana" / "provisioning"
    assert grafana_mounts["/var/lib/grafana/dashboards"] == ROOT / "grafana" / "dashboards"

    datasources = load_yaml(
        in_container("grafana", "/etc/grafana/provisioning/datasources/prometheus.yaml")
    )
    (source,) = datasources["datasources"]
    assert source["url"] == "http://prometheus:9090"
    assert "9090:9090" in published_ports("prometheus")

    providers = load_yaml(
        in_container("grafana", "/etc/grafana/provisioning/dashboards/nayax-ev.yaml")
    )
    dashboards_dir = in_container("grafana", providers["providers"][0]["options"]["path"])
    assert (dashboards_dir / "nayax-ev.json").is_file()
    home = (
        service("grafana").get("environment", {}).get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    )
    if home:
        assert in_container("grafana", home).is_file()


def test_services_start_in_order() -> None:
    assert set(service("prometheus").get("depends_on", [])) == {"exporter", "alertmanager"}
    assert "prometheus" in service("grafana").get("depends_on", [])
