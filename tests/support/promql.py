"""What a PromQL expression reads: metric names, and the labels it matches, groups by or prints.

Not a full parser: promtool checks the syntax (tests/service/test_monitoring.py runs every query
through `promtool check rules`); this finds names, which needs only PromQL's lexical rules.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_GRAFANA_DURATION = re.compile(r"\$__(rate_interval|interval|range)\b|\$\{__\w+\}")
_MATCHERS = re.compile(r"([a-zA-Z_:][\w:]*)?\s*\{([^}]*)\}")
_MATCHER_LABEL = re.compile(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_IDENT = re.compile(r"(?<![\w.])[a-zA-Z_:][\w:]*")
_KEYWORDS = {
    "and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
    "group_left", "group_right", "inf", "nan", "atan2", "topk", "bottomk", "quantile",
}  # fmt: skip
_TEMPLATE_LABEL = re.compile(
    r"\{\{\s*(?:\$labels\.)?([a-zA-Z_]\w*)\s*\}\}|\$labels\.([a-zA-Z_]\w*)"
)


@dataclass
class Query:
    metrics: dict[str, set[str]] = field(default_factory=dict)  # name -> labels matched on it
    grouping: set[str] = field(default_factory=set)  # by/without/on/ignoring/group_* labels


def parse(expr: str) -> Query:
    q = Query()
    text = _GRAFANA_DURATION.sub("5m", expr)
    text = _STRING.sub('""', text)  # label values (and Grafana's $variables in them)
    text = _RANGE.sub("", text)

    def selector(m: re.Match[str]) -> str:
        labels = set(_MATCHER_LABEL.findall(m.group(2)))
        name = m.group(1)
        if name is None or name in _KEYWORDS:  # `{...}` alone, or after e.g. `by`
            raise ValueError(f"selector without a metric name in {expr!r}")
        q.metrics.setdefault(name, set()).update(labels)
        return " "

    text = _MATCHERS.sub(selector, text)
    for m in _GROUPING.finditer(text):
        q.grouping.update(x.strip() for x in m.group(2).split(",") if x.strip())
    text = _GROUPING.sub(" ", text)
    for m in _IDENT.finditer(text):
        name = m.group()
        if name in _KEYWORDS or text[m.end() :].lstrip().startswith("("):
            continue  # an operator, or a function called
        q.metrics.setdefault(name, set())
    return q


def template_labels(text: str) -> set[str]:
    """Labels a legend (`{{source}}`) or an alert annotation (`{{ $labels.source }}`) prints."""
    return {a or b for a, b in _TEMPLATE_LABEL.findall(text)} - {"value", "$value"}
