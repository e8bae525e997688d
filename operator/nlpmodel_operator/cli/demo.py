"""`make demo` without a cluster: validate, plan and render the shipped examples.

(The local-control-plane demo builds on this once the operator runs against a real API server.)
"""

from __future__ import annotations

import io
import sys
from contextlib import redirect_stdout
from pathlib import Path

import yaml

from nlpmodel_operator.cli.main import main as nlpctl

EXAMPLES = Path(__file__).resolve().parents[3] / "manifests" / "examples"


def banner(text: str) -> None:
    print(f"\n=== {text} ===", flush=True)


def main() -> int:
    files = sorted(str(p) for p in EXAMPLES.glob("*.yaml"))
    banner("nlpctl validate manifests/examples  (one example is meant not to fit its GPU)")
    nlpctl(["validate", *files])
    for path in files:
        banner(f"nlpctl plan {Path(path).name}")
        nlpctl(["plan", path])
    fitting = [p for p in files if "does-not-fit" not in p]
    banner("nlpctl render manifests/examples/llama-8b-awq-kserve.yaml")
    status = nlpctl(["render", str(EXAMPLES / "llama-8b-awq-kserve.yaml")])
    banner(f"nlpctl render (all {len(fitting)} valid examples): kinds and names")
    buffer = io.StringIO()
    with redirect_stdout(buffer):
        status |= nlpctl(["render", *fitting])
    for obj in yaml.safe_load_all(buffer.getvalue()):
        print(f"  {obj['kind']:<18} {obj['metadata']['namespace']}/{obj['metadata']['name']}")
    return status


if __name__ == "__main__":
    sys.exit(main())
