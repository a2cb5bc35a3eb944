"""Charger identity: ``actor_id`` + ``machine_id``. Pure."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Charger:
    """One charger, whatever its display name was over time (``machine`` label)."""

    actor_id: str
    machine_id: str

    @property
    def sort_key(self) -> tuple[tuple[int, int | str], tuple[int, int | str]]:
        """Numbers in numeric order (Nayax ids are integers), other text after them."""
        return _natural(self.actor_id), _natural(self.machine_id)

    def __str__(self) -> str:
        return f"actor_id={self.actor_id} machine_id={self.machine_id}"


def _natural(text: str) -> tuple[int, int | str]:
    return (0, int(text)) if text.isascii() and text.isdigit() else (1, text)
