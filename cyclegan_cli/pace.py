"""How often a plain progress line is printed where no live bar can be drawn (a log file, CI, a pipe): shared by
``cyc run``'s progress and the downloads'."""

from __future__ import annotations

import time


class Pace:
    """When a plain progress line is due: ``every_s`` seconds or ``every_fraction`` of ``total`` after the last
    one, whichever comes first (only the seconds when the total is unknown)."""

    def __init__(self, every_s: float, every_fraction: float):
        self.every_s, self.every_fraction = every_s, every_fraction
        self.total: float | None = None
        self.restart(0)

    def restart(self, done: float) -> None:
        self.last_time, self.last_done = time.monotonic(), done

    def due(self, done: float) -> bool:
        now = time.monotonic()
        step = max(1, round(self.total * self.every_fraction)) if self.total else None
        if now - self.last_time < self.every_s and (step is None or done - self.last_done < step):
            return False
        self.last_time, self.last_done = now, done
        return True
