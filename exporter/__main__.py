"""``python -m exporter`` is the same as the ``nayax-ev-exporter`` console script."""

from exporter.launch import run

if __name__ == "__main__":
    run()
