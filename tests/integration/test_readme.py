"""README.rst's operator examples, run, so that README cannot drift again.

Every ``$ trustpool ...`` line of a literal block in README is an example:
the command after ``$``, and README's output after it. Each one that can
run on this machine is run through the real command, against a nova.conf
made from README's own file-backend configuration and a trust file holding
the hosts and levels README's examples show; the output is compared with
README's in shape, not word for word (same header and columns, same rows,
hosts and levels, same JSON keys and value types, same line patterns with
quoted values and numbers left free), so wording elsewhere can change
without touching this test. An example this test cannot run has to be
named in :data:`NOT_RUN_HERE` with the test that covers it; an example it
does not know fails, so a new one cannot slip in untested.

To adjust: the comparisons are :func:`compare_lines`, :func:`compare_table`,
:func:`compare_json` and :func:`compare_version`, one per kind of output.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import importlib.metadata
import io
import json
import pathlib
import re

import pytest

from trustpool.attestation import TrustLevel
from trustpool.cmd import main as cli
from trustpool.conf import make_client

from tests.support.config import point_at
from tests.support.oat_server import OATServer

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
README = (REPO_ROOT / "README.rst").read_text()
#: Examples that need services this tier does not run, and where they are
#: tested instead.
NOT_RUN_HERE = {
    "audit": "needs the Nova API: tests/nova/test_audit.py",
    "report": "needs an audit log of real decisions: tests/unit/"
              "test_report.py, tests/nova/test_provenance.py",
    "explain": "needs Nova and a log of its decisions: "
               "tests/nova/test_provenance.py",
}
PEP440 = re.compile(r"\d+(\.\d+)*((a|b|rc)\d+)?(\.post\d+)?(\.dev\d+)?"
                    r"(\+[\w.]+)?")


# -- README, parsed -----------------------------------------------------------

@dataclasses.dataclass
class Block:
    section: str
    line: int  # 1-based, of the block's first line
    lines: list[str]


@dataclasses.dataclass
class Example:
    section: str
    line: int
    args: list[str]  # after "trustpool"
    output: list[str]

    @property
    def kind(self) -> str:
        if self.args == ["--version"]:
            return "--version"
        command = next(a for a in self.args if not a.startswith("-"))
        if command == "status" and "json" in self.args:
            return "status --format json"
        return command

    def __str__(self) -> str:
        return f"README.rst:{self.line} ({self.section})"


def literal_blocks(text: str) -> list[Block]:
    """Every ``::`` literal block, dedented, with the section it is in."""
    lines = text.splitlines()
    blocks: list[Block] = []
    section = ""
    i = 0
    while i < len(lines):
        line = lines[i]
        if (i + 1 < len(lines) and line.strip()
                and re.fullmatch(r"([=\-~^])\1{2,}", lines[i + 1])
                and len(lines[i + 1]) >= len(line.rstrip())):
            section = line.strip()
        if not line.rstrip().endswith("::"):
            i += 1
            continue
        outer = len(line) - len(line.lstrip())
        j = i + 1
        while j < len(lines) and not lines[j].strip():
            j += 1
        if j == len(lines):
            break
        indent = len(lines[j]) - len(lines[j].lstrip())
        if indent <= outer:
            i = j
            continue
        body = []
        k = j
        while k < len(lines) and (not lines[k].strip() or
                                  lines[k].startswith(" " * indent)):
            body.append(lines[k][indent:])
            k += 1
        while body and not body[-1].strip():
            body.pop()
        blocks.append(Block(section, j + 1, body))
        i = k
    return blocks


def examples(text: str) -> list[Example]:
    found: list[Example] = []
    for block in literal_blocks(text):
        current = None
        continued = False
        for offset, line in enumerate(block.lines):
            if continued:  # the command goes on after a backslash
                current.args += line.rstrip("\\").split()  # type: ignore
                continued = line.endswith("\\")
            elif line.startswith("$ "):
                continued = line.endswith("\\")
                words = line[2:].rstrip("\\").split()
                if words[0] != "trustpool":
                    # the operator's own shell (head, jq ...): not ours to
                    # run; it ends the example before it
                    current = None
                    continue
                current = Example(block.section, block.line + offset,
                                  words[1:], [])
                found.append(current)
            elif current is not None:
                current.output.append(line)
        for example in found:
            while example.output and not example.output[-1].strip():
                example.output.pop()
    return found


def block_after(text: str, marker: str) -> list[str]:
    """The literal block of the paragraph that contains ``marker``."""
    position = text.index(marker)
    line = text.count("\n", 0, position) + 1
    for block in literal_blocks(text):
        if block.line > line:
            return block.lines
    raise AssertionError(f"no literal block after {marker!r}")


EXAMPLES = examples(README)
RUNNABLE = [e for e in EXAMPLES if e.kind not in NOT_RUN_HERE]


# -- the deployment README describes, on this machine -------------------------

def table_rows(output: list[str]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a table, columns separated by 2+ spaces."""
    split = [re.split(r"\s{2,}", line.strip()) for line in output]
    return split[0], split[1:]


