"""What the benchmark scripts share: Nova set up without eventlet, the
attestation server in its own process, and a median timer."""

from __future__ import annotations

import os

os.environ.setdefault("OS_NOVA_DISABLE_EVENTLET_PATCHING", "1")
from nova import monkey_patch  # noqa: E402

monkey_patch.patch()

import pathlib  # noqa: E402
import signal  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

from nova import objects  # noqa: E402

objects.register_all()


class RemoteOAT:
    """The PollHosts test server in a process of its own, so that it does
    not compete with the code being measured for the GIL."""

    def __init__(self, pki: dict, trusted: list[str],
                 workdir: pathlib.Path) -> None:
        listing = workdir / f"trusted-{len(trusted)}.txt"
        listing.write_text("\n".join(trusted))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.support.oat_server",
             "--cert", str(pki["server"].cert),
             "--key", str(pki["server"].key),
             "--trusted-file", str(listing)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.port = int(self.proc.stdout.readline())
        self.url = (f"https://127.0.0.1:{self.port}"
                    "/OpenAttestationWebServices/V1.0/PollHosts")

    def polls(self) -> int:
        self.proc.stdin.write("polls\n")
        self.proc.stdin.flush()
        return int(self.proc.stdout.readline())

    def stats(self) -> tuple[int, int, float]:
        """PollHosts requests and hosts asked so far, and the CPU seconds
        the server process has used (all of its threads)."""
        self.proc.stdin.write("stats\n")
        self.proc.stdin.flush()
        polls, hosts, cpu = self.proc.stdout.readline().split()
        return int(polls), int(hosts), float(cpu)

    def hang(self) -> None:
        self.proc.send_signal(signal.SIGUSR1)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def median_seconds(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
