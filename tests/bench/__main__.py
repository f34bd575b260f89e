"""``make bench``: run every benchmark and print its figures.

Benchmarks measure; they never pass or fail on time (the tests do not time anything).
"""

from __future__ import annotations

import sys

from tests.bench import (
    bench_dkim,
    bench_fleet,
    bench_milter,
    bench_policyd,
    bench_settings,
    bench_unknown_recipients,
)

BENCHMARKS = {
    "settings": bench_settings.main,
    "policyd": bench_policyd.main,
    "unknown-recipients": bench_unknown_recipients.main,
    "dkim": bench_dkim.main,
    "milter": bench_milter.main,
    "fleet": bench_fleet.main,
}


def main(argv: list[str]) -> int:
    names = argv or list(BENCHMARKS)
    for name in names:
        print(f"== {name}")
        BENCHMARKS[name]()
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
