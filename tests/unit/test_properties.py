"""Property-based tests (hypothesis) of validation, planning, rendering and the rollout state machine.

- Any spec, however malformed: `decide` answers with validation problems (SpecValid=False, nothing to
  apply), never with an exception.
- Any valid spec: it is planned and rendered; every child name is a DNS label of at most 63.
- The state machine, driven through the whole reconcile (`decide`) against a simulated cluster by random
  sequences of events (template changes, revisions turning ready or not, time passing, analysis checks
  passing, failing or missing, manual commands, and the operator crashing between its writes as the
  runner orders them), never:
  - routes weight to a canary that is not Ready (an InferenceService whose Ready condition is True),
  - has route weights that do not sum to 100, or a canary weight that is not one of the plan's,
  - deletes a revision's workload while the route still sends it traffic.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from decisions import applies
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from nlpmodel_operator.api.status import to_json
from nlpmodel_operator.core.analysis.checks import CheckData
from nlpmodel_operator.core.analysis.judge import Histogram, RevisionSample
from nlpmodel_operator.core.observe import other_children, revision_states
from nlpmodel_operator.core.reconcile import Observation, check_request_for, decide
from nlpmodel_operator.core.records import Apply, ClearCommand, Delete, Patch

T0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
BASE: dict[str, Any] = {
    "model": {"uri": "hf://meta-llama/Llama-3.1-8B-Instruct"},
    "quantization": {"method": "awq"},
    "resources": {"gpu": {"count": 1, "product": "nvidia-l4"}},
}


def observe_new(spec: Any, name: str = "chat") -> Observation:
    return Observation(name, "ns", 1, spec, {}, {}, "2026-11-26T10:00:00Z")


# -- any spec: problems, never an exception ---------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
FIELDS = [
    ("task",),
    ("model", "uri"),
    ("model", "architecture"),
    ("runtime", "engine"),
    ("runtime", "version"),
    ("runtime", "maxModelLen"),
    ("runtime", "args"),
    ("quantization", "method"),
    ("quantization", "kvCacheDtype"),
    ("resources", "gpu", "count"),
    ("resources", "gpu", "product"),
    ("resources", "cpu"),
    ("serving", "platform"),
    ("serving", "router"),
    ("serving", "hostnames"),
    ("scaling", "minReplicas"),
    ("scaling", "maxReplicas"),
    ("scaling", "replicas"),
    ("rollout", "steps"),
    ("rollout", "strategy"),
    ("rollout", "gpuSurge"),
    ("rollout", "analysis"),
    ("rollout", "slo"),
    ("rollout", "analysis", "metrics"),
]


def mutated(spec: dict[str, Any], changes: list[tuple[tuple[str, ...], Any]]) -> dict[str, Any]:
    out = copy.deepcopy(spec)
    for path, value in changes:
        node: Any = out
        for key in path[:-1]:
            if not isinstance(node, dict):
                break
            node = node.setdefault(key, {})
        if isinstance(node, dict):
            node[path[-1]] = value
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    changes=st.lists(st.tuples(st.sampled_from(FIELDS), json_values), max_size=4),
    name=st.text(min_size=1, max_size=70) | st.just("chat"),
)
def test_any_spec_gets_problems_never_an_exception(
    changes: list[tuple[tuple[str, ...], Any]], name: str
) -> None:
    decision = decide(observe_new(mutated(BASE, changes), name))
    conditions = {x["type"]: x for x in to_json(decision.status)["conditions"]}
    if conditions["SpecValid"]["status"] == "False":
        assert decision.actions == []  # nothing is applied for an invalid spec
        assert conditions["SpecValid"]["message"]
        assert to_json(decision.status)["phase"] == "Failed"


@settings(max_examples=100, deadline=None)
@given(raw=json_values)
def test_any_json_as_a_spec_gets_problems_never_an_exception(raw: Any) -> None:
    decision = decide(observe_new(raw))
    spec_valid = next(x for x in to_json(decision.status)["conditions"] if x["type"] == "SpecValid")
    assert spec_valid["status"] == "False" or isinstance(raw, dict)


# -- any valid spec: planned and rendered ---------------------------------------------------------------

valid_specs = st.fixed_dictionaries(
    {
        "task": st.sampled_from(["generate", "embed", "classify", "rerank"]),
        "model": st.fixed_dictionaries(
            {
                "uri": st.sampled_from(
                    [
                        "hf://meta-llama/Llama-3.1-8B-Instruct",
                        "hf://Qwen/Qwen2.5-7B-Instruct",
                        "hf://BAAI/bge-base-en-v1.5",
                    ]
                )
            }
        ),
        "quantization": st.fixed_dictionaries({"method": st.sampled_from(["none", "awq", "gptq", "fp8"])}),
        "runtime": st.fixed_dictionaries({"maxModelLen": st.sampled_from([512, 2048, 8192, 32768])}),
        "resources": st.fixed_dictionaries(
            {
                "gpu": st.fixed_dictionaries(
                    {
                        "count": st.integers(1, 8),
                        "product": st.sampled_from(["nvidia-l4", "nvidia-a100-80gb", "nvidia-h100-80gb"]),
                    }
                )
            }
        ),
        "serving": st.sampled_from(
            [
                {"platform": "kserve", "router": "gateway-api"},
                {"platform": "raw", "router": "replica-ratio"},
                {"platform": "kserve", "router": "kserve-canary"},
            ]
        ),
        "scaling": st.integers(1, 6).map(lambda n: {"minReplicas": n, "maxReplicas": n + 2}),
    }
)


@settings(max_examples=150, deadline=None)
@given(spec=valid_specs, name=st.from_regex(r"[a-z][a-z0-9-]{0,20}[a-z0-9]", fullmatch=True))
def test_any_valid_spec_is_planned_and_rendered_with_valid_names(spec: dict[str, Any], name: str) -> None:
    decision = decide(observe_new(spec, name))
    conditions = {x["type"]: x for x in to_json(decision.status)["conditions"]}
    if conditions["SpecValid"]["status"] == "False":
        return  # e.g. does not fit its GPUs: a validation result, the point above
    assert conditions["GPUFit"]["status"] in ("True", "Unknown")
    assert applies(decision)
    for obj in applies(decision):
        assert DNS_LABEL.match(obj["metadata"]["name"]), obj["metadata"]["name"]
        assert len(obj["metadata"]["name"]) <= 63


# -- the state machine against a simulated cluster ------------------------------------------------------

BOUNDS = (0.1, 0.25, 0.5, 0.75, 1.0, 2.5, float("inf"))


def sample(shares: tuple[float, ...], n: float) -> RevisionSample:
    cumulative, running = [], 0.0
    for share in shares:
        running += share * n
        cumulative.append(running)
    return RevisionSample(
        ttft=Histogram(BOUNDS, tuple(cumulative)), itl=None, e2e=None, requests=n, errors=0.0
    )


FAST = (0.2, 0.5, 0.25, 0.05, 0.0, 0.0, 0.0)
SLOW = (0.0, 0.0, 0.1, 0.2, 0.3, 0.3, 0.1)
CHECKS = {
    "pass": CheckData(sample(FAST, 400), sample(FAST, 4000)),
    "fail": CheckData(sample(SLOW, 400), sample(FAST, 4000)),
    "quiet": CheckData(sample(FAST, 10), sample(FAST, 4000)),
    "down": CheckData(None, None, "metrics query failed: connection refused"),
}
PLAN = (10, 50)


def template(i: int, analysis: bool, surge: bool) -> dict[str, Any]:
    rollout: dict[str, Any] = {
        "steps": [{"weight": w, "pause": "60s"} for w in PLAN],
        "progressDeadline": "10m",
        "gpuSurge": surge,
    }
    if analysis:
        rollout["analysis"] = {
            "interval": "30s",
            "minRequests": 50,
            "failureThreshold": 2,
            "inconclusiveDeadline": "5m",
        }
        rollout["slo"] = {"ttftP95": "800ms"}
    return {
        **BASE,
        "runtime": {"maxModelLen": (8192, 4096, 2048)[i]},
        "scaling": {"minReplicas": 2, "maxReplicas": 2},
        "rollout": rollout,
    }


def revision_of(obj: dict[str, Any]) -> str:
    return str(obj["metadata"].get("labels", {}).get("serving.nlpmodel.dev/revision", ""))


@dataclass
class Cluster:
    """The API server and KServe, simulated: objects as applied, InferenceServices turning Ready as
    their revision's health says (KServe acting on a new generation at the next tick)."""

    healthy: dict[int, bool]  # template index → whether its pods become ready
    objects: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    status: dict[str, Any] = field(default_factory=dict)
    command: str | None = None
    problems: list[str] = field(default_factory=list)
    revisions: dict[str, int] = field(default_factory=dict)  # revision → template index

    def tick(self) -> None:
        for (kind, _), obj in self.objects.items():
            if kind == "InferenceService":
                ready = self.healthy.get(self.revisions.get(revision_of(obj), -1), False)
                obj["status"] = {
                    "observedGeneration": obj["metadata"]["generation"],
                    "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
                }

    def route(self) -> list[tuple[str, int]]:
        obj = self.objects.get(("HTTPRoute", "chat"))
        refs = obj["spec"]["rules"][0]["backendRefs"] if obj else []
        return [(r["name"].removeprefix("chat-").removesuffix("-predictor"), r["weight"]) for r in refs]

    def ready(self, revision: str) -> bool:
        obj = self.objects.get(("InferenceService", f"chat-{revision}"))
        conditions = (obj or {}).get("status", {}).get("conditions") or []
        return any(x["status"] == "True" for x in conditions)

    def apply(self, obj: dict[str, Any]) -> None:
        key = (obj["kind"], obj["metadata"]["name"])
        stored = copy.deepcopy(obj)
        old = self.objects.get(key)
        generation = 1 if old is None else old["metadata"]["generation"] + (old["spec"] != obj["spec"])
        stored["metadata"]["generation"] = generation
        stored["status"] = old.get("status", {}) if old else {}
        self.objects[key] = stored
        if obj["kind"] == "HTTPRoute":
            self.check_route()

    def check_route(self) -> None:
        route = self.route()
        if sum(w for _, w in route) != 100:
            self.problems.append(f"weights {route} do not sum to 100")
        if len(route) == 2:
            canary, weight = route[1]
            if weight not in (0, *PLAN):
                self.problems.append(f"canary weight {weight} is not in the plan {PLAN}")
            if weight > 0 and not self.ready(canary):
                self.problems.append(f"{weight}% to canary {canary}, which is not Ready")

    def delete(self, kind: str, name: str) -> None:
        obj = self.objects.pop((kind, name), None)
        if obj is not None and kind == "InferenceService":
            weights = dict(self.route())
            if weights.get(revision_of(obj), 0) > 0:
                self.problems.append(f"{name} deleted while the route gives it {weights}")

    def children(self) -> list[dict[str, Any]]:
        return [copy.deepcopy(o) for o in self.objects.values()]


