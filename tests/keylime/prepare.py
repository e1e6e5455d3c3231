"""Make what the real-Keylime tier needs; idempotent, run by tox.

* Debian packages: swtpm, swtpm-tools, tpm2-tools, python3-gpg, python3-venv
  (apt-get, when missing and when running as root);
* a venv of Debian's python3 with Keylime 6.6.0 and its pinned imports;
* Keylime's configuration templates, which ship in the sdist only.

Prints nothing on success but the venv's path.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys
import tarfile

ROOT = pathlib.Path(__file__).resolve().parents[2]
PACKAGES = ["swtpm", "swtpm-tools", "tpm2-tools", "python3-gpg",
            "python3-venv", "libtss2-tcti-swtpm0"]
SYSTEM_PYTHON = "/usr/bin/python3"


def _missing_packages() -> list[str]:
    missing = []
    for name in PACKAGES:
        result = subprocess.run(
            ["dpkg-query", "-W", "-f=${Status}", name],
            capture_output=True, text=True)
        if "install ok installed" not in result.stdout:
            missing.append(name)
    return missing


def apt() -> None:
    missing = _missing_packages()
    if not missing:
        return
    if os.geteuid() != 0:
        sys.exit(f"missing Debian packages {missing}; install them as root")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", *missing],
                   check=True, env=env, stdout=subprocess.DEVNULL)


def venv(path: pathlib.Path) -> None:
    python = path / "bin" / "python"
    stamp = path / ".trustpool-ready"
    pins = ROOT / "tests" / "requirements" / "keylime-6.6.txt"
    if stamp.exists() and stamp.read_text() == pins.read_text():
        return
    if path.exists():
        shutil.rmtree(path)
    subprocess.run([SYSTEM_PYTHON, "-m", "venv", "--system-site-packages",
                    str(path)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "-r",
                    str(pins)], check=True)
    subprocess.run([str(python), "-c", "import gpg, keylime"], check=True)
    templates(path)
    stamp.write_text(pins.read_text())


def templates(path: pathlib.Path) -> None:
    """Keylime's config templates, from its sdist on PyPI."""
    target = path / "keylime-templates"
    download = path / "sdist"
    subprocess.run([str(path / "bin" / "python"), "-m", "pip", "download",
                    "-q", "--no-deps", "--no-binary", ":all:", "-d",
                    str(download), "keylime==6.6.0"], check=True)
    archive = next(download.glob("keylime-6.6.0.tar.gz"))
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers()
                   if m.name.startswith("keylime-6.6.0/templates/")]
        tar.extractall(download, members=members)  # noqa: S202 - PyPI sdist
    if target.exists():
        shutil.rmtree(target)
    shutil.move(download / "keylime-6.6.0" / "templates", target)


def main() -> None:
    path = pathlib.Path(os.environ.get(
        "TRUSTPOOL_KEYLIME_VENV", ROOT / ".tox" / "keylime-6.6"))
    apt()
    venv(path)
    print(path)


if __name__ == "__main__":
    main()
