"""What every benchmark script does at the end: report the machine's load, write figures."""

from __future__ import annotations

import json
import os
from pathlib import Path


def print_load(load_before: float, load_after: float) -> None:
    """Print the 1-minute load average at start and end, flagging a busy machine (a load
    above the number of cores makes timings noisy)."""
    busy = max(load_before, load_after) > (os.cpu_count() or 1)
    print(f"load average (1 min): {load_before:.2f} at start, {load_after:.2f} at end"
          + ("  -- the machine was busy, timings are noisy" if busy else ""))


def write_figures(path: Path | None, figures: dict) -> None:
    """Write the figures as JSON to `path` (if given), atomically."""
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(figures, indent=2))
    tmp.replace(path)  # atomic: never a half-written file
    print(f"figures written to {path}")


def finish(load_before: float, figures: dict, path: Path | None) -> dict:
    """The end of a benchmark: print the load now against `load_before`, keep both in the
    figures, write them to `path` (if given) and return them."""
    load_after = os.getloadavg()[0]
    print_load(load_before, load_after)
    figures["load_average"] = [load_before, load_after]
    write_figures(path, figures)
    return figures
