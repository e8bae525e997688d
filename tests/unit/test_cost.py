"""Token economics (issue 19): the cost arithmetic, the share-independent cost test, status.cost."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest
from nlpmodel_vllm_metrics import token_buckets

from nlpmodel_operator.api.constants import Reason
from nlpmodel_operator.api.spec import NLPModelSpec
from nlpmodel_operator.api.status import CostStatus, ObjectiveEvidence, RevisionCost
from nlpmodel_operator.core.analysis import queries as q
from nlpmodel_operator.core.analysis.checks import CheckData, record_check
from nlpmodel_operator.core.analysis.cost import (
    RevisionPricing,
    TokenSample,
    cost_ratio,
    counted,
    measure,
    price_ratio,
    prompt_ratio,
    relative_second_moment,
    z_score,
)
from nlpmodel_operator.core.analysis.judge import Histogram, Objectives, RevisionSample
from nlpmodel_operator.core.analysis.sequential import (
    COST_REGRESSION_TEST,
    COST_SLO_TEST,
    PROMPT_REGRESSION_TEST,
    CostContext,
    SequentialVerdict,
    sequential_judge,
)
from nlpmodel_operator.core.economics import cost_status, plan_pricing, pricing_by_revision, round_measure
from nlpmodel_operator.core.pricing import Prices
from nlpmodel_operator.core.records import RevisionState

BOUNDS = (*token_buckets(4096), math.inf)
NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
WINDOW = 75.0
H100 = "nvidia-h100-80gb"
PRICES = Prices(gpu_hour={H100: 4.0}, currency="USD")


def histogram(values: list[int]) -> Histogram:
    counts = [float(sum(1 for v in values if v <= b)) for b in BOUNDS]
    return Histogram(BOUNDS, tuple(counts))


def tokens(
    n: int, prompt: int = 400, generated: int = 100, cached_share: float = 0.0, spread: bool = True
) -> TokenSample:
    """n requests; prompts alternating around `prompt` (x0.5, x1.5) when spread, a share cached."""
    prompts = [round(prompt * (0.5 if i % 2 else 1.5)) if spread else prompt for i in range(n)]
    gens = [generated] * n
    p = float(sum(prompts))
    return TokenSample(
        prompt_tokens=p,
        generation_tokens=float(sum(gens)),
        cache_hits=round(p * cached_share),
        cache_queries=p,
        prompt_histogram=histogram(prompts),
        generation_histogram=histogram(gens),
    )


def sample(tok: TokenSample | None, requests: float, errors: float = 0.0) -> RevisionSample:
    return RevisionSample(None, None, None, requests=requests, errors=errors, tokens=tok)


def pricing(gpus: int = 1, replicas: int | None = 1, priced: bool = True) -> RevisionPricing:
    return RevisionPricing(gpus, H100, 4.0 * gpus if priced else None, replicas)


# -- the accounting ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tok", "successes", "price", "expected"),
    [
        pytest.param(
            tokens(150, spread=False),
            150,
            pricing(1, 1),
            # 1 replica x 4.0/h over 75 s = 0.08333; 150 x 500 tokens
            {"cost_per_million_tokens": 0.08333 * 1e6 / 75_000, "cost_per_request": 0.08333 / 150},
            id="one-replica",
        ),
        pytest.param(
            tokens(150, spread=False),
            150,
            pricing(2, 3),
            {"gpu_hours": 6 * WINDOW / 3600, "cost_per_million_tokens": 24 * WINDOW / 3600 * 1e6 / 75_000},
            id="three-replicas-of-two-gpus",
        ),
        pytest.param(
            TokenSample(0, 0),
            0,
            pricing(1, 1),
            {"cost_per_million_tokens": None, "cost_per_request": None},
            id="zero-traffic-unknown-not-0-or-inf",
        ),
        pytest.param(
            tokens(10),
            10,
            pricing(1, 0),
            {"cost": None, "cost_per_million_tokens": None, "gpu_hours": 0.0},
            id="canary-scaled-to-zero",
        ),
        pytest.param(
            tokens(10),
            10,
            pricing(1, 1, priced=False),
            {"cost_per_million_tokens": None, "cost_per_request": None},
            id="no-price-no-cost",
        ),
        pytest.param(
            tokens(10),
            0,
            pricing(1, 1),
            {"cost_per_request": None},
            id="no-successful-request",
        ),
        pytest.param(
            TokenSample(100, 0, cache_hits=130, cache_queries=100),
            1,
            None,
            {"prefix_cache_hit_ratio": 1.0},
            id="hits-beyond-queries-after-a-reset-clamped",
        ),
    ],
)
def test_measure(
    tok: TokenSample, successes: float, price: RevisionPricing | None, expected: dict[str, float | None]
) -> None:
    usage = measure(tok, successes, WINDOW, price)
    for field, want in expected.items():
        got = getattr(usage, field)
        if want is None:
            assert got is None, field
        else:
            assert got == pytest.approx(want, rel=1e-3), field


def test_measure_counts_tokens_and_cache_hits() -> None:
    usage = measure(tokens(100, prompt=400, generated=100, cached_share=0.25), 100, 50.0, pricing())
    assert usage.tokens_per_second == pytest.approx((40_000 + 10_000) / 50)
    assert usage.prompt_tokens_per_request == pytest.approx(400)
    assert usage.generation_tokens_per_request == pytest.approx(100)
    assert usage.prefix_cache_hit_ratio == pytest.approx(0.25)


def test_token_sample_refuses_what_no_counter_gives() -> None:
    for bad in (-1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="finite count"):
            TokenSample(bad, 0)
    assert TokenSample(10, 0, cache_hits=25).cached == 10  # never more than the prompt tokens


def test_relative_second_moment_of_one_value_and_of_a_spread() -> None:
    constant = relative_second_moment(histogram([100] * 10))
    spread = relative_second_moment(histogram([10] * 5 + [1000] * 5))
    assert constant is not None
    assert spread is not None
    assert 1.0 <= constant < 1.1  # uniform within (50, 100]
    assert spread > 1.5
    assert relative_second_moment(histogram([])) is None


# -- the share-independent cost ratio ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("canary", "stable", "expected"),
    [
        (pricing(1), pricing(1), (1.0, "replica-hour prices")),
        (pricing(2), pricing(1), (2.0, "replica-hour prices")),
        (pricing(2, priced=False), pricing(1, priced=False), (2.0, "GPUs per replica")),
        (RevisionPricing(1, "nvidia-l4"), RevisionPricing(1, H100), None),  # other card, no prices
        (RevisionPricing(0), RevisionPricing(0), None),  # CPU models without prices
    ],
)
def test_price_ratio(
    canary: RevisionPricing, stable: RevisionPricing, expected: tuple[float, str] | None
) -> None:
    assert price_ratio(canary, stable) == expected


def test_cost_ratio_of_twice_the_gpus_is_exactly_two_without_cache() -> None:
    ratio = cost_ratio(tokens(150), tokens(1350), pricing(2), pricing(1))
    assert ratio is not None
    assert ratio.value == pytest.approx(2.0)
    assert ratio.variance == 0.0
    assert z_score(ratio, 1.2) == 40.0


def test_cost_ratio_of_halved_cache_hits_has_a_variance() -> None:
    # stable: 60 % of the prompt cached; canary 30 %: computed share 1 - 0.48 vs 1 - 0.24 (x1.46)
    ratio = cost_ratio(tokens(150, cached_share=0.3), tokens(1350, cached_share=0.6), pricing(), pricing())
    assert ratio is not None
    assert ratio.value == pytest.approx((1 - 0.24) / (1 - 0.48), rel=0.01)
    assert 0 < ratio.variance < 0.01


def test_cost_ratio_unknown_without_histograms() -> None:
    bare = TokenSample(1000, 100)
    assert cost_ratio(bare, tokens(100), pricing(), pricing()) is None


def test_prompt_ratio_of_doubled_prompts() -> None:
    ratio = prompt_ratio(tokens(150, prompt=800), tokens(1350, prompt=400))
    assert ratio is not None
    assert ratio.value == pytest.approx(2.0, rel=0.01)
    assert ratio.variance > 0


# -- the cost objectives in the sequential judge ---------------------------------------------------------

GOALS = Objectives(
    max_cost_regression=0.2,
    cost_per_million_tokens=5.0,
    max_prompt_tokens_regression=0.2,
    min_requests=50,
    confidence=0.95,
)


def judge(
    canary: TokenSample | None,
    stable: TokenSample | None,
    canary_pricing: RevisionPricing,
    stable_pricing: RevisionPricing | None,
    goals: Objectives = GOALS,
    n_canary: float = 150,
) -> SequentialVerdict:
    context = CostContext(canary_pricing, stable_pricing, WINDOW, "USD")
    return sequential_judge(
        sample(canary, n_canary),
        sample(stable, 1350) if stable is not None else None,
        goals,
        cost=context,
    )


def test_equal_cost_canary_passes() -> None:
    verdict = judge(tokens(150), tokens(1350), pricing(1, 1), pricing(1, 9))
    assert verdict.result == "pass", verdict.summary
    assert verdict.values["cost_ratio"] == pytest.approx(1.0)


def test_share_independent_a_canary_at_ten_percent_is_not_dearer() -> None:
    """At 10 % the canary's one replica serves 1/9 of the stable's tokens per replica: its accounting cost
    per token is 9x stable's, yet the same replica at full load costs the same per token."""
    canary, stable = tokens(150), tokens(1350)
    per_token_c = measure(canary, 150, WINDOW, pricing(1, 1)).cost_per_million_tokens
    per_token_s = measure(stable, 1350, WINDOW, pricing(1, 1)).cost_per_million_tokens
    assert per_token_c is not None
    assert per_token_s is not None
    assert per_token_c / per_token_s == pytest.approx(9.0)
    verdict = judge(canary, stable, pricing(1, 1), pricing(1, 1))
    assert verdict.result == "pass", verdict.summary