def readme_levels() -> dict[str, str]:
    """Host -> level, from every status example in README; README must
    not contradict itself."""
    levels: dict[str, str] = {}
    for example in EXAMPLES:
        if example.kind == "status":
            header, rows = table_rows(example.output)
            pairs = [(r[header.index("HOST")], r[header.index("LEVEL")])
                     for r in rows]
        elif example.kind == "status --format json":
            pairs = [(h["host"], h["level"]) for h in
                     json.loads("\n".join(example.output))["hosts"]]
        else:
            continue
        for host, level in pairs:
            assert levels.setdefault(host, level) == level, \
                f"{example}: {host} is {level} here, {levels[host]} earlier"
    return levels


def file_backend_conf(trust_file: pathlib.Path) -> str:
    """README's own file-backend nova.conf, pointing at ``trust_file``."""
    lines = block_after(README, "writes its verdicts to a file")
    text = "\n".join(lines)
    assert "backend = file" in text and "[trust_file]" in text, text
    return re.sub(r"(?m)^path = .*$", f"path = {trust_file}", text) + "\n"


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    base = tmp_path_factory.mktemp("readme")
    trust = base / "trust-levels.json"
    stamp = (datetime.datetime.now(datetime.timezone.utc)
             - datetime.timedelta(seconds=12))
    trust.write_text(json.dumps({
        "timestamp": stamp.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "hosts": readme_levels()}))
    conf = base / "nova.conf"
    conf.write_text(file_backend_conf(trust))
    return conf


def run(conf: pathlib.Path | None, args: list[str]) -> Result:
    """The real command's ``main`` on ``args`` (in this process: a
    subprocess per example would cost a second each; test_cli.py runs the
    command as a subprocess), with ``--config-file conf``."""
    stdout, stderr = io.StringIO(), io.StringIO()
    argv = (["--config-file", str(conf)] if conf else []) + args
    with contextlib.redirect_stdout(stdout), \
            contextlib.redirect_stderr(stderr):
        try:
            code = cli.main(argv)
        except SystemExit as exc:  # --help
            code = exc.code
    return Result(code, stdout.getvalue(), stderr.getvalue())


@dataclasses.dataclass
class Result:
    returncode: int | str | None
    stdout: str
    stderr: str


# -- comparisons, one per kind of output --------------------------------------

def shape(text: str) -> re.Pattern[str]:
    """``text`` as a pattern with its quoted values and numbers free."""
    parts = re.split(r"('[^']*'|\d+)", text.strip())
    pattern = "".join(
        "'[^']*'" if p.startswith("'") else r"\d+" if p.isdigit()
        else re.escape(p) for p in parts)
    return re.compile(pattern)


def compare_lines(example: Example, result) -> None:
    """README's lines appear, in order, in the output, which ends with
    README's last line; lines README leaves out (a warning the file backend
    of this test has and README's backend has not) are allowed."""
    got = [line.strip() for line in result.stdout.strip().splitlines()]
    assert got and shape(example.output[-1]).fullmatch(got[-1]), \
        (example.output, got)
    remaining = iter(got)
    for want in example.output:
        assert any(shape(want).fullmatch(line) for line in remaining), \
            (want, got)
    if example.output[-1].startswith("OK"):
        assert result.returncode == 0, result.stderr


