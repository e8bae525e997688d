"""`make demo`: a canary that is slow is rolled back, a healthy one is promoted; one command, start to end.

Locally (the default) it starts everything it needs and stops all of it at the end: a real
kube-apiserver + etcd + kube-controller-manager, a real Prometheus, the operator under the chart's
identity (its ServiceAccount bound to the chart's ClusterRole rules), and stand-ins for what a laptop
lacks: KServe and the kubelet (they mark InferenceServices and pods Ready) and one vLLM-metrics model
server per running revision, scraped by Prometheus through the operator's PodMonitor.

The story (manifests/demo/): chat-v1 becomes Ready; chat-v2 (a canary whose servers answer with a
time to first token 80 % slower) is judged and rolled back with its reason; chat-v3 (healthy) is
promoted step by step; locally a fourth chapter (manifests/demo/evaluation/): chat-v4, just as fast
but answering worse, is stopped by the evaluation gate at 0 % with its failing case ids. On a
terminal a live panel shows the canary weight, the TTFT p95 of stable and canary and the verdicts;
otherwise (or with --plain) one line per event.

With --node (root, Linux) it tells the story on real pods on this machine: the local control plane with a
kubelet node, the chart installed with helm (the operator in a pod), our transformers runtime serving tiny
models built from configs (manifests/demo-node/: the slow canary is a larger model, really slower), load
sent through the model's Service, a real Prometheus scraping the pods. The first run builds images and
models for about 12 minutes; see e2e/README.md.

With --cluster it runs the same story on the cluster of $KUBECONFIG (KServe installed): the chart is
installed with helm, nothing local is started, and the canary is slow only if the scenario's second
manifest really is (see e2e/kind/scenario/); see docs/demo.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, TextIO

import yaml
from kubernetes import client
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from nlpmodel_operator.api import constants as c
from nlpmodel_operator.api.spec import NLPModelSpec
from nlpmodel_operator.cli.main import main as nlpctl
from nlpmodel_operator.core.analysis import queries
from nlpmodel_operator.core.evaluation.dataset import DatasetError, parse_dataset
from nlpmodel_operator.core.revision import revision_hash

from nlpmodel_harness.checkout import CHART, REPO
from nlpmodel_harness.demoview import Snapshot, events, panel, summary_table

SCENARIO: Final = REPO / "manifests" / "demo"
NODE_SCENARIO: Final = REPO / "manifests" / "demo-node"
SLOWDOWN: Final = 1.8  # the slow canary's time to first token, relative to the stable's (TTFT +80 %)
TTFT: Final = "vllm:time_to_first_token_seconds"
# --fast (the test): shorter analysis interval and pauses; the story is the same.
FAST_INTERVAL: Final = "4s"
FAST_PAUSE: Final = "3s"
# The local story's fourth chapter: a ConfigMap dataset and an NLPModel whose servers answer worse.
EVALUATION: Final = "evaluation"
WRONG_RATE: Final = 0.3  # the share of the dataset's `say:` prompts its stand-ins answer wrongly


class DemoError(RuntimeError):
    """The story did not go as it must (a wrong outcome, a timeout, a component that stopped)."""


def banner(out: TextIO, text: str) -> None:
    print(f"\n=== {text} ===", file=out, flush=True)


# -- the scenario --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Chapter:
    path: Path
    body: dict[str, Any]

    @property
    def revision(self) -> str:
        return revision_hash(NLPModelSpec.model_validate(self.body["spec"]))


def _load_model(path: Path, *, fast: bool, namespace: str | None) -> Chapter:
    body: dict[str, Any] = yaml.safe_load(path.read_text())
    if namespace:
        body["metadata"]["namespace"] = namespace
    if fast:
        rollout = body["spec"].setdefault("rollout", {})
        rollout["steps"] = [{**s, "pause": FAST_PAUSE} for s in rollout.get("steps") or []]
        rollout.setdefault("analysis", {})["interval"] = FAST_INTERVAL
    return Chapter(path, body)


def load_scenario(directory: Path, *, fast: bool, namespace: str | None = None) -> list[Chapter]:
    """The three manifests (sorted by name): first revision, slow update, healthy update."""
    files = sorted(directory.glob("*.yaml"))
    if len(files) != 3:
        raise DemoError(f"{directory} must hold exactly three NLPModel manifests, found {len(files)}")
    chapters = [_load_model(path, fast=fast, namespace=namespace) for path in files]
    names = {(ch.body["metadata"]["namespace"], ch.body["metadata"]["name"]) for ch in chapters}
    if len(names) != 1:
        raise DemoError(f"the manifests in {directory} must all be the same NLPModel, found {sorted(names)}")
    return chapters


@dataclass(frozen=True)
class EvaluationChapter:
    """The fourth chapter: the dataset (a ConfigMap) and the update that carries the evaluation gate."""

    dataset_path: Path
    dataset: dict[str, Any]
    chapter: Chapter
    cases: int  # in the dataset


def load_evaluation(directory: Path, *, fast: bool) -> EvaluationChapter | None:
    """`<scenario>/evaluation/`, where there is one: a ConfigMap whose dataset parses and an update of
    the scenario's NLPModel with `rollout.evaluation` reading it. None without that directory."""
    where = directory / EVALUATION
    if not where.is_dir():
        return None
    by_kind: dict[str, list[tuple[Path, dict[str, Any]]]] = {}
    for path in sorted(where.glob("*.yaml")):
        body = yaml.safe_load(path.read_text())
        by_kind.setdefault(str(body.get("kind")), []).append((path, body))
    if sorted(by_kind) != ["ConfigMap", "NLPModel"] or any(len(v) != 1 for v in by_kind.values()):
        raise DemoError(f"{where} must hold one ConfigMap (the dataset) and one NLPModel")
    (dataset_path, dataset), (model_path, _) = by_kind["ConfigMap"][0], by_kind["NLPModel"][0]
    chapter = _load_model(model_path, fast=fast, namespace=None)
    gate = (chapter.body["spec"].get("rollout") or {}).get("evaluation") or {}
    source = gate.get("dataset") or {}
    if source.get("configMap") != dataset["metadata"]["name"]:
        raise DemoError(
            f"{model_path.name}: rollout.evaluation must read the ConfigMap of {dataset_path.name}"
        )
    model = load_scenario(directory, fast=False)[0].body["metadata"]
    if (chapter.body["metadata"]["namespace"], chapter.body["metadata"]["name"]) != (
        model["namespace"],
        model["name"],
    ):
        raise DemoError(f"{model_path.name} must update the scenario's NLPModel {model['name']}")
    if dataset["metadata"].get("namespace") != model["namespace"]:
        raise DemoError(f"{dataset_path.name} must be in the namespace of {model_path.name}")
    try:
        cases = parse_dataset(str((dataset.get("data") or {}).get(source.get("key"), "")))
    except DatasetError as exc:
        raise DemoError(f"{dataset_path.name}: {exc}") from exc
    return EvaluationChapter(dataset_path, dataset, chapter, len(cases))


