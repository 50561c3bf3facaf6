"""Run a real Prometheus against loopback targets, and read PromQL out of dashboards and rules.

Called by the monitoring tests (``tests/monitoring``) and the chart tests (``tests/chart``), which
import it as ``promkit`` (``tests/`` is on ``sys.path`` through ``tests/conftest.py``); it is
test-only code, so it ships with the tests, not in the ``spiral`` package. The end-to-end
``spiral train`` tests can use :class:`PrometheusServer` the same way. Two halves:

* pure functions: :func:`render_scrape_config`, :func:`dashboard_queries`, :func:`rule_queries`,
  :func:`grafana_to_promql` and :func:`promql_metric_names` (a small PromQL lexer, enough to list
  the metric names an expression selects, so a test can check them against the registry);
* :class:`PrometheusServer`: starts ``/usr/bin/prometheus`` on a free loopback port with a private
  storage dir, waits for readiness, for the first scrapes and for data (:meth:`~PrometheusServer.wait_for_data`)
  by polling (never sleeping blindly), and answers instant queries through ``/api/v1/query``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import yaml
from prometheus_client import CollectorRegistry

_LOG = logging.getLogger(__name__)

#: Metrics some queries use although SPIRAL does not export them, and who does. Every other name in
#: a dashboard or rule must be registered by ``spiral.metrics`` or ``spiral_operator.metrics``.
EXTERNAL_METRICS: Mapping[str, str] = {
    "kube_deployment_status_replicas_available": "kube-state-metrics",
    "kube_deployment_spec_replicas": "kube-state-metrics",
    "up": "Prometheus (one sample per scrape target)",
}

#: The series each metric type writes, by suffix (OpenMetrics ``_created`` included, as prometheus-client exports it).
_TYPE_SUFFIXES: Mapping[str, tuple[str, ...]] = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
    "stateset": ("",),
    "enum": ("",),
    "unknown": ("",),
}


def exported_sample_names(*registrars: Callable[[CollectorRegistry], object]) -> set[str]:
    """The series names a scrape can contain once every metric has a sample.

    Each registrar (``spiral.metrics.create_metrics``, ``spiral_operator.metrics.create_operator_metrics``)
    registers on a fresh registry; names come from each family's type, because a labelled metric has
    no samples (and so no ``_total``/``_bucket`` names) until a child is created.
    """
    names: set[str] = set()
    for register in registrars:
        registry = CollectorRegistry()
        register(registry)
        for family in registry.collect():
            names.update(family.name + suffix for suffix in _TYPE_SUFFIXES[family.type])
    return names


def metric_family_names(*registrars: Callable[[CollectorRegistry], object]) -> set[str]:
    """The family names (``spiral_actor_frames`` for ``spiral_actor_frames_total``) the registrars create."""
    names: set[str] = set()
    for register in registrars:
        registry = CollectorRegistry()
        register(registry)
        names.update(family.name for family in registry.collect())
    return names


# --------------------------------------------------------------------------------- PromQL ---

#: Words that look like identifiers in PromQL but never name a metric.
_PROMQL_KEYWORDS = frozenset(
    {
        "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
        "offset", "bool", "atan2", "inf", "nan", "start", "end",
        # aggregation operators may be followed by `by (...)` before their parenthesis
        "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
        "bottomk", "topk", "quantile", "limitk", "limit_ratio",
    }
)
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_BRACES = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_NUMBER_SUFFIX = re.compile(r"\b\d+(?:\.\d+)?(?:e[+-]?\d+)?[a-z]*\b", re.IGNORECASE)


def promql_metric_names(expr: str) -> set[str]:
    """The metric names an expression selects (function names, keywords and label names excluded).

    >>> sorted(promql_metric_names('sum by (role) (rate(spiral_x_total{a="b"}[5m])) / up'))
    ['spiral_x_total', 'up']

    Raises:
        ValueError: if the expression selects a metric through ``{__name__=...}``, which this
            lexer cannot resolve; name the metric directly instead.
    """
    if "__name__" in expr:
        raise ValueError(f"expression selects by __name__, which cannot be checked against the registry: {expr!r}")
    text = _STRING.sub('""', expr)
    text = _BRACES.sub(" ", text)  # label matchers: label names are not metrics
    text = _RANGE.sub(" ", text)  # range selectors and subqueries: durations
    text = _GROUPING.sub(" ", text)  # label lists of by/without/on/ignoring/group_*
    text = _NUMBER_SUFFIX.sub(" ", text)  # numbers and bare durations (offset 1h)
    names: set[str] = set()
    for match in _IDENT.finditer(text):
        word = match.group(0)
        rest = text[match.end() :].lstrip()
        if word.lower() in _PROMQL_KEYWORDS or rest.startswith("("):
            continue  # keyword, aggregation, or function call
        names.add(word)
    return names


#: Substitutions for Grafana's built-in variables when a dashboard query is sent to Prometheus directly.
_GRAFANA_BUILTINS = {"__rate_interval": "10s", "__interval": "5s", "__range": "1h"}
_GRAFANA_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")


def grafana_to_promql(expr: str, values: Mapping[str, str] | None = None) -> str:
    """Replace Grafana variables in a dashboard query so Prometheus can evaluate it.

    Built-ins (``$__rate_interval``...) get short fixed durations fit for a 1 s scrape interval;
    template variables get ``values[name]``, else ``.*`` (Grafana's "All" for our regex matchers).
    """
    values = dict(values or {})

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or match.group(3)
        if name in _GRAFANA_BUILTINS:
            return _GRAFANA_BUILTINS[name]
        return values.get(name, ".*")

    return _GRAFANA_VARIABLE.sub(replace, expr)


class DashboardQuery(NamedTuple):
    """One PromQL query of a Grafana dashboard: a panel target or a template variable."""

    dashboard: str
    panel: str  # panel title, or ``variable:<name>`` for template variables
    ref_id: str
    expr: str  # as written in the dashboard, with Grafana variables
    is_variable: bool


_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(?:(?P<expr>.*),\s*)?(?P<label>\w+)\s*\)\s*$", re.DOTALL)


def _variable_expr(query: str) -> str:
    """The PromQL inside a Grafana Prometheus variable query (``label_values(expr, label)``, ``query_result(expr)``)."""
    match = _LABEL_VALUES.match(query)
    if match:
        return match.group("expr") or ""
    inner = re.match(r"^\s*query_result\((.*)\)\s*$", query, re.DOTALL)
    return inner.group(1) if inner else query


def _panels(panels: Iterable[Mapping[str, Any]]) -> Iterable[Mapping[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))  # collapsed rows nest their panels


def dashboard_queries(dashboard: Mapping[str, Any]) -> list[DashboardQuery]:
    """Every PromQL expression of a Grafana dashboard: panel targets, then template-variable queries.

    Raises:
        ValueError: if a panel target has no ``expr`` (a non-Prometheus query cannot be checked).
    """
    title = str(dashboard.get("title", "?"))
    queries: list[DashboardQuery] = []
    for panel in _panels(dashboard.get("panels", [])):
        for target in panel.get("targets", []):
            if "expr" not in target:
                raise ValueError(f"dashboard {title!r} panel {panel.get('title')!r} target {target.get('refId')!r} has no 'expr'")
            queries.append(DashboardQuery(title, str(panel.get("title")), str(target.get("refId")), str(target["expr"]), False))
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") != "query":
            continue
        query = variable.get("query")
        text = query.get("query", "") if isinstance(query, Mapping) else str(query or "")
        expr = _variable_expr(text)
        if expr:
            queries.append(DashboardQuery(title, f"variable:{variable.get('name')}", "var", expr, True))
    return queries


class RuleQuery(NamedTuple):
    """One alerting or recording rule's expression."""

    group: str
    name: str  # the alert or record name
    expr: str


def rule_queries(rules: Mapping[str, Any]) -> list[RuleQuery]:
    """The expressions of a Prometheus rule file (``{"groups": [...]}``) or PrometheusRule ``spec``."""
    found: list[RuleQuery] = []
    for group in rules.get("groups", []):
        for rule in group.get("rules", []):
            found.append(RuleQuery(str(group["name"]), str(rule.get("alert") or rule.get("record")), str(rule["expr"])))
    return found


# --------------------------------------------------------------------------------- server ---


class ScrapeTarget(NamedTuple):
    """One ``host:port`` that serves ``/metrics``, with the target labels Prometheus attaches.

    In the cluster the PodMonitor sets ``namespace``, ``spiral_job``, ``role`` and ``pod``; local
    targets should carry the same labels so dashboard and alert queries group the same way.
    """

    address: str
    labels: Mapping[str, str] = {}


class PrometheusError(RuntimeError):
    """Prometheus did not start, did not scrape, or rejected a query."""


class QueryResult(NamedTuple):
    """The ``data`` of an instant query: ``result_type`` is vector, matrix, scalar or string."""

    result_type: str
    result: list[Any]

    @property
    def has_data(self) -> bool:
        """True when the result holds at least one sample (a scalar always does)."""
        return self.result_type == "scalar" or bool(self.result)


def render_scrape_config(
    targets: Sequence[ScrapeTarget],
    *,
    scrape_interval_s: float = 1.0,
    rule_files: Sequence[Path] = (),
    job_name: str = "spiral",
) -> dict[str, Any]:
    """The ``prometheus.yml`` for scraping ``targets``: one static config per target (its own labels).

    ``honor_labels`` mirrors the chart's PodMonitor and ServiceMonitor: exported ``spiral_job``,
    ``role`` and (operator) ``namespace`` labels win over target labels.

    Raises:
        ValueError: if there are no targets or the interval is not positive.
    """
    if not targets:
        raise ValueError("targets is empty; give at least one host:port serving /metrics")
    if scrape_interval_s <= 0:
        raise ValueError(f"scrape_interval_s must be > 0 (got {scrape_interval_s})")
    interval = f"{int(scrape_interval_s * 1000)}ms"
    return {
        "global": {"scrape_interval": interval, "scrape_timeout": interval, "evaluation_interval": interval},
        "rule_files": [str(path) for path in rule_files],
        "scrape_configs": [
            {
                "job_name": job_name,
                "honor_labels": True,
                "metrics_path": "/metrics",
                "static_configs": [{"targets": [t.address], "labels": dict(t.labels)} for t in targets],
            }
        ],
    }


def find_prometheus() -> Path:
    """The ``prometheus`` binary (``$PROMETHEUS``, ``PATH``, then Debian's ``/usr/bin/prometheus``).

    Raises:
        FileNotFoundError: if none is installed.
    """
    for candidate in (os.environ.get("PROMETHEUS"), shutil.which("prometheus"), "/usr/bin/prometheus"):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    raise FileNotFoundError("no prometheus binary: install Debian's `prometheus` package or set $PROMETHEUS")


def free_loopback_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (a server started on it may still race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrometheusServer:
    """A real Prometheus process scraping loopback targets; use as a context manager.

    Not thread-safe. Storage lives in a temporary directory removed on exit.

    >>> with PrometheusServer([ScrapeTarget("127.0.0.1:9400")]) as prom:  # doctest: +SKIP
    ...     prom.wait_for_scrapes(3)
    ...     prom.query("up").has_data
    """

    def __init__(
        self,
        targets: Sequence[ScrapeTarget],
        *,
        scrape_interval_s: float = 1.0,
        rule_files: Sequence[Path] = (),
        binary: Path | None = None,
        startup_timeout_s: float = 30.0,
    ) -> None:
        self.targets = list(targets)
        self._config = render_scrape_config(self.targets, scrape_interval_s=scrape_interval_s, rule_files=rule_files)
        self._binary = binary or find_prometheus()
        self._startup_timeout_s = startup_timeout_s
        self._scrape_interval_s = scrape_interval_s
        self._workdir: tempfile.TemporaryDirectory[str] | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> PrometheusServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Start Prometheus and wait until ``/-/ready`` answers.

        Raises:
            PrometheusError: if it exits or is not ready within ``startup_timeout_s``; the message
                carries the tail of its log.
        """
        self._workdir = tempfile.TemporaryDirectory(prefix="spiral-prometheus-")
        root = Path(self._workdir.name)
        config_path = root / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(self._config, sort_keys=False))
        for attempt in range(3):  # the free port may be taken between probing and binding
            self.port = free_loopback_port()
            log_path = root / f"prometheus-{attempt}.log"
            with log_path.open("wb") as log:
                self._process = subprocess.Popen(
                    [
                        str(self._binary),
                        f"--config.file={config_path}",
                        f"--storage.tsdb.path={root / 'data'}",
                        f"--web.listen-address=127.0.0.1:{self.port}",
                        "--storage.tsdb.retention.time=1h",
                        "--log.level=warn",
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=root,
                )
            if self._wait_ready(log_path):
                _LOG.info("Prometheus ready on %s (pid %d)", self.url, self._process.pid)
                return
            if "address already in use" not in log_path.read_text(errors="replace"):
                break
        tail = log_path.read_text(errors="replace")[-2000:]
        self.stop()
        raise PrometheusError(f"Prometheus did not become ready within {self._startup_timeout_s}s; its log ends:\n{tail}")

    def _wait_ready(self, log_path: Path) -> bool:
        assert self._process is not None
        deadline = time.monotonic() + self._startup_timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1.0) as response:
                    if response.status == 200:
                        return True
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.05)  # poll interval, not a guess at startup time
        return False

    def stop(self) -> None:
        """Terminate Prometheus (SIGTERM, then SIGKILL after 10 s) and remove its storage."""
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None

    def _get(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        url = f"{self.url}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=10.0) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as err:  # 400/422 carry the PromQL error as JSON
            body = json.loads(err.read() or b"{}")
        if body.get("status") != "success":
            raise PrometheusError(f"{path} {dict(params or {})} failed: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> QueryResult:
        """Evaluate ``expr`` at the current time, or at Unix time ``at`` (so several queries see one instant).

        Raises:
            PrometheusError: if Prometheus rejects the expression (the message is Prometheus's).
        """
        params = {"query": expr} if at is None else {"query": expr, "time": f"{at:.3f}"}
        data = self._get("/api/v1/query", params)
        result = data["result"]
        return QueryResult(data["resultType"], result if isinstance(result, list) else [result])

    def targets_health(self) -> list[dict[str, Any]]:
        """The active targets as ``/api/v1/targets`` reports them (``health``, ``lastError``, ``labels``)."""
        return list(self._get("/api/v1/targets")["activeTargets"])

    def rules(self) -> list[dict[str, Any]]:
        """The loaded rule groups as ``/api/v1/rules`` reports them (each rule has ``health``, ``lastError``)."""
        return list(self._get("/api/v1/rules")["groups"])

    def wait_for_scrapes(self, count: int = 1, timeout_s: float = 30.0) -> None:
        """Block until every target has been scraped successfully at least ``count`` times.

        Raises:
            PrometheusError: if a target is still down (with its ``lastError``) or unscraped at the deadline.
        """
        deadline = time.monotonic() + timeout_s
        want = len(self.targets)
        while True:
            # Every scrape writes one `up` sample, so its count is the number of scrapes so far.
            result = self.query("count_over_time(up[5m])").result
            scraped = {r["metric"].get("instance"): float(r["value"][1]) for r in result}
            up = {r["metric"].get("instance") for r in self.query("up == 1").result}
            if len(scraped) >= want and all(n >= count for n in scraped.values()) and len(up) >= want:
                return
            if time.monotonic() > deadline:
                health = [(t["scrapeUrl"], t["health"], t["lastError"]) for t in self.targets_health()]
                raise PrometheusError(f"targets not scraped {count} times within {timeout_s}s: {health}")
            time.sleep(min(0.2, self._scrape_interval_s / 4))

    def wait_for_data(self, exprs: Sequence[str], timeout_s: float = 60.0) -> float:
        """Block until every expression returns data at one instant; return that instant (Unix seconds).

        Pass the returned time as ``query(..., at=...)`` to evaluate other queries at the same
        instant, so a service that pauses afterwards cannot turn a rate into "no data".

        Raises:
            PrometheusError: if some expression still has no data at the deadline (names them), or
                an expression is invalid.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            at = time.time()
            missing = [expr for expr in exprs if not self.query(expr, at=at).has_data]
            if not missing:
                return at
            if time.monotonic() > deadline:
                raise PrometheusError(f"no data within {timeout_s}s for: {missing}")
            time.sleep(min(0.2, self._scrape_interval_s / 4))
