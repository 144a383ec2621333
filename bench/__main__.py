"""`make bench`: every benchmark, figures printed as a table (filled in per area)."""

from __future__ import annotations


def main() -> None:
    print("no benchmarks yet")


if __name__ == "__main__":
    main()
