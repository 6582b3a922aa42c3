"""docs/runbook.md has a section for every alert of deploy/prometheus/alerts.yaml, each alert's
runbook_url opens that section, and what the runbook tells on-call to run and read exists.

A runbook_url whose anchor matches no heading lands on-call at the top of a long page in the
middle of an incident; a section that talks about another metric than its alert's expression,
or a command that no longer parses, misleads them. The anchors are the ones GitHub and GitLab
give a heading (lower case, spaces to hyphens, punctuation dropped).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from service import cli

REPO = Path(__file__).resolve().parents[2]
RUNBOOK = REPO / "docs" / "runbook.md"
ALERTS = yaml.safe_load((REPO / "deploy" / "prometheus" / "alerts.yaml").read_text())["groups"][0]["rules"]
PARTS = ("**Means.**", "**Check first.**", "**Fix.**", "**Confirm.**")


def _anchor(heading: str) -> str:
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _sections() -> dict[str, str]:
    """Each `## ` heading of the runbook -> its text up to the next one."""
    parts = re.split(r"^## (.+)$", RUNBOOK.read_text(), flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2]))


def test_every_alert_has_its_section_in_the_rules_order_and_its_url_opens_it() -> None:
    names = [rule["alert"] for rule in ALERTS]
    assert len(names) == 12 and list(_sections()) == ["Before you start", *names]
    for rule in ALERTS:
        assert rule["annotations"]["runbook_url"] == f"docs/runbook.md#{_anchor(rule['alert'])}"
    assert _anchor("RadiomicsCdsStudyStuck") == "radiomicscdsstudystuck"
    assert _anchor("Before you start") == "before-you-start"


@pytest.mark.parametrize("rule", ALERTS, ids=[rule["alert"] for rule in ALERTS])
def test_each_section_says_what_it_means_what_to_check_and_fix_and_how_to_confirm_about_its_metrics(
        rule: dict[str, object]) -> None:
    section = _sections()[str(rule["alert"])]
    assert [section.index(part) for part in PARTS] == sorted(section.index(part) for part in PARTS)
    metrics = set(re.findall(r"\b(rcds_\w+|process_\w+|up)(?=[{\[ ]|$)", str(rule["expr"])))
    assert metrics, rule["expr"]
    for metric in metrics:
        assert re.search(rf"[`(]{metric}\b", section), metric


def test_links_inside_the_runbook_open_a_section() -> None:
    anchors = {_anchor(heading) for heading in _sections()}
    linked = re.findall(r"\]\(#([^)]+)\)", RUNBOOK.read_text())
    assert linked and set(linked) <= anchors


def test_the_radiomics_cds_commands_it_gives_parse() -> None:
    """With a destination in place of `<destination>` and a log key in place of `<log key>`, as
    on-call types them."""
    commands = re.findall(r"`[^`\n]*?radiomics-cds ([a-z][^`\n]*)`", RUNBOOK.read_text())
    assert {command.split()[0] for command in commands} == {"status", "redeliver", "rescore", "prune"}
    for command in commands:
        typed = command.replace("<destination>", "pacs").replace("<log key>", "0123456789abcdef")
        args = cli._parser().parse_args(typed.split())
        assert args.command == command.split()[0]