def compare_table(example: Example, result) -> None:
    want_header, want_rows = table_rows(example.output)
    header, rows = table_rows(result.stdout.strip().splitlines())
    assert header == want_header
    assert len(rows) == len(want_rows), result.stdout
    column = {name: i for i, name in enumerate(header)}
    for want, row in zip(want_rows, rows, strict=True):
        assert len(row) == len(want), (want, row)
        for name in ("HOST", "LEVEL"):
            assert row[column[name]] == want[column[name]], (want, row)
        for name in ("SERVER TIME", "AGE"):
            assert shape(want[column[name]]).fullmatch(row[column[name]]) \
                or re.fullmatch(r"(in )?\d+[smh]", want[column[name]]) \
                and re.fullmatch(r"(in )?\d+[smh]", row[column[name]]), \
                (name, want, row)
        assert re.fullmatch(r"[a-z][\w-]*", row[column["BACKEND"]]), row
        assert row[column["REASON"]], row
    all_trusted = all(r[column["LEVEL"]] == TrustLevel.TRUSTED.value
                      for r in want_rows)
    assert result.returncode == (cli.OK if all_trusted else cli.NOT_TRUSTED)


def compare_json(example: Example, result) -> None:
    want = json.loads("\n".join(example.output))
    got = json.loads(result.stdout)
    assert set(got) == set(want)
    assert got["schema_version"] == want["schema_version"]
    assert isinstance(got["backend"], str) and got["backend"]
    assert len(got["hosts"]) == len(want["hosts"])
    for want_host, host in zip(want["hosts"], got["hosts"], strict=True):
        assert set(host) == set(want_host)
        assert (host["host"], host["level"]) == (want_host["host"],
                                                 want_host["level"])
        for key, value in want_host.items():
            assert type(host[key]) is type(value), (key, host, want_host)
        assert shape(want_host["server_time"]).fullmatch(host["server_time"])


def compare_version(example: Example, result) -> None:
    assert len(example.output) == 1
    assert PEP440.fullmatch(example.output[0]), example.output
    assert result.stdout == importlib.metadata.version("trustpool") + "\n"
    assert result.returncode == 0


COMPARE = {
    "check-config": compare_lines,
    "status": compare_table,
    "status --format json": compare_json,
    "--version": compare_version,
}


# -- the tests ----------------------------------------------------------------

def test_readme_shows_the_examples_this_test_runs():
    kinds = {e.kind for e in EXAMPLES}
    assert set(COMPARE) <= kinds, f"README lost: {set(COMPARE) - kinds}"
    unknown = {str(e): e.kind for e in EXAMPLES
               if e.kind not in COMPARE and e.kind not in NOT_RUN_HERE}
    assert not unknown, ("examples test_readme.py does not know how to "
                         f"run: {unknown}")


@pytest.mark.parametrize("example", RUNNABLE, ids=str)
def test_readme_example_runs_as_shown(deployment, example):
    result = run(deployment, example.args)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stdout, result.stderr
    COMPARE[example.kind](example, result)


def test_readme_trust_file_example_reads_as_readme_says(tmp_path):
    """README's sample trust file, read by the file backend: a host given
    by its level, a host given with a level and a time of its own."""
    sample = json.loads("\n".join(block_after(
        README, "with ``/etc/nova/trust-levels.json``")))
    trust = tmp_path / "trust-levels.json"
    trust.write_text(json.dumps(sample))
    conf = tmp_path / "nova.conf"
    conf.write_text(file_backend_conf(trust))
    result = run(conf, ["status", "--format", "json"])
    hosts = {h["host"]: h for h in json.loads(result.stdout)["hosts"]}
    assert set(hosts) == set(sample["hosts"])
    for name, entry in sample["hosts"].items():
        level = entry if isinstance(entry, str) else entry["level"]
        stamp = (sample["timestamp"] if isinstance(entry, str)
                 else entry["timestamp"])
        assert hosts[name]["level"] == level
        assert hosts[name]["server_time"] == stamp.replace("Z", "+00:00")


