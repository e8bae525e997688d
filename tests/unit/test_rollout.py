"""The rollout state machine: steps, promotion, rollback, manual commands, GPU budget."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from nlpmodel_operator.api.constants import COMMANDS
from nlpmodel_operator.api.spec import NLPModelSpec
from nlpmodel_operator.api.status import to_json
from nlpmodel_operator.api.units import format_time
from nlpmodel_operator.cli.statusview import command_blocker
from nlpmodel_operator.core.reconcile import Observation, decide
from nlpmodel_operator.core.records import Apply, ChildRef, ClearCommand, Delete, Patch, RevisionState
from nlpmodel_operator.core.revision import revision_hash
from nlpmodel_operator.core.rollout import RolloutInput, RolloutOutcome, step_rollout

T0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
S, C = "5ab1e000", "ca4a2700"
STEPS = [{"weight": 10, "pause": "1m"}, {"weight": 50, "pause": "2m"}]


def spec(**rollout: Any) -> NLPModelSpec:
    return NLPModelSpec.model_validate(
        {
            "model": {"uri": "hf://meta-llama/Llama-3.1-8B-Instruct"},
            "scaling": {"minReplicas": 4, "maxReplicas": 4},
            "rollout": {"steps": STEPS, "progressDeadline": "10m", **rollout},
        }
    )


def rev(name: str, ready: bool, replicas: int | None = None) -> RevisionState:
    return RevisionState(
        name, (ChildRef("apps/v1", "Deployment", f"m-{name}"),), ready, "", replicas, replicas
    )


def run(
    status: dict[str, Any],
    revisions: list[RevisionState],
    at: timedelta = timedelta(0),
    command: str | None = None,
    **rollout: Any,
) -> RolloutOutcome:
    return step_rollout(
        RolloutInput(spec(**rollout), C, status, {r.revision: r for r in revisions}, command, T0 + at)
    )


def canary_status(step: int = 0, started: timedelta | None = timedelta(0), **extra: Any) -> dict[str, Any]:
    st: dict[str, Any] = {
        "stableRevision": S,
        "canaryRevision": C,
        "currentStep": step,
        "canaryStartedAt": format_time(T0),
    }
    if started is not None:
        st["stepStartedAt"] = format_time(T0 + started)
    return {**st, **extra}


def test_a_new_template_starts_a_canary_at_zero_until_it_is_ready() -> None:
    out = run({"stableRevision": S}, [rev(S, True)])
    assert (out.stable, out.canary, out.weight) == (S, C, 0)
    assert to_json(out.status)["currentStep"] == 0
    assert "stepStartedAt" not in to_json(out.status)
    assert [e.reason for e in out.events] == ["RolloutStarted"]
    assert out.sizing.canary == 1  # ceil(4 · 10 %)


@pytest.mark.parametrize(
    ("status", "at", "step", "weight", "events"),
    [
        pytest.param(
            canary_status(started=None), timedelta(seconds=5), 0, 10, [], id="ready-first-step-starts"
        ),
        pytest.param(canary_status(), timedelta(seconds=59), 0, 10, [], id="pause-not-elapsed"),
        pytest.param(canary_status(), timedelta(seconds=60), 1, 50, ["StepAdvanced"], id="next-step"),
        pytest.param(
            canary_status(1, timedelta(minutes=1)),
            timedelta(minutes=3),
            2,
            50,
            ["Promoting"],
            id="last-step-done",
        ),
        pytest.param(canary_status(paused=True), timedelta(minutes=9), 0, 10, [], id="paused-holds"),
    ],
)
def test_steps_advance_by_time_while_the_canary_is_ready(
    status: dict[str, Any], at: timedelta, step: int, weight: int, events: list[str]
) -> None:
    out = run(status, [rev(S, True), rev(C, True, 1)], at)
    assert (to_json(out.status)["currentStep"], out.weight) == (step, weight)
    assert [e.reason for e in out.events] == events
    assert out.delete == []


def test_promotion_scales_the_canary_first_then_moves_traffic_and_removes_the_stable() -> None:
    promoting = run(
        canary_status(2, timedelta(minutes=3)), [rev(S, True), rev(C, True, 1)], timedelta(minutes=3)
    )
    assert (promoting.canary, promoting.weight, promoting.sizing.canary) == (C, 50, 4)
    assert promoting.delete == []
    done = run(canary_status(2, timedelta(minutes=3)), [rev(S, True), rev(C, True, 4)], timedelta(minutes=4))
    assert (done.stable, done.canary) == (C, None)
    assert done.delete == [S]
    assert to_json(done.status)["history"][-1]["outcome"] == "Promoted"


@pytest.mark.parametrize(
    ("status", "revisions", "at", "command", "reason", "outcome"),
    [
        pytest.param(
            canary_status(started=None),
            [rev(S, True), rev(C, False)],
            timedelta(minutes=11),
            None,
            "ProgressDeadlineExceeded",
            "RolledBack",
            id="never-ready",
        ),
        pytest.param(
            canary_status(1, timedelta(minutes=1)),
            [rev(S, True), rev(C, False)],
            timedelta(minutes=12),
            None,
            "ProgressDeadlineExceeded",
            "RolledBack",
            id="broke-mid-rollout",
        ),
        pytest.param(
            canary_status(),
            [rev(S, True), rev(C, True, 1)],
            timedelta(seconds=10),
            "abort",
            "Aborted",
            "Aborted",
            id="nlpctl-abort",
        ),
    ],
)
def test_rollback_sends_traffic_to_stable_and_remembers_the_failed_revision(
    status: dict[str, Any],
    revisions: list[RevisionState],
    at: timedelta,
    command: str | None,
    reason: str,
    outcome: str,
) -> None:
    out = run(status, revisions, at, command)
    assert (out.stable, out.canary, out.weight) == (S, None, 0)
    assert out.delete == [C]
    assert to_json(out.status)["failedRevision"] == C
    assert out.rolled_back is not None
    assert out.rolled_back[0] == reason
    assert to_json(out.status)["history"][-1]["outcome"] == outcome
    assert out.command_done is (command is not None)


def test_a_rolled_back_revision_is_not_retried_until_the_template_changes_or_retry() -> None:
    rolled_back = {"stableRevision": S, "failedRevision": C}
    held = run(rolled_back, [rev(S, True)], timedelta(hours=1))
    assert (held.canary, to_json(held.status)["failedRevision"]) == (None, C)
    retried = run(rolled_back, [rev(S, True)], timedelta(hours=1), "retry")
    assert retried.canary == C
    assert "failedRevision" not in to_json(retried.status)
    other = step_rollout(RolloutInput(spec(), "0e11e000", rolled_back, {S: rev(S, True)}, None, T0))
    assert other.canary == "0e11e000"


def test_manual_promote_pause_resume() -> None:
    promote = run(canary_status(), [rev(S, True), rev(C, True, 1)], timedelta(seconds=5), "promote")
    assert (to_json(promote.status)["currentStep"], promote.sizing.canary, promote.command_done) == (
        2,
        4,
        True,
    )
    pause = run(canary_status(), [rev(S, True), rev(C, True, 1)], timedelta(seconds=5), "pause")
    assert to_json(pause.status)["paused"] is True
    resume = run(canary_status(paused=True), [rev(S, True), rev(C, True, 1)], timedelta(minutes=5), "resume")
    assert "paused" not in to_json(resume.status)
    assert to_json(resume.status)["stepStartedAt"] == format_time(
        T0 + timedelta(minutes=5)
    )  # the pause restarts


def test_a_new_template_during_a_canary_replaces_the_canary_never_the_stable() -> None:
    newer = "0e11e000"
    out = step_rollout(
        RolloutInput(
            spec(),
            newer,
            canary_status(1, timedelta(minutes=1)),
            {S: rev(S, True), C: rev(C, True, 2)},
            None,
            T0 + timedelta(minutes=2),
        )
    )
    assert (out.stable, out.canary, out.weight, to_json(out.status)["currentStep"]) == (S, newer, 0, 0)
    assert out.delete == [C]
    assert to_json(out.status)["history"][-1] == {
        "revision": C,
        "outcome": "Aborted",
        "reason": f"superseded by revision {newer}",
        "at": format_time(T0 + timedelta(minutes=2)),
    }


def test_reverting_the_template_during_a_canary_removes_the_canary() -> None:
    out = step_rollout(
        RolloutInput(spec(), S, canary_status(), {S: rev(S, True), C: rev(C, True, 1)}, None, T0)
    )
    assert (out.stable, out.canary, out.delete) == (S, None, [C])


def test_history_keeps_the_last_ten() -> None:
    history = [
        {"revision": f"{i:08x}", "outcome": "Promoted", "reason": "", "at": format_time(T0)}
        for i in range(10)
    ]
    out = run(
        canary_status(started=None, history=history), [rev(S, True), rev(C, False)], timedelta(minutes=11)
    )
    assert len(to_json(out.status)["history"]) == 10
    assert to_json(out.status)["history"][-1]["revision"] == C


def test_direct_strategy_replaces_without_steps() -> None:
    waiting = run({"stableRevision": S}, [rev(S, True)], strategy="direct")
    assert (waiting.canary, waiting.weight, waiting.sizing.canary) == (C, 0, 4)
    done = run(
        {"stableRevision": S, "canaryRevision": C, "currentStep": 2, "canaryStartedAt": format_time(T0)},
        [rev(S, True), rev(C, True, 4)],
        timedelta(seconds=30),
        strategy="direct",
    )
    assert (done.stable, done.delete) == (C, [S])


# A small model of the cluster that executes decide()'s actions, to walk whole rollouts through the
# real decision function: each tick, whatever was applied or resized becomes ready at its new size.
class World:
    def __init__(self, raw_spec: dict[str, Any]) -> None:
        self.spec = raw_spec
        self.status: dict[str, Any] = {}
        self.replicas: dict[str, int] = {}  # revision → replicas of its InferenceService
        self.gpus_seen: list[int] = []
        self.weights_seen: list[int] = []

    def observe(self, now: datetime) -> Observation:
        revisions = {
            r: RevisionState(
                r, (ChildRef("serving.kserve.io/v1beta1", "InferenceService", f"m-{r}"),), True, "", n, n
            )
            for r, n in self.replicas.items()
        }
        return Observation("m", "ml", 1, self.spec, self.status, revisions, format_time(now))

    def tick(self, now: datetime) -> None:
        decision = decide(self.observe(now))
        for action in decision.actions:
            if isinstance(action, Apply) and action.obj["kind"] == "InferenceService":
                rev_name = action.obj["metadata"]["labels"]["serving.nlpmodel.dev/revision"]
                self.replicas[rev_name] = action.obj["spec"]["predictor"]["maxReplicas"]
            elif isinstance(action, Apply) and action.obj["kind"] == "HTTPRoute":
                refs = action.obj["spec"]["rules"][0]["backendRefs"]
                self.weights_seen.append(refs[1]["weight"] if len(refs) > 1 else 0)
            elif isinstance(action, Patch):
                self.replicas[action.ref.name.removeprefix("m-")] = action.body["spec"]["predictor"][
                    "maxReplicas"
                ]
            elif isinstance(action, Delete) and action.ref.kind == "InferenceService":
                self.replicas.pop(action.ref.name.removeprefix("m-"), None)
            # The GPU request of the model after each action, as the objects say.
            self.gpus_seen.append(sum(self.replicas.values()) * self.spec["resources"]["gpu"]["count"])
        self.status = decision.status


# Without surge the model never asks for more than its 4 replicas × 2 GPUs; with surge the canary grows
# to full size beside the stable before traffic moves to it.
@pytest.mark.parametrize(("surge", "max_gpus"), [(False, 4 * 2), (True, (4 + 4) * 2)])
def test_gpu_budget_over_a_whole_rollout(surge: bool, max_gpus: int) -> None:
    raw: dict[str, Any] = {
        "model": {"uri": "hf://meta-llama/Llama-3.1-8B-Instruct"},
        "resources": {"gpu": {"count": 2, "product": "nvidia-l4"}},
        "quantization": {"method": "awq"},
        "scaling": {"minReplicas": 4, "maxReplicas": 4},
        "rollout": {
            "steps": [{"weight": 25, "pause": "1m"}, {"weight": 50, "pause": "1m"}],
            "gpuSurge": surge,
        },
    }
    world = World(raw)
    now = T0
    world.tick(now)  # first revision
    first = to_json(world.status)["stableRevision"]
    world.spec = {**raw, "runtime": {"maxModelLen": 4096}}
    second = revision_hash(NLPModelSpec.model_validate(world.spec))
    for _ in range(12):
        now += timedelta(seconds=40)
        world.tick(now)
    assert to_json(world.status)["stableRevision"] == second != first
    assert list(world.replicas) == [second]
    assert to_json(world.status)["history"][-1]["outcome"] == "Promoted"
    assert max(world.gpus_seen) <= max_gpus  # without surge: never more than the 4 replicas × 2 GPUs
    assert sorted(set(world.weights_seen)) == [0, 25, 50]


def test_commands_are_cleared_after_they_are_acted_upon() -> None:
    raw = {"model": {"uri": "hf://meta-llama/Llama-3.1-8B-Instruct"}, "rollout": {"steps": STEPS}}
    obs = Observation(
        "m",
        "ml",
        1,
        raw,
        {"stableRevision": S, "canaryRevision": C},
        {S: rev(S, True), C: rev(C, True, 1)},
        format_time(T0),
        command="pause",
    )
    actions = decide(obs).actions
    assert actions[-1] == ClearCommand("pause")


def test_two_outcomes_in_one_decision_are_both_recorded() -> None:
    """A new template supersedes the canary and an abort arrives in the same reconcile."""
    newer = "0e11e000"
    out = step_rollout(
        RolloutInput(spec(), newer, canary_status(), {S: rev(S, True), C: rev(C, True, 1)}, "abort", T0)
    )
    assert [(h["revision"], h["outcome"]) for h in to_json(out.status)["history"]] == [
        (C, "Aborted"),
        (newer, "Aborted"),
    ]
    assert out.delete == [C, newer]


def test_a_canary_that_can_no_longer_serve_loses_its_traffic_and_keeps_its_step() -> None:
    down = RevisionState(
        C, (ChildRef("apps/v1", "Deployment", f"m-{C}"),), False, "0/1 ready", 1, 0, serving=False
    )
    out = run(canary_status(1, timedelta(seconds=30)), [rev(S, True), down], timedelta(seconds=60))
    assert out.weight == 0
    assert (to_json(out.status)["currentStep"], to_json(out.status)["canaryWeight"]) == (1, 0)
    back = run(canary_status(1, timedelta(seconds=30)), [rev(S, True), rev(C, True)], timedelta(seconds=61))
    assert back.weight == 50


def test_a_canary_growing_to_its_next_size_keeps_serving_its_weight() -> None:
    growing = RevisionState(
        C, (ChildRef("apps/v1", "Deployment", f"m-{C}"),), False, "1/2 ready", 2, 1, serving=True
    )
    out = run(canary_status(1, timedelta(seconds=30)), [rev(S, True), growing], timedelta(seconds=60))
    assert out.weight == 50


@pytest.mark.parametrize(
    ("status", "revisions", "at", "command", "stage"),
    [
        pytest.param({"stableRevision": S}, [rev(S, True)], timedelta(0), None, "Progressing", id="started"),
        pytest.param(
            canary_status(),
            [rev(S, True), rev(C, True, 1)],
            timedelta(seconds=5),
            None,
            "Progressing",
            id="at-step",
        ),
        pytest.param(
            canary_status(),
            [rev(S, True), rev(C, True, 1)],
            timedelta(seconds=5),
            "pause",
            "Paused",
            id="paused",
        ),
        pytest.param(
            canary_status(stage="Paused", paused=True),
            [rev(S, True), rev(C, True, 1)],
            timedelta(seconds=5),
            "resume",
            "Progressing",
            id="resumed",
        ),
        pytest.param(
            canary_status(1, timedelta(minutes=1)),
            [rev(S, True), rev(C, True, 1)],
            timedelta(minutes=3),
            None,
            "Promoting",
            id="all-steps-passed",
        ),
        pytest.param(
            canary_status(),
            [rev(S, True), rev(C, True, 1)],
            timedelta(seconds=5),
            "promote",
            "Promoting",
            id="promoted-by-hand",
        ),
        pytest.param(
            canary_status(2, timedelta(minutes=3)),
            [rev(S, True), rev(C, True, 1)],
            timedelta(minutes=4),
            "pause",
            "Promoting",
            id="no-pause-while-promoting",
        ),
        pytest.param(
            canary_status(2, timedelta(minutes=3)),
            [rev(S, True), rev(C, True, 4)],
            timedelta(minutes=4),
            None,
            None,
            id="promoted",
        ),
    ],
)
def test_the_stage_is_stored_in_status(
    status: dict[str, Any],
    revisions: list[RevisionState],
    at: timedelta,
    command: str | None,
    stage: str | None,
) -> None:
    out = run(status, revisions, at, command)
    assert to_json(out.status).get("stage") == stage
    assert to_json(out.status).get("paused", False) is (stage == "Paused")


def test_a_status_written_before_stages_is_read_by_deriving_the_stage() -> None:
    """No `stage` in status: a paused canary stays paused, one past its steps is promoted."""
    paused = run(canary_status(paused=True), [rev(S, True), rev(C, True, 1)], timedelta(minutes=9))
    assert (to_json(paused.status)["stage"], to_json(paused.status)["currentStep"]) == ("Paused", 0)
    promoting = run(
        canary_status(2, timedelta(minutes=3)), [rev(S, True), rev(C, True, 4)], timedelta(minutes=4)
    )
    assert (promoting.stable, promoting.delete) == (C, [S])


RULE_STATES: list[tuple[str, dict[str, Any], list[RevisionState], timedelta]] = [
    ("at-a-step", canary_status(), [rev(S, True), rev(C, True, 1)], timedelta(seconds=5)),
    (
        "paused",
        canary_status(stage="Paused", paused=True),
        [rev(S, True), rev(C, True, 1)],
        timedelta(seconds=5),
    ),
    (
        "promoting",
        canary_status(2, timedelta(minutes=3)),
        [rev(S, True), rev(C, True, 1)],
        timedelta(minutes=4),
    ),
    ("rolled-back", {"stableRevision": S, "failedRevision": C}, [rev(S, True)], timedelta(minutes=5)),
    ("settled", {"stableRevision": C}, [rev(C, True, 4)], timedelta(minutes=5)),
]


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize(("name", "status", "revisions", "at"), RULE_STATES, ids=[s[0] for s in RULE_STATES])
def test_the_operator_acts_on_exactly_the_commands_nlpctl_lets_through(
    command: str, name: str, status: dict[str, Any], revisions: list[RevisionState], at: timedelta
) -> None:
    """One rule: a command nlpctl refuses changes nothing when it reaches the operator anyway (--force,
    or the state moved on), and one it lets through does something."""
    blocker = command_blocker(command, status, {"rollout": {"steps": STEPS}})
    acted = run(status, revisions, at, command)
    idle = run(status, revisions, at)
    same = (to_json(acted.status), acted.events, acted.delete) == (
        to_json(idle.status),
        idle.events,
        idle.delete,
    )
    assert same is (blocker is not None), blocker
