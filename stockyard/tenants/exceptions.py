from __future__ import annotations

from stockyard.core.errors import Conflict


class SlugTaken(Conflict):
    message = "This tenant slug is taken."
