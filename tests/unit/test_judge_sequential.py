"""The sequential judge: the e-process's validity at the boundary, monotonicity, state through status,
where evidence starts afresh, and the messages."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

import pytest

from nlpmodel_operator.api.status import AnalysisStatus, ObjectiveEvidence, read_status, to_json
from nlpmodel_operator.core.analysis import Histogram, Objectives, RevisionSample
from nlpmodel_operator.core.analysis.judge import _mann_whitney, mean_excess, scale_score
from nlpmodel_operator.core.analysis.sequential import (
    HORIZON,
    always_valid_p,
    log_e_value,
    next_bet,
    regression_z,
    sequential_judge,
    simes_z,
    update,
    z_of_p,
)

INF = math.inf
TTFT = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
        40.0, 80.0, 160.0, 640.0, 2560.0, INF)  # fmt: skip
ALPHA = 0.05


def hist(per_bucket: dict[float, float]) -> Histogram:
    running, counts = 0.0, []
    for bound in TTFT:
        running += per_bucket.get(bound, 0.0)
        counts.append(running)
    return Histogram(TTFT, tuple(counts))


def sample(ttft: Histogram | None, requests: float, errors: float = 0.0) -> RevisionSample:
    return RevisionSample(ttft=ttft, itl=None, e2e=None, requests=requests, errors=errors)


STABLE = hist({0.25: 1200, 0.5: 2427, 0.75: 350, 1.0: 3})  # p95 0.61 s, 3980 requests
CANARY_SLOW = hist({0.25: 60, 0.5: 200, 0.75: 90, 1.0: 39, 2.5: 15, 5.0: 8})  # p95 1.24 s, 412
CANARY_OK = hist({0.25: 125, 0.5: 251, 0.75: 35, 1.0: 1})  # like stable, 412
# A canary about 40 % slower: each check alone is borderline, three together are clear.
CANARY_SLOWER = hist({0.25: 14, 0.5: 60, 0.75: 30, 1.0: 10, 2.5: 6})
STABLE_SMALL = hist({0.25: 36, 0.5: 73, 0.75: 11})
REGRESSION_ONLY = Objectives(max_regression=0.2)


def fresh(test: str = "t") -> ObjectiveEvidence:
    return ObjectiveEvidence(test=test, limit=1.2)


# ---------------------------------------------------------------------------------------------
# The e-process


def rejection_rate(mean_z: float, checks: int, trials: int, seed: int) -> float:
    rng = random.Random(seed)
    threshold = math.log(1 / ALPHA)
    rejected = 0
    for _ in range(trials):
        evidence = fresh()
        for _ in range(checks):
            evidence = update(evidence, rng.gauss(mean_z, 1.0), ALPHA)
            if log_e_value(evidence, ALPHA) >= threshold:
                rejected += 1
                break
    return rejected / trials


@pytest.mark.parametrize(
    ("mean_z", "checks", "at_most"),
    [
        # At the boundary of the null (z ~ N(0, 1) every check) the chance of ever rejecting is at
        # most alpha, for 3 checks as for 60 (Ville's inequality; 1000 seeded trials, so the
        # bound gets 3 standard errors of slack).
        pytest.param(0.0, 3, ALPHA + 0.02, id="boundary-3-checks"),
        pytest.param(0.0, 30, ALPHA + 0.02, id="boundary-30-checks"),
        pytest.param(0.0, 60, ALPHA + 0.02, id="boundary-60-checks"),
        # Inside the null (a healthy canary: z well below 0) it is far rarer.
        pytest.param(-1.0, 60, 0.005, id="inside-60-checks"),
    ],
)
def test_the_false_rejection_rate_is_bounded_for_any_number_of_checks(
    mean_z: float, checks: int, at_most: float
) -> None:
    assert rejection_rate(mean_z, checks, 1000, seed=18) <= at_most


def test_a_regression_clear_over_three_checks_but_not_in_one_is_rejected_at_the_third() -> None:
    evidence = fresh()
    threshold = math.log(1 / ALPHA)
    for z in (1.5, 1.5):  # each alone p = 0.067: no single check would be significant at 0.05
        evidence = update(evidence, z, ALPHA)
        assert log_e_value(evidence, ALPHA) < threshold
    evidence = update(evidence, 1.5, ALPHA)
    assert log_e_value(evidence, ALPHA) >= threshold
    assert evidence.checks == HORIZON


@pytest.mark.parametrize("z", [-3.0, -1.0, 0.0, 0.5, 1.0, 2.0, 4.0])
def test_more_evidence_never_lowers_the_e_value(z: float) -> None:
    base = update(update(fresh(), 0.3, ALPHA), -0.2, ALPHA)
    lower = update(base, z, ALPHA)
    higher = update(base, z + 0.5, ALPHA)
    assert log_e_value(higher, ALPHA) >= log_e_value(lower, ALPHA)
    assert always_valid_p(higher) <= always_valid_p(lower)


def test_the_always_valid_p_value_only_goes_down() -> None:
    evidence = fresh()
    seen = []
    for z in (2.0, 1.5, -3.0, -3.0, 0.5):
        evidence = update(evidence, z, ALPHA)
        seen.append(always_valid_p(evidence))
    assert seen == sorted(seen, reverse=True)
    assert log_e_value(evidence, ALPHA) < evidence.max_log_e  # the healthy checks lowered the e-value


@pytest.mark.parametrize(("healthy", "within"), [(0, 2), (3, 4), (30, 4)])
def test_a_regression_after_healthy_checks_is_caught_within_a_few_checks(healthy: int, within: int) -> None:
    """A healthy canary bets nothing, so its evidence does not sink: a regression that starts late
    (say at the 50 % step) does not first have to climb out of a hole."""
    evidence = fresh()
    for _ in range(healthy):
        evidence = update(evidence, -3.0, ALPHA)
        assert next_bet(evidence) == 0.0
    threshold = math.log(1 / ALPHA)
    for _ in range(within):
        evidence = update(evidence, 3.0, ALPHA)
        if log_e_value(evidence, ALPHA) >= threshold:
            break
    assert log_e_value(evidence, ALPHA) >= threshold


def test_bets_are_sized_on_earlier_checks_only() -> None:
    assert next_bet(fresh()) == 1.0
    assert next_bet(update(fresh(), 1.5, ALPHA)) == 1.5
    assert next_bet(update(update(fresh(), 5.0, ALPHA), 3.0, ALPHA)) == 2.0  # capped
    assert next_bet(update(update(update(fresh(), 9.0, ALPHA), -1.0, ALPHA), 0.0, ALPHA)) == 0.0


@pytest.mark.parametrize(
    ("p", "z"),
    [(0.5, 0.0), (0.025, 1.959964), (0.975, -1.959964), (0.0, 40.0), (1.0, -40.0), (1e-300, 37.0471)],
)
def test_z_of_p(p: float, z: float) -> None:
    assert z_of_p(p) == pytest.approx(z, abs=1e-4)


# ---------------------------------------------------------------------------------------------
# The judge


def run_checks(
    checks: Sequence[tuple[RevisionSample, RevisionSample | None]], objectives: Objectives
) -> list[tuple[str, str, tuple[ObjectiveEvidence, ...]]]:
    evidence: tuple[ObjectiveEvidence, ...] = ()
    out = []
    for canary, stable in checks:
        verdict = sequential_judge(canary, stable, objectives, evidence)
        evidence = verdict.evidence
        out.append((verdict.result, verdict.summary, evidence))
    return out


def test_a_clear_regression_fails_at_the_second_check_with_the_issue_message() -> None:
    check = (sample(CANARY_SLOW, 412), sample(STABLE, 3980))
    (first, second) = run_checks([check] * 2, REGRESSION_ONLY)
    # One interval never decides a latency regression alone (a minute of load on the canary's pods).
    assert first[0] == "pass"
    verdict = sequential_judge(*check, REGRESSION_ONLY, first[2])
    assert verdict.result == second[0] == "fail"
    (message,) = verdict.failures
    assert message.startswith("ttft ")
    assert "% slower than stable over 2 checks (> 20% allowed, always-valid p" in message
    assert "p95 1.24s vs 0.61s, n=824/7960" in message
    assert verdict.values["ttft_ratio"] > 1.2


def test_a_clear_slo_breach_fails_at_the_first_check() -> None:
    verdict = sequential_judge(sample(CANARY_SLOW, 412), sample(STABLE, 3980), Objectives(ttft_p95=0.8))
    assert verdict.result == "fail"
    assert verdict.failures[0].startswith("ttft p95 1.24s > slo 0.80s over 1 check")


def test_a_moderate_regression_accumulates_until_it_is_clear() -> None:
    check = (sample(CANARY_SLOWER, 120), sample(STABLE_SMALL, 120))
    results = run_checks([check] * 3, REGRESSION_ONLY)
    verdicts = [r[0] for r in results]
    assert verdicts[0] == "pass"
    assert "fail" in verdicts
    failed_at = verdicts.index("fail")
    summary = results[failed_at][1]
    assert f"over {failed_at + 1} checks" in summary
    assert f"n={120 * (failed_at + 1)}/{120 * (failed_at + 1)}" in summary
    ps = [always_valid_p(next(e for e in r[2] if e.test == "ttft regression")) for r in results]
    assert ps == sorted(ps, reverse=True)


def test_a_healthy_canary_passes_thirty_checks_and_its_evidence_stays_small() -> None:
    results = run_checks([(sample(CANARY_OK, 412), sample(STABLE, 3980))] * 30, REGRESSION_ONLY)
    assert {r[0] for r in results} == {"pass"}
    (evidence,) = [e for e in results[-1][2] if e.test == "ttft regression"]
    assert evidence.checks == 30
    assert always_valid_p(evidence) == 1.0
    assert "strongest evidence: ttft regression always-valid p=1.000 over 30 checks" in results[-1][1]


@pytest.mark.parametrize(
    ("canary", "stable", "verdict", "tests"),
    [
        pytest.param(sample(CANARY_OK, 30), sample(STABLE, 3980), "inconclusive", set(), id="few-requests"),
        pytest.param(
            sample(None, 412), sample(STABLE, 3980), "inconclusive", {"error rate slo"}, id="no-ttft"
        ),
        pytest.param(
            sample(CANARY_OK, 412), None, "pass", {"ttft p95 slo", "error rate slo"}, id="no-stable"
        ),
        pytest.param(
            sample(CANARY_OK, 412, errors=2),
            sample(STABLE, 3980, errors=4),
            "pass",
            {"ttft p95 slo", "ttft regression", "error rate slo", "error rate regression"},
            id="everything",
        ),
    ],
)
def test_which_objectives_gather_evidence(
    canary: RevisionSample, stable: RevisionSample | None, verdict: str, tests: set[str]
) -> None:
    objectives = Objectives(ttft_p95=0.8, error_rate=0.01)
    result = sequential_judge(canary, stable, objectives)
    assert result.result == verdict
    assert {e.test for e in result.evidence} == tests
    assert all(e.checks == 1 for e in result.evidence)


def test_an_inconclusive_check_keeps_the_evidence_as_it_was() -> None:
    first = sequential_judge(sample(CANARY_OK, 412), sample(STABLE, 3980), REGRESSION_ONLY)
    quiet = sequential_judge(sample(CANARY_OK, 10), sample(STABLE, 3980), REGRESSION_ONLY, first.evidence)
    assert quiet.result == "inconclusive"
    assert quiet.evidence == first.evidence


def test_a_changed_limit_starts_that_objective_afresh() -> None:
    objectives = Objectives(ttft_p95=0.8, error_rate=0.01)
    first = sequential_judge(sample(CANARY_OK, 412), sample(STABLE, 3980), objectives)
    edited = Objectives(ttft_p95=0.9, error_rate=0.01)
    second = sequential_judge(sample(CANARY_OK, 412), sample(STABLE, 3980), edited, first.evidence)
    checks = {e.test: e.checks for e in second.evidence}
    assert checks == {"ttft p95 slo": 1, "ttft regression": 2, "error rate slo": 2}


@pytest.mark.parametrize(
    ("canary", "stable", "objectives", "expected"),
    [
        pytest.param(
            sample(CANARY_SLOW, 412),
            sample(STABLE, 3980),
            Objectives(ttft_p95=0.8, max_regression=10.0),
            "ttft p95 1.24s > slo 0.80s over 1 check (",
            id="latency-slo",
        ),
        pytest.param(
            sample(CANARY_OK, 412, errors=30),
            None,
            Objectives(error_rate=0.01),
            "error rate 7.3% > slo 1.0% over 1 check (always-valid p<0.001; n=412)",
            id="error-slo",
        ),
        pytest.param(
            sample(CANARY_OK, 412, errors=30),
            sample(STABLE, 3980, errors=20),
            Objectives(),
            "error rate 7.3% is 1349% worse than stable 0.50% over 1 check (> 20% allowed, always-valid p<0.001",
            id="error-regression",
        ),
    ],
)
def test_messages_name_the_objective_the_values_and_the_evidence(
    canary: RevisionSample, stable: RevisionSample | None, objectives: Objectives, expected: str
) -> None:
    verdict = sequential_judge(canary, stable, objectives)
    assert verdict.result == "fail"
    assert any(expected in failure for failure in verdict.failures), verdict.failures


def test_the_evidence_round_trips_through_the_status() -> None:
    results = run_checks(
        [(sample(CANARY_SLOWER, 120), sample(STABLE_SMALL, 120))] * 2, Objectives(ttft_p95=2.0)
    )
    evidence = results[-1][2]
    stored = to_json(AnalysisStatus(evidence=list(evidence)))
    restored = read_status({"analysis": stored}).analysis
    assert restored is not None
    assert tuple(restored.evidence) == evidence
    # Resuming from the restored status decides exactly as without the restart.
    check = (sample(CANARY_SLOWER, 120), sample(STABLE_SMALL, 120))
    resumed = sequential_judge(*check, Objectives(ttft_p95=2.0), restored.evidence)
    straight = sequential_judge(*check, Objectives(ttft_p95=2.0), evidence)
    assert (resumed.result, resumed.summary, resumed.evidence) == (
        straight.result,
        straight.summary,
        straight.evidence,
    )


def test_explain_false_changes_no_decision() -> None:
    check = (sample(CANARY_SLOWER, 120), sample(STABLE_SMALL, 120))
    explained, quick = (), ()
    for _ in range(3):
        a = sequential_judge(*check, REGRESSION_ONLY, explained)
        b = sequential_judge(*check, REGRESSION_ONLY, quick, explain=False)
        assert a.result == b.result
        explained, quick = a.evidence, b.evidence
    assert [e.max_log_e for e in explained] == [e.max_log_e for e in quick]


# --------------------------------------------------------------------------------------------------
# The _sum series: exact means beside the buckets


def with_sum(histogram: Histogram, total: float) -> Histogram:
    return Histogram(histogram.bounds, histogram.counts, total)


TWO_BUCKETS = hist({0.5: 10, 2.5: 10})  # 10 in (0.25, 0.5], 10 in (1.0, 2.5]


@pytest.mark.parametrize(
    ("total", "variance"),
    [
        (10 * 0.25 + 10 * 1.0, 0.140625),  # the sum puts everyone at the lower bounds: {0.25, 1.0}
        (10 * 0.5 + 10 * 2.5, 1.0),  # at the upper bounds: {0.5, 2.5}
        # midway: the midpoints' spread plus the uniform spread within each bucket
        (10 * 0.375 + 10 * 1.75, 0.47265625 + (0.25**2 + 1.5**2) / 2 / 12),
    ],
)
def test_the_binned_variance_places_observations_where_the_sum_says(total: float, variance: float) -> None:
    assert with_sum(TWO_BUCKETS, total).binned_variance() == pytest.approx(variance)


@pytest.mark.parametrize(
    "histogram",
    [
        TWO_BUCKETS,  # no sum
        with_sum(hist({0.5: 1}), 0.4),  # one observation
        with_sum(Histogram(TTFT, tuple([0.0] * (len(TTFT) - 1) + [5.0])), 5000.0),  # all in +Inf
    ],
)
def test_no_variance_without_a_sum_or_a_bound_on_the_spread(histogram: Histogram) -> None:
    assert histogram.binned_variance() is None


def test_the_sums_see_a_shift_that_stays_inside_one_bucket() -> None:
    # Both revisions entirely in vLLM's 1-2.5 s TTFT bucket; the canary's mean is 50 % higher.
    stable = hist({2.5: 1000})
    canary = hist({2.5: 150})
    buckets_only = sequential_judge(sample(canary, 150), sample(stable, 1000), REGRESSION_ONLY)
    assert buckets_only.result == "pass"
    with_sums = sequential_judge(
        sample(with_sum(canary, 150 * 1.8), 150), sample(with_sum(stable, 1000 * 1.2), 1000), REGRESSION_ONLY
    )
    evidence = with_sums.evidence
    with_sums = sequential_judge(
        sample(with_sum(canary, 150 * 1.8), 150),
        sample(with_sum(stable, 1000 * 1.2), 1000),
        REGRESSION_ONLY,
        evidence,
    )
    assert with_sums.result == "fail"
    assert "ttft" in with_sums.failures[0]
    assert "mean 1.80s vs 1.20s" in with_sums.failures[0]


@pytest.mark.parametrize("canary_mean", [0.30, 0.36, 0.45, 0.60])
def test_the_combined_z_lies_between_the_two_tests(canary_mean: float) -> None:
    stable = with_sum(STABLE, STABLE.total * 0.36)
    canary = with_sum(CANARY_OK, CANARY_OK.total * canary_mean)
    u, u_sd = _mann_whitney(canary, stable, 1.2, smooth=True)
    combined = regression_z(canary, stable, 1.2)
    assert combined is not None
    excess, se = mean_excess(canary, stable, 1.2) or (math.nan, math.nan)
    score, score_sd = scale_score(canary, stable, 1.2)
    tests = (u / u_sd, excess / se, score / score_sd)
    assert min(tests) - 1e-9 <= combined <= max(tests) + 1e-9


@pytest.mark.parametrize("histogram", [STABLE, CANARY_SLOW, TWO_BUCKETS, hist({0.1: 5, 2.5: 40, 10.0: 2})])
def test_the_smooth_cdf_is_exact_at_bounds_monotone_and_inside_each_bucket(histogram: Histogram) -> None:
    for bound, count in zip(histogram.bounds, histogram.counts, strict=True):
        assert histogram.smooth_count_below(bound) == pytest.approx(count)
    xs = [0.0005 * 1.05**i for i in range(200)]
    values = [histogram.smooth_count_below(x) for x in xs]
    assert values == sorted(values)
    for x, value in zip(xs, values, strict=True):
        i = next(i for i, b in enumerate(histogram.bounds) if x <= b)
        below = histogram.counts[i - 1] if i > 0 else 0.0
        assert below - 1e-9 <= value <= histogram.counts[i] + 1e-9


def test_the_scale_score_test_points_the_way_of_the_shift() -> None:
    same, _ = scale_score(CANARY_OK, STABLE, 1.2)
    slower, sd = scale_score(CANARY_SLOW, STABLE, 1.2)
    assert sd > 0
    assert same < 0 < slower  # as fast as stable: well inside the 20 % tolerance
    assert scale_score(CANARY_OK, hist({}), 1.2) == (0.0, 0.0)  # no stable requests: no test


@pytest.mark.parametrize(
    ("zs", "expected"),
    [
        ([1.5], 1.5),
        ([-1.0, -2.0], -2.0),  # a healthy canary keeps its weakest test's z
        ([3.0, -1.0], z_of_p(2 * 0.0013498980316301)),  # one strong test pays the factor k / 1
        ([5.0, 5.0, 5.0], 5.0),  # agreeing tests pay nothing
        ([3.0, 2.9, -4.0], z_of_p(1.5 * 0.0018658133003840)),  # the second strongest wins, at k / 2
    ],
)
def test_simes_combines_z_scores(zs: list[float], expected: float) -> None:
    assert simes_z(zs) == pytest.approx(expected, rel=1e-6)