# -- reading the world ---------------------------------------------------------------------------------


def query_p95(
    prometheus_url: str, namespace: str, model: str, revision: str, window_s: float
) -> float | None:
    """TTFT p95 of one revision over the last window, from Prometheus (None: no data or unreachable)."""
    promql = queries.histogram_quantile(0.95, TTFT, namespace, model, revision, window_s)
    url = f"{prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    try:
        with urllib.request.urlopen(url, timeout=3) as resp:
            data = json.load(resp)
    except (OSError, ValueError):
        return None
    result = data.get("data", {}).get("result") or []
    if not result:
        return None
    value = float(result[0]["value"][1])
    return value if math.isfinite(value) else None


class Screen:
    """Event lines scroll; on a TTY the live panel below them is redrawn in place."""

    def __init__(self, out: TextIO, live: bool) -> None:
        self.out, self.live = out, live
        self._panel_lines = 0

    def _clear_panel(self) -> None:
        if self._panel_lines:
            self.out.write(f"\x1b[{self._panel_lines}F\x1b[J")
            self._panel_lines = 0

    def show(self, lines: list[str], panel_lines: list[str], t: float) -> None:
        if self.live:
            self._clear_panel()
        for line in lines:
            print(f"[{int(t) // 60}m{int(t) % 60:02d}s] {line}", file=self.out)
        if self.live:
            for line in panel_lines:
                print(line, file=self.out)
            self._panel_lines = len(panel_lines)
        self.out.flush()

    def done(self) -> None:
        if self.live:
            self._clear_panel()
            self.out.flush()


