"""deploy/kubernetes/: schema-valid manifests that fit together and fit the exporter.

Core kinds are validated offline against the Kubernetes 1.30 OpenAPI schemas
shipped with kubernetes-validate (strict: unknown fields fail). The Prometheus
Operator kinds have no schema there, so their structure is checked by hand:
selectors, port names, the job name the alerts expect, and the PrometheusRule
being exactly prometheus/alerts.yml.
"""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from exporter.cli import parse_args
from exporter.config import parse_config
from exporter.targets import Shard
from tests.conftest import require_tool
from tests.harness import REPO

DEPLOY = REPO / "deploy" / "kubernetes"
GENERATOR = DEPLOY / "generate_prometheusrule.py"
ALERTS = REPO / "prometheus" / "alerts.yml"
KUBERNETES_VERSION = "1.30.0"
CORE_KINDS = {"ConfigMap", "Secret", "StatefulSet", "Service"}
OPERATOR_API = "monitoring.coreos.com/v1"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"

Manifest = dict[str, Any]


def documents(path: Path) -> Iterator[Manifest]:
    for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
        if document is not None:
            yield document


def all_manifests() -> list[tuple[Path, Manifest]]:
    return [(path, doc) for path in sorted(DEPLOY.glob("*.yaml")) for doc in documents(path)]


def kustomization() -> Manifest:
    return next(documents(DEPLOY / "kustomization.yaml"))


def deployed() -> list[Manifest]:
    """What `kubectl apply -k deploy/kubernetes` applies."""
    return [doc for name in kustomization()["resources"] for doc in documents(DEPLOY / name)]