def reconcile(
    cluster: Cluster, spec: dict[str, Any], now: datetime, check: str, crash_after: int | None
) -> None:
    """One reconcile, ordered as controller/runner.py orders it; `crash_after`: the operator dies after
    that many actions (and before any later status write)."""
    children = cluster.children()
    obs = Observation(
        "chat",
        "ns",
        1,
        spec,
        copy.deepcopy(cluster.status),
        revision_states(children),
        now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        others=other_children(children),
        command=cluster.command,
    )
    if check_request_for(obs) is not None:
        obs = Observation(**{**obs.__dict__, "check": CHECKS[check]})
    decision = decide(obs)
    journaled = obs.command is not None or obs.check is not None
    if journaled:
        cluster.status = copy.deepcopy(decision.status)  # written before anything acts on it
    for n, action in enumerate(decision.actions):
        if crash_after is not None and n >= crash_after:
            return
        match action:
            case Apply(obj=obj):
                cluster.apply(obj)
            case Delete(ref=ref):
                cluster.delete(ref.kind, ref.name)
            case Patch():
                pass  # resizing the stable: replicas are not simulated
            case ClearCommand(command=command):
                if cluster.command == command:
                    cluster.command = None
    if crash_after is None:
        cluster.status = copy.deepcopy(decision.status)


