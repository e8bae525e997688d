"""CPU and memory requests of a GPU model's pods, derived from the plan when the spec names only GPUs.

A pod without requests is BestEffort: the first evicted under memory pressure, and the scheduler
overcommits its node. A vLLM replica needs host memory to load its weights (safetensors are read into
host memory, or streamed through it from object storage, before they are copied to the GPUs) and a
process per GPU with PyTorch and the CUDA libraries. The rule, per replica:

    memory = the weights of the replica (all GPUs together, from the plan)
             + HOST_BYTES_PER_GPU for each GPU's worker process,  rounded up to a whole GiB
    cpu    = HOST_CPUS_PER_GPU cores per GPU (a worker per GPU, plus the API server, the engine core
             and tokenization)

Requests only, never limits: a limit on a derived figure would turn a misjudged one into an OOM kill
while the model loads; a request is enough to schedule honestly and to leave BestEffort. What the
spec gives (`resources.cpu`, `resources.memory`) wins, each on its own. CPU models (gpu.count 0) are
left as written: their cores and memory are their throughput, the user's sizing to make.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

from nlpmodel_operator.api.spec import NLPModelSpec
from nlpmodel_operator.core.gpus import GIB
from nlpmodel_operator.core.planner import Plan

HOST_BYTES_PER_GPU: Final = 4 * GIB
HOST_CPUS_PER_GPU: Final = 2


@dataclass(frozen=True)
class HostRequests:
    """The cpu and memory requests a replica's container gets, and why each (for `nlpctl plan`)."""

    cpu: str | None
    memory: str | None
    cpu_why: str
    memory_why: str
    memory_limit: str | None = None  # only what the spec gives: resources.memory is request and limit


def host_requests(spec: NLPModelSpec, plan: Plan | None) -> HostRequests:
    res = spec.resources
    gpus = res.gpu.count
    if res.cpu is not None:
        cpu, cpu_why = res.cpu, "given in spec.resources.cpu"
    elif gpus == 0:
        cpu, cpu_why = None, "none: a CPU model's cores are its throughput; set spec.resources.cpu"
    else:
        cpu = str(HOST_CPUS_PER_GPU * gpus)
        cpu_why = f"derived: {HOST_CPUS_PER_GPU} per GPU x {gpus} GPU(s); set spec.resources.cpu to override"
    if res.memory is not None:
        return HostRequests(cpu, res.memory, cpu_why, "given in spec.resources.memory", res.memory)
    if gpus == 0:
        return HostRequests(
            cpu, None, cpu_why, "none: a CPU model's memory is its own sizing; set spec.resources.memory"
        )
    if plan is None:
        return HostRequests(
            cpu,
            None,
            cpu_why,
            "none: the architecture is unknown, so the weights' size is too; set spec.resources.memory "
            "or spec.model.architecture",
        )
    gib = math.ceil((plan.weight_bytes + HOST_BYTES_PER_GPU * gpus) / GIB)
    memory_why = (
        f"derived: {plan.weight_bytes / GIB:.1f} GiB of weights + {HOST_BYTES_PER_GPU // GIB} GiB per GPU "
        f"x {gpus}, rounded up; set spec.resources.memory to override"
    )
    return HostRequests(cpu, f"{gib}Gi", cpu_why, memory_why)
