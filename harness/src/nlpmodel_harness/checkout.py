"""The repository checkout the harness works from.

The harness is a development tool: it reads the CRDs, the chart, the example manifests and the runtimes
from a checkout, never from an installed package. ``$NLPMODEL_REPO`` names the checkout; otherwise it is
the nearest directory above this file (an editable install) or above the working directory that holds
``crds/`` and ``charts/nlpmodel-operator/``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

ENV_REPO: Final = "NLPMODEL_REPO"


class CheckoutNotFoundError(RuntimeError):
    """The harness runs outside a checkout of the repository."""


def _is_checkout(path: Path) -> bool:
    return (path / "crds").is_dir() and (path / "charts" / "nlpmodel-operator").is_dir()


def find_repo() -> Path:
    explicit = os.environ.get(ENV_REPO)
    if explicit:
        path = Path(explicit).expanduser().resolve()
        if not _is_checkout(path):
            raise CheckoutNotFoundError(f"${ENV_REPO}={path} is not a checkout of nlpmodel-operator")
        return path
    for start in (Path(__file__).resolve(), Path.cwd().resolve()):
        for candidate in (start, *start.parents):
            if _is_checkout(candidate):
                return candidate
    raise CheckoutNotFoundError(
        f"the harness needs a checkout of nlpmodel-operator: run it inside one or set ${ENV_REPO}"
    )


REPO: Final = find_repo()
# Facts the workplace shares beside the checkout (upstream CRDs, vLLM flag tables, notes).
SHARED: Final = REPO.parent / "shared"
CHART: Final = REPO / "charts" / "nlpmodel-operator"