def test_twice_the_gpus_per_replica_is_a_cost_regression() -> None:
    verdict = judge(tokens(150), tokens(1350), pricing(2, 1), pricing(1, 9))
    assert verdict.result == "fail"
    assert COST_REGRESSION_TEST in verdict.failed_tests
    (message,) = [f for f in verdict.failures if f.startswith("cost ") and "vs stable" in f]
    assert "USD per 1M tokens vs stable" in message
    assert "> 20% more allowed" in message
    assert "always-valid p" in message


def test_without_prices_twice_the_gpus_of_one_card_still_counts() -> None:
    goals = Objectives(max_cost_regression=0.2, confidence=0.95)
    verdict = judge(
        tokens(150), tokens(1350), pricing(2, 1, priced=False), pricing(1, 9, priced=False), goals
    )
    assert verdict.failed_tests == (COST_REGRESSION_TEST,)
    assert "GPUs per replica" in verdict.failures[0]


def test_doubled_prompts_fail_the_prompt_regression() -> None:
    goals = Objectives(max_prompt_tokens_regression=0.2, confidence=0.95)
    verdict = judge(tokens(150, prompt=800), tokens(1350), pricing(), pricing(), goals)
    assert verdict.failed_tests == (PROMPT_REGRESSION_TEST,)
    assert "prompt tokens per request" in verdict.failures[0]