@dataclass
class Outcome:
    chapter: Chapter
    result: str
    seconds: float
    detail: str = ""


@dataclass
class Story:
    custom: client.CustomObjectsApi
    core: client.CoreV1Api
    chapters: list[Chapter]
    screen: Screen
    out: TextIO
    prometheus_url: str | None = None
    timeout_s: float = 180.0
    slow_what: str = "TTFT +80 %"
    alive: Callable[[], str | None] = lambda: None  # a reason when a component we depend on stopped
    evaluation: EvaluationChapter | None = None  # the fourth chapter (local only: stand-ins answer)
    started: float = field(default_factory=time.monotonic)
    outcomes: list[Outcome] = field(default_factory=list)
    top_weight: dict[str, int] = field(default_factory=dict)  # canary revision -> highest weight seen
    _last: Snapshot | None = None

    @property
    def namespace(self) -> str:
        return str(self.chapters[0].body["metadata"]["namespace"])

    @property
    def name(self) -> str:
        return str(self.chapters[0].body["metadata"]["name"])

    def model(self) -> dict[str, Any]:
        found: dict[str, Any] = self.custom.get_namespaced_custom_object(
            c.GROUP, c.VERSION, self.namespace, c.PLURAL, self.name
        )
        return found

    def snapshot(self, model: dict[str, Any]) -> Snapshot:
        status = model.get("status") or {}
        spec = model.get("spec") or {}
        ttft: dict[str, float] = {}
        if self.prometheus_url:
            interval = ((spec.get("rollout") or {}).get("analysis") or {}).get("interval", "10s")
            window = max(10.0, 2 * float(str(interval).rstrip("s") or 10))
            # The canary just rolled back or promoted too: its last value goes with the event.
            before = self._last.status if self._last is not None else {}
            revisions = {
                status.get("stableRevision"),
                status.get("canaryRevision"),
                before.get("canaryRevision"),
            }
            for revision in revisions - {None}:
                value = query_p95(self.prometheus_url, self.namespace, self.name, str(revision), window)
                if value is not None:
                    ttft[str(revision)] = value
        return Snapshot(time.monotonic() - self.started, status, spec, ttft)

    def apply(self, chapter: Chapter) -> None:
        from nlpmodel_harness.stack import apply_model  # noqa: PLC0415 (no kopf import at startup)

        with contextlib.suppress(ApiException):  # 409: it exists
            self.core.create_namespace({"metadata": {"name": self.namespace}})
        self.screen.show(
            [f"$ kubectl apply -f {_shown(chapter.path)}   # revision {chapter.revision}"],
            [],
            time.monotonic() - self.started,
        )
        apply_model(self.custom, chapter.body)

    def watch(self, what: str, done: Callable[[dict[str, Any]], str | None]) -> str:
        """Poll and show until done(model) returns a result; DemoError on timeout or a stopped component."""
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            if problem := self.alive():
                raise DemoError(problem)
            try:
                model = self.model()
            except ApiException as exc:
                if exc.status == 404:
                    time.sleep(0.5)
                    continue
                raise
            snap = self.snapshot(model)
            self.screen.show(
                events(self._last, snap),
                panel(snap, f"{self.namespace}/{self.name}", datetime.now(UTC)),
                snap.elapsed_s,
            )
            self._last = snap
            if canary := snap.status.get("canaryRevision"):
                weight = int(snap.status.get("canaryWeight") or 0)
                self.top_weight[canary] = max(weight, self.top_weight.get(canary, 0))
            generation = model["metadata"].get("generation")
            if (model.get("status") or {}).get("observedGeneration") == generation and (
                result := done(model)
            ):
                return result
            time.sleep(0.5)
        raise DemoError(f"timed out after {self.timeout_s:.0f}s waiting for {what}")

    def run(self) -> list[Outcome]:
        first, slow, healthy = self.chapters
        total = 3 if self.evaluation is None else 4

        banner(self.out, f"1/{total} the first revision: {first.path.name}")
        t0 = time.monotonic()
        self.apply(first)
        self.watch("the first revision to be Ready", lambda m: _ready_with(m, first.revision))
        self.screen.done()
        self.outcomes.append(Outcome(first, "Ready", time.monotonic() - t0, "first revision: no analysis"))

        banner(self.out, f"2/{total} an update whose canary is slow ({self.slow_what}): {slow.path.name}")
        t0 = time.monotonic()
        self.apply(slow)
        result = self.watch("the slow canary's rollback", lambda m: _rolled_back(m, slow.revision))
        self.screen.done()
        if result == "Promoted":
            raise DemoError(f"the slow canary {slow.revision} was promoted: the analysis did not catch it")
        reason = _condition_text(self.model(), "RolledBack")
        self.outcomes.append(Outcome(slow, "RolledBack", time.monotonic() - t0, reason))

        banner(self.out, f"3/{total} a healthy update: {healthy.path.name}")
        t0 = time.monotonic()
        self.apply(healthy)
        result = self.watch("the healthy canary's promotion", lambda m: _promoted(m, healthy.revision))
        self.screen.done()
        if result != "Promoted":
            raise DemoError(
                f"the healthy canary {healthy.revision} was not promoted: "
                f"{_condition_text(self.model(), 'RolledBack')}"
            )
        weights = [str(step["weight"]) for step in healthy.body["spec"]["rollout"].get("steps") or []]
        through = " -> ".join(f"{w}%" for w in [*weights, "100"])
        self.outcomes.append(
            Outcome(healthy, "Promoted", time.monotonic() - t0, f"steps {through}, checks passed")
        )
        if self.evaluation is not None:
            self.run_evaluation(self.evaluation)
        return self.outcomes

    def run_evaluation(self, evaluation: EvaluationChapter) -> None:
        """A canary as fast as the stable but answering worse: the gate rolls it back at 0 %."""
        worse = evaluation.chapter
        banner(
            self.out, f"4/4 an update that is fast but answers worse, gated by evaluation: {worse.path.name}"
        )
        t0 = time.monotonic()
        self.apply_dataset(evaluation.dataset_path, evaluation.dataset)
        self.apply(worse)
        result = self.watch("the evaluation's verdict", lambda m: _rolled_back(m, worse.revision))
        self.screen.done()
        reason = _condition_text(self.model(), "RolledBack")
        if result == "Promoted" or not reason.startswith("EvaluationFailed"):
            raise DemoError(
                f"the canary {worse.revision} that answers worse was not stopped by its evaluation: {reason}"
            )
        weight = self.top_weight.get(worse.revision, 0)
        if weight:
            raise DemoError(f"the canary {worse.revision} reached {weight}% before its evaluation failed")
        self.screen.show(
            [f"canary {worse.revision} weight never left 0%: no request of a user reached it"],
            [],
            time.monotonic() - self.started,
        )
        self.outcomes.append(
            Outcome(worse, "RolledBack", time.monotonic() - t0, f"{reason} (weight stayed 0%)")
        )

    def apply_dataset(self, path: Path, body: dict[str, Any]) -> None:
        """The dataset's ConfigMap, created or replaced (what `kubectl apply` does)."""
        meta = body["metadata"]
        self.screen.show(
            [f"$ kubectl apply -f {_shown(path)}   # ConfigMap {meta['name']}: the dataset"],
            [],
            time.monotonic() - self.started,
        )
        try:
            self.core.create_namespaced_config_map(meta["namespace"], body)
        except ApiException as exc:
            if exc.status != 409:
                raise
            self.core.replace_namespaced_config_map(meta["name"], meta["namespace"], body)


