"""Make sure Debian's chromium is there for the browser tier (tox -e
browser): installed with apt-get when missing and running as root;
otherwise, or if the install fails, exit non-zero so the tier fails
instead of passing without a browser."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

PACKAGE = "chromium"


def main() -> int:
    if shutil.which("chromium"):
        return 0
    if os.geteuid() != 0:
        print(f"the browser tier needs Debian's {PACKAGE}; install it as "
              f"root: apt-get install {PACKAGE}", file=sys.stderr)
        return 1
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", PACKAGE], check=True,
                   env=env, stdout=subprocess.DEVNULL)
    if not shutil.which("chromium"):
        print(f"apt-get installed {PACKAGE} but there is no chromium on "
              "PATH", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
