"""A one-line pull progress bar for terminals, fed with the daemon's pull messages."""

from __future__ import annotations

import time
from typing import Any, TextIO

BAR_WIDTH = 24
REDRAW_S = 0.1


class PullProgressBar:
    """Sums per-layer progress into ``Pulling IMAGE [####----] 12.0/30.5 MB 3/5 layers``."""

    def __init__(self, image: str, out: TextIO) -> None:
        self._image = image
        self._out = out
        self._layers: dict[str, tuple[int, int]] = {}
        self._done: set[str] = set()
        self._drawn_at = 0.0
        self._shown = False

    def __call__(self, message: dict[str, Any]) -> None:
        layer = message.get("id")
        status = str(message.get("status", ""))
        if not layer or layer == self._image.split(":")[-1]:
            return
        detail = message.get("progressDetail") or {}
        if status == "Downloading" and detail.get("total"):
            self._layers[layer] = (int(detail.get("current", 0)), int(detail["total"]))
        elif status in ("Download complete", "Pull complete", "Already exists"):
            self._done.add(layer)
            current, total = self._layers.get(layer, (0, 0))
            self._layers[layer] = (total, total)
        elif status in ("Pulling fs layer", "Waiting"):
            self._layers.setdefault(layer, (0, 0))
        now = time.monotonic()
        if now - self._drawn_at >= REDRAW_S:
            self._drawn_at = now
            self._draw()

    def _draw(self) -> None:
        current = sum(c for c, _ in self._layers.values())
        total = sum(t for _, t in self._layers.values())
        filled = int(BAR_WIDTH * current / total) if total else 0
        bar = "#" * filled + "-" * (BAR_WIDTH - filled)
        self._out.write(
            f"\rPulling {self._image} [{bar}] {current / 1e6:.1f}/{total / 1e6:.1f} MB "
            f"{len(self._done)}/{len(self._layers)} layers"
        )
        self._out.flush()
        self._shown = True

    def finish(self) -> None:
        if self._shown:
            self._draw()
            self._out.write("\n")
            self._out.flush()
