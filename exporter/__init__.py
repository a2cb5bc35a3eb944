"""Prometheus exporter for Nayax EV charging meters (Lynx API ``evDashboard``).

``__version__`` is looked up on first use, not at import: ``importlib.metadata``
takes tens of milliseconds to import, and this package is imported before the
process installs its signal handlers (``exporter/launch.py``), so an eager
look-up would leave a SIGHUP at start-up its default effect, death.
"""

_version: str | None = None


def version() -> str:
    """The installed distribution's version; looked up once."""
    global _version  # noqa: PLW0603 - a cache of one value, filled on first use
    if _version is None:
        from importlib.metadata import PackageNotFoundError  # noqa: PLC0415 - slow import
        from importlib.metadata import version as distribution_version  # noqa: PLC0415

        try:
            _version = distribution_version("nayax-ev-exporter")
        except PackageNotFoundError:  # running from a source tree that was never installed
            _version = "0.0.0+unknown"
    return _version


def __getattr__(name: str) -> str:
    """``exporter.__version__`` (and ``from exporter import __version__``), lazily."""
    if name == "__version__":
        return version()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