def one(kind: str, name: str | None = None) -> Manifest:
    found = [
        doc
        for doc in deployed()
        if doc["kind"] == kind and (name is None or doc["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def secret_example() -> Manifest:
    return next(documents(DEPLOY / "secret.example.yaml"))


def statefulset() -> Manifest:
    return one("StatefulSet")


def container() -> Manifest:
    containers: list[Manifest] = statefulset()["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def matches(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


# --- schema validation ------------------------------------------------------------


CORE_MANIFESTS = [(path, doc) for path, doc in all_manifests() if doc.get("kind") in CORE_KINDS]


def test_every_core_kind_is_covered() -> None:
    assert {doc["kind"] for _, doc in CORE_MANIFESTS} == CORE_KINDS


@pytest.mark.parametrize(
    "manifest",
    [
        pytest.param(doc, id=f"{path.name}:{doc['kind']}/{doc['metadata']['name']}")
        for path, doc in CORE_MANIFESTS
    ],
)
def test_core_manifest_is_schema_valid(manifest: Manifest) -> None:
    kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)


def test_schema_validation_catches_mistakes() -> None:
    # The validator is strict enough to be worth running: a misspelt field fails.
    broken = copy.deepcopy(statefulset())
    broken["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_validate_cli_accepts_every_core_file() -> None:
    # The console script installed next to this interpreter (pip dependency).
    tool = Path(sys.executable).parent / "kubernetes-validate"
    command = [str(tool)] if tool.exists() else [require_tool("kubernetes-validate")]
    files = sorted({str(path) for path, _ in CORE_MANIFESTS})
    result = subprocess.run(
        [*command, "-k", KUBERNETES_VERSION, "--strict", *files],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- kustomization ---------------------------------------------------------------


def test_kustomization_lists_every_manifest_but_the_secret_example() -> None:
    listed = kustomization()["resources"]
    on_disk = {path.name for path in DEPLOY.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(listed) == on_disk - {"secret.example.yaml"}
    assert len(listed) == len(set(listed))
    # The placeholder token must never be applied over a real one.
    assert all(doc["kind"] != "Secret" for doc in deployed())
    image = container()["image"].split(":")[0]
    assert [entry["name"] for entry in kustomization()["images"]] == [image]


def test_every_resource_carries_the_app_label() -> None:
    for doc in [*deployed(), secret_example()]:
        assert doc["metadata"]["labels"]["app.kubernetes.io/name"] == "nayax-ev-exporter"
        assert "namespace" not in doc["metadata"], "namespace comes from kubectl -n / kustomize"


# --- the StatefulSet and its shards --------------------------------------------------


def expand(arg: str, env: Mapping[str, str]) -> str:
    """Kubernetes' $(VAR) expansion in args (unknown variables stay as written)."""
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m[1], m[0]), arg)


def test_shard_count_equals_replicas_and_every_ordinal_gets_its_shard() -> None:
    replicas = statefulset()["spec"]["replicas"]
    assert replicas > 1
    args = container()["args"]
    shard_args = [arg for arg in args if arg.startswith("--shard=")]
    assert shard_args == [f"--shard=$(POD_INDEX)/{replicas}"]
    shards = set()
    for ordinal in range(replicas):
        # What the pod's command line becomes, parsed by the exporter's own CLI.
        parsed = parse_args([expand(arg, {"POD_INDEX": str(ordinal)}) for arg in args])
        shards.add(parsed.shard)
    assert shards == {Shard(index, replicas) for index in range(replicas)}


def test_pod_index_comes_from_the_downward_api() -> None:
    env = {item["name"]: item for item in container()["env"]}
    field = env["POD_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"]
    assert field == f"metadata.labels['{POD_INDEX_LABEL}']"
    # Kubernetes expands only variables defined in env: every $(VAR) must be.
    referenced = {m for arg in container()["args"] for m in re.findall(r"\$\((\w+)\)", arg)}
    assert referenced <= set(env)


def test_token_comes_from_the_secret() -> None:
    env = {item["name"]: item for item in container()["env"]}
    reference = env["NAYAX_LYNX_TOKEN"]["valueFrom"]["secretKeyRef"]
    example = secret_example()
    assert reference["name"] == example["metadata"]["name"]
    assert reference["key"] in example["stringData"]
    assert "REPLACE" in example["stringData"][reference["key"]]
    assert "data" not in example  # stringData: plain text in, base64 done by the API server


def test_security_context() -> None:
    dockerfile = (REPO / "Dockerfile").read_text(encoding="utf-8")
    image_user = re.findall(r"^USER\s+(\d+)(?::(\d+))?\s*$", dockerfile, re.MULTILINE)
    assert image_user, "the Dockerfile must set a numeric USER"
    uid = int(image_user[-1][0])
    pod = statefulset()["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == uid != 0
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod["automountServiceAccountToken"] is False
    context = container()["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["runAsNonRoot"] is True
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert "privileged" not in context


BINARY_SUFFIXES = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
BENCHMARK_RSS = 161 * 2**20  # bytes: peak RSS, 10,000 machines x 1 window (bench/results)


def memory_bytes(quantity: str) -> int:
    match = re.fullmatch(r"(\d+)(Ki|Mi|Gi)", quantity)
    assert match, f"memory quantity {quantity!r}: use Ki, Mi or Gi"
    return int(match[1]) * BINARY_SUFFIXES[match[2]]


def test_resources_from_the_benchmark() -> None:
    resources = container()["resources"]
    assert resources["requests"] == {"cpu": "50m", "memory": "64Mi"}
    assert set(resources["limits"]) == {"memory"}  # no CPU limit: no throttled scrapes
    limit = memory_bytes(resources["limits"]["memory"])
    # The limit leaves >= 20 % headroom over the benchmark's worst case, and the
    # request stays below the limit.
    assert limit >= 1.2 * BENCHMARK_RSS
    assert memory_bytes(resources["requests"]["memory"]) < limit


def test_probes_use_the_exporter_endpoints() -> None:
    spec = container()
    port_names = {port["name"] for port in spec["ports"]}
    assert {port["containerPort"] for port in spec["ports"]} == {9877}
    assert spec["livenessProbe"]["httpGet"]["path"] == "/-/healthy"
    assert spec["readinessProbe"]["httpGet"]["path"] == "/-/ready"
    for probe in ("livenessProbe", "readinessProbe"):
        assert spec[probe]["httpGet"]["port"] in port_names


def test_config_is_mounted_where_the_args_point() -> None:
    pod = statefulset()["spec"]["template"]["spec"]
    args = container()["args"]
    config_file = Path(next(a for a in args if a.startswith("--config.file=")).split("=", 1)[1])
    mounts = {m["name"]: m for m in container()["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    (name,) = [n for n, m in mounts.items() if Path(m["mountPath"]) == config_file.parent]
    assert mounts[name]["readOnly"] is True
    config_map = one("ConfigMap", volumes[name]["configMap"]["name"])
    assert config_file.name in config_map["data"]


def test_selectors_match_the_pods() -> None:
    sts = statefulset()
    pod_labels = sts["spec"]["template"]["metadata"]["labels"]
    assert matches(sts["spec"]["selector"]["matchLabels"], pod_labels)
    assert POD_INDEX_LABEL not in pod_labels  # set by Kubernetes, never by hand
    headless = one("Service", sts["spec"]["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"
    port_names = {port["name"] for port in container()["ports"]}
    for service in [doc for doc in deployed() if doc["kind"] == "Service"]:
        assert matches(service["spec"]["selector"], pod_labels)
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in port_names


# --- the ConfigMap's config against the real config loader ---------------------------


def configmap_config() -> str:
    text: str = one("ConfigMap")["data"]["config.yaml"]
    return text


def test_configmap_config_passes_config_check(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(configmap_config(), encoding="utf-8")
    command = [sys.executable, "-m", "exporter", f"--config.file={path}", "--config.check"]
    env = {**os.environ, "NAYAX_LYNX_TOKEN": "token-from-the-secret"}
    result = subprocess.run(
        command, capture_output=True, text=True, env=env, cwd=tmp_path, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("config OK:")
    # Without the Secret's variable the config is refused, naming the variable.
    env.pop("NAYAX_LYNX_TOKEN")
    result = subprocess.run(
        command, capture_output=True, text=True, env=env, cwd=tmp_path, check=False, timeout=60
    )
    assert result.returncode == 1
    assert "NAYAX_LYNX_TOKEN" in result.stderr


def test_configmap_token_is_the_secret_variable_not_a_value() -> None:
    config = parse_config(configmap_config(), environ={"NAYAX_LYNX_TOKEN": "sentinel-1234"})
    assert config.lynx.token is not None
    assert config.lynx.token.reveal() == "sentinel-1234"
    assert all(actor.token is None for actor in config.actors)


# --- Prometheus Operator resources ------------------------------------------------


def test_servicemonitor_selects_exactly_the_metrics_service() -> None:
    monitor = one("ServiceMonitor")
    assert monitor["apiVersion"] == OPERATOR_API
    selector = monitor["spec"]["selector"]["matchLabels"]
    services = [doc for doc in deployed() if doc["kind"] == "Service"]
    selected = [s for s in services if matches(selector, s["metadata"]["labels"])]
    assert len(selected) == 1, "each pod must be scraped once, through one Service"
    (service,) = selected
    service_ports = {port["name"] for port in service["spec"]["ports"]}
    for endpoint in monitor["spec"]["endpoints"]:
        assert endpoint["port"] in service_ports
        assert endpoint.get("path", "/metrics") == "/metrics"
        interval = int(endpoint["interval"].rstrip("s"))
        assert int(endpoint["scrapeTimeout"].rstrip("s")) < interval


def test_job_name_is_the_one_the_alerts_expect() -> None:
    # Prometheus Operator's job label: the Service's jobLabel label value, else its name.
    monitor = one("ServiceMonitor")
    selector = monitor["spec"]["selector"]["matchLabels"]
    (service,) = [
        doc
        for doc in deployed()
        if doc["kind"] == "Service" and matches(selector, doc["metadata"]["labels"])
    ]
    job_label = monitor["spec"].get("jobLabel")
    job = service["metadata"]["labels"][job_label] if job_label else service["metadata"]["name"]
    expected = set(re.findall(r'job="([^"]+)"', ALERTS.read_text(encoding="utf-8")))
    assert expected == {job}


def test_prometheusrule_is_alerts_yml() -> None:
    rule = one("PrometheusRule")
    assert rule["apiVersion"] == OPERATOR_API
    alerts = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    assert rule["spec"]["groups"] == alerts["groups"]
    names = [r["alert"] for group in rule["spec"]["groups"] for r in group["rules"] if "alert" in r]
    assert "NayaxEVExporterDown" in names


def test_prometheusrule_file_is_up_to_date() -> None:
    result = subprocess.run(
        [sys.executable, str(GENERATOR), "--check"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def test_generator_notices_a_changed_alerts_file(tmp_path: Path) -> None:
    alerts = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    alerts["groups"][0]["rules"][0]["for"] = "99m"
    changed = tmp_path / "alerts.yml"
    changed.write_text(yaml.safe_dump(alerts), encoding="utf-8")
    output = DEPLOY / "prometheusrule.yaml"
    check = [sys.executable, str(GENERATOR), f"--alerts={changed}", f"--output={output}", "--check"]
    result = subprocess.run(check, capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 1
    assert "stale" in result.stderr
    # Regenerated into a scratch file, the change comes through.
    scratch = tmp_path / "prometheusrule.yaml"
    generate = [sys.executable, str(GENERATOR), f"--alerts={changed}", f"--output={scratch}"]
    subprocess.run(generate, check=True, timeout=60)
    regenerated = next(documents(scratch))
    assert regenerated["spec"]["groups"][0]["rules"][0]["for"] == "99m"
