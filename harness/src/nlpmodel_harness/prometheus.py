"""A real Prometheus (Debian's ``prometheus`` package) for tests, scraping model-server stand-ins.

No prometheus-operator runs here, so the harness plays its part: from the operator's PodMonitor and the
pods' labels (`ScrapeTarget.from_pod_monitor`) it writes a static scrape config whose target labels are
exactly what the PodMonitor's selector and relabeling make of each pod (``namespace``,
``nlpmodel_model``, ``nlpmodel_revision``; see :mod:`nlpmodel_operator.core.analysis.queries`)::

    with PrometheusProcess([ScrapeTarget.for_revision(server.address, "ns", "chat", "1a2b3c4d")]) as prom:
        prom.wait_for_targets_up()
        prom.url                         # http://127.0.0.1:<port>
        prom.pause(); prom.resume()      # SIGSTOP / SIGCONT: a Prometheus that hangs
        prom.stop(); prom.start()        # a restart on the same port and TSDB

The binaries are installed with apt when missing (as root or with passwordless sudo).
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import Any, Final

import yaml
from nlpmodel_operator.api.constants import LABEL_MODEL
from nlpmodel_operator.core.analysis.queries import (
    TARGET_LABEL_MODEL,
    TARGET_LABEL_NAMESPACE,
    TARGET_LABEL_REVISION,
)
from nlpmodel_operator.core.monitoring import meta_label, render_pod_monitor

from nlpmodel_harness.childproc import ChildError, ChildProcess, free_ports
from nlpmodel_harness.localplane_build import ensure_apt_packages

__all__ = [
    "JOB_NAME",
    "PrometheusError",
    "PrometheusProcess",
    "ScrapeTarget",
    "ensure_prometheus",
    "render_config",
    "selects",
]

APT_PACKAGE: Final = "prometheus"
JOB_NAME: Final = "nlpmodel-pods"  # what a PodMonitor's job would be called is not part of the contract
RETENTION: Final = "1h"


class PrometheusError(RuntimeError):
    """Prometheus could not be installed, configured, started, reloaded or stopped."""


@dataclass(frozen=True)
class ScrapeTarget:
    """One model-server endpoint and the target labels Prometheus attaches to all its series."""

    address: str  # host:port
    labels: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "labels", MappingProxyType(dict(self.labels)))

    @classmethod
    def for_revision(cls, address: str, namespace: str, model: str, revision: str) -> ScrapeTarget:
        return cls(
            address,
            {TARGET_LABEL_NAMESPACE: namespace, TARGET_LABEL_MODEL: model, TARGET_LABEL_REVISION: revision},
        )

    @classmethod
    def from_pod(cls, address: str, namespace: str, pod_labels: Mapping[str, str]) -> ScrapeTarget:
        """What the operator's PodMonitor for the pod's model makes of a revision pod.

        Raises ValueError for a pod that PodMonitor does not select (no model or revision label).
        """
        monitor = render_pod_monitor(pod_labels.get(LABEL_MODEL, "unlabelled"), namespace)
        target = cls.from_pod_monitor(monitor, address, namespace, pod_labels)
        if target is None:
            raise ValueError(f"pod at {address} lacks the model/revision labels: no PodMonitor selects it")
        return target

    @classmethod
    def from_pod_monitor(
        cls, monitor: Mapping[str, Any], address: str, namespace: str, pod_labels: Mapping[str, str]
    ) -> ScrapeTarget | None:
        """Play prometheus-operator for one pod: None unless ``monitor`` selects it, else the target with
        the labels the monitor's relabeling writes (plus ``namespace``, which prometheus-operator always
        sets). Supports what a selector can say and the ``replace`` relabeling; anything else raises, so
        the harness never silently scrapes differently from a real Prometheus."""
        spec = monitor.get("spec") or {}
        if namespace != monitor["metadata"]["namespace"] or not selects(
            spec.get("selector") or {}, pod_labels
        ):
            return None
        (endpoint,) = spec.get("podMetricsEndpoints") or [{}]
        meta = {meta_label(key): value for key, value in pod_labels.items()}
        labels = {TARGET_LABEL_NAMESPACE: namespace}
        for rule in endpoint.get("relabelings") or []:
            if rule.get("action", "replace").lower() != "replace" or set(rule) - _SUPPORTED_RELABEL_KEYS:
                raise PrometheusError(f"the harness does not implement relabeling {rule}")
            value = ";".join(meta.get(source, "") for source in rule["sourceLabels"])
            if value:  # the default regex (.*) and replacement ($1) copy a non-empty value
                labels[rule["targetLabel"]] = value
        return cls(address, labels)


_SUPPORTED_RELABEL_KEYS: Final = frozenset({"action", "sourceLabels", "targetLabel"})


def selects(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """Kubernetes label-selector semantics (matchLabels and matchExpressions, all must hold)."""
    if any(labels.get(key) != value for key, value in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
        present = key in labels
        holds = {
            "In": present and labels.get(key) in values,
            "NotIn": not present or labels.get(key) not in values,
            "Exists": present,
            "DoesNotExist": not present,
        }.get(operator)
        if holds is None:
            raise PrometheusError(f"unknown selector operator {operator!r}")
        if not holds:
            return False
    return True


def _duration(seconds: float) -> str:
    if seconds <= 0:
        raise ValueError("a Prometheus duration must be > 0")
    return f"{int(seconds)}s" if float(seconds).is_integer() else f"{round(seconds * 1000)}ms"


def render_config(
    targets: Iterable[ScrapeTarget],
    *,
    scrape_interval_s: float = 1.0,
    rule_files: Iterable[Path] = (),
    extra_scrape_configs: Iterable[Mapping[str, Any]] = (),
) -> str:
    """prometheus.yml: 1 s scrape/evaluation, one static job, one target group per target; rule files
    and further jobs (e.g. what a ServiceMonitor makes of the operator's metrics Service) as given."""
    interval = _duration(scrape_interval_s)
    config: dict[str, Any] = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "scrape_configs": [
            {
                "job_name": JOB_NAME,
                "metrics_path": "/metrics",
                "static_configs": [
                    {"targets": [t.address], "labels": dict(sorted(t.labels.items()))} for t in targets
                ],
            },
            *(dict(job) for job in extra_scrape_configs),
        ],
    }
    rules = [str(path) for path in rule_files]
    if rules:
        config["rule_files"] = rules
    return yaml.safe_dump(config, sort_keys=False)