def _shown(path: Path) -> Path:
    return path.relative_to(REPO) if path.is_relative_to(REPO) else path


def _status(model: dict[str, Any]) -> dict[str, Any]:
    st: dict[str, Any] = model.get("status") or {}
    return st


def _ready_with(model: dict[str, Any], revision: str) -> str | None:
    st = _status(model)
    return "Ready" if st.get("phase") == "Ready" and st.get("stableRevision") == revision else None


def _rolled_back(model: dict[str, Any], revision: str) -> str | None:
    st = _status(model)
    if st.get("phase") == "RolledBack" and st.get("failedRevision") == revision:
        return "RolledBack"
    if st.get("stableRevision") == revision:
        return "Promoted"
    return None


def _promoted(model: dict[str, Any], revision: str) -> str | None:
    st = _status(model)
    if st.get("phase") == "Ready" and st.get("stableRevision") == revision and not st.get("canaryRevision"):
        return "Promoted"
    if st.get("failedRevision") == revision:
        return "RolledBack"
    return None


def _condition_text(model: dict[str, Any], kind: str) -> str:
    found: dict[str, Any] = next(
        (x for x in _status(model).get("conditions") or [] if x.get("type") == kind), {}
    )
    return f"{found.get('reason', '')}: {found.get('message', '')}" if found else "(no condition)"


