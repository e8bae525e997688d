"""The canary judge: Prometheus-exact quantiles, the tests behind each verdict, messages, properties."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nlpmodel_operator.core.analysis import Histogram, Objectives, RevisionSample, Verdict, judge, naive_judge
from nlpmodel_operator.core.analysis.judge import binomial_sf, normal_sf

INF = math.inf
# vLLM 0.33 TIME_TO_FIRST_TOKEN_BUCKETS, plus +Inf.
TTFT = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
        40.0, 80.0, 160.0, 640.0, 2560.0, INF)  # fmt: skip
POW2 = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, INF)


def hist(bounds: Sequence[float], per_bucket: dict[float, float]) -> Histogram:
    """A histogram from per-bucket (non-cumulative) counts keyed by upper bound."""
    assert set(per_bucket) <= set(bounds)
    running, counts = 0.0, []
    for bound in bounds:
        running += per_bucket.get(bound, 0.0)
        counts.append(running)
    return Histogram(tuple(bounds), tuple(counts))


def sample(
    ttft: Histogram | None, requests: float, errors: float = 0.0, http_5xx: float | None = None
) -> RevisionSample:
    return RevisionSample(ttft=ttft, itl=None, e2e=None, requests=requests, errors=errors, http_5xx=http_5xx)


# The issue's example: canary p95 1.24s over 412 requests, stable p95 0.61s over 3980.
CANARY_SLOW = hist(TTFT, {0.25: 60, 0.5: 200, 0.75: 90, 1.0: 39, 2.5: 15, 5.0: 8})
STABLE = hist(TTFT, {0.25: 1200, 0.5: 2427, 0.75: 350, 1.0: 3})
CANARY_OK = hist(TTFT, {0.25: 125, 0.5: 251, 0.75: 35, 1.0: 1})


# ---------------------------------------------------------------------------------------------
# Histogram: histogram_quantile, exactly


SIMPLE = Histogram((0.1, 0.5, 1.0, INF), (10, 60, 90, 100))


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        (0.0, 0.0),  # rank 0 in the lowest bucket, which starts at 0
        (0.05, 0.05),  # 0 + 0.1 * 5/10
        (0.5, 0.42),  # 0.1 + 0.4 * (50-10)/50
        (0.75, 0.75),  # 0.5 + 0.5 * (75-60)/30
        (0.9, 1.0),  # rank 90 == count of le=1.0: its upper bound
        (0.95, 1.0),  # rank in +Inf: the highest finite bound
        (1.0, 1.0),
        (-0.1, -INF),
        (1.1, INF),
    ],
)
def test_quantile_matches_histogram_quantile(q: float, expected: float) -> None:
    assert SIMPLE.quantile(q) == pytest.approx(expected, abs=1e-12)


def test_quantile_vllm_buckets_with_extrapolated_counts() -> None:
    # increase() gives floats: le=0.5 -> 40.5, le=0.75 -> 52.25, le=1 -> 55.5, +Inf -> 57.
    h = Histogram.from_prometheus({"0.25": 10.0, "0.5": 40.5, "0.75": 52.25, "1.0": 55.5, "+Inf": 57.0})
    # p95: rank 54.15, bucket (0.75, 1]: 0.75 + 0.25 * (54.15 - 52.25) / 3.25
    assert h.quantile(0.95) == pytest.approx(0.75 + 0.25 * 1.9 / 3.25, rel=1e-12)
    # p50: rank 28.5, bucket (0.25, 0.5]: 0.25 + 0.25 * 18.5 / 30.5
    assert h.quantile(0.5) == pytest.approx(0.25 + 0.25 * 18.5 / 30.5, rel=1e-12)
    assert CANARY_SLOW.quantile(0.95) == pytest.approx(1.24)
    assert STABLE.quantile(0.95) == pytest.approx(0.61)


@pytest.mark.parametrize(
    ("histogram", "q"),
    [
        (Histogram((0.1, INF), (0, 0)), 0.5),  # no observations
        (Histogram((0.1, 1.0), (5, 10)), 0.5),  # no +Inf bucket
        (Histogram((INF,), (10,)), 0.5),  # fewer than two buckets
        (Histogram((1.0, 2.0, INF), (0, 5, 5)), 0.0),  # 0/0 in an empty lowest bucket
        (SIMPLE, math.nan),
    ],
)
def test_quantile_nan_like_prometheus(histogram: Histogram, q: float) -> None:
    assert math.isnan(histogram.quantile(q))


def test_quantile_lowest_bucket_at_or_below_zero_returns_its_bound() -> None:
    h = Histogram((-1.0, 0.0, 1.0, INF), (5, 10, 20, 20))
    assert h.quantile(0.1) == -1.0
    assert h.quantile(0.4) == pytest.approx(-0.4)  # rank 8: -1 + 1 * (8 - 5) / 5


def test_from_prometheus_sorts_coalesces_and_forces_monotonicity() -> None:
    h = Histogram.from_prometheus({"+Inf": 100.0, "1": 80.0, "0.5": 81.0, "1.0": 5.0, "0.1": 10.0})
    assert h.bounds == (0.1, 0.5, 1.0, INF)
    assert h.counts == (10.0, 81.0, 85.0, 100.0)  # "1" + "1.0" coalesced; nothing below a lower bound
    assert h.total == 100.0


@pytest.mark.parametrize(
    "rows",
    [{}, {"0.1": math.nan, "+Inf": 1.0}, {"abc": 1.0}, {"0.1": -1.0, "+Inf": 1.0}, {"NaN": 1.0}],
)
def test_from_prometheus_rejects_unusable_rows(rows: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=r"bucket|no buckets"):
        Histogram.from_prometheus(rows)


@pytest.mark.parametrize(
    ("bounds", "counts", "match"),
    [
        ((1.0, 0.5, INF), (1, 2, 3), "ascending"),
        ((0.5, 1.0, INF), (1, 2), "bounds but"),
        ((0.5, 1.0, INF), (1, 3, 2), "decrease"),
        ((0.5, INF), (-1, 2), "finite"),
        ((), (), "at least one"),
    ],
)
def test_histogram_validates(bounds: tuple[float, ...], counts: tuple[float, ...], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Histogram(bounds, counts)


def test_fraction_above_inverts_quantile() -> None:
    assert SIMPLE.fraction_above(SIMPLE.quantile(0.5)) == pytest.approx(0.5)
    assert SIMPLE.fraction_above(0.75) == pytest.approx(0.25)
    assert SIMPLE.fraction_above(5.0) == pytest.approx(0.10)  # the +Inf bucket stays above
    assert SIMPLE.fraction_above(-1.0) == 1.0
    assert math.isnan(Histogram((1.0, INF), (0, 0)).fraction_above(0.5))


# ---------------------------------------------------------------------------------------------
# Statistics helpers


@pytest.mark.parametrize(
    ("k", "n", "p"), [(0, 10, 0.3), (1, 1, 0.5), (3, 10, 0.05), (7, 412, 0.01), (40, 120, 0.25)]
)
def test_binomial_sf_is_exact_for_integers(k: int, n: int, p: float) -> None:
    exact = sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k, n + 1))
    assert binomial_sf(k, n, p) == pytest.approx(exact, rel=1e-9, abs=1e-15)


@given(
    n=st.integers(min_value=1, max_value=300),
    p=st.floats(min_value=0.001, max_value=0.999),
    data=st.data(),
)
def test_binomial_sf_property(n: int, p: float, data: st.DataObject) -> None:
    k = data.draw(st.integers(min_value=0, max_value=n))
    exact = math.fsum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k, n + 1))
    assert binomial_sf(k, n, p) == pytest.approx(exact, rel=1e-7, abs=1e-12)
    assert binomial_sf(k + 0.5, n, p) <= binomial_sf(k, n, p) + 1e-12  # continuous, decreasing in k


def test_normal_sf() -> None:
    assert normal_sf(0.0) == 0.5
    assert normal_sf(1.6448536269514722) == pytest.approx(0.05, rel=1e-9)


# ---------------------------------------------------------------------------------------------
# Objectives


def test_objectives_from_spec_camel_case_strings() -> None:
    obj = Objectives.from_spec(
        {"ttftP95": "800ms", "itlP95": "50ms", "e2eP95": "1m", "errorRate": "1%", "maxRegression": "10%"},
        {"interval": "60s", "minRequests": 100, "failureThreshold": 3},
    )
    assert obj.ttft_p95 == pytest.approx(0.8)
    assert obj.itl_p95 == pytest.approx(0.05)
    assert obj.e2e_p95 == 60.0
    assert obj.error_rate == pytest.approx(0.01)
    assert obj.max_regression == pytest.approx(0.1)
    assert (obj.min_requests, obj.failure_threshold) == (100, 3)
    assert obj.alpha == pytest.approx((1 - 0.98) ** (1 / 3))


def test_objectives_from_spec_snake_case_numbers_and_defaults() -> None:
    obj = Objectives.from_spec({"ttft_p95": 0.5, "error_rate": 0.02, "max_regression": None}, None)
    assert obj == Objectives(ttft_p95=0.5, error_rate=0.02)
    assert Objectives.from_spec(None).alpha == pytest.approx(0.02**0.5)
    assert Objectives.from_spec({}, {}, confidence=0.99).alpha == pytest.approx(0.1)


@pytest.mark.parametrize(
    ("slo", "analysis", "error"),
    [
        ({"ttftP95": "fast"}, None, ValueError),
        ({"ttftP95": True}, None, TypeError),
        ({"errorRate": "2"}, None, ValueError),
        ({"ttftP95": -1.0}, None, ValueError),
        ({"errorRate": 1.5}, None, ValueError),
        ({}, {"minRequests": 0}, ValueError),
        ({}, {"minRequests": 2.5}, ValueError),
        ({}, {"failureThreshold": "2"}, TypeError),
    ],
)
def test_objectives_from_spec_rejects(
    slo: dict[str, object], analysis: dict[str, object] | None, error: type
) -> None:
    with pytest.raises(error):
        Objectives.from_spec(slo, analysis)


# ---------------------------------------------------------------------------------------------
# Verdicts and messages (table-driven)

SLO_TTFT = Objectives(ttft_p95=0.8)
ERRORS = Objectives(error_rate=0.01)


@pytest.mark.parametrize(
    ("name", "canary", "stable", "objectives", "result", "failures", "summary"),
    [
        (
            "too few requests",
            sample(CANARY_SLOW, 31),
            sample(STABLE, 3980),
            SLO_TTFT,
            "inconclusive",
            (),
            "inconclusive: 31 canary requests < minRequests 50",
        ),
        (
            "absolute SLO (and regression)",
            sample(CANARY_SLOW, 412),
            sample(STABLE, 3980),
            SLO_TTFT,
            "fail",
            (
                "ttft p95 1.24s > slo 0.80s (stable 0.61s, n=412)",
                "ttft is 38% slower than stable (> 20% allowed, p<0.001; p95 1.24s vs 0.61s, n=412/3980)",
            ),
            "fail: ttft p95 1.24s > slo 0.80s (stable 0.61s, n=412); "
            "ttft is 38% slower than stable (> 20% allowed, p<0.001; p95 1.24s vs 0.61s, n=412/3980)",
        ),
        (
            "absolute SLO without a stable",
            sample(CANARY_SLOW, 412),
            None,
            SLO_TTFT,
            "fail",
            ("ttft p95 1.24s > slo 0.80s (n=412)",),
            "fail: ttft p95 1.24s > slo 0.80s (n=412)",
        ),
        (
            "healthy canary",
            sample(CANARY_OK, 412, errors=1),
            sample(STABLE, 3980, errors=12),
            Objectives(ttft_p95=0.8, error_rate=0.01),
            "pass",
            (),
            "pass: ttft p95 0.61s (stable 0.61s), errors 0.24% (stable 0.30%), n=412/3980",
        ),
        (
            "error-rate SLO",
            sample(CANARY_OK, 412, errors=20),
            sample(STABLE, 3980, errors=12),
            Objectives(error_rate=0.01, max_regression=100.0),
            "fail",
            ("error rate 4.9% > slo 1.0% (stable 0.30%, n=412)",),
            "fail: error rate 4.9% > slo 1.0% (stable 0.30%, n=412)",
        ),
        (
            "error-rate regression",
            sample(CANARY_OK, 412, errors=8),
            sample(STABLE, 3980, errors=12),
            Objectives(error_rate=0.05),
            "fail",
            ("error rate 1.9% is 544% worse than stable 0.30% (> 20% allowed, p<0.001, n=412/3980)",),
            "fail: error rate 1.9% is 544% worse than stable 0.30% (> 20% allowed, p<0.001, n=412/3980)",
        ),
        (
            "errors against an error-free stable",
            sample(CANARY_OK, 412, errors=6),
            sample(STABLE, 3980, errors=0),
            Objectives(),
            "fail",
            ("error rate 1.5% vs stable 0.00% (> 20% allowed, p<0.001, n=412/3980)",),
            "fail: error rate 1.5% vs stable 0.00% (> 20% allowed, p<0.001, n=412/3980)",
        ),
        (
            "no canary data for an objective",
            sample(None, 412),
            sample(STABLE, 3980),
            SLO_TTFT,
            "inconclusive",
            (),
            "inconclusive: no canary data for ttft",
        ),
        (
            "a fail outranks missing data",
            sample(None, 412, errors=40),
            sample(STABLE, 3980),
            Objectives(ttft_p95=0.8, error_rate=0.01),
            "fail",
            ("error rate 9.7% > slo 1.0% (stable 0.00%, n=412)",),
            "fail: error rate 9.7% > slo 1.0% (stable 0.00%, n=412); "
            "error rate 9.7% vs stable 0.00% (> 20% allowed, p<0.001, n=412/3980)",
        ),
        (
            "stable too small for regressions",
            sample(CANARY_SLOW, 412),
            sample(STABLE.scaled_to(30), 30),
            Objectives(),
            "pass",
            (),
            "pass: ttft p95 1.24s (stable 0.61s), errors 0.00% (stable 0.00%), n=412/30 "
            "(stable has 30 requests < minRequests 50: no regression tests)",
        ),
        (
            "HTTP 5xx count as errors and requests",
            sample(None, 0, http_5xx=100),
            sample(STABLE, 3980),
            ERRORS,
            "fail",
            ("error rate 100.0% > slo 1.0% (stable 0.00%, n=100)",),
            "fail: error rate 100.0% > slo 1.0% (stable 0.00%, n=100); "
            "error rate 100.0% vs stable 0.00% (> 20% allowed, p<0.001, n=100/3980)",
        ),
    ],
)
def test_verdicts(
    name: str,
    canary: RevisionSample,
    stable: RevisionSample | None,
    objectives: Objectives,
    result: str,
    failures: tuple[str, ...],
    summary: str,
) -> None:
    verdict = judge(canary, stable, objectives)
    assert verdict.result == result, name
    assert verdict.failures[: len(failures)] == failures
    assert verdict.summary == summary


def test_shift_estimate_is_exact_for_a_one_bucket_shift() -> None:
    """Power-of-two bounds: stable stretched x2 is the canary exactly, so the canary is 100 % slower."""
    stable = hist(POW2, {0.25: 100, 0.5: 200, 1.0: 100})
    canary = hist(POW2, {0.5: 100, 1.0: 200, 2.0: 100})
    verdict = judge(sample(canary, 400), sample(stable, 400), Objectives())
    assert verdict.result == "fail"
    assert verdict.values["ttft_shift"] == pytest.approx(2.0, rel=1e-5)
    assert verdict.values["ttft_p95_canary"] == pytest.approx(1.8)
    assert verdict.values["ttft_p95_stable"] == pytest.approx(0.9)
    assert verdict.failures == (
        "ttft is 100% slower than stable (> 20% allowed, p<0.001; p95 1.80s vs 0.90s, n=400/400)",
    )


def test_a_canary_within_the_tolerance_passes() -> None:
    """10 % slower everywhere (inside the 20 % allowed) with plenty of data: no regression."""
    stable = hist(POW2, {0.25: 1000, 0.5: 2000, 1.0: 1000})
    canary = Histogram(POW2, (*(stable.count_below(b / 1.1) for b in POW2[:-1]), 4000.0))
    verdict = judge(sample(canary, 4000), sample(stable, 4000), Objectives())
    assert verdict.result == "pass"
    assert verdict.values["ttft_regression_p"] > 0.5


def test_values_and_evidence_record_the_tests() -> None:
    verdict = judge(
        sample(CANARY_SLOW, 412, errors=2),
        sample(STABLE, 3980, errors=12),
        Objectives(ttft_p95=0.8, error_rate=0.01),
    )
    assert verdict.values["n_canary"] == 412
    assert verdict.values["n_stable"] == 3980
    assert verdict.values["ttft_p95_canary"] == pytest.approx(1.24)
    assert verdict.values["ttft_p95_stable"] == pytest.approx(0.61)
    assert verdict.values["error_rate_canary"] == pytest.approx(2 / 412)
    assert verdict.values["alpha"] == pytest.approx(0.02**0.5)
    tests = {e.test: e for e in verdict.evidence}
    assert set(tests) == {"ttft p95 slo", "ttft regression", "error rate slo", "error rate regression"}
    assert tests["ttft p95 slo"].failed
    assert tests["ttft p95 slo"].limit == 0.8
    assert tests["ttft p95 slo"].p_value == verdict.values["ttft_slo_p"]
    assert not tests["error rate slo"].failed
    with pytest.raises(TypeError):
        verdict.values["x"] = 1.0  # type: ignore[index]


def test_itl_sample_size_is_the_number_of_requests() -> None:
    """Thousands of token observations from 60 requests carry the evidence of 60 requests.

    8.3 % of the tokens are slower than the SLO: significant over 6000 observations, not over 60.
    """
    bounds = (0.025, 0.05, 0.075, 0.1, INF)
    stable = hist(bounds, {0.025: 1000, 0.05: 4000, 0.075: 1000})
    canary = hist(bounds, {0.025: 900, 0.05: 4000, 0.075: 1000, 0.1: 100})
    base = RevisionSample(ttft=None, itl=stable, e2e=None, requests=60, errors=0)
    slower = RevisionSample(ttft=None, itl=canary, e2e=None, requests=60, errors=0)
    verdict = judge(slower, base, Objectives(itl_p95=0.065))
    assert verdict.result == "pass"
    # the same shapes with one observation per request would not change the p-value
    assert verdict.values["itl_slo_p"] == pytest.approx(
        judge(
            RevisionSample(ttft=None, itl=canary.scaled_to(60), e2e=None, requests=60, errors=0),
            RevisionSample(ttft=None, itl=stable.scaled_to(60), e2e=None, requests=60, errors=0),
            Objectives(itl_p95=0.065),
        ).values["itl_slo_p"]
    )


@pytest.mark.parametrize(
    ("canary", "stable", "objectives", "result", "failures"),
    [
        (sample(CANARY_SLOW, 412), sample(STABLE, 3980), SLO_TTFT, "fail", 2),
        (sample(CANARY_OK, 412), sample(STABLE, 3980), SLO_TTFT, "pass", 0),
        (sample(CANARY_OK, 30), sample(STABLE, 3980), SLO_TTFT, "inconclusive", 0),
        (sample(CANARY_OK, 412, errors=1), sample(STABLE, 3980, errors=0), Objectives(), "fail", 1),
    ],
)
def test_naive_judge_compares_point_estimates(
    canary: RevisionSample, stable: RevisionSample, objectives: Objectives, result: str, failures: int
) -> None:
    verdict = naive_judge(canary, stable, objectives)
    assert verdict.result == result
    assert len(verdict.failures) == failures


def test_naive_judge_messages() -> None:
    verdict = naive_judge(sample(CANARY_SLOW, 412), sample(STABLE, 3980), SLO_TTFT)
    assert verdict.failures == ("ttft p95 1.24s > slo 0.80s", "ttft p95 1.24s > 0.61s * 1.2 (stable)")


def test_revision_sample_validates() -> None:
    with pytest.raises(ValueError, match="requests"):
        sample(None, -1)
    with pytest.raises(ValueError, match="http_5xx"):
        sample(None, 1, http_5xx=math.nan)


# ---------------------------------------------------------------------------------------------
# Properties

BOUNDS = (0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, INF)
per_bucket = st.lists(st.integers(min_value=0, max_value=400), min_size=len(BOUNDS), max_size=len(BOUNDS))


def from_list(counts: Sequence[float]) -> Histogram:
    return hist(BOUNDS, dict(zip(BOUNDS, counts, strict=True)))


@settings(deadline=None)
@given(counts=per_bucket, errors=st.integers(min_value=0, max_value=20), scale=st.sampled_from([1, 3, 10]))
def test_identical_samples_never_fail(counts: list[int], errors: int, scale: int) -> None:
    h = from_list([c * scale for c in counts])
    n = h.total
    one = RevisionSample(ttft=h, itl=h, e2e=h, requests=n, errors=min(errors * scale, n))
    verdict = judge(one, one, Objectives())
    assert verdict.result == ("inconclusive" if n < 50 else "pass")


@settings(deadline=None)
@given(
    canary=per_bucket,
    stable=per_bucket,
    moves=st.lists(
        st.tuples(st.integers(0, len(BOUNDS) - 2), st.integers(1, len(BOUNDS) - 1), st.integers(1, 200)),
        min_size=1,
        max_size=4,
    ),
    slo=st.sampled_from([None, 0.5, 1.0, 2.5]),
)
def test_slower_canary_never_turns_fail_into_pass(
    canary: list[int], stable: list[int], moves: list[tuple[int, int, int]], slo: float | None
) -> None:
    objectives = Objectives(ttft_p95=slo)
    stable_sample = sample(from_list(stable), sum(stable))
    before = judge(sample(from_list(canary), sum(canary)), stable_sample, objectives)
    slower = list(canary)
    for source, offset, amount in moves:
        target = min(source + offset, len(BOUNDS) - 1)
        moved = min(amount, slower[source])
        slower[source] -= moved
        slower[target] += moved
    after = judge(sample(from_list(slower), sum(slower)), stable_sample, objectives)
    if before.result == "fail":
        assert after.result == "fail"
    for key in ("ttft_slo_p", "ttft_regression_p"):
        if key in before.values:
            assert after.values[key] <= before.values[key] + 1e-9


@settings(deadline=None)
@given(canary=per_bucket, stable=per_bucket, min_requests=st.integers(1, 2000))
def test_inconclusive_iff_below_min_requests(canary: list[int], stable: list[int], min_requests: int) -> None:
    h = from_list(canary)
    n = h.total
    verdict = judge(
        RevisionSample(ttft=h, itl=h, e2e=h, requests=n, errors=0),
        sample(from_list(stable), sum(stable)),
        Objectives(ttft_p95=1.0, itl_p95=1.0, e2e_p95=1.0, error_rate=0.01, min_requests=min_requests),
    )
    assert (verdict.result == "inconclusive") == (n < min_requests or n == 0)
    for key, value in verdict.values.items():
        if key.endswith("_p"):
            assert 0.0 <= value <= 1.0


@given(
    counts=st.lists(st.floats(min_value=0, max_value=1e6, allow_nan=False), min_size=2, max_size=12),
    q=st.floats(min_value=0, max_value=1),
)
def test_quantile_stays_within_its_bucket(counts: list[float], q: float) -> None:
    bounds = (*(0.01 * 2**i for i in range(len(counts) - 1)), INF)
    cumulative = tuple(sum(counts[: i + 1]) for i in range(len(counts)))
    h = Histogram(bounds, cumulative)
    value = h.quantile(q)
    if h.total <= 0:
        assert math.isnan(value)
        return
    if math.isnan(value):  # q == 0 over an empty lowest bucket
        assert q == 0
        return
    rank = q * h.total
    b = next(i for i, c in enumerate(cumulative) if c >= rank)
    if b == len(bounds) - 1:
        assert value == bounds[-2]
    else:
        lower = bounds[b - 1] if b > 0 else 0.0
        assert lower - 1e-12 <= value <= bounds[b] + 1e-12
        assert h.count_below(value) == pytest.approx(rank, rel=1e-9, abs=1e-6)


def test_verdict_is_immutable_and_pure() -> None:
    canary, stable = sample(CANARY_SLOW, 412), sample(STABLE, 3980)
    first: Verdict = judge(canary, stable, SLO_TTFT)
    assert judge(canary, stable, SLO_TTFT) == first
    with pytest.raises(AttributeError):
        first.result = "pass"  # type: ignore[misc]


def test_objectives_from_the_spec_models_dump() -> None:
    """The contract with the rollout: Objectives.from_spec takes the API models' plain dump."""
    from nlpmodel_operator.api.spec import SLO, Analysis  # noqa: PLC0415

    slo = SLO.model_validate({"ttftP95": "800ms", "errorRate": "1%"}).model_dump(by_alias=True)
    analysis = Analysis.model_validate({"minRequests": 80, "failureThreshold": 3}).model_dump(by_alias=True)
    assert Objectives.from_spec(slo, analysis) == Objectives(
        ttft_p95=0.8, error_rate=0.01, max_regression=0.2, min_requests=80, failure_threshold=3
    )
