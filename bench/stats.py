from __future__ import annotations

import statistics
from typing import Any


def summarize(name: str, latencies: list[float], elapsed: float, **extra: Any) -> dict[str, Any]:
    ordered = sorted(latencies)

    def pct(p: float) -> float:
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000

    return {
        "name": name,
        "requests": len(ordered),
        "throughput_per_s": len(ordered) / elapsed if elapsed else 0.0,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "mean_ms": statistics.fmean(ordered) * 1000 if ordered else float("nan"),
        **extra,
    }