events = st.lists(
    st.one_of(
        st.tuples(st.just("tick"), st.integers(1, 400)),
        st.tuples(st.just("template"), st.integers(0, 2)),
        st.tuples(st.just("health"), st.tuples(st.integers(0, 2), st.booleans())),
        st.tuples(st.just("health"), st.tuples(st.integers(1, 2), st.just(False))),
        st.tuples(st.just("command"), st.sampled_from(["promote", "abort", "pause", "resume", "retry"])),
        st.tuples(st.just("check"), st.sampled_from(sorted(CHECKS))),
        st.tuples(st.just("crash"), st.integers(0, 6)),
    ),
    min_size=1,
    max_size=20,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=events, analysis=st.booleans(), surge=st.booleans())
# A canary that stops being ready at a step (its pods crash): it must lose its traffic.
@example(
    history=[("template", 1), ("tick", 5), ("tick", 5), ("health", (1, False)), ("tick", 5)],
    analysis=False,
    surge=True,
)
# The same while promotion scales it up.
@example(
    history=[("template", 1), *[("tick", 61)] * 3, ("health", (1, False)), ("tick", 5)],
    analysis=False,
    surge=True,
)
def test_the_state_machine_never_routes_to_an_unready_canary_nor_deletes_what_serves(
    history: list[tuple[str, Any]], analysis: bool, surge: bool
) -> None:
    cluster = Cluster(healthy={0: True, 1: True, 2: True})
    templates = [template(i, analysis, surge) for i in range(3)]
    for i, t in enumerate(templates):
        rev = to_json(decide(observe_new(t)).status)["stableRevision"]
        cluster.revisions[rev] = i
    current, now, check = 0, T0, "down"
    for kind, arg in [("tick", 1), *history, ("tick", 1)]:
        crash: int | None = None
        match kind:
            case "tick":
                now += timedelta(seconds=arg)
            case "template":
                current = arg
            case "health":
                cluster.healthy[arg[0]] = arg[1]
            case "command":
                cluster.command = arg
            case "check":
                check = arg
            case "crash":
                crash = arg
        cluster.tick()
        reconcile(cluster, templates[current], now, check, crash)
        assert cluster.problems == [], f"after {kind} {arg}: {cluster.problems}"
    # And once the world is quiet (and a paused canary resumed) it converges: the template is served
    # alone, or rolled back.
    cluster.healthy = {0: True, 1: True, 2: True}
    cluster.command = "resume" if to_json(cluster.status).get("paused") else None
    for _ in range(12):
        now += timedelta(seconds=90)
        cluster.tick()
        reconcile(cluster, templates[current], now, "pass", None)
    assert cluster.problems == []
    assert to_json(cluster.status)["phase"] in ("Ready", "RolledBack")