def test_absolute_cost_slo_from_stable_cost_times_the_ratio() -> None:
    # stable: 9 replicas x 4.0/h over 75 s for 1350 x 500 tokens = 1.11 USD per 1M tokens; canary x2
    cheap = Objectives(cost_per_million_tokens=1.5, confidence=0.95)
    verdict = judge(tokens(150), tokens(1350), pricing(2, 1), pricing(1, 9), cheap)
    assert verdict.failed_tests == (COST_SLO_TEST,)
    assert verdict.values["cost_per_million_tokens_canary"] == pytest.approx(
        2 * 0.75 * 4 * 1e6 / 675_000 / 4, rel=0.01
    )
    generous = Objectives(cost_per_million_tokens=5.0, confidence=0.95)
    assert judge(tokens(150), tokens(1350), pricing(2, 1), pricing(1, 9), generous).result == "pass"


@pytest.mark.parametrize(
    ("canary", "stable", "canary_pricing", "stable_pricing", "goals", "n_canary", "result", "says"),
    [
        pytest.param(
            TokenSample(0, 0),
            tokens(1350),
            pricing(),
            pricing(),
            GOALS,
            0,
            "inconclusive",
            "minRequests",
            id="zero-traffic",
        ),
        pytest.param(
            tokens(150),
            tokens(1350),
            pricing(1, 0),
            pricing(1, 9),
            GOALS,
            150,
            "pass",
            "cost per token",
            id="canary-scaled-to-zero-judged-by-its-plan",
        ),
        pytest.param(
            None,
            tokens(1350),
            pricing(),
            pricing(),
            GOALS,
            150,
            "inconclusive",
            "tokens",
            id="no-token-series-never-a-verdict",
        ),
        pytest.param(
            tokens(150),
            None,
            pricing(1, 1, priced=False),
            None,
            Objectives(cost_per_million_tokens=1.0, confidence=0.95),
            150,
            "inconclusive",
            "no price",
            id="absolute-cost-without-prices",
        ),
        pytest.param(
            tokens(150),
            tokens(1350),
            pricing(2),
            None,
            Objectives(max_cost_regression=0.2, confidence=0.95),
            150,
            "pass",
            "stable's price",
            id="stable-price-unknown-not-judged",
        ),
    ],
)
def test_cost_judge_never_decides_on_missing_data(
    canary: TokenSample | None,
    stable: TokenSample | None,
    canary_pricing: RevisionPricing,
    stable_pricing: RevisionPricing | None,
    goals: Objectives,
    n_canary: float,
    result: str,
    says: str,
) -> None:
    verdict = judge(canary, stable, canary_pricing, stable_pricing, goals, n_canary)
    assert verdict.result == result, verdict.summary
    assert says in verdict.summary
    assert not verdict.failed_tests


