"""The compliance report in a real headless browser (Debian's chromium).

The page must render with no network (the browser is started with every
background connection off, and the page's policy forbids fetching
anything), its numbers must be the input's, its chart must be drawn (its
bars' colours are counted in the screenshot's pixels), and hostile host
names and reasons must stay text. The screenshot is kept as the test's
artifact (``TRUSTPOOL_ARTIFACT_DIR``, tox's envtmpdir, or pytest's tmp
dir) and its path printed; it never goes into the repository.
"""

from __future__ import annotations

import contextlib
import html.parser
import io
import os
import pathlib
import shutil
import struct
import subprocess
import zlib

import pytest

from trustpool.cmd import main as cli

from tests.unit.report_logs import decision, trust_lost, verdict, write

HOSTILE_HOST = '<script>document.title="pwned"</script>'
HOSTILE_REASON = '"><img src=x onerror="document.title=1">'
TITLE = "trustpool compliance report"
COLOURS = {"trusted": (0x2E, 0x7D, 0x32), "untrusted": (0xC6, 0x28, 0x28),
           "refusals": (0xEF, 0x6C, 0x00)}


def chromium() -> str:
    path = shutil.which("chromium")
    # no skip: the tier exists to run the browser (prepare.py installs it)
    assert path, "chromium is not installed (tests/browser/prepare.py)"
    return path


def browse(tmp_path: pathlib.Path, page: pathlib.Path, *args: str) -> str:
    profile = tmp_path / f"profile-{len(list(tmp_path.iterdir()))}"
    profile.mkdir()
    result = subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--disable-dev-shm-usage",
         f"--user-data-dir={profile}", *args, page.as_uri()],
        capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


class _DOM(html.parser.HTMLParser):
    """The elements of the dumped DOM that the test looks at."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.values: dict[str, str] = {}
        self.title = ""
        self._key: str | None = None
        self._in_title = False
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        self.tags.append((tag, attributes))
        if tag == "td" and attributes.get("data-key"):
            self._key = attributes["data-key"]
        self._in_title = tag == "title" and len(
            [t for t, _ in self.tags if t == "title"]) == 1

    def handle_endtag(self, tag):
        if tag == "td":
            self._key = None
        if tag == "title":
            self._in_title = False

    def handle_data(self, data):
        self.text.append(data)
        if self._key:
            self.values[self._key] = self.values.get(self._key, "") + data
        if self._in_title:
            self.title += data


def png_pixels(path: pathlib.Path) -> tuple[int, int, list[bytes]]:
    """Width, height and RGB(A) rows of an 8-bit, non-interlaced PNG (what
    chromium writes), decoded with the standard library."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat = 8, b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(
                ">IIBBBBB", chunk)
            assert depth == 8 and interlace == 0 and colour in (2, 6)
            channels = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * channels
    rows, previous = [], bytearray(stride)
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up = previous[i]
            corner = previous[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                pred = left if pa <= pb and pa <= pc else \
                    up if pb <= pc else corner
                line[i] = (line[i] + pred) & 0xFF
        rows.append(bytes(line[j] for j in range(stride)
                          if j % channels < 3))
        previous = line
    return width, height, rows


def count_colour(rows: list[bytes], rgb: tuple[int, int, int]) -> int:
    needle = bytes(rgb)
    return sum(sum(1 for x in range(0, len(row), 3)
                   if row[x:x + 3] == needle) for row in rows)


@pytest.fixture
def artifacts(tmp_path) -> pathlib.Path:
    place = os.environ.get("TRUSTPOOL_ARTIFACT_DIR")
    path = pathlib.Path(place) if place else tmp_path
    path.mkdir(parents=True, exist_ok=True)
    return path


def test_the_report_renders_with_its_numbers_and_chart(tmp_path, artifacts):
    lines = []
    for minute in range(0, 120, 10):  # 12 placements over two hours
        hosts = [verdict("node-1", minutes=minute),
                 verdict(HOSTILE_HOST, minutes=minute)]
        if minute >= 60:
            hosts[1] = verdict(HOSTILE_HOST, "untrusted", minutes=minute,
                               reason=HOSTILE_REASON)
        lines.append(decision(minute, hosts, request=f"req-{minute}"))
    for minute in (65, 95, 115):  # three refusals
        lines.append(decision(minute, [verdict(
            HOSTILE_HOST, "untrusted", minutes=minute,
            reason=HOSTILE_REASON)], request=f"refused-{minute}"))
    lines.append(trust_lost(61, HOSTILE_HOST, instances=["i-1", "i-2"]))
    lines += ["garbage", '{"half": ']
    log = write(tmp_path / "audit.jsonl", sorted(
        lines, key=lambda line: line.split('"time": "')[-1][:25]))
    page = tmp_path / "report.html"
    err = io.StringIO()
    with contextlib.redirect_stderr(err), \
            contextlib.redirect_stdout(io.StringIO()):
        code = cli.main(["--config-file", "/dev/null", "report", str(log),
                         "--output", str(page)])
    assert code == 1, err.getvalue()  # a trust loss

    dom = _DOM()
    dom.feed(browse(tmp_path, page, "--dump-dom"))
    assert dom.title == TITLE  # no script ran to change it
    assert not [t for t, _ in dom.tags if t in ("script", "img", "iframe")]
    values = {k: int(v.replace(",", "")) for k, v in dom.values.items()}
    assert (values["placements"], values["refusals"], values["trust_lost"],
            values["instances_on_lost_hosts"], values["malformed_lines"],
            values["hosts_seen"], values["drift_untrusted"]) == \
        (12, 3, 1, 2, 2, 2, 1)
    text = "".join(dom.text)
    assert HOSTILE_HOST in text and HOSTILE_REASON in text
    bars = [a for t, a in dom.tags if t == "rect"
            and "bar" in (a.get("class") or "")]
    refusal_bars = [a for a in bars if "refusals" in a["class"]]
    assert sum(int(a["data-value"]) for a in refusal_bars) == 3
    assert all(float(a["height"]) > 0 for a in bars)
    assert {a["class"] for a in bars} == {"bar trusted", "bar untrusted",
                                          "bar refusals"}

    shot = artifacts / "trustpool-report.png"
    browse(tmp_path, page, f"--screenshot={shot}", "--window-size=1280,2000",
           "--hide-scrollbars")
    print(f"\nscreenshot of the report: {shot}")
    width, height, rows = png_pixels(shot)
    assert (width, height) == (1280, 2000)
    # the chart is drawn: each series' colour fills a visible area
    for name, rgb in COLOURS.items():
        assert count_colour(rows, rgb) > 500, name
