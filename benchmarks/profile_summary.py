"""Summarise py-spy raw (collapsed) stacks: where the samples go, by function.

    python -m benchmarks.profile_summary PROFILE.txt[.gz] [--top 25] [--grep engine/]

Prints the share of samples per function as self time (the frame on top of the stack) and as
inclusive time (anywhere in the stack), so the cost of e.g. ``tasks.create`` or the structlog
pipeline can be read off directly. Idle samples (the event loop waiting in ``select``) are
counted separately.
"""

from __future__ import annotations

import argparse
import gzip
import re
from collections import Counter
from pathlib import Path

IDLE = re.compile(r"\(selectors\.py\)$|^select \(")
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def short(frame: str) -> str:
    """``func (path/to/file.py:123)`` -> ``func (file.py)``, dropping line numbers and dirs."""
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    path = match["file"]
    for marker in ("site-packages/", "/lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    else:
        path = path.rsplit("/wt-benchmarks/", 1)[-1]
    return f"{match['func']} ({path})"


def summarise(path: Path) -> tuple[int, int, Counter[str], Counter[str]]:
    total = idle = 0
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    raw = path.read_bytes()
    text = (gzip.decompress(raw) if path.suffix == ".gz" else raw).decode()
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [short(f) for f in stack.split(";") if f.strip()]
        total += count
        if frames and (IDLE.search(frames[-1]) or frames[-1].startswith("select ")):
            idle += count
            continue
        if frames:
            self_time[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    return total, idle, self_time, inclusive


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("profiles", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--grep", default=None, help="only inclusive rows containing this text")
    args = parser.parse_args()
    for path in args.profiles:
        total, idle, self_time, inclusive = summarise(path)
        busy = max(total - idle, 1)
        print(f"# {path.name}: {total} samples, {idle / max(total, 1):.0%} idle in select")
        print(f"## self time (share of busy samples, {busy})")
        for name, count in self_time.most_common(args.top):
            print(f"{count / busy:6.1%}  {name}")
        print("## inclusive time (share of busy samples)")
        rows = [(n, c) for n, c in inclusive.most_common() if not args.grep or args.grep in n]
        for name, count in rows[: args.top]:
            print(f"{count / busy:6.1%}  {name}")
        print()


if __name__ == "__main__":
    main()