def test_evidence_accumulates_across_checks() -> None:
    """A +40 % cost (cache hits cut) that one check cannot call is rolled back once checks add up."""
    goals = Objectives(max_cost_regression=0.2, confidence=0.95)
    evidence: tuple[ObjectiveEvidence, ...] = ()
    verdicts = []
    for _ in range(6):
        v = sequential_judge(
            sample(tokens(60, cached_share=0.35), 60),
            sample(tokens(540, cached_share=0.6), 540),
            goals,
            evidence,
            cost=CostContext(pricing(), pricing(), WINDOW),
        )
        evidence = v.evidence
        verdicts.append(v.result)
    assert verdicts[0] == "pass"
    assert "fail" in verdicts


# -- the rollback reason ---------------------------------------------------------------------------------


def spec_with(slo: dict[str, object]) -> NLPModelSpec:
    return NLPModelSpec.model_validate(
        {
            "model": {"uri": "hf://meta-llama/Llama-3.1-8B-Instruct"},
            "resources": {"gpu": {"count": 1, "product": H100}},
            "rollout": {"analysis": {"interval": "60s", "minRequests": 50}, "slo": slo},
        }
    )


def test_a_cost_failure_rolls_back_with_reason_cost_regression() -> None:
    spec = spec_with({"maxCostRegression": "20%"})
    data = CheckData(sample(tokens(150), 150), sample(tokens(1350), 1350), window_s=WINDOW)
    outcome = record_check(spec, None, data, NOW, NOW, CostContext(pricing(2, 1), pricing(1, 9), 0.0, "USD"))
    assert outcome.rollback is not None
    reason, message = outcome.rollback
    assert reason == Reason.COST_REGRESSION
    assert "per 1M tokens vs stable" in message


def test_a_cost_and_a_latency_failure_roll_back_as_analysis_failed() -> None:
    spec = spec_with({"maxCostRegression": "20%", "errorRate": "1%"})
    data = CheckData(sample(tokens(150), 150, errors=30), sample(tokens(1350), 1350), window_s=WINDOW)
    outcome = record_check(spec, None, data, NOW, NOW, CostContext(pricing(2, 1), pricing(1, 9), 0.0))
    assert outcome.rollback is not None
    assert outcome.rollback[0] == Reason.ANALYSIS_FAILED


# -- status.cost -------------------------------------------------------------------------------------------


def test_plan_pricing_prices_the_plans_gpus_and_never_guesses() -> None:
    spec = spec_with({})
    assert plan_pricing(spec, None, PRICES).replica_hour_cost == pytest.approx(4.0)
    assert plan_pricing(spec, None, Prices()).replica_hour_cost is None
    unpriced_card = spec.model_copy(
        update={
            "resources": spec.resources.model_copy(
                update={"gpu": spec.resources.gpu.model_copy(update={"product": None})}
            )
        }
    )
    assert plan_pricing(unpriced_card, None, PRICES).replica_hour_cost is None


