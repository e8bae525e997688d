"""Everything the API server stored for one model during a test, in the order it stored it, and the
rollout invariants checked on that history (not on samples of it).

A `Timeline` watches the model, its HTTPRoute, its InferenceServices and InferencePools in etcd from background threads,
so every version that was stored is seen, even one that lived for a millisecond, and one etcd revision
orders every write of every kind as it happened.

Invariants (`violations`), each a precise meaning of the reliability issue's words:

- **no unplanned traffic change**: every HTTPRoute version gives 100 % to one revision, or splits
  `100-w / w` with `w` one of the plan's weights (0 included: a canary that is not ready yet); a
  revision's weight only moves forward through the plan (0 → steps → 100), except that it may drop to
  0 (rollback, abort) and then never rises again;
- **never weight to a revision that is not Ready**: a backend with weight > 0 has an InferenceService
  whose Ready condition is True at that moment, unless no revision of the route is ready at all (the
  first revision of a model, before anything serves);
- **never weight to a revision whose pool a Gateway does not accept** (router inference-pool): a backend
  with weight > 0 has no InferencePool on which a Gateway reports `Accepted` or `ResolvedRefs` other
  than True at that moment;
- **never delete before traffic left**: an InferenceService or InferencePool is deleted only while the
  route gives its revision no weight;
- **no duplicate children**: at most one InferenceService per revision at any time, each revision's
  created once (the same uid throughout);
- **no lost rollout state**: while a canary runs, `currentStep`, `canaryStartedAt`,
  `analysis.lastCheckAt` never go back, `history` only grows (its older entries kept as they were),
  `stableRevision` changes only to the canary being promoted, and a `failedRevision` stays set.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from nlpmodel_operator.api import constants as c

_REVISION = re.compile(r"-([0-9a-f]{8})(-predictor)?$")


@dataclass(frozen=True)
class Stored:
    rv: int
    kind: str  # NLPModel | HTTPRoute | InferenceService | LLMInferenceService
    type: str  # ADDED | MODIFIED | DELETED
    obj: dict[str, Any]
    seen_at: float  # time.monotonic() when the harness received it


def revision_of_backend(name: str) -> str:
    match = _REVISION.search(name)
    return match[1] if match else name


def route_weights(route: dict[str, Any]) -> dict[str, int]:
    rules = (route.get("spec") or {}).get("rules") or [{}]
    return {
        revision_of_backend(r["name"]): int(r.get("weight", 1)) for r in rules[0].get("backendRefs") or []
    }


def is_ready(isvc: dict[str, Any]) -> bool:
    conditions = (isvc.get("status") or {}).get("conditions") or []
    return any(x.get("type") == "Ready" and x.get("status") == "True" for x in conditions)


def revision_label(obj: dict[str, Any]) -> str:
    return str(((obj.get("metadata") or {}).get("labels") or {}).get(c.LABEL_REVISION, ""))


_KINDS = {
    "NLPModel": f"{c.GROUP}/{c.PLURAL}",
    "HTTPRoute": "gateway.networking.k8s.io/httproutes",
    "InferenceService": "serving.kserve.io/inferenceservices",
    "LLMInferenceService": "serving.kserve.io/llminferenceservices",
    "InferencePool": "inference.networking.k8s.io/inferencepools",
}
STOP = "serving.kserve.io/stop"


def pool_refused(pool: dict[str, Any]) -> bool:
    """Whether a Gateway reports on the pool that it does not (yet) route to it."""
    for parent in (pool.get("status") or {}).get("parents") or []:
        if (parent.get("parentRef") or {}).get("kind", "Gateway") != "Gateway":
            continue
        conditions = {x.get("type"): x.get("status") for x in parent.get("conditions") or []}
        if conditions.get("Accepted") != "True" or conditions.get("ResolvedRefs") != "True":
            return True
    return False


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _prefix_end(prefix: str) -> str:
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


@dataclass
class Timeline:
    """Reads the history from etcd itself (its JSON gateway's watch, with the previous value of each
    deletion): custom resources are stored there as JSON, and etcd keeps running when the API server is
    restarted, so the history has no gap whatever happens to the API server."""

    etcd_url: str
    namespace: str
    model: str = "chat"
    events: list[Stored] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(
                target=self._follow, args=(kind, f"/registry/{path}/{self.namespace}/"), daemon=True
            )
            for kind, path in _KINDS.items()
        ]
        self._started = threading.Barrier(len(self._threads) + 1)
        self.broken = ""  # why a watch ended early (then the history is incomplete)

    def __enter__(self) -> Timeline:
        for thread in self._threads:
            thread.start()
        self._started.wait(30)
        return self

    def __exit__(self, *_: object) -> None:
        # The streams stay open until their next event or etcd's end; what they record is ignored.
        self._stop.set()

    def _record(self, rv: int, kind: str, type_: str, obj: dict[str, Any]) -> None:
        obj.setdefault("metadata", {})["resourceVersion"] = str(rv)
        with self._lock:
            self.events.append(Stored(rv, kind, type_, obj, time.monotonic()))

    def _post(self, path: str, body: dict[str, Any], timeout_s: float) -> Any:
        request = urllib.request.Request(
            self.etcd_url + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )
        return urllib.request.urlopen(request, timeout=timeout_s)

    def _follow(self, kind: str, prefix: str) -> None:
        key, end = _b64(prefix), _b64(_prefix_end(prefix))
        with self._post("/v3/kv/range", {"key": key, "range_end": end}, 10) as resp:
            listed = json.loads(resp.read())
        for kv in listed.get("kvs") or []:
            self._record(int(kv["mod_revision"]), kind, "SYNC", json.loads(base64.b64decode(kv["value"])))
        start = int(listed["header"]["revision"]) + 1
        watch = {"create_request": {"key": key, "range_end": end, "start_revision": start, "prev_kv": True}}
        try:
            with self._post("/v3/watch", watch, 24 * 3600) as stream:
                self._started.wait(30)
                buffer = b""
                while not self._stop.is_set():
                    chunk = stream.read1(65536)
                    if not chunk:
                        break
                    buffer += chunk
                    while b"\n" in buffer:
                        line, buffer = buffer.split(b"\n", 1)
                        if line.strip():
                            self._take(kind, json.loads(line))
        except Exception as exc:  # etcd stopped at the end of the session: the history is complete
            if not self._stop.is_set():
                self.broken = f"{kind}: {exc!r}"

    def _take(self, kind: str, message: dict[str, Any]) -> None:
        for event in (message.get("result") or {}).get("events") or []:
            kv = event["kv"]
            rv = int(kv["mod_revision"])
            if event.get("type") == "DELETE":
                previous = (event.get("prev_kv") or {}).get("value")
                obj = json.loads(base64.b64decode(previous)) if previous else {"metadata": {}}
                self._record(rv, kind, "DELETED", obj)
            else:
                type_ = "ADDED" if int(kv.get("version", 0)) == 1 else "MODIFIED"
                self._record(rv, kind, type_, json.loads(base64.b64decode(kv["value"])))

    # -- views ------------------------------------------------------------------------------------------

    def ordered(self) -> list[Stored]:
        with self._lock:
            unique = {(e.kind, e.rv, e.type): e for e in self.events}
        return sorted(unique.values(), key=lambda e: (e.rv, e.type != "DELETED"))

    def statuses(self) -> Iterator[tuple[Stored, dict[str, Any]]]:
        for e in self.ordered():
            if e.kind == "NLPModel" and e.obj["metadata"]["name"] == self.model and e.type != "DELETED":
                yield e, e.obj.get("status") or {}

    def route_history(self) -> list[dict[str, int]]:
        """The distinct traffic splits, in order."""
        out: list[dict[str, int]] = []
        for e in self.ordered():
            if e.kind == "HTTPRoute" and e.type != "DELETED":
                weights = route_weights(e.obj)
                if not out or out[-1] != weights:
                    out.append(weights)
        return out

    def isvc_creations(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for e in self.ordered():
            if e.kind == "InferenceService" and e.type == "ADDED":
                counts[revision_label(e.obj)] = counts.get(revision_label(e.obj), 0) + 1
        return counts

    def describe(self) -> str:
        """For a failing test: the splits."""
        return f"route history {self.route_history()} {self.broken}"

    def wait_quiet(self, seconds: float = 1.0) -> None:
        """Let the watches catch up with what was just written."""
        time.sleep(seconds)

    # -- invariants -------------------------------------------------------------------------------------

    def violations(self, plan: list[int], *, check_creations: bool = True) -> list[str]:
        found: list[str] = [f"the history is incomplete: {self.broken}"] if self.broken else []
        allowed = {0, *plan}
        order = [0, *sorted(plan), 100]
        isvcs: dict[str, dict[str, Any]] = {}  # name → current object
        refused: set[str] = set()  # revisions whose pool a Gateway does not accept now
        route: dict[str, int] = {}
        first_seen: dict[str, int] = {}  # revision → rv of the first route naming it
        canary_weight: dict[str, int] = {}  # the weight each revision had as a canary
        dropped: set[str] = set()  # canaries whose weight fell to 0 after having some
        for e in self.ordered():
            if e.kind == "InferencePool":
                rev = revision_label(e.obj)
                refused.discard(rev)
                if e.type == "DELETED":
                    if route.get(rev, 0) > 0:
                        found.append(
                            f"rv {e.rv}: InferencePool {e.obj['metadata'].get('name')} deleted while the "
                            f"route gives it {route}"
                        )
                elif pool_refused(e.obj):
                    refused.add(rev)
            elif e.kind == "InferenceService":
                name = e.obj["metadata"]["name"]
                rev = revision_label(e.obj)
                if e.type == "DELETED":
                    isvcs.pop(name, None)
                    if route.get(rev, 0) > 0:
                        found.append(
                            f"rv {e.rv}: InferenceService {name} deleted while the route gives it {route}"
                        )
                    continue
                same = [n for n, o in isvcs.items() if revision_label(o) == rev and n != name]
                if same:
                    found.append(f"rv {e.rv}: a second InferenceService {name} for revision {rev} ({same})")
                isvcs[name] = e.obj
            elif e.kind == "HTTPRoute" and e.type != "DELETED":
                weights = route_weights(e.obj)
                if weights == route:
                    continue
                found.extend(f"rv {e.rv}: {p}" for p in _split_problems(weights, allowed))
                ready = {revision_label(o) for o in isvcs.values() if is_ready(o)} - refused
                if ready & set(weights):
                    found.extend(
                        f"rv {e.rv}: {w}% to revision {rev}, which is not Ready ({weights})"
                        for rev, w in weights.items()
                        if w > 0 and rev not in ready
                    )
                for rev in weights:
                    first_seen.setdefault(rev, e.rv)
                canaries = _canaries(weights, first_seen)
                # A canary that left the route has 0 % from now on.
                gone = [r for r in canary_weight if r not in weights and canary_weight[r] not in (0, 100)]
                for rev, w in [*((r, 0) for r in gone), *canaries.items()]:
                    before = canary_weight.get(rev, 0)
                    if w == before:
                        continue
                    if w == 0:
                        dropped.add(rev)
                    elif rev in dropped:
                        found.append(f"rv {e.rv}: revision {rev} got {w}% again after losing its traffic")
                    elif w not in order or before not in order or order.index(w) != order.index(before) + 1:
                        found.append(
                            f"rv {e.rv}: revision {rev} moved {before}% → {w}%, not the plan's next step"
                        )
                    canary_weight[rev] = w
                route = weights
        found.extend(self._state_violations())
        if check_creations:
            for rev, n in self.isvc_creations().items():
                if n > 1:
                    found.append(f"revision {rev}: InferenceService created {n} times")
        return found

    def group_history(self) -> list[dict[str, int]]:
        """Platform kserve-llm: the distinct splits the LLMInferenceServices define, in order, as
        shares (%) of the members not stopped (KServe's weights are proportional: a member alone takes
        everything whatever its weight)."""
        out: list[dict[str, int]] = []
        members: dict[str, dict[str, Any]] = {}
        for e in self.ordered():
            if e.kind != "LLMInferenceService":
                continue
            name = e.obj["metadata"]["name"]
            if e.type == "DELETED":
                members.pop(name, None)
            else:
                members[name] = e.obj
            weights = group_weights(members)
            total = sum(weights.values())
            shares = {r: round(100 * w / total) if total else 0 for r, w in weights.items()}
            if shares and (not out or out[-1] != shares):
                out.append(shares)
        return out

    def llm_creations(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for e in self.ordered():
            if e.kind == "LLMInferenceService" and e.type == "ADDED":
                counts[revision_label(e.obj)] = counts.get(revision_label(e.obj), 0) + 1
        return counts

    def group_violations(self, plan: list[int]) -> list[str]:
        """The invariants for platform kserve-llm, where each revision's object carries its own weight:

        - **planned weights only**: every object's weight is 0, 100, a planned w or its 100-w; the
          canary's share of the members not stopped never exceeds the planned weight of the step the
          model's status is at or the next (while the two objects' writes of a step land it lies
          between two planned weights);
        - **no traffic to a revision that is not Ready**: a member not stopped with weight > 0 is Ready,
          unless no member is (the first revision, before anything serves);
        - **nothing deleted while it has traffic**: a member is deleted only while stopped or at 0;
        - **no duplicate children**: one object per revision, each created once;
        - **no lost rollout state** (as for the other platforms)."""
        found: list[str] = [f"the history is incomplete: {self.broken}"] if self.broken else []
        allowed = {0, 100, *plan, *(100 - w for w in plan)}
        members: dict[str, dict[str, Any]] = {}
        status: dict[str, Any] = {}
        for e in self.ordered():
            if e.kind == "NLPModel" and e.obj["metadata"]["name"] == self.model and e.type != "DELETED":
                status = e.obj.get("status") or status
                continue
            if e.kind != "LLMInferenceService":
                continue
            name = e.obj["metadata"]["name"]
            rev = revision_label(e.obj)
            if e.type == "DELETED":
                before = group_weights(members)
                members.pop(name, None)
                if before.get(rev, 0) > 0:
                    found.append(f"rv {e.rv}: {name} deleted while the group gives it {before}")
                continue
            if e.type == "ADDED" and any(revision_label(o) == rev for n, o in members.items() if n != name):
                found.append(f"rv {e.rv}: a second LLMInferenceService {name} for revision {rev}")
            members[name] = e.obj
            weight = _weight(e.obj)
            if weight not in allowed:
                found.append(f"rv {e.rv}: {name} at weight {weight}, not in the plan ({sorted(allowed)})")
            weights = group_weights(members)
            ready = {revision_label(o) for o in members.values() if is_ready(o)}
            if ready & set(weights):
                found.extend(
                    f"rv {e.rv}: weight {w} to revision {r}, which is not Ready ({weights})"
                    for r, w in weights.items()
                    if w > 0 and r not in ready
                )
            canary, stable = status.get("canaryRevision"), status.get("stableRevision")
            total = sum(weights.values())
            if canary in weights and stable in weights and total:
                # The status is written after the objects: they may be one step ahead of it.
                step = (status.get("currentStep") or 0) + 1
                ceiling = plan[step] if step < len(plan) else 100
                share = 100 * weights[canary] / total
                if share > ceiling + 0.5:
                    found.append(f"rv {e.rv}: canary {canary} at {share:.0f}%, above the plan's {ceiling}%")
        found.extend(self._state_violations())
        for rev, n in self.llm_creations().items():
            if n > 1:
                found.append(f"revision {rev}: LLMInferenceService created {n} times")
        return found

    def _state_violations(self) -> list[str]:
        found: list[str] = []
        previous: dict[str, Any] | None = None
        for e, st in self.statuses():
            if previous is not None and st:
                found.extend(f"rv {e.rv}: {p}" for p in _lost_state(previous, st))
            if st:
                previous = st
        return found


def _weight(obj: dict[str, Any]) -> int:
    route = (((obj.get("spec") or {}).get("router") or {}).get("route")) or {}
    return int(route.get("weight") or 0)


def group_weights(members: dict[str, dict[str, Any]]) -> dict[str, int]:
    """revision → weight of each LLMInferenceService KServe routes to (the members not stopped)."""
    return {
        revision_label(o): _weight(o)
        for o in members.values()
        if ((o.get("metadata") or {}).get("annotations") or {}).get(STOP) != "true"
    }


def _split_problems(weights: dict[str, int], allowed: set[int]) -> list[str]:
    values = sorted(weights.values())
    if values == [100]:
        return []
    if len(values) == 2 and sum(values) == 100 and (values[0] in allowed or values[1] in allowed):
        return []
    return [f"split {weights} is not in the plan (100, or 100-w/w with w in {sorted(allowed)})"]


def _canaries(weights: dict[str, int], first_seen: dict[str, int]) -> dict[str, int]:
    """The canary of a split is the revision that joined the route later; a revision alone at 100 %
    that joined later than some other is a promoted canary (its weight is 100)."""
    if len(weights) == 2:
        newer = max(weights, key=lambda r: first_seen[r])
        return {newer: weights[newer]}
    (only,) = weights
    return {only: 100} if any(first_seen[r] < first_seen[only] for r in first_seen) else {}


def _lost_state(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    problems = []
    canary = old.get("canaryRevision")
    if canary is not None and new.get("canaryRevision") == canary:
        if (new.get("currentStep") or 0) < (old.get("currentStep") or 0):
            problems.append(f"currentStep went back {old.get('currentStep')} → {new.get('currentStep')}")
        if new.get("canaryStartedAt") != old.get("canaryStartedAt"):
            problems.append(
                f"canaryStartedAt changed {old.get('canaryStartedAt')} → {new.get('canaryStartedAt')}"
            )
        before = (old.get("analysis") or {}).get("lastCheckAt")
        after = (new.get("analysis") or {}).get("lastCheckAt")
        if before and (not after or after < before):
            problems.append(f"analysis.lastCheckAt went back {before} → {after}")
        problems.extend(_evidence_problems(old.get("analysis") or {}, new.get("analysis") or {}))
    stable, now_stable = old.get("stableRevision"), new.get("stableRevision")
    if stable and now_stable not in (stable, canary):
        problems.append(f"stable {stable} replaced by {now_stable}, not by the canary")
    if old.get("failedRevision") and new.get("failedRevision") != old.get("failedRevision"):
        problems.append(f"failedRevision {old.get('failedRevision')} lost")
    old_history, new_history = old.get("history") or [], new.get("history") or []
    kept = len(old_history) - max(0, len(old_history) + 1 - 10)  # entries that survive one more append
    if len(new_history) < len(old_history) or not _extends(old_history, new_history):
        problems.append(f"history lost entries: {len(old_history)} → {len(new_history)} ({kept} must stay)")
    return problems


def _evidence_problems(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The sequential judge's evidence of one canary is neither lost nor counted twice: each status
    write holds at most one new check, so an objective's check count grows by at most one, and only
    with a new lastCheckAt."""
    problems = []
    moved = old.get("lastCheckAt") != new.get("lastCheckAt")
    after = {e["test"]: e for e in new.get("evidence") or []}
    for before in old.get("evidence") or []:
        now = after.get(before["test"])
        if now is None or now["checks"] < before["checks"]:
            problems.append(f"evidence of {before['test']} lost: {before} → {now}")
        elif now["checks"] > before["checks"] + (1 if moved else 0):
            problems.append(
                f"evidence of {before['test']} counted {now['checks'] - before['checks']} checks "
                f"for lastCheckAt {old.get('lastCheckAt')} → {new.get('lastCheckAt')}"
            )
    return problems


def _extends(old: list[Any], new: list[Any]) -> bool:
    """`new` is `old` with entries appended (the oldest ones may fall off the bounded list)."""
    for start in range(len(old) + 1):
        tail = old[start:]
        if new[: len(tail)] == tail:
            return True
    return False
