"""What a wake-up costs on this machine: two processes ping-pong a byte over pipes.

    python -m benchmarks.wakeups [--rounds 20000]

Both processes pinned to the same CPU (each wake-up is a switch on that CPU), then to two
different CPUs (each wake-up is an inter-processor interrupt to a CPU that was idle or busy
with someone else). Prints the round trip (two wake-ups) and the CPU each side used per round
trip. Session 8 measured on this VM: ~5 µs and ~2.5 µs per side on one CPU, 40-116 µs and
~14 µs per side across CPUs (a C version; Python adds ~1-2 µs per side).
"""

from __future__ import annotations

import argparse
import os
import resource
import time


def pingpong(rounds: int, same_cpu: bool) -> tuple[float, float, float]:
    """Round trip µs, and the parent's and the child's CPU µs per round trip."""
    ping_r, ping_w = os.pipe()
    pong_r, pong_w = os.pipe()
    os.sched_setaffinity(0, {0})
    child = os.fork()
    if child == 0:
        os.sched_setaffinity(0, {0 if same_cpu else 1})
        for _ in range(rounds):
            os.read(ping_r, 1)
            os.write(pong_w, b"x")
        os._exit(0)
    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    for _ in range(rounds):
        os.write(ping_w, b"x")
        os.read(pong_r, 1)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    os.waitpid(child, 0)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    for fd in (ping_r, ping_w, pong_r, pong_w):
        os.close(fd)
    own = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    theirs = children.ru_utime + children.ru_stime
    return elapsed / rounds * 1e6, own / rounds * 1e6, theirs / rounds * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20_000)
    args = parser.parse_args()
    allowed = os.sched_getaffinity(0)
    if not {0, 1} <= allowed:
        raise SystemExit("needs CPUs 0 and 1")
    print(f"load average {os.getloadavg()}")
    seen = 0.0
    for same in (True, False):
        # The child's CPU accumulates in RUSAGE_CHILDREN over both runs: report the increase.
        trip, own, theirs = pingpong(args.rounds, same)
        theirs, seen = theirs - seen, theirs
        where = "same CPU" if same else "two CPUs"
        print(f"{where}: round trip {trip:.1f} us, CPU per round trip {own:.1f} + {theirs:.1f} us")
    os.sched_setaffinity(0, allowed)


if __name__ == "__main__":
    main()
