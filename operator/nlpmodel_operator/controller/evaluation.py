"""Sending an evaluation's cases (the I/O half of the evaluation gate; scoring and judging are pure).

One code path for the operator and `nlpctl eval`: :func:`answer_cases` sends every case to one
OpenAI-compatible endpoint with bounded concurrency and a per-case timeout; :func:`run_evaluation`
asks both revisions at once and returns the core's verdict. Answers stay in memory for the time of
the verdict: they are never logged (they may carry personal data); a failed request is counted, and
only its kind (status code, timeout, connection error) is kept.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import aiohttp

from nlpmodel_operator.core.evaluation.dataset import Case
from nlpmodel_operator.core.evaluation.gate import EvaluationVerdict, Thresholds, evaluate
from nlpmodel_operator.core.evaluation.protocol import MalformedResponseError, answer_from, request_for
from nlpmodel_operator.core.evaluation.scorers import Answer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Endpoint:
    """One revision as the evaluator reaches it: a base URL (its own Service) and the served model name
    (None: the server's default)."""

    url: str
    model: str | None = None


@dataclass
class Answers:
    by_case: dict[str, Answer | None]
    failures: dict[str, int]  # kind of failure -> count (never the answers)


async def answer_cases(
    session: aiohttp.ClientSession,
    endpoint: Endpoint,
    cases: Sequence[Case],
    *,
    concurrency: int,
    timeout_s: float,
) -> Answers:
    """Every case's answer from one endpoint (None where the request failed)."""
    gate = asyncio.Semaphore(max(1, concurrency))
    failures: dict[str, int] = {}
    base = endpoint.url.rstrip("/")

    async def one(case: Case) -> Answer | None:
        request = request_for(case, endpoint.model)
        async with gate:
            try:
                async with session.post(
                    base + request.path,
                    json=dict(request.body),
                    timeout=aiohttp.ClientTimeout(total=timeout_s),
                ) as response:
                    if response.status != 200:
                        kind = f"HTTP {response.status}"
                    else:
                        return answer_from(case, json.loads(await response.read()))
            except TimeoutError:
                kind = "timeout"
            except aiohttp.ClientError as exc:
                kind = type(exc).__name__
            except (MalformedResponseError, ValueError):
                kind = "malformed response"
        failures[kind] = failures.get(kind, 0) + 1
        return None

    answers = await asyncio.gather(*(one(case) for case in cases))
    if failures:
        log.info("evaluation requests to %s failed: %s", base, _describe(failures))
    return Answers({case.id: answer for case, answer in zip(cases, answers, strict=True)}, failures)


async def run_evaluation(
    cases: Sequence[Case],
    canary: Endpoint,
    stable: Endpoint | None,
    thresholds: Thresholds,
    *,
    concurrency: int,
    timeout_s: float,
) -> tuple[EvaluationVerdict, Mapping[str, int]]:
    """Both revisions answer the same cases at once; the verdict, and the canary's failures by kind."""
    async with aiohttp.ClientSession() as session:
        asked = [answer_cases(session, canary, cases, concurrency=concurrency, timeout_s=timeout_s)]
        if stable is not None:
            asked.append(answer_cases(session, stable, cases, concurrency=concurrency, timeout_s=timeout_s))
        results = await asyncio.gather(*asked)
    canary_answers = results[0]
    stable_answers = results[1].by_case if stable is not None else None
    verdict = evaluate(cases, canary_answers.by_case, stable_answers, thresholds)
    return verdict, canary_answers.failures


def _describe(failures: Mapping[str, int]) -> str:
    return ", ".join(f"{count} {kind}" for kind, count in sorted(failures.items()))
