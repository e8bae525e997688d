"""`nlpctl` subcommands the harness adds where it is installed (a checkout after `make deps`).

nlpctl finds them through the entry-point group ``nlpctl.plugins`` (harness/pyproject.toml) and imports
nothing of the harness until one runs; an installed operator wheel has no such subcommands.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Plugin:
    help: str
    run: Callable[[list[str]], int]

    def main(self, argv: list[str]) -> int:
        return self.run(argv)


def _demo(argv: list[str]) -> int:
    from nlpmodel_harness import demo  # noqa: PLC0415 (heavy: only when it runs)

    return demo.main(argv)


def _localplane(argv: list[str]) -> int:
    from nlpmodel_harness import localplane  # noqa: PLC0415 (heavy: only when it runs)

    return localplane.main(argv)


demo = Plugin("a slow canary rolled back, a healthy one promoted (make demo); nlpctl demo --help", _demo)
localplane = Plugin(
    "start/stop a local kube-apiserver + etcd (development): up | down | status | build", _localplane
)