def print_summary(out: TextIO, outcomes: list[Outcome], total_s: float) -> None:
    banner(out, "summary")
    rows = [("#", "MANIFEST", "REVISION", "OUTCOME", "AFTER", "WHY")]
    for i, o in enumerate(outcomes, 1):
        rows.append(
            (str(i), o.chapter.path.name, o.chapter.revision, o.result, f"{o.seconds:.0f}s", o.detail)
        )
    for line in summary_table(rows):
        print(line, file=out)
    minutes, secs = divmod(int(total_s), 60)
    print(f"\nthe demo took {minutes}m{secs:02d}s", file=out, flush=True)


# -- local: everything started here --------------------------------------------------------------------


def offline_part(out: TextIO, scenario: Path) -> None:
    banner(
        out, f"nlpctl validate {scenario.relative_to(REPO) if scenario.is_relative_to(REPO) else scenario}"
    )
    out.flush()
    manifests = [*sorted(scenario.glob("*.yaml")), *sorted((scenario / EVALUATION).glob("*.yaml"))]
    code = nlpctl(["validate", *(str(p) for p in manifests)])
    if code != 0:
        raise DemoError("the scenario's manifests are not valid")
    if evaluation := load_evaluation(scenario, fast=False):  # its dataset parses, its model is ours
        print(
            f"{evaluation.dataset_path.name}: {evaluation.cases} evaluation cases: valid",
            file=out,
            flush=True,
        )