def test_cost_status_keeps_the_stables_price_and_measures_both() -> None:
    old = CostStatus(
        currency="USD",
        revisions=[
            RevisionCost(revision="aaaa1111", gpus_per_replica=1, gpu_product=H100, replica_hour_cost=4.0)
        ],
    )
    states = {
        "aaaa1111": RevisionState("aaaa1111", (), True, replicas=9),
        "bbbb2222": RevisionState("bbbb2222", (), True, replicas=1),
    }
    found = pricing_by_revision("bbbb2222", pricing(2, None), old, states)
    assert found["aaaa1111"] == RevisionPricing(1, H100, 4.0, 9)
    assert found["bbbb2222"] == RevisionPricing(2, H100, 8.0, 1)
    check = CheckData(sample(tokens(150), 150), sample(tokens(1350), 1350), window_s=WINDOW)
    status = cost_status(
        old, found, "aaaa1111", "bbbb2222", check, NOW, "USD", checked=("aaaa1111", "bbbb2222")
    )
    stable, canary = status.revisions
    assert (stable.revision, canary.revision) == ("aaaa1111", "bbbb2222")
    assert stable.cost_per_million_tokens == pytest.approx(9 * 4.0 * WINDOW / 3600 * 1e6 / 675_000, rel=1e-3)
    assert canary.replica_hour_cost == 8.0
    assert canary.gpu_hours == pytest.approx(2 * WINDOW / 3600, rel=1e-3)
    assert canary.measured_at == "2026-12-03T12:00:00Z"
    # The next reconcile without a check keeps the measurements; a promoted canary drops the old stable.
    again = cost_status(status, found, "bbbb2222", None, None, NOW, "USD")
    assert [e.revision for e in again.revisions] == ["bbbb2222"]
    assert again.revisions[0].cost_per_million_tokens == canary.cost_per_million_tokens


@pytest.mark.parametrize(
    ("value", "rounded"),
    [(1234.5678, 1235.0), (0.000123456, 0.0001235), (0.0, 0.0), (None, None), (math.inf, None), (-1.0, None)],
)
def test_round_measure(value: float | None, rounded: float | None) -> None:
    assert round_measure(value) == rounded


def test_cost_queries_select_one_revision() -> None:
    text = q.counter_increase(q.PROMPT_TOKENS_TOTAL, "ns", "m", "abcd1234", 75)
    assert text == (
        'sum(increase(vllm:prompt_tokens_total{namespace="ns",nlpmodel_model="m",nlpmodel_revision="abcd1234"}[75s]))'
    )
    per_million = q.cost_per_million_tokens("ns", "m", "abcd1234", 75, 4.0, 9)
    assert per_million.startswith("0.75 * 1e6 / ((sum(increase(vllm:prompt_tokens_total{")
    assert per_million.endswith(") > 0)")


def test_replicas_counted_from_scraped_servers_where_the_workload_reports_none() -> None:
    unknown = pricing(1, None)
    assert measure(tokens(10), 10, WINDOW, unknown).cost is None
    assert counted(unknown, 3).replicas == 3
    assert counted(pricing(1, 2), 3).replicas == 2  # the workload's own count wins
    data = CheckData(
        RevisionSample(None, None, None, 150, 0, tokens=tokens(150), servers=1),
        RevisionSample(None, None, None, 1350, 0, tokens=tokens(1350), servers=9),
        window_s=WINDOW,
    )
    found = {"s": RevisionPricing(1, H100, 4.0), "c": RevisionPricing(2, H100, 8.0)}
    stable, canary = cost_status(None, found, "s", "c", data, NOW, "USD", checked=("s", "c")).revisions
    assert (stable.replicas, canary.replicas) == (9, 1)
    assert stable.cost_per_million_tokens == pytest.approx(9 * 4.0 * WINDOW / 3600 * 1e6 / 675_000, rel=1e-3)


def test_a_rolled_back_canary_keeps_the_measurements_that_condemned_it() -> None:
    found = {"s": RevisionPricing(1, H100, 4.0, 9), "c": RevisionPricing(2, H100, 8.0, 1)}
    data = CheckData(sample(tokens(150), 150), sample(tokens(1350), 1350), window_s=WINDOW)
    stable, failed = cost_status(None, found, "s", None, data, NOW, "USD", "c", ("s", "c")).revisions
    assert (stable.revision, failed.revision) == ("s", "c")
    assert failed.cost_per_million_tokens is not None


def test_a_check_that_promotes_measures_each_revision_by_its_own_sample() -> None:
    """The check was of the canary: promoted in the same decision, the new stable keeps the canary's
    numbers, not the old stable's."""
    found = {"s": RevisionPricing(1, H100, 4.0, 9), "c": RevisionPricing(1, H100, 4.0, 1)}
    data = CheckData(sample(tokens(150, cached_share=0.25), 150), sample(tokens(1350), 1350), window_s=WINDOW)
    (promoted,) = cost_status(None, found, "c", None, data, NOW, "USD", checked=("s", "c")).revisions
    assert promoted.revision == "c"
    assert promoted.prefix_cache_hit_ratio == pytest.approx(0.25, rel=0.01)