def test_readme_exit_code_table_is_the_commands():
    """README's one table of exit codes says what ``EXIT_CODES`` (shown in
    each subcommand's --help) says, for every command the parser has."""
    start = README.index("\nExit codes\n----------\n")
    table = [line for line in README[start:].splitlines()[3:]
             if line.startswith(("+", "|"))]
    end = next(i for i, line in enumerate(table[1:], 1)
               if not line.startswith(("+", "|")) or i == len(table) - 1)
    table = table[:end + 1]
    rows: list[list[str]] = []
    cells: list[list[str]] = []
    for line in table:
        if line.startswith("+"):
            if cells:
                rows.append([" ".join(" ".join(c).split()) for c in cells])
            cells = []
            continue
        parts = [p.strip() for p in line.strip("|").split("|")]
        cells = cells or [[] for _ in parts]
        for cell, part in zip(cells, parts, strict=True):
            if part:
                cell.append(part)
    header, body = rows[0], rows[1:]
    assert header == ["command", "0", "1", "2"]
    readme = {row[0].strip("`"): row[1:] for row in body}
    assert set(readme) == set(cli.EXIT_CODES)
    for command, meanings in cli.EXIT_CODES.items():
        for code, cell in zip((cli.OK, cli.NOT_TRUSTED, cli.FAILED),
                              readme[command], strict=True):
            assert cell == meanings.get(code, "—"), (command, code)
    usage = run(None, ["--help"]).stdout
    commands = re.search(r"\{([\w,-]+)\}", usage).group(1).split(",")
    assert set(commands) | {"--version"} == set(cli.EXIT_CODES)


def troubleshooting_quotes(marker: str) -> list[list[str]]:
    """The quoted phrases of README's troubleshooting bullet that starts
    with ``marker``, each split at ``...``; option names left out."""
    start = README.index(f"* ``{marker}")
    end = README.index("\n* ", start + 1)
    quotes = re.findall(r"``(.+?)``", " ".join(README[start:end].split()))
    return [[p.strip() for p in q.split("...")] for q in quotes
            if not re.fullmatch(r"[a-z_]+", q)]


def test_readme_tls_troubleshooting_quotes_the_real_messages(conf, pki):
    """Each phrase README tells operators to look for appears in what a
    real TLS failure says: a CA that did not sign the certificate, a
    certificate naming another IP address or host name, an expired one."""
    cases = [("server", "other_ca", "127.0.0.1"),
             ("wrong_name_server", "ca", "127.0.0.1"),
             ("wrong_name_server", "ca", "localhost"),
             ("expired_server", "ca", "127.0.0.1")]
    messages = []
    for cert, ca, address in cases:
        server = OATServer(pki[cert].cert, pki[cert].key,
                           levels={"n1": "trusted"}).start()
        try:
            point_at(conf, server, pki[ca].cert_path,
                     attestation_server=address)
            client = make_client(conf)
            messages.append(client.level("n1").reason)
            client.close()
        finally:
            server.stop()
    quotes = troubleshooting_quotes("TLS failure")
    assert len(quotes) >= 4, quotes
    for parts in quotes:
        pattern = ".*".join(re.escape(p) for p in parts)
        assert any(re.search(pattern, m) for m in messages), (parts, messages)


def command_lines(text: str) -> list[tuple[int, list[str]]]:
    """Command lines README gives to copy (a service, a cron line) rather
    than as ``$`` examples: the arguments after ``trustpool``."""
    found = []
    for block in literal_blocks(text):
        for offset, line in enumerate(block.lines):
            words = line.split()
            if "trustpool" in words and not line.startswith("$ ") \
                    and not re.match(r"\s*[\w.]+\s*=", line) \
                    and words[0] not in ("pip", "python3", "from"):
                args = words[words.index("trustpool") + 1:]
                if ">" in args:  # a shell redirection ends the command
                    args = args[:args.index(">")]
                found.append((block.line + offset, args))
    return found


@pytest.mark.parametrize(("line", "args"), command_lines(README),
                         ids=lambda v: f"README.rst:{v}" if isinstance(
                             v, int) else " ".join(v))
def test_readme_command_lines_are_accepted(deployment, monkeypatch, line,
                                           args):
    """Each is parsed by the real command (a wrong option or value would
    be argparse's SystemExit); the command's work is replaced, since it
    would need Placement or Nova."""
    seen = []
    for name in ("_status", "_check_config", "_sync_traits", "_audit"):
        monkeypatch.setattr(cli, name, lambda conf, *a, n=name:
                            seen.append((n, conf.command.name)) or cli.OK)
    if "--config-file" in args:
        args = list(args)
        args[args.index("--config-file") + 1] = str(deployment)
    else:
        args = ["--config-file", str(deployment), *args]
    assert cli.main(args) == cli.OK
    assert len(seen) == 1 and seen[0][1] in cli.EXIT_CODES, seen
