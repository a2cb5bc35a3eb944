"""Generate deploy/kubernetes/prometheusrule.yaml from prometheus/alerts.yml.

The rules live in one place, prometheus/alerts.yml (checked and unit-tested
with promtool): the alerts and the uptime recording rules. The Prometheus
Operator's PrometheusRule carries the same groups verbatim (group `interval`
included). Run after editing alerts.yml:

    python deploy/kubernetes/generate_prometheusrule.py          # rewrite
    python deploy/kubernetes/generate_prometheusrule.py --check  # exit 1 if stale

tests/test_kubernetes.py fails while the two disagree.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
ALERTS = REPO / "prometheus" / "alerts.yml"
OUTPUT = HERE / "prometheusrule.yaml"

HEADER = """\
# GENERATED from prometheus/alerts.yml by deploy/kubernetes/generate_prometheusrule.py.
# Do not edit: change alerts.yml and rerun the generator.
#
# If your Prometheus selects rules by label (the kube-prometheus-stack chart
# wants `release: <release name>`), add that label in a kustomize overlay.
"""


class _Dumper(yaml.SafeDumper):
    """Multi-line strings as literal blocks, so the rules stay readable."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def prometheus_rule(alerts: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "nayax-ev-exporter",
            "labels": {"app.kubernetes.io/name": "nayax-ev-exporter"},
        },
        "spec": {"groups": alerts["groups"]},
    }


def render(alerts_text: str) -> str:
    alerts = yaml.safe_load(alerts_text)
    if not isinstance(alerts, dict) or not isinstance(alerts.get("groups"), list):
        raise ValueError("alerts.yml must be a mapping with a `groups` list")
    body = yaml.dump(
        prometheus_rule(alerts),
        Dumper=_Dumper,
        sort_keys=False,
        allow_unicode=True,
        width=100,
    )
    return HEADER + body


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is stale")
    parser.add_argument("--alerts", type=Path, default=ALERTS)
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    wanted = render(args.alerts.read_text(encoding="utf-8"))
    current = args.output.read_text(encoding="utf-8") if args.output.exists() else None
    if args.check:
        if current != wanted:
            print(f"{args.output} is stale: run {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    if current != wanted:
        args.output.write_text(wanted, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
