"""`nlpctl`: validate, plan and render NLPModels without a cluster; run the operator; control rollouts
(promote, abort, retry, pause, resume) and show their status. In a checkout with the development harness
installed, also `demo` and `localplane`."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import traceback
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Protocol

import yaml

from nlpmodel_operator import __version__
from nlpmodel_operator.api import constants as c
from nlpmodel_operator.api.constants import Reason
from nlpmodel_operator.api.spec import NLPModelSpec
from nlpmodel_operator.cli import control, evaluate, wait
from nlpmodel_operator.cli.control import EXIT_INTERNAL, EXIT_INVALID, EXIT_OK
from nlpmodel_operator.cli.manifests import Document, ManifestError, read_documents
from nlpmodel_operator.cli.statusview import describe_serving, routing
from nlpmodel_operator.controller.config import OperatorConfig, prices_from_env
from nlpmodel_operator.controller.run import add_arguments as add_run_arguments
from nlpmodel_operator.core.autoscaling import DEFAULT_PROMETHEUS_URL, ScalingSupport
from nlpmodel_operator.core.evaluation.dataset import DatasetError, parse_dataset
from nlpmodel_operator.core.hostresources import host_requests
from nlpmodel_operator.core.monitoring import Monitoring
from nlpmodel_operator.core.networkpolicy import NetworkPolicies
from nlpmodel_operator.core.planner import Plan, PlanOption, format_bytes
from nlpmodel_operator.core.pricing import Prices, PricingError, parse_prices, replica_cost
from nlpmodel_operator.core.problems import Problem
from nlpmodel_operator.core.render import render_settled
from nlpmodel_operator.core.resolve import DEFAULT_PLANNING_GPU, Resolution, resolve
from nlpmodel_operator.core.spend import annotation_problems
from nlpmodel_operator.core.validation import object_problems


def _namespace(doc: Document, override: str | None) -> str:
    return override or doc.namespace or os.environ.get("ARGOCD_APP_NAMESPACE") or "default"


def check(doc: Document, namespace: str | None = None) -> tuple[Resolution | None, list[Problem]]:
    """All problems of one document: schema-level first; the plan only once the spec parses."""
    spec, problems = object_problems(doc.body)
    if spec is None:
        return None, problems
    resolution = resolve(doc.name, _namespace(doc, namespace), spec)
    return resolution, problems + resolution.problems


def _print_problems(doc: Document, problems: list[Problem]) -> None:
    for problem in problems:
        print(f"{doc.source}: {doc.name}: {problem}")


def cmd_validate(args: argparse.Namespace) -> int:
    status = EXIT_OK
    documents = list(read_documents(args.files, also=("ConfigMap",)))
    config_maps = [d for d in documents if d.kind == "ConfigMap"]
    models = [d for d in documents if d.kind != "ConfigMap"]
    if not models:
        print(f"{', '.join(args.files)}: no NLPModel to validate", file=sys.stderr)
    for doc in models:
        resolution, problems = check(doc)
        problems = problems + annotation_problems(doc.body)  # the operator carries on; CI need not
        dataset_note = ""
        if resolution is not None and resolution.resolved is not None:
            dataset_problems, dataset_note = _dataset_check(doc, resolution.resolved.spec, config_maps)
            problems = problems + dataset_problems
        if problems:
            _print_problems(doc, problems)
            status = EXIT_INVALID
            continue
        assert resolution is not None
        assert resolution.resolved is not None
        resolved = resolution.resolved
        plan = resolved.plan
        fit = (
            f"fits {resolved.spec.resources.gpu.count} × {resolved.planned_gpu}"
            if plan is not None and resolved.planned_gpu
            else "fits on CPU"
            if plan is not None
            else "not planned: unknown architecture (add spec.model.architecture)"
        )
        print(f"{doc.source}: {doc.name}: valid (revision {resolved.revision}, {fit}{dataset_note})")
    return status


def _dataset_check(
    doc: Document, spec: NLPModelSpec, config_maps: list[Document]
) -> tuple[list[Problem], str]:
    """The evaluation dataset, when its ConfigMap is among the files validated (as the operator
    parses it: line and field of the first problem); a note for the valid line."""
    evaluation = spec.rollout.evaluation
    if evaluation is None:
        return [], ""
    name, key = evaluation.dataset.config_map, evaluation.dataset.key
    path = "spec.rollout.evaluation.dataset"
    found = [m for m in config_maps if m.name == name and (m.namespace or doc.namespace) == doc.namespace]
    if not found:
        return [], f"; dataset ConfigMap {name} not among the files, not checked"
    data = found[0].body.get("data") or {}
    text = data.get(key) if isinstance(data, dict) else None
    if not isinstance(text, str):
        return [Problem(path, f"ConfigMap {name} has no key {key}", Reason.DATASET_INVALID)], ""
    try:
        cases = parse_dataset(text)
    except DatasetError as exc:
        return [Problem(path, f"ConfigMap {name} key {key}: {exc}", Reason.DATASET_INVALID)], ""
    return [], f"; dataset {name}/{key}: {len(cases)} cases"


def cmd_render(args: argparse.Namespace) -> int:
    """What the operator applies to each model at rest (`core.render.render_settled`)."""
    support = ScalingSupport(prometheus_url=args.prometheus_url)
    monitoring = None if args.no_pod_monitor else Monitoring(args.scrape_interval)
    network = NetworkPolicies(
        args.network_policies, args.prometheus_namespace or None, args.operator_namespace or None
    )
    objects: list[dict[str, Any]] = []
    failed = False
    for doc in read_documents(args.files):
        resolution, problems = check(doc, args.namespace)
        if problems:
            for problem in problems:
                print(f"{doc.source}: {doc.name}: {problem}", file=sys.stderr)
            failed = True
            continue
        assert resolution is not None
        assert resolution.resolved is not None
        objects.extend(render_settled(resolution.resolved, support, monitoring, network=network).objects)
    if failed:
        return EXIT_INVALID
    sys.stdout.write(yaml.safe_dump_all(objects, sort_keys=False, width=120) if objects else "")
    return EXIT_OK


def load_prices(path: str | None) -> Prices:
    """`--prices FILE` (the chart's values file, or its `pricing` mapping alone), else NLPMODEL_PRICING
    (what the operator reads); neither: no prices, so no cost is shown."""
    if path is None:
        return prices_from_env()
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ManifestError(f"--prices {path}: cannot read: {exc}") from None
    if raw is not None and not isinstance(raw, dict):
        raise ManifestError(f"--prices {path}: expected a mapping (chart values or its pricing section)")
    return parse_prices(raw)


def cost_rows(
    spec: NLPModelSpec, plan: Plan, planned_gpu: str | None, prices: Prices
) -> list[tuple[str, str]]:
    """The expected cost per hour at the fewest and most replicas, when prices are configured."""
    if not prices.configured:
        return []
    gpus = spec.resources.gpu
    cost = replica_cost(
        prices, gpus.product, plan.tensor_parallel if gpus.count else 0, host_requests(spec, plan).cpu
    )
    if cost.per_replica is None:
        return [("cost / hour", cost.detail)]
    low, high = gpu_cost(spec, plan)["minReplicas"], gpu_cost(spec, plan)["maxReplicas"]
    amounts = f"{prices.format(cost.at(low) or 0)} at {low} replica(s)"
    if high != low:
        amounts += f", {prices.format(cost.at(high) or 0)} at {high}"
    return [("cost / hour", f"{amounts} (per replica: {cost.detail})")]


def max_sequences_text(plan: Plan) -> str:
    text = str(plan.max_concurrent_sequences)
    if plan.below_useful:
        text += (
            f" (below a useful {plan.useful_sequences} at once: see the options; the minimum is the "
            "spec's concurrency target, else 4)"
        )
    return text


def option_cost(spec: NLPModelSpec, plan: Plan, option: PlanOption, prices: Prices) -> str:
    """What a replica costs per hour after the option (only with prices; a product is never guessed)."""
    if not prices.configured:
        return ""
    product = (
        option.gpu_product if option.gpu_product != plan_product(spec, plan) else spec.resources.gpu.product
    )
    gpu = spec.resources.gpu.model_copy(update={"count": option.gpu_count, "product": product})
    changed = spec.model_copy(update={"resources": spec.resources.model_copy(update={"gpu": gpu})})
    cost = replica_cost(prices, product, option.gpu_count, host_requests(changed, None).cpu)
    if cost.per_replica is None:
        return f"; {cost.detail}"
    return f"; {prices.format(cost.per_replica)} per replica-hour"


def plan_product(spec: NLPModelSpec, plan: Plan) -> str | None:
    """The card the plan was made for (the spec's, or the planning default)."""
    return spec.resources.gpu.product or (DEFAULT_PLANNING_GPU if spec.resources.gpu.count else None)


def option_rows(spec: NLPModelSpec, plan: Plan, prices: Prices) -> list[tuple[str, str]]:
    """Each change the planner advises: the concurrency it gives and, with prices, its cost."""
    if plan.fits and not plan.below_useful:
        return []
    return [
        (
            "option",
            f"{o.text}: {o.max_concurrent_sequences} sequence(s) at once, {o.gpu_count} × {o.gpu_product}"
            f"{option_cost(spec, plan, o, prices)}",
        )
        for o in plan.options
    ]


def format_plan(name: str, resolution: Resolution, prices: Prices | None = None) -> str:
    plan: Plan | None = resolution.plan
    if plan is None:
        return f"{name}: no plan: the architecture of this model is unknown; add spec.model.architecture"
    gpus = (
        f"{plan.tensor_parallel} × {resolution.planned_gpu}, {format_bytes(plan.gpu_memory_bytes)} each"
        if resolution.planned_gpu
        else "none (CPU)"
    )
    rows = [
        ("model", f"{name} (architecture: {resolution.architecture_source})"),
        ("gpus", gpus),
        ("usable per gpu", format_bytes(plan.usable_bytes_per_gpu)),
        ("weights", f"{format_bytes(plan.weight_bytes)} ({format_bytes(plan.weight_bytes_per_gpu)} per GPU)"),
        ("kv cache / token", format_bytes(plan.kv_bytes_per_token)),
        ("kv cache / sequence", format_bytes(plan.kv_bytes_per_sequence)),
        ("kv cache total", format_bytes(plan.kv_cache_bytes)),
        ("tensor parallel", f"{plan.tensor_parallel} (minimum {plan.min_tensor_parallel})"),
        ("max sequences", max_sequences_text(plan)),
        ("fits", "yes" if plan.fits else "NO"),
    ]
    if resolution.spec is not None:
        rows.insert(1, ("serving", describe_serving(resolution.spec.model_dump(by_alias=True), name)))
        rows.append(("routing", routing(resolution.spec.serving.model_dump(by_alias=True))))
    if resolution.spec is not None:
        rows += scaling_rows(resolution.spec, plan)
        host = host_requests(resolution.spec, plan)
        rows += [
            ("cpu request", f"{host.cpu or 'none'} ({host.cpu_why})"),
            ("memory request", f"{host.memory or 'none'} ({host.memory_why})"),
        ]
        if plan.fits:
            rows += cost_rows(resolution.spec, plan, resolution.planned_gpu, prices or Prices())
    if resolution.spec is not None:
        rows += option_rows(resolution.spec, plan, prices or Prices())
    width = max(len(k) for k, _ in rows)
    lines = [f"{k.ljust(width)}  {v}" for k, v in rows]
    lines += [f"{'why'.ljust(width)}  {reason}" for reason in plan.reasons]
    return "\n".join(lines)


def gpu_cost(spec: NLPModelSpec, plan: Plan) -> dict[str, int]:
    """GPUs the model takes at its fewest and most replicas (GPUs per replica times replicas)."""
    per_replica = plan.tensor_parallel if spec.resources.gpu.count > 0 else 0
    scaling = spec.scaling
    low = scaling.min_replicas if scaling.autoscaled else scaling.base_replicas
    high = scaling.max_replicas if scaling.autoscaled else scaling.base_replicas
    return {
        "gpusPerReplica": per_replica,
        "minReplicas": low,
        "maxReplicas": high,
        "minGPUs": per_replica * low,
        "maxGPUs": per_replica * high,
    }


def scaling_rows(spec: NLPModelSpec, plan: Plan) -> list[tuple[str, str]]:
    scaling, cost = spec.scaling, gpu_cost(spec, plan)
    if scaling.autoscaled:
        replicas = (
            f"{cost['minReplicas']}-{cost['maxReplicas']}, autoscaled on {scaling.metric} "
            f"(target {scaling.target_value} per replica)"
        )
    else:
        replicas = f"{cost['minReplicas']} (fixed)"
    per = cost["gpusPerReplica"]
    if per == 0:
        return [("replicas", replicas), ("gpu cost", "none (CPU)")]
    cost_text = (
        f"{per} GPU(s) per replica: {cost['minGPUs']} at {cost['minReplicas']} replica(s), "
        f"{cost['maxGPUs']} at {cost['maxReplicas']}"
    )
    rows = [("replicas", replicas), ("gpu cost", cost_text)]
    if spec.rollout.strategy == "canary" and spec.rollout.gpu_surge:
        surge = per * scaling.base_replicas
        rows.append(
            ("rollout surge", f"up to {surge} more GPU(s) while a canary is promoted (gpuSurge: true)")
        )
    return rows


def host_requests_json(resolution: Resolution) -> dict[str, str | None] | None:
    if resolution.spec is None:
        return None
    host = host_requests(resolution.spec, resolution.plan)
    return {"cpu": host.cpu, "memory": host.memory, "cpuWhy": host.cpu_why, "memoryWhy": host.memory_why}


def cost_json(resolution: Resolution, prices: Prices) -> dict[str, Any] | None:
    spec, plan = resolution.spec, resolution.plan
    if not prices.configured or spec is None or plan is None or not plan.fits:
        return None
    gpus = spec.resources.gpu
    cost = replica_cost(
        prices, gpus.product, plan.tensor_parallel if gpus.count else 0, host_requests(spec, plan).cpu
    )
    replicas = gpu_cost(spec, plan)
    return {
        "currency": prices.currency,
        "perReplicaHour": cost.per_replica,
        "minReplicasHour": cost.at(replicas["minReplicas"]),
        "maxReplicasHour": cost.at(replicas["maxReplicas"]),
        "detail": cost.detail,
    }


def cmd_plan(args: argparse.Namespace) -> int:
    status = EXIT_OK
    try:
        prices = load_prices(args.prices)
    except PricingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    results: list[dict[str, Any]] = []
    for doc in read_documents(args.files):
        resolution, problems = check(doc)
        if resolution is None:
            _print_problems(doc, problems)
            status = EXIT_INVALID
            continue
        plan = resolution.plan
        if plan is None or not plan.fits:
            status = EXIT_INVALID
        if args.output == "json":
            results.append(
                {
                    "name": doc.name,
                    "plan": plan.to_status() if plan else None,
                    "gpuCost": gpu_cost(resolution.spec, plan) if plan and resolution.spec else None,
                    "hostRequests": host_requests_json(resolution),
                    "costPerHour": cost_json(resolution, prices),
                    "options": [
                        {
                            "change": o.text,
                            "gpuCount": o.gpu_count,
                            "gpuProduct": o.gpu_product,
                            "maxConcurrentSequences": o.max_concurrent_sequences,
                        }
                        for o in (plan.options if plan and resolution.spec else ())
                    ],
                }
            )
        else:
            print(format_plan(doc.name, resolution, prices))
            for problem in resolution.spec_problems:
                print(f"problem  {problem}")
    if args.output == "json":
        print(json.dumps(results[0]["plan"] if len(results) == 1 else results, indent=2))
    return status


def cmd_run(args: argparse.Namespace) -> int:
    from nlpmodel_operator.controller.run import run  # noqa: PLC0415 (kopf only when running)

    return run(args.namespace, args.standalone, args.peering, args.liveness, args.verbose)


class Plugin(Protocol):
    """A subcommand another installed distribution adds (the development harness: demo, localplane)."""

    help: str

    def main(self, argv: list[str]) -> int: ...


# Entry points `name = "module:object"`; the object is a Plugin. Loaded only to list or run them.
PLUGIN_GROUP = "nlpctl.plugins"
# A plugin never shadows one of these.
BUILTIN_COMMANDS = frozenset({"validate", "render", "plan", "run", "wait", "eval", "status", *c.COMMANDS})


def plugins() -> dict[str, Plugin]:
    found: dict[str, Plugin] = {}
    for entry in entry_points(group=PLUGIN_GROUP):
        with contextlib.suppress(Exception):  # a broken plugin must not break nlpctl itself
            found[entry.name] = entry.load()
    return found


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nlpctl",
        description=__doc__,
        epilog=control.EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"nlpctl {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("validate", help="check NLPModel manifests (exit 1 with path: message per problem)")
    p.add_argument("files", nargs="+", help="files or directories; - for stdin")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser(
        "render",
        help="print the child objects the operator applies at rest, as YAML (an Argo CD config plugin)",
    )
    p.add_argument("files", nargs="+")
    p.add_argument(
        "-n", "--namespace", help="namespace of the children (default: the manifest's, or default)"
    )
    p.add_argument(
        "--prometheus-url",
        default=DEFAULT_PROMETHEUS_URL,
        help="the operator's Prometheus (KEDA triggers of LLM-metric autoscalers; default: %(default)s)",
    )
    p.add_argument(
        "--scrape-interval",
        type=float,
        default=OperatorConfig.scrape_interval_seconds,
        metavar="SECONDS",
        help="the PodMonitor's scrape interval (the operator's NLPMODEL_SCRAPE_INTERVAL_SECONDS; "
        "default: %(default)s)",
    )
    p.add_argument(
        "--no-pod-monitor",
        action="store_true",
        help="leave out the PodMonitor (as the operator does where the cluster has no prometheus-operator)",
    )
    p.add_argument(
        "--network-policies",
        action="store_true",
        help="a NetworkPolicy for models that leave spec.serving.networkPolicy.enabled out (as the operator "
        "does with NLPMODEL_NETWORK_POLICIES=true; default: off)",
    )
    p.add_argument(
        "--prometheus-namespace",
        default=OperatorConfig.network_policy_prometheus_namespace,
        metavar="NAMESPACE",
        help="the Prometheus let through a model's NetworkPolicy (the operator's "
        "NLPMODEL_NETWORK_POLICY_PROMETHEUS_NAMESPACE; default: %(default)s; empty: none)",
    )
    p.add_argument(
        "--operator-namespace",
        default="",
        metavar="NAMESPACE",
        help="the operator's namespace, let through the NetworkPolicy of a model with an evaluation gate "
        "(the operator's NLPMODEL_OPERATOR_NAMESPACE; default: none)",
    )
    p.set_defaults(func=cmd_render)

    p = sub.add_parser("plan", help="GPU plan: weights, KV cache, tensor parallel, fit, max sequences")
    p.add_argument("files", nargs="+")
    p.add_argument("-o", "--output", choices=("table", "json"), default="table")
    p.add_argument(
        "--prices",
        metavar="FILE",
        help="GPU-hour (and CPU-hour) prices: the chart's values file or its `pricing` mapping (default: "
        "$NLPMODEL_PRICING, as the operator reads it; neither: no cost is shown)",
    )
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("run", help="run the operator (kopf) against the current kubeconfig or in-cluster")
    add_run_arguments(p)
    p.set_defaults(func=cmd_run)

    control.add_subcommands(sub)  # promote, abort, retry, pause, resume, status
    wait.add_subcommand(sub)
    evaluate.add_subcommand(sub)
    # Listed for --help only: main() hands a plugin's words to it before argparse sees them.
    for name, plugin in sorted(plugins().items()):
        if name not in sub.choices:
            sub.add_parser(name, help=plugin.help, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else argv
    if words and words[0] not in BUILTIN_COMMANDS and (plugin := plugins().get(words[0])):
        return plugin.main(words[1:])  # it parses its own options (--fast, --cluster, up --node, ...)
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except control.CtlError as exc:
        print(f"nlpctl: {exc}", file=sys.stderr)
        return exc.exit_code
    except ManifestError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except Exception as exc:
        # Users get one line; --debug shows where it came from.
        if args.debug:
            traceback.print_exc()
        print(
            f"internal error: {type(exc).__name__}: {exc} (rerun with --debug and report it)", file=sys.stderr
        )
        return EXIT_INTERNAL


if __name__ == "__main__":
    raise SystemExit(main())
