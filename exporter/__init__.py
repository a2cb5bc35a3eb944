"""Prometheus exporter for Nayax EV charging meters (Lynx API ``evDashboard``)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("nayax-ev-exporter")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
