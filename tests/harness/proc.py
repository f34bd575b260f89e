"""What /proc says of a daemon and its worker processes: CPU time and memory.

Description:
    A pre-forked daemon is its parent process and the children listed in
    ``/proc/PID/task/PID/children``; the benchmarks and the soak count them together.
"""

from __future__ import annotations

import os
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def family(pid: int) -> list[int]:
    """*pid* and its child processes (a pre-forked daemon's workers)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [pid, *map(int, children)]


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of *pid* and its workers."""
    total = 0.0
    for one in family(pid):
        fields = Path(f"/proc/{one}/stat").read_text().rpartition(")")[2].split()
        total += (int(fields[11]) + int(fields[12])) / CLK_TCK
    return total


def resident_mb(pid: int) -> float:
    """Memory of *pid* and its workers, pages shared copy-on-write counted once (PSS)."""
    total = 0
    for one in family(pid):
        for line in Path(f"/proc/{one}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                total += int(line.split()[1])
    return total / 1024