def run_local(args: argparse.Namespace, out: TextIO, live: bool) -> int:
    from nlpmodel_harness.revision_servers import HEALTHY  # noqa: PLC0415 (dev-only, heavy)
    from nlpmodel_harness.service_proxy import ServiceProxy  # noqa: PLC0415
    from nlpmodel_harness.stack import LocalStack  # noqa: PLC0415

    chapters = load_scenario(args.scenario or SCENARIO, fast=args.fast)
    evaluation = load_evaluation(args.scenario or SCENARIO, fast=args.fast)
    started = time.monotonic()
    banner(out, "local stack: etcd + kube-apiserver + kube-controller-manager, Prometheus, the operator")
    print(
        "(the first run builds kube-apiserver v1.20 from Debian's sources: about 6 minutes)",
        file=out,
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="nlpmodel-demo-") as tmp:
        work = Path(tmp)
        # No cluster DNS here: the evaluation gate reaches each revision's Service through this proxy.
        proxy = ServiceProxy()
        stack = LocalStack(work, operator_env={"NLPMODEL_EVALUATION_URL_TEMPLATE": proxy.template})
        try:
            with proxy, stack:
                plane = stack.plane
                print(f"API server {plane.git_version} at {plane.api_url}", file=out)
                print(f"Prometheus {stack.prometheus.url}", file=out)
                print(
                    "operator: python -m nlpmodel_operator as ServiceAccount nlpmodel-system/nlpmodel-operator, "
                    "bound to charts/nlpmodel-operator/files/clusterrole-rules.yaml",
                    file=out,
                    flush=True,
                )
                first = chapters[0].body["metadata"]
                stack.create_namespace(first["namespace"])
                with stack.namespace_players(first["namespace"], first["name"], work) as servers:
                    # The second revision's model servers answer slower: TTFT +80 %.
                    servers.profiles[chapters[1].revision] = {
                        "ttft_median": HEALTHY["ttft_median"] * SLOWDOWN
                    }
                    # The fourth's are as fast as the stable's but answer WRONG_RATE of the dataset wrongly.
                    if evaluation is not None:
                        servers.profiles[evaluation.chapter.revision] = {"wrong_rate": WRONG_RATE}
                    proxy.servers = servers
                    print(
                        "stand-ins: KServe and the kubelet mark objects Ready; one model server per revision "
                        f"(ttft median {HEALTHY['ttft_median']}s, {HEALTHY['synthetic_rps']:.0f} req/s; "
                        f"revision {chapters[1].revision} x{SLOWDOWN})"
                        + (
                            f"; revision {evaluation.chapter.revision} as fast, but {WRONG_RATE:.0%} of the "
                            "dataset's prompts answered wrongly"
                            if evaluation is not None
                            else ""
                        ),
                        file=out,
                        flush=True,
                    )
                    operator = stack.operator
                    assert operator is not None

                    def alive() -> str | None:
                        return None if operator.alive() else f"the operator exited:\n{operator.log_tail()}"

                    story = Story(
                        client.CustomObjectsApi(stack.admin),
                        client.CoreV1Api(stack.admin),
                        chapters,
                        Screen(out, live),
                        out,
                        prometheus_url=stack.prometheus.url,
                        timeout_s=args.timeout,
                        alive=alive,
                        evaluation=evaluation,
                    )
                    outcomes = story.run()
        except DemoError as exc:
            log = work / "operator.log"
            if log.exists():
                print("\n".join(log.read_text(errors="replace").splitlines()[-40:]), file=sys.stderr)
            print(f"demo failed: {exc}", file=sys.stderr)
            return 1
        finally:
            pids = stack.pids()
            count = sum(len(v) for v in pids.values())
            print(
                f"\nstopped everything it started ({count} processes): {json.dumps(pids)}",
                file=out,
                flush=True,
            )
    print_summary(out, outcomes, time.monotonic() - started)
    return 0


# -- real pods on this machine ---------------------------------------------------------------------------


def run_node(args: argparse.Namespace, out: TextIO, live: bool) -> int:
    from nlpmodel_harness.nodestack import RELEASE, RELEASE_NAMESPACE, NodeStack, ServiceLoad  # noqa: PLC0415

    chapters = load_scenario(args.scenario or NODE_SCENARIO, fast=args.fast)
    first = chapters[0].body
    namespace, name = first["metadata"]["namespace"], first["metadata"]["name"]
    started = time.monotonic()
    banner(out, "real pods: control plane + kubelet node, our images and chart, tiny models, Prometheus")
    print(
        "(the first run on a machine builds the node binaries, the images and the models: about 12 minutes)",
        file=out,
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="nlpmodel-demo-node-") as tmp:
        try:
            with NodeStack(Path(tmp), [namespace]) as stack:
                print(f"API server {stack.plane.git_version} at {stack.plane.api_url}", file=out)
                print(f"Prometheus {stack.prometheus.url} (the chart's alert rules loaded)", file=out)
                print(
                    f"operator: helm release {RELEASE} in {RELEASE_NAMESPACE}, a pod from our image", file=out
                )
                served = first["spec"]["model"].get("servedName") or name
                with ServiceLoad(stack.admin, namespace, name, served_name=served) as traffic:
                    print(
                        f"load: 3 clients sending completions to Service {namespace}/{name}",
                        file=out,
                        flush=True,
                    )
                    story = Story(
                        client.CustomObjectsApi(stack.admin),
                        client.CoreV1Api(stack.admin),
                        chapters,
                        Screen(out, live),
                        out,
                        prometheus_url=stack.prometheus.url,
                        timeout_s=args.timeout,
                        slow_what="a larger model",
                    )
                    outcomes = story.run()
                print(
                    f"requests through the Service: {traffic.ok} answered, {traffic.failed} refused or cut off "
                    "(no ready pod yet, or a pod going away)",
                    file=out,
                )
        except DemoError as exc:
            print(f"demo failed: {exc}", file=sys.stderr)
            return 1
    print_summary(out, outcomes, time.monotonic() - started)
    return 0


