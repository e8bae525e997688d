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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import aiohttp

from nlpmodel_operator.core.evaluation.dataset import Case, DatasetError, choose, parse_dataset
from nlpmodel_operator.core.evaluation.gate import EvaluationVerdict, Requests, Thresholds, evaluate
from nlpmodel_operator.core.evaluation.gating import EvaluationKey, EvaluationOutcome, EvaluationRequest
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
    # Scoring and the exact tests take up to a second of CPU for large datasets: off the event loop,
    # so that other models' reconciles never wait for them.
    verdict = await asyncio.to_thread(evaluate, cases, canary_answers.by_case, stable_answers, thresholds)
    return verdict, canary_answers.failures


def _describe(failures: Mapping[str, int]) -> str:
    return ", ".join(f"{count} {kind}" for kind, count in sorted(failures.items()))


def cluster_url(service: str, namespace: str) -> str:
    """A revision's own Service, as the operator reaches it inside the cluster (port 80, as every
    platform's revision Service serves)."""
    return f"http://{service}.{namespace}.svc.cluster.local"


class Evaluator:
    """The operator's evaluations: one task per due gate, never awaited by a reconcile. A reconcile
    that finds a gate due polls here; the first poll starts the task, a later one (the reconcile the
    task's end requests) takes its outcome. Other models' reconciles never wait for it."""

    def __init__(
        self,
        read_config_map: Callable[[str, str], Mapping[str, str] | None],
        wake: Callable[[str, str], None],
        url_of: Callable[[str, str], str] = cluster_url,
    ) -> None:
        self.read_config_map = read_config_map  # (namespace, name) -> data, None when there is none
        self.wake = wake  # (namespace, model): reconcile it soon
        self.url_of = url_of
        self._tasks: dict[tuple[str, str], tuple[EvaluationKey, asyncio.Task[EvaluationOutcome]]] = {}

    def running(self) -> int:
        return sum(1 for _, task in self._tasks.values() if not task.done())

    def poll(self, namespace: str, model: str, request: EvaluationRequest) -> EvaluationOutcome | None:
        """The outcome of the evaluation ``request`` asks for once it has finished; None before (and
        the first call starts it). A task for an older gate of the model is cancelled."""
        slot = (namespace, model)
        held = self._tasks.get(slot)
        if held is not None and held[0] != request.key:
            held[1].cancel()
            held = None
        if held is None:
            task = asyncio.get_running_loop().create_task(self._evaluate(namespace, request))
            task.add_done_callback(lambda _: self.wake(namespace, model))
            self._tasks[slot] = (request.key, task)
            return None
        task = held[1]
        if not task.done():
            return None
        del self._tasks[slot]
        if task.cancelled():
            return None
        return task.result()

    def forget(self, namespace: str, model: str) -> None:
        """The model is gone: its evaluation, if one runs, is of no use."""
        held = self._tasks.pop((namespace, model), None)
        if held is not None:
            held[1].cancel()

    async def _evaluate(self, namespace: str, request: EvaluationRequest) -> EvaluationOutcome:
        key = request.key
        where = f"ConfigMap {request.config_map}"
        try:
            data = await asyncio.to_thread(self.read_config_map, namespace, request.config_map)
            if data is None:
                return EvaluationOutcome(key, problem=f"{where} not found in namespace {namespace}")
            text = data.get(request.data_key)
            if text is None:
                return EvaluationOutcome(key, problem=f"{where} has no key {request.data_key}")
            try:
                cases = choose(parse_dataset(text), request.samples)
            except DatasetError as exc:
                return EvaluationOutcome(key, problem=f"{where} key {request.data_key}: {exc}")
            verdict, _ = await run_evaluation(
                cases,
                Endpoint(self.url_of(request.canary_service, namespace)),
                Endpoint(self.url_of(request.stable_service, namespace)),
                request.thresholds,
                concurrency=request.concurrency,
                timeout_s=request.timeout_s,
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # Never a pass: the gate stays held and asks again (the message names the kind only).
            log.exception("evaluation of %s in %s failed", key.canary, namespace)
            verdict = EvaluationVerdict("inconclusive", f"evaluation error: {type(exc).__name__}", Requests())
        log.info("evaluation of %s against %s in %s: %s", key.canary, key.stable, namespace, verdict.result)
        return EvaluationOutcome(key, verdict)
