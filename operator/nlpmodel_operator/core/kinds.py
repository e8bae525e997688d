"""The kinds of object the operator creates for a model, as the plug-ins declare them (pure).

Each platform, router and the autoscaler and monitoring modules name the kinds they create; the
shell lists and watches exactly these (see `core.children`), and the chart's RBAC must grant them.
"""

from __future__ import annotations

from dataclasses import dataclass

# What the operator does with every child: lists and watches them (its informers' cache, leftovers of
# old revisions included), applies them (server-side apply creates or patches), resizes them (merge
# patch) and deletes them.
CHILD_VERBS = frozenset({"list", "watch", "create", "patch", "delete"})


@dataclass(frozen=True)
class ChildKind:
    api_version: str
    kind: str
    plural: str
    # Whether a change of its status reconciles the model at once: it serves or carries traffic, or the
    # model reports its state. Any other change of any child (someone else's edit, its deletion)
    # reconciles the model at once too; the status of the others (an HPA's current replicas) is not
    # the model's business.
    watched: bool = True

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def version(self) -> str:
        return self.api_version.rpartition("/")[2]

    @property
    def verbs(self) -> frozenset[str]:
        """The RBAC verbs the operator needs on this kind."""
        return CHILD_VERBS
