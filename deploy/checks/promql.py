#!/usr/bin/env python3
"""Checks payd's Grafana dashboard and Prometheus alerts against Prometheus and a real scrape.

Used by CI (after a payd api and a payd worker have been scraped into files):

    python3 deploy/checks/promql.py \\
        --dashboard deploy/grafana/dashboards/payd.json \\
        --rules deploy/prometheus/alerts.yml \\
        --scrape api.prom --scrape worker.prom

    python3 deploy/checks/promql.py --self-test

Neither Grafana nor Prometheus complains about a query on a metric that does not exist: a
panel just shows "No data" and an alert never fires. So a renamed metric, a typo or a
broken expression would go unnoticed until the day it matters. This script checks:

1. Alert rules: `promtool check rules` (YAML layout, PromQL syntax, annotation templates).
2. Dashboard queries: every PromQL `expr` of every panel target (panels nested in collapsed
   rows included) and the selector of `label_values(...)` template queries, with Grafana's
   variables replaced by plausible values (`$__rate_interval` -> `1m`, `$job` -> `.*`, ...),
   is written as a recording rule named after its panel into a temporary rules file and
   given to `promtool check rules`, so Prometheus' own parser judges each one.
3. Metric names: every metric name the dashboard and the alerts use must be a sample name
   in at least one scrape file (histograms as `x_bucket`/`x_sum`/`x_count`, literally).
   Names are found by a small PromQL tokenizer, not by Prometheus: string literals, label
   matchers `{...}`, range and subquery brackets `[...]`, label lists of `by`, `without`,
   `on`, `ignoring`, `group_left`, `group_right`, numbers and durations are dropped; what
   remains is identifiers, minus function calls (an identifier followed by `(`), keywords
   and aggregation operators. Series Prometheus makes itself (`up`, `scrape_*`, `ALERTS`,
   `ALERTS_FOR_STATE`) and the rules file's own recording rules are exempt.
4. Scrape files: `promtool check metrics` on each. It exits 1 on a parse error (a failure
   here) and 3 on lint problems alone (missing HELP, a non-base unit, ...), which are
   printed as warnings but do not fail the check.
5. Dashboard layout: every panel has a `gridPos` and panel ids are unique (Grafana silently
   reassigns duplicates, which breaks links to a panel).

Exit status: 0 if every check passed, 1 if one failed, 2 on a usage error. Only the standard
library is used; `promtool` is taken from $PROMTOOL, then $PATH, then /usr/bin/promtool.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import dataclass
from pathlib import Path

PROMTOOL = os.environ.get("PROMTOOL") or shutil.which("promtool") or "/usr/bin/promtool"

# Series Prometheus synthesizes itself: never in a /metrics page.
SYNTHETIC_SERIES = {
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
    "ALERTS",
    "ALERTS_FOR_STATE",
}

# Values standing in for Grafana's built-in variables. Any valid value will do: the point
# is that Prometheus can parse the expression.
BUILTIN_VARIABLES = {
    "__rate_interval": "1m",
    "__interval": "1m",
    "__interval_ms": "60000",
    "__range": "1h",
    "__range_s": "3600",
    "__range_ms": "3600000",
    "__from": "1700000000",
    "__to": "1700003600",
}

# --------------------------------------------------------------------------- PromQL names

AGGREGATION_OPERATORS = {
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
    "bottomk", "topk", "quantile", "limitk", "limit_ratio",
}
# Keywords followed by a parenthesized list of label names (which are not metrics).
LABEL_LIST_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
KEYWORDS = (
    {"and", "or", "unless", "atan2", "bool", "offset", "inf", "nan"}
    | LABEL_LIST_KEYWORDS
    | AGGREGATION_OPERATORS
)

_TOKEN = re.compile(
    r"""
      (?P<space>\s+)
    | (?P<comment>\#[^\n]*)
    | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'|`[^`]*`)
    | (?P<number>(?:0[xX][0-9a-fA-F]+|(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\w*)
    | (?P<ident>[a-zA-Z_:][a-zA-Z0-9_:]*)
    | (?P<punct>.)
    """,
    re.VERBOSE | re.DOTALL,
)


def tokenize(expr: str) -> list[tuple[str, str]]:
    """(kind, text) tokens of a PromQL expression, without whitespace and comments.

    Numbers include durations (`5m`, `1h30m`); anything unexpected is a one-character
    `punct` token, so this never fails: judging syntax is promtool's job.
    """
    return [
        (m.lastgroup, m.group())
        for m in _TOKEN.finditer(expr)
        if m.lastgroup not in ("space", "comment")
    ]


def _past_group(tokens: list[tuple[str, str]], start: int, opening: str, closing: str) -> int:
    """Index just past the `closing` token matching the `opening` one at `start`."""
    depth = 0
    for i in range(start, len(tokens)):
        kind, text = tokens[i]
        if kind != "punct":
            continue
        if text == opening:
            depth += 1
        elif text == closing:
            depth -= 1
            if depth == 0:
                return i + 1
    return len(tokens)


def _string_value(literal: str) -> str:
    return literal[1:-1]  # metric names need no escapes


def metric_names(expr: str) -> set[str]:
    """Metric names an expression selects (see the module docstring for the rules)."""
    tokens = tokenize(expr)
    names: set[str] = set()
    i = 0
    while i < len(tokens):
        kind, text = tokens[i]
        following = tokens[i + 1] if i + 1 < len(tokens) else ("", "")
        if (kind, text) == ("punct", "{"):
            end = _past_group(tokens, i, "{", "}")
            # A selector may name its metric as a matcher: {__name__="payd_x"}.
            inner = tokens[i + 1 : end - 1]
            for j in range(len(inner) - 2):
                if (
                    inner[j] == ("ident", "__name__")
                    and inner[j + 1] == ("punct", "=")
                    and inner[j + 2][0] == "string"
                ):
                    names.add(_string_value(inner[j + 2][1]))
            i = end
        elif (kind, text) == ("punct", "["):
            i = _past_group(tokens, i, "[", "]")
        elif kind == "ident":
            word = text.lower()
            if word in LABEL_LIST_KEYWORDS and following == ("punct", "("):
                i = _past_group(tokens, i + 1, "(", ")")
                continue
            if following != ("punct", "(") and word not in KEYWORDS:
                names.add(text)
            i += 1
        else:
            i += 1
    return names


# --------------------------------------------------------------------------- dashboard


@dataclass
class Query:
    """One PromQL expression of the dashboard, and where it comes from."""

    where: str  # for humans: 'panel 12 "Latency p50 / p99 by route", target B'
    record: str  # the recording rule's name in the temporary rules file
    raw: str  # as written in the dashboard
    expr: str  # with Grafana's variables replaced


def iter_panels(panels: list[dict]):
    """Every panel, depth first, including those inside (collapsed) rows."""
    for panel in panels:
        yield panel
        yield from iter_panels(panel.get("panels") or [])


def all_panels(dashboard: dict) -> list[dict]:
    panels = list(iter_panels(dashboard.get("panels") or []))
    for row in dashboard.get("rows") or []:  # dashboards older than schema 16
        panels += list(iter_panels(row.get("panels") or []))
    return panels


def variable_values(dashboard: dict) -> dict[str, str]:
    """A stand-in value for each variable the dashboard's expressions may use."""
    values = dict(BUILTIN_VARIABLES)
    for variable in (dashboard.get("templating") or {}).get("list") or []:
        name = variable.get("name")
        if not name:
            continue
        kind = variable.get("type")
        if kind == "interval":
            values[name] = "1m"
        elif kind in ("constant", "textbox") and isinstance(variable.get("query"), str) and variable["query"]:
            values[name] = variable["query"]
        else:  # query, custom, datasource, adhoc: used in label matchers
            values[name] = ".*"
    return values


_VARIABLE = re.compile(r"\$\{(\w+)(?::[^}]*)?\}|\[\[(\w+)(?::[^\]]*)?\]\]|\$(\w+)")


def substitute(expr: str, values: dict[str, str]) -> str:
    """Replaces `$name`, `${name}`, `${name:format}` and `[[name]]` by their stand-ins.

    Unknown names are left alone (`${1}` in a label_replace replacement must stay), so a
    truly undefined variable reaches promtool and fails to parse.
    """

    def replace(match: re.Match) -> str:
        name = match.group(1) or match.group(2) or match.group(3)
        return values.get(name, match.group(0))

    return _VARIABLE.sub(replace, expr)


def _is_prometheus(datasource) -> bool:
    # A missing or legacy (string) datasource is taken as Prometheus; an explicit other
    # type (Loki also has `expr`) is not PromQL.
    return not isinstance(datasource, dict) or datasource.get("type") in (None, "prometheus")


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "untitled"


_LABEL_VALUES = re.compile(r"^\s*label_values\s*\((.*),\s*[a-zA-Z_]\w*\s*\)\s*$", re.DOTALL)
_QUERY_RESULT = re.compile(r"^\s*query_result\s*\((.*)\)\s*$", re.DOTALL)


def dashboard_queries(dashboard: dict) -> list[Query]:
    values = variable_values(dashboard)
    queries: list[Query] = []
    used: set[str] = set()

    def add(where: str, record: str, raw: str) -> None:
        base, n = record, 2
        while record in used:
            record, n = f"{base}_{n}", n + 1
        used.add(record)
        queries.append(Query(where, record, raw, substitute(raw, values)))

    for panel in all_panels(dashboard):
        title = panel.get("title") or ""
        for target in panel.get("targets") or []:
            expr = target.get("expr")
            datasource = target.get("datasource") or panel.get("datasource")
            if not isinstance(expr, str) or not expr.strip() or not _is_prometheus(datasource):
                continue
            ref = re.sub(r"\W", "_", str(target.get("refId") or "A"))
            add(
                f'panel {panel.get("id")} "{title}", target {target.get("refId")}',
                f'panel_{panel.get("id")}:{_slug(title)}:{ref}',
                expr,
            )

    for variable in (dashboard.get("templating") or {}).get("list") or []:
        if variable.get("type") != "query" or not _is_prometheus(variable.get("datasource")):
            continue
        query = variable.get("query")
        if isinstance(query, dict):
            query = query.get("query")
        if not isinstance(query, str):
            continue
        match = _LABEL_VALUES.match(query) or _QUERY_RESULT.match(query)
        if match:
            add(f'variable "{variable.get("name")}"', f'variable:{_slug(variable.get("name") or "")}', match.group(1))
    return queries


def layout_problems(dashboard: dict) -> list[str]:
    problems = []
    seen: dict[object, str] = {}
    for panel in all_panels(dashboard):
        label = f'panel {panel.get("id")} "{panel.get("title") or ""}"'
        if "gridPos" not in panel:
            problems.append(f"{label} has no gridPos")
        if panel.get("id") is None:
            problems.append(f"{label} has no id")
        elif panel["id"] in seen:
            problems.append(f'{label} has the same id as {seen[panel["id"]]}')
        else:
            seen[panel["id"]] = label
    return problems


def recording_rules_file(queries: list[Query]) -> str:
    """A rules file with one recording rule per query (JSON strings are valid YAML)."""
    lines = ["groups:", '  - name: "dashboard queries"', "    rules:"]
    for query in queries:
        lines.append(f"      - record: {json.dumps(query.record)}")
        lines.append(f"        expr: {json.dumps(query.expr)}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- rules file

_RULE_KEY = re.compile(r"^(?P<lead>\s*(?:-\s+)?)(?P<key>alert|record|expr)\s*:(?:\s+(?P<value>.*))?$")
_BLOCK_HEADER = re.compile(r"^[|>][-+0-9]*\s*(?:#.*)?$")


def _scalar(value: str, more: list[str]) -> str:
    """The text of a YAML scalar starting with `value`, continued by the `more` lines."""
    value = value.strip()
    if _BLOCK_HEADER.match(value):  # `|` or `>` block: PromQL does not mind newlines
        return textwrap.dedent("\n".join(more)).strip()
    text = " ".join([value] + [line.strip() for line in more if line.strip()])
    if text.startswith('"'):
        literal = re.match(r'"(?:[^"\\]|\\.)*"', text)
        if literal:
            try:
                return json.loads(literal.group())  # YAML's escapes are JSON's, give or take
            except ValueError:
                return literal.group()[1:-1]
    if text.startswith("'"):
        literal = re.match(r"'(?:[^']|'')*'", text)
        if literal:
            return literal.group()[1:-1].replace("''", "'")
    return re.split(r"\s#", text, maxsplit=1)[0].strip()


def rule_entries(text: str) -> list[tuple[int, str, str]]:
    """(line, rule name, expr) of every rule of a Prometheus rules file.

    A reader of the `alert:`, `record:` and `expr:` keys only (the standard library has no
    YAML parser): plain, quoted and block scalars, the name before or after the expr. Its
    count is compared with promtool's, so a file it misreads fails loudly.
    """
    lines = text.splitlines()
    keys = []  # (line index, key, value)
    for index, line in enumerate(lines):
        match = _RULE_KEY.match(line)
        if not match:
            continue
        column = len(match["lead"])
        block = bool(_BLOCK_HEADER.match((match["value"] or "").strip()))
        more = []
        for following in lines[index + 1 :]:
            stripped = following.strip()
            if stripped and len(following) - len(following.lstrip()) <= column:
                break
            if stripped.startswith("#") and not block:
                continue
            more.append(following)
        while more and not more[-1].strip():
            more.pop()
        keys.append((index, match["key"], _scalar(match["value"] or "", more)))

    # A rule is a sequence item: it starts at a "- " at the column of the rules' dashes.
    dash_columns = {
        len(line) - len(line.lstrip())
        for index, _, _ in keys
        if (line := lines[index]).lstrip().startswith("-")
    }
    item, items = 0, []
    for line in lines:
        stripped = line.lstrip()
        if stripped.startswith("- ") and len(line) - len(stripped) in dash_columns:
            item += 1
        items.append(item)

    names = {items[index]: value for index, key, value in keys if key in ("alert", "record")}
    return [
        (index + 1, names.get(items[index], "?"), value)
        for index, key, value in keys
        if key == "expr"
    ]


def recorded_names(text: str) -> set[str]:
    return {
        _scalar(m["value"] or "", [])
        for m in map(_RULE_KEY.match, text.splitlines())
        if m and m["key"] == "record"
    }


# --------------------------------------------------------------------------- scrape files

_METRIC = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_SAMPLE = re.compile(rf"^({_METRIC})(?:\{{|\s)")
_DECLARATION = re.compile(rf"^#\s*(?:HELP|TYPE)\s+({_METRIC})")


def scrape_names(text: str) -> tuple[set[str], set[str]]:
    """(sample names, names declared by # HELP / # TYPE) of a text-format scrape."""
    samples, declared = set(), set()
    for line in text.splitlines():
        line = line.strip()
        if match := _DECLARATION.match(line):
            declared.add(match.group(1))
        elif not line.startswith("#") and (match := _SAMPLE.match(line)):
            samples.add(match.group(1))
    return samples, declared


# --------------------------------------------------------------------------- running


def promtool(*args: str, stdin=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PROMTOOL, *args], stdin=stdin, capture_output=True, text=True, check=False
    )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _indent(text: str) -> str:
    return textwrap.indent(text.strip(), "      ")


@dataclass
class Report:
    failures: int = 0
    warnings: int = 0

    def ok(self, message: str) -> None:
        print(f"ok    {message}")

    def warn(self, message: str, detail: str = "") -> None:
        self.warnings += 1
        print(f"WARN  {message}")
        if detail:
            print(_indent(detail))

    def fail(self, message: str, detail: str = "") -> None:
        self.failures += 1
        print(f"FAIL  {message}")
        if detail:
            print(_indent(detail))


def check_rules_file(path: Path, report: Report) -> list[tuple[int, str, str]]:
    result = promtool("check", "rules", str(path))
    output = (result.stdout + result.stderr).strip()
    entries = rule_entries(path.read_text())  # names are checked even if promtool failed
    if result.returncode != 0:
        report.fail(f"promtool check rules {path} (exit {result.returncode})", output)
        return entries
    found = re.search(r"(\d+) rules? found", output)
    if found and int(found.group(1)) != len(entries):
        report.fail(
            f"{path}: promtool found {found.group(1)} rules but this script read "
            f"{len(entries)} exprs; its YAML reader needs fixing for this file"
        )
    else:
        report.ok(f"promtool check rules {path}: {len(entries)} rules")
    return entries


def check_dashboard_queries(queries: list[Query], report: Report) -> None:
    if not queries:
        report.fail("the dashboard has no PromQL expression")
        return
    with tempfile.TemporaryDirectory(prefix="payd-promql-") as directory:
        path = Path(directory) / "dashboard-queries.yml"
        path.write_text(recording_rules_file(queries))
        result = promtool("check", "rules", str(path))
    output = (result.stdout + result.stderr).replace(str(path), "dashboard-queries.yml").strip()
    if result.returncode == 0:
        report.ok(f"promtool parsed the dashboard's {len(queries)} expressions")
        return
    culprits = [q for q in queries if f'"{q.record}"' in output]
    detail = output + "".join(
        f"\n\n{q.where}:\n  as written: {q.raw}\n  as parsed:  {q.expr}" for q in culprits
    )
    report.fail(f"promtool rejected dashboard expressions (exit {result.returncode})", detail)


def check_metric_names(
    uses: dict[str, list[str]], scrapes: list[Path], known: set[str], report: Report
) -> None:
    samples: set[str] = set()
    declared: set[str] = set()
    for path in scrapes:
        file_samples, file_declared = scrape_names(path.read_text())
        samples |= file_samples
        declared |= file_declared
    missing = sorted(name for name in uses if name not in samples | known | SYNTHETIC_SERIES)
    if not missing:
        report.ok(f"all {len(uses)} metric names used are in the scrape files")
        return
    details = []
    for name in missing:
        base = re.sub(r"_(bucket|sum|count|total)$", "", name)
        if name in declared or base in declared:
            hint = " (declared by # HELP/# TYPE but without samples: never observed?)"
        else:
            close = difflib.get_close_matches(name, sorted(samples), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
        where = "; ".join(sorted(set(uses[name])))
        details.append(f"{name}{hint}\n  used by: {where}")
    report.fail(
        f"{_count(len(missing), 'metric name')} in no scrape file ({', '.join(map(str, scrapes))})",
        "\n".join(details),
    )


def check_scrape_file(path: Path, report: Report) -> None:
    with path.open("rb") as stdin:
        result = promtool("check", "metrics", stdin=stdin)
    output = (result.stdout + result.stderr).strip()
    # promtool exits 1 when the text does not parse ("error while linting: ..."), 3 when
    # it parses but has lint problems, one "<metric> <problem>" line each.
    if result.returncode == 0:
        report.ok(f"promtool check metrics {path}")
    elif result.returncode == 3 and "error while linting" not in output:
        count = len(output.splitlines())
        report.warn(f"promtool check metrics {path}: {_count(count, 'lint problem')} (not failing)", output)
    else:
        report.fail(f"promtool check metrics {path} (exit {result.returncode})", output)


def run(args: argparse.Namespace) -> int:
    report = Report()
    if not Path(PROMTOOL).exists():
        report.fail(f"promtool not found ({PROMTOOL}); set $PROMTOOL")
        return 1
    uses: dict[str, list[str]] = {}  # metric name -> where it is used

    # 1. Alert rules.
    rules_path = Path(args.rules)
    for line, name, expr in check_rules_file(rules_path, report):
        for metric in metric_names(expr):
            uses.setdefault(metric, []).append(f"{rules_path.name}:{line} {name}")
    known = recorded_names(rules_path.read_text())

    # 2. and 5. Dashboard.
    try:
        dashboard = json.loads(Path(args.dashboard).read_text())
    except (OSError, ValueError) as error:
        report.fail(f"cannot read the dashboard {args.dashboard}: {error}")
    else:
        problems = layout_problems(dashboard)
        if problems:
            report.fail(f"{args.dashboard}: panel layout", "\n".join(problems))
        else:
            report.ok(f"{args.dashboard}: {len(all_panels(dashboard))} panels, ids unique, all placed")
        queries = dashboard_queries(dashboard)
        check_dashboard_queries(queries, report)
        for query in queries:
            for metric in metric_names(query.expr):
                uses.setdefault(metric, []).append(query.where)

    # 4. and 3. Scrape files, then the names against them.
    scrapes = [Path(path) for path in args.scrape]
    for path in scrapes:
        check_scrape_file(path, report)
    check_metric_names(uses, scrapes, known, report)

    verdict = "FAILED" if report.failures else "passed"
    print(f"\npromql checks {verdict}: {_count(report.failures, 'failure')}, {_count(report.warnings, 'warning')}")
    return 1 if report.failures else 0


# --------------------------------------------------------------------------- self-test


def self_test() -> int:
    cases = {
        # histogram_quantile with a grouping that names `le` and `route`
        'histogram_quantile(0.99, sum by (le, route) (rate(payd_http_request_duration_seconds_bucket{job=~"$job", route!="/x"}[$__rate_interval])))':
            {"payd_http_request_duration_seconds_bucket"},
        "sum(rate(a[5m])) / sum(rate(b[5m]))": {"a", "b"},
        "x > 0 and on(job) y": {"x", "y"},
        # strings hold `$1`, parentheses and keywords: none of it is a name
        'label_replace(rate(x_total[5m]), "status_class", "${1}xx", "status", "([0-9]).*")': {"x_total"},
        'label_replace(up, "dst", "by (foo) bar(", "src", \'(.*) sum\')': {"up"},
        "sum without (instance) (x) * on (job) group_left(version) build_info": {"x", "build_info"},
        "a * ignoring(code) group_right b": {"a", "b"},
        "a offset 5m unless b @ 1609746000 or c @ start()": {"a", "b", "c"},
        "max_over_time(deriv(g[5m:30s])[1h:]) > bool 0.5e3": {"g"},
        'SUM BY (le) (c) or {__name__="named_total", job="x"}': {"c", "named_total"},
        'count_values("code", m) # a comment naming fake_metric': {"m"},
        "topk(3, sum by(route)(rate(h_count[1m]))) + -Inf - NaN": {"h_count"},
        "job:payd_requests:rate5m * 100 atan2 c offset -1h30m": {"job:payd_requests:rate5m", "c"},
        "count(payd_breaker_listening == 0) or vector(0)": {"payd_breaker_listening"},
        "sum(rate(x_sum[5m])) / sum(rate(x_count[5m]))": {"x_sum", "x_count"},
    }
    for expr, expected in cases.items():
        got = metric_names(expr)
        assert got == expected, f"{expr!r}: got {sorted(got)}, expected {sorted(expected)}"

    values = {**BUILTIN_VARIABLES, "job": ".*"}
    assert (
        substitute('rate(a{job=~"$job", x=~"${job:regex}"}[$__rate_interval]) [[job]]', values)
        == 'rate(a{job=~".*", x=~".*"}[1m]) .*'
    )
    assert substitute('label_replace(a, "d", "${1}xx $1", "s", "(.)")', values) == (
        'label_replace(a, "d", "${1}xx $1", "s", "(.)")'
    )

    dashboard = {
        "templating": {"list": [{"name": "job", "type": "query",
                                 "query": {"query": "label_values(payd_x_total, job)"}}]},
        "panels": [
            {"id": 1, "type": "row", "title": "Open", "gridPos": {}},
            {"id": 2, "title": "A", "gridPos": {}, "targets": [{"refId": "A", "expr": "rate(a[$__interval])"}]},
            {"id": 3, "type": "row", "title": "Collapsed", "collapsed": True, "gridPos": {}, "panels": [
                {"id": 4, "title": "Nested 5xx", "gridPos": {}, "targets": [
                    {"refId": "A", "expr": 'b{job=~"$job"}'},
                    {"refId": "B", "expr": "{job=\"x\"}", "datasource": {"type": "loki", "uid": "l"}},
                ]},
            ]},
        ],
    }
    queries = dashboard_queries(dashboard)
    assert [(q.record, q.expr) for q in queries] == [
        ("panel_2:a:A", "rate(a[1m])"),
        ("panel_4:nested_5xx:A", 'b{job=~".*"}'),
        ("variable:job", "payd_x_total"),
    ], queries
    assert layout_problems(dashboard) == []
    dashboard["panels"][2]["panels"].append({"id": 2, "title": "Dup"})
    assert len(layout_problems(dashboard)) == 2  # no gridPos, duplicate id

    rules = textwrap.dedent(
        """\
        groups:
          - name: g
            rules:
              - alert: Block
                expr: |
                  sum(rate(a[5m]))
                    / sum(rate(b[5m])) > 0.1
                for: 5m
              - expr: "c == 0"   # the name may come after the expr
                alert: Quoted
              - expr: f > 0
                alert: AlsoAfter
              - record: job:d:rate5m
                expr: sum by (job) (rate(d_total[5m]))
              - alert: Plain
                expr: job:d:rate5m
                  > 1
              - alert: Single
                expr: 'e{x=''y''} > 0'
        """
    )
    assert [(name, expr) for _, name, expr in rule_entries(rules)] == [
        ("Block", "sum(rate(a[5m]))\n  / sum(rate(b[5m])) > 0.1"),
        ("Quoted", "c == 0"),
        ("AlsoAfter", "f > 0"),
        ("job:d:rate5m", "sum by (job) (rate(d_total[5m]))"),
        ("Plain", "job:d:rate5m > 1"),
        ("Single", "e{x='y'} > 0"),
    ], rule_entries(rules)
    assert recorded_names(rules) == {"job:d:rate5m"}

    samples, declared = scrape_names(
        '# HELP h_seconds x\n# TYPE h_seconds histogram\nh_seconds_bucket{le="+Inf"} 1\n'
        "h_seconds_sum 0.1\nh_seconds_count 1\ng 3 1700000000\n# TYPE never_total counter\n"
    )
    assert samples == {"h_seconds_bucket", "h_seconds_sum", "h_seconds_count", "g"}, samples
    assert declared == {"h_seconds", "never_total"}, declared

    print(f"self-test passed: {len(cases)} name extractions, substitution, panels, rules, scrapes")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dashboard", help="Grafana dashboard JSON")
    parser.add_argument("--rules", help="Prometheus rules file (alerts)")
    parser.add_argument("--scrape", action="append", default=[], metavar="FILE",
                        help="a /metrics page in the text format (repeatable)")
    parser.add_argument("--self-test", action="store_true", help="test this script's parsing, then exit")
    args = parser.parse_args(argv)
    if args.self_test:
        return self_test()
    if not (args.dashboard and args.rules and args.scrape):
        parser.error("--dashboard, --rules and at least one --scrape are required")
    for path in [args.dashboard, args.rules, *args.scrape]:
        if not Path(path).is_file():
            parser.error(f"no such file: {path}")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