def ensure_prometheus() -> tuple[Path, Path]:
    """Paths of prometheus and promtool, installing Debian's package when they are missing."""

    def found() -> tuple[Path, Path] | None:
        prom, tool = shutil.which("prometheus"), shutil.which("promtool")
        return (Path(prom), Path(tool)) if prom and tool else None

    binaries = found()
    if binaries is None:
        ensure_apt_packages([APT_PACKAGE])  # does not start a daemon (Debian's package ships a unit only)
        binaries = found()
    if binaries is None:
        raise PrometheusError(f"`{APT_PACKAGE}` is installed but prometheus/promtool are not on PATH")
    return binaries


class PrometheusProcess:
    """Prometheus on a free loopback port with a temp TSDB; stop() keeps port and data for start()."""

    def __init__(
        self,
        targets: Iterable[ScrapeTarget] = (),
        *,
        port: int | None = None,
        work_dir: Path | None = None,
        scrape_interval_s: float = 1.0,
        startup_timeout_s: float = 60.0,
        tie_to_parent: bool = True,
        listen_host: str = "127.0.0.1",
        rule_files: Iterable[Path] = (),
    ) -> None:
        self._targets = list(targets)
        # Another address than loopback when pods must reach it (the operator in a real node's pod).
        self.listen_host = listen_host
        self._rule_files = list(rule_files)
        self._extra_jobs: list[dict[str, Any]] = []
        self.port = port if port is not None else free_ports(1)[0]
        self._owns_work_dir = work_dir is None
        self.work_dir = (
            work_dir if work_dir is not None else Path(tempfile.mkdtemp(prefix="nlpmodel-prometheus-"))
        )
        self.config_path = self.work_dir / "prometheus.yml"
        self.data_dir = self.work_dir / "data"
        self.log_path = self.work_dir / "prometheus.log"
        self._interval = scrape_interval_s
        self._timeout = startup_timeout_s
        self._tie = tie_to_parent
        self._child: ChildProcess | None = None
        self.pids: list[int] = []  # every PID this object started (restarts included)

    # -- properties ------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.listen_host}:{self.port}"

    @property
    def pid(self) -> int:
        if self._child is None or not self._child.started:
            raise PrometheusError("not started")
        return self._child.pid

    @property
    def targets(self) -> list[ScrapeTarget]:
        return list(self._targets)

    def running(self) -> bool:
        return self._child is not None and self._child.running()

    # -- lifecycle -------------------------------------------------------------------------------------

    def __enter__(self) -> PrometheusProcess:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def start(self) -> PrometheusProcess:
        """Start (or restart, after stop()) on the same port, config and TSDB; wait for /-/ready."""
        if self.running():
            raise PrometheusError(f"already running (pid {self.pid})")
        prometheus, _promtool = ensure_prometheus()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._write_config()
        cmd = [
            str(prometheus),
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.data_dir}",
            f"--storage.tsdb.retention.time={RETENTION}",
            f"--web.listen-address={self.listen_host}:{self.port}",
            "--web.enable-lifecycle",  # POST /-/reload after set_targets()
            # The Debian defaults point at /etc/prometheus: keep this instance self-contained.
            f"--web.console.templates={self.work_dir / 'consoles'}",
            f"--web.console.libraries={self.work_dir / 'console_libraries'}",
        ]
        self._child = ChildProcess("prometheus", cmd, self.log_path, tie_to_parent=self._tie)
        self._child.start()
        self.pids.append(self._child.pid)
        try:
            self._child.wait_until("ready (/-/ready)", self._ready, self._timeout)
        except BaseException:
            self._child.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop exactly the PID this object started (a paused one is continued so it can exit)."""
        if self._child is None:
            return
        try:
            self._child.stop()
        except ChildError as exc:
            raise PrometheusError(str(exc)) from exc

    def close(self) -> None:
        """stop() and remove the work dir (config, TSDB, log) when this object made it."""
        self.stop()
        if self._owns_work_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def pause(self) -> None:
        """SIGSTOP: the port still accepts connections, nothing answers (a hung Prometheus)."""
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal(signal.SIGCONT)

    # -- configuration ---------------------------------------------------------------------------------

    def set_targets(
        self,
        targets: Iterable[ScrapeTarget],
        *,
        wait_s: float = 10.0,
        extra_scrape_configs: Iterable[Mapping[str, Any]] | None = None,
    ) -> None:
        """Rewrite the scrape config and reload; wait until Prometheus shows exactly these targets."""
        self._targets = list(targets)
        if extra_scrape_configs is not None:
            self._extra_jobs = [dict(job) for job in extra_scrape_configs]
        self._write_config()
        if not self.running():
            return  # picked up by the next start()
        status, body = self._http("POST", "/-/reload", timeout_s=wait_s)
        if status != 200:
            raise PrometheusError(f"reload failed: {status} {body[:1000]!r}")
        want = {t.address for t in self._targets} | self._extra_addresses()
        deadline = time.monotonic() + wait_s
        while self._active_addresses() != want:
            if time.monotonic() > deadline:
                raise PrometheusError(f"after reload Prometheus shows {self._active_addresses()}, not {want}")
            time.sleep(0.1)

    def check_config(self) -> str:
        """`promtool check config` on the written config; returns its output, raises on rejection."""
        _prometheus, promtool = ensure_prometheus()
        self._write_config()
        done = subprocess.run(
            [str(promtool), "check", "config", str(self.config_path)],
            capture_output=True,
            text=True,
            check=False,
        )
        output = (done.stdout + done.stderr).strip()
        if done.returncode != 0:
            raise PrometheusError(f"promtool rejects {self.config_path}:\n{output}")
        return output

    def wait_for_targets_up(self, timeout_s: float = 30.0) -> None:
        """Until every configured target has been scraped successfully at least once."""
        want = {t.address for t in self._targets}
        deadline = time.monotonic() + timeout_s
        health: dict[str, str] = {}
        while True:
            health = self._target_health()
            if set(health) == want and all(h == "up" for h in health.values()):
                return
            if time.monotonic() > deadline:
                raise PrometheusError(f"targets not all up within {timeout_s:.0f}s: {health} (want {want})")
            time.sleep(0.2)

    # -- internals -------------------------------------------------------------------------------------

    def _ready(self) -> bool:
        if self._http("GET", "/-/ready")[0] != 200:
            return False
        # Only our own process counts: after a restart, someone else may have taken the port meanwhile
        # (ours then dies on bind, which wait_until reports with its log).
        status, body = self._http("GET", "/api/v1/status/flags")
        return status == 200 and json.loads(body)["data"].get("config.file") == str(self.config_path)

    def _signal(self, sig: signal.Signals) -> None:
        if self._child is None or not self.running():
            raise PrometheusError("not running")
        self._child.signal(sig)

    def _write_config(self) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(
            render_config(
                self._targets,
                scrape_interval_s=self._interval,
                rule_files=self._rule_files,
                extra_scrape_configs=self._extra_jobs,
            )
        )
        tmp.replace(self.config_path)  # Prometheus never reads a half-written file

    def _targets_api(self) -> list[dict[str, Any]]:
        status, body = self._http("GET", "/api/v1/targets?state=active")
        if status != 200:
            return []
        active: list[dict[str, Any]] = json.loads(body)["data"]["activeTargets"]
        return active

    def _extra_addresses(self) -> set[str]:
        return {
            str(address)
            for job in self._extra_jobs
            for group in job.get("static_configs") or []
            for address in group.get("targets") or []
        }

    def alerts(self) -> list[dict[str, Any]]:
        """The alerts Prometheus evaluates from its rule files (pending and firing)."""
        status, body = self._http("GET", "/api/v1/alerts")
        if status != 200:
            raise PrometheusError(f"/api/v1/alerts answered {status}: {body[:500]!r}")
        found: list[dict[str, Any]] = json.loads(body)["data"]["alerts"]
        return found

    def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant query's result vector."""
        path = "/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        status, body = self._http("GET", path)
        if status != 200:
            raise PrometheusError(f"query {promql!r} answered {status}: {body[:500]!r}")
        result: list[dict[str, Any]] = json.loads(body)["data"]["result"]
        return result

    def _active_addresses(self) -> set[str]:
        return {str(t["discoveredLabels"]["__address__"]) for t in self._targets_api()}

    def _target_health(self) -> dict[str, str]:
        return {str(t["discoveredLabels"]["__address__"]): str(t["health"]) for t in self._targets_api()}

    def _http(self, method: str, path: str, *, timeout_s: float = 5.0) -> tuple[int, bytes]:
        req = urllib.request.Request(self.url + path, method=method, data=b"" if method == "POST" else None)
        try:
            with urllib.request.urlopen(req, timeout=timeout_s) as resp:
                return int(resp.status), bytes(resp.read())
        except urllib.error.HTTPError as exc:
            return int(exc.code), bytes(exc.read())
        except (OSError, ValueError) as exc:  # refused, timed out, reset: "no answer"
            return 0, str(exc).encode()
