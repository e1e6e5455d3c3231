"""README's "Monitoring" section: its example alert rules are valid YAML
of Prometheus' rule-file shape, and every metric it names (in the rules
and in the list) is one the service really exports, and the other way
round."""

from __future__ import annotations

import pathlib
import re
import textwrap

import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from trustpool.attestation import HostReport, TrustLevel
from trustpool.metrics.service import EXPORTED, ServiceMetrics
from trustpool.trait_sync import SyncResult

README = pathlib.Path(__file__).parents[2] / "README.rst"
#: metric names; not option groups such as [trustpool_traits]
NAME = re.compile(r"(?<![\[\w])(trustpool_[a-z_]+|process_\*)")


def section() -> str:
    text = README.read_text()
    start = text.index("\nMonitoring\n==========\n")
    end = re.compile(r"\n\S[^\n]*\n=+\n").search(text, start + 20)
    assert end is not None
    return text[start:end.start()]


def rules_block() -> str:
    part = section()
    head = part.index(".. code-block:: yaml\n")
    lines = []
    for line in part[head:].splitlines()[1:]:
        if line and not line.startswith(" "):
            break
        lines.append(line)
    return textwrap.dedent("\n".join(lines))


def exported() -> set[str]:
    """Every name the service exposes that PromQL can use: its samples'
    names and its families' names."""
    m = ServiceMetrics()
    m.revocations()  # the event listener's, as with [trustpool_events]
    m.quarantine()  # as with [trustpool_quarantine] enabled
    m.record_pass(SyncResult(hosts={"h": HostReport(
        "h", TrustLevel.TRUSTED, "oat", "r")}, attested_at=1.0), 0.1)
    names = set()
    for family in text_string_to_metric_families(
            generate_latest(m.registry).decode()):
        names.add(family.name)
        names.update(s.name for s in family.samples)
    return names


def test_the_alert_rules_are_a_valid_rule_file():
    data = yaml.safe_load(rules_block())
    groups = data["groups"]
    assert groups and all(set(g) == {"name", "rules"} for g in groups)
    rules = [r for g in groups for r in g["rules"]]
    assert {r["alert"] for r in rules} >= {
        "TrustpoolHostLostTrust", "TrustpoolAttestationFailing",
        "TrustpoolVerdictsStale"}
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels",
                             "annotations"}, rule
        assert isinstance(rule["expr"], str) and rule["expr"].strip()
        assert rule["expr"].count("(") == rule["expr"].count(")")
        if "for" in rule:
            assert re.fullmatch(r"\d+[smh]", rule["for"])


def test_the_rules_name_only_exported_metrics():
    rules = yaml.safe_load(rules_block())["groups"][0]["rules"]
    used = {n for r in rules for n in NAME.findall(r["expr"])}
    assert used, "no metric found in the rules"
    assert used <= exported(), used - exported()


def test_the_list_and_the_service_agree():
    documented = set(NAME.findall(section())) - {"process_*"}
    ours = {n for n in exported() if n.startswith("trustpool_")}
    # as PromQL names families (counters with _total); tests/unit/
    # test_metrics.py checks EXPORTED against the exposition itself
    families = set(EXPORTED)
    assert documented <= ours, documented - ours
    assert families <= documented, families - documented