# -- a real cluster --------------------------------------------------------------------------------------


def run_cluster(args: argparse.Namespace, out: TextIO, live: bool) -> int:
    kubeconfig = args.kubeconfig or os.environ.get("KUBECONFIG")
    if not kubeconfig:
        print("demo --cluster: set KUBECONFIG (or --kubeconfig) to the cluster to use", file=sys.stderr)
        return 2
    chapters = load_scenario(args.scenario or SCENARIO, fast=args.fast, namespace=args.namespace)
    started = time.monotonic()
    if args.install:
        from nlpmodel_harness.k8stools import ensure_tools  # noqa: PLC0415 (dev-only)

        helm = ensure_tools().helm
        cmd = [
            str(helm), "upgrade", "--install", "nlpmodel-operator", str(CHART),
            "--namespace", "nlpmodel-system", "--create-namespace", "--wait", "--timeout", "5m",
            "--kubeconfig", kubeconfig,
            "--set", f"operator.prometheusUrl={args.operator_prometheus_url}",
        ]  # fmt: skip
        banner(out, "helm upgrade --install nlpmodel-operator charts/nlpmodel-operator -n nlpmodel-system")
        subprocess.run(cmd, check=True, stdout=out, stderr=sys.stderr)
    api = k8s_config.new_client_from_config(config_file=kubeconfig)
    story = Story(
        client.CustomObjectsApi(api),
        client.CoreV1Api(api),
        chapters,
        Screen(out, live),
        out,
        prometheus_url=args.prometheus_url,
        timeout_s=args.timeout,
    )
    try:
        outcomes = story.run()
    except DemoError as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        return 1
    finally:
        if not args.keep:
            with contextlib.suppress(ApiException):
                story.custom.delete_namespaced_custom_object(
                    c.GROUP, c.VERSION, story.namespace, c.PLURAL, story.name
                )
        api.close()
    print_summary(out, outcomes, time.monotonic() - started)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nlpctl demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--offline", action="store_true", help="only validate the scenario (no cluster)")
    parser.add_argument(
        "--fast", action="store_true", help=f"analysis every {FAST_INTERVAL}, pauses {FAST_PAUSE}"
    )
    parser.add_argument("--plain", action="store_true", help="one line per event (the default without a TTY)")
    parser.add_argument(
        "--scenario",
        type=Path,
        default=None,
        help="three manifests (default manifests/demo, with --node manifests/demo-node)",
    )
    parser.add_argument(
        "--node",
        action="store_true",
        help="real pods on this machine: kubelet node, our images and chart (root, Linux; ~12 min first time)",
    )
    parser.add_argument("--timeout", type=float, default=240.0, help="seconds each chapter may take")
    cluster = parser.add_argument_group("a real cluster (KServe installed): see docs/demo.md")
    cluster.add_argument(
        "--cluster", action="store_true", help="use $KUBECONFIG's cluster; start nothing here"
    )
    cluster.add_argument("--kubeconfig", help="instead of $KUBECONFIG")
    cluster.add_argument("--namespace", help="namespace of the demo model (default: the manifests')")
    cluster.add_argument(
        "--no-install", dest="install", action="store_false", help="the chart is installed already"
    )
    cluster.add_argument(
        "--operator-prometheus-url",
        default="",
        help="Prometheus URL the operator uses in the cluster (the chart's operator.prometheusUrl)",
    )
    cluster.add_argument(
        "--prometheus-url", help="the same Prometheus as this machine reaches it (TTFT view)"
    )
    cluster.add_argument("--keep", action="store_true", help="leave the demo model in the cluster")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = sys.stdout
    live = out.isatty() and not args.plain
    try:
        offline_part(out, args.scenario or (NODE_SCENARIO if args.node else SCENARIO))
        if args.offline:
            return 0
        if args.node:
            return run_node(args, out, live)
        if args.cluster:
            return run_cluster(args, out, live)
        return run_local(args, out, live)
    except DemoError as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
