"""`nlpctl promote|abort|retry|pause|resume|status NAME`: manual rollout control and the status view.

A command is a request, not an action: nlpctl writes it into the annotation
`serving.nlpmodel.dev/command` (a JSON merge patch on metadata.annotations, conditional on the
resourceVersion it checked) and the operator acts on it at its next reconcile, then removes it. nlpctl
refuses a command that does not apply in the model's current state, and one that would replace an
earlier command the operator has not consumed yet (unless --force).

Failures raise :class:`CtlError`, which carries the exit code `nlpctl` returns (see EXIT_CODES_HELP).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import textwrap
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, TextIO

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from nlpmodel_operator.api import constants as c
from nlpmodel_operator.cli.statusview import EFFECTS, command_blocker, describe_state, format_status
from nlpmodel_operator.controller.kube import api_message

__all__ = [
    "EXIT_CLUSTER",
    "EXIT_CODES_HELP",
    "EXIT_NOT_FOUND",
    "CtlError",
    "Kube",
    "add_subcommands",
    "connect",
    "request_command",
]

# The same numbers as nlpmodel_operator.cli.main's EXIT_* (this module cannot import main).
EXIT_OK: Final = 0
EXIT_INVALID: Final = 1
EXIT_USAGE: Final = 2
EXIT_INTERNAL: Final = 3
EXIT_NOT_FOUND: Final = 4
EXIT_CLUSTER: Final = 5

EXIT_CODES_HELP: Final = """\
exit codes:
  0  done
  1  invalid input, or the command does not apply in the model's current phase
  2  usage error (unknown option, missing argument)
  3  internal error (a bug: rerun with --debug and report it)
  4  model or namespace not found
  5  cluster unreachable, or permission denied"""

REQUEST_TIMEOUT_S: Final = (10, 30)  # connect, read
CONNECT_RETRIES: Final = 2
CONFLICT_RETRIES: Final = 5
WATCH_INTERVAL_S: Final = 1.0

_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_INCLUSTER_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")

_CLEAR = "\x1b[H\x1b[2J"  # cursor home, clear screen


class CtlError(Exception):
    """A failure nlpctl reports in one line on stderr, exiting with `exit_code`."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# ------------------------------------------------------------------------------------ cluster access


@dataclass
class Kube:
    """An API client for one cluster, and the namespace the kubeconfig context selects."""

    api_client: Any
    host: str
    default_namespace: str

    @property
    def custom(self) -> Any:
        return client.CustomObjectsApi(self.api_client)

    @property
    def core(self) -> Any:
        return client.CoreV1Api(self.api_client)

    def close(self) -> None:
        self.api_client.close()


def _context_namespace(config_file: str, context: str | None) -> str | None:
    contexts, current = config.list_kube_config_contexts(config_file=config_file)
    chosen = next((x for x in contexts if x.get("name") == context), None) if context else current
    namespace = ((chosen or {}).get("context") or {}).get("namespace")
    return str(namespace) if namespace else None


def connect(kubeconfig: str | None = None, context: str | None = None) -> Kube:
    """Load the kubeconfig the usual way (--kubeconfig, else KUBECONFIG, else ~/.kube/config), or the
    in-cluster service account when there is no kubeconfig and we run in a pod."""
    cfg = client.Configuration()
    if kubeconfig is not None and not Path(kubeconfig).expanduser().is_file():
        raise CtlError(f"kubeconfig {kubeconfig} not found", EXIT_INVALID)
    config_file = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
    exists = any(Path(p).expanduser().is_file() for p in config_file.split(os.pathsep) if p)
    namespace: str | None = None
    if exists:
        try:
            config.load_kube_config(
                config_file=config_file, context=context, client_configuration=cfg, persist_config=False
            )
            namespace = _context_namespace(config_file, context)
        except ConfigException as exc:
            raise CtlError(f"invalid kubeconfig {config_file}: {exc}", EXIT_INVALID) from None
    elif context is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        try:
            config.load_incluster_config(client_configuration=cfg)
        except ConfigException as exc:
            raise CtlError(f"cannot use the in-cluster service account: {exc}", EXIT_CLUSTER) from None
        if _INCLUSTER_NAMESPACE.is_file():
            namespace = _INCLUSTER_NAMESPACE.read_text().strip() or None
    else:
        raise CtlError(
            f"no cluster configured: no kubeconfig at {config_file} (set KUBECONFIG or pass --kubeconfig)",
            EXIT_CLUSTER,
        )
    cfg.retries = CONNECT_RETRIES
    return Kube(client.ApiClient(cfg), str(cfg.host), namespace or "default")


def _connection_reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or exc
    text = str(reason).strip()
    # urllib3 prefixes `<urllib3.connection.HTTPSConnection object at 0x...>: `; users need the rest.
    return re.sub(r"^<[^>]*>:\s*", "", text) or type(exc).__name__


@contextmanager
def api_errors(kube: Kube) -> Iterator[None]:
    """Turn what the client raises into CtlError: unreachable/denied (5), other API errors (3).

    404s pass through as ApiException: only the caller knows what was not found.
    """
    try:
        yield
    except ApiException as exc:
        if exc.status == 404:
            raise
        if exc.status in {401, 403}:
            raise CtlError(f"permission denied: {api_message(exc)}", EXIT_CLUSTER) from None
        if exc.status == 0 or exc.status is None:
            raise CtlError(
                f"cannot reach the cluster at {kube.host}: {_connection_reason(exc)}", EXIT_CLUSTER
            ) from None
        if exc.status >= 500:
            raise CtlError(
                f"the cluster at {kube.host} failed: HTTP {exc.status}: {api_message(exc)}", EXIT_CLUSTER
            ) from None
        raise CtlError(
            f"the API server refused: HTTP {exc.status}: {api_message(exc)}", EXIT_INTERNAL
        ) from None
    except urllib3.exceptions.HTTPError as exc:
        raise CtlError(
            f"cannot reach the cluster at {kube.host}: {_connection_reason(exc)}", EXIT_CLUSTER
        ) from None


def _not_found(kube: Kube, namespace: str, name: str, exc: ApiException) -> CtlError:
    """404 on the model: tell a missing namespace from a missing model (when we may read namespaces)."""
    try:
        body = json.loads(exc.body) if exc.body else {}
    except (TypeError, ValueError):
        body = {}
    details = body.get("details") if isinstance(body, dict) else None
    if not (isinstance(details, dict) and details.get("name") == name):
        # Not the object's own NotFound: the API itself (the CRD) is missing.
        return CtlError(
            f"the cluster at {kube.host} does not serve {c.PLURAL}.{c.GROUP}/{c.VERSION} "
            f"(is the NLPModel CRD installed?)",
            EXIT_NOT_FOUND,
        )
    generic = CtlError(f"nlpmodel {name} not found in namespace {namespace}", EXIT_NOT_FOUND)
    try:
        with api_errors(kube):
            kube.core.read_namespace(namespace, _request_timeout=REQUEST_TIMEOUT_S)
    except ApiException as ns_exc:  # only 404s get here
        if ns_exc.status == 404:
            return CtlError(f"namespace {namespace} not found", EXIT_NOT_FOUND)
        return generic
    except CtlError:
        return generic  # e.g. no permission to read namespaces: say what we know
    return generic


def get_model(kube: Kube, namespace: str, name: str) -> dict[str, Any]:
    with api_errors(kube):
        try:
            found: dict[str, Any] = kube.custom.get_namespaced_custom_object(
                c.GROUP, c.VERSION, namespace, c.PLURAL, name, _request_timeout=REQUEST_TIMEOUT_S
            )
        except ApiException as exc:
            if exc.status != 404:
                raise
            raise _not_found(kube, namespace, name, exc) from None
    return found


def _check_names(namespace: str, name: str) -> None:
    if not _DNS_SUBDOMAIN.match(name):
        raise CtlError(f"invalid name {name!r}: NLPModel names are lowercase DNS names", EXIT_INVALID)
    if not _DNS_LABEL.match(namespace):
        raise CtlError(f"invalid namespace {namespace!r}: namespaces are lowercase DNS labels", EXIT_INVALID)


# ---------------------------------------------------------------------------------------- commands


def request_command(kube: Kube, namespace: str, name: str, command: str, *, force: bool = False) -> str:
    """Record `command` for the operator; return what to tell the user. Raises CtlError when refused.

    The patch carries the resourceVersion that was checked, so a command or status written in between
    makes it fail with 409 and the checks run again on a fresh read.
    """
    if command not in c.COMMANDS:
        raise CtlError(f"unknown command {command!r} (one of: {', '.join(c.COMMANDS)})", EXIT_INVALID)
    _check_names(namespace, name)
    for _attempt in range(CONFLICT_RETRIES):
        model = get_model(kube, namespace, name)
        metadata = model.get("metadata") or {}
        status = model.get("status") or {}
        pending = (metadata.get("annotations") or {}).get(c.ANNOTATION_COMMAND)
        if pending is not None and not force:
            raise CtlError(
                f"cannot {command} {namespace}/{name}: an earlier command is still pending ({pending!r}: "
                f"the operator has not acted on it yet; is it running?); wait, or rerun with --force "
                f"to replace it",
                EXIT_INVALID,
            )
        blocker = command_blocker(command, status, model.get("spec") or {})
        if blocker is not None:
            raise CtlError(f"cannot {command} {namespace}/{name}: {blocker}", EXIT_INVALID)
        patch = {
            "metadata": {
                "resourceVersion": metadata.get("resourceVersion"),
                "annotations": {c.ANNOTATION_COMMAND: command},
            }
        }
        with api_errors(kube):
            try:
                kube.custom.patch_namespaced_custom_object(
                    c.GROUP,
                    c.VERSION,
                    namespace,
                    c.PLURAL,
                    name,
                    patch,
                    _content_type="application/merge-patch+json",
                    _request_timeout=REQUEST_TIMEOUT_S,
                )
            except ApiException as exc:
                if exc.status == 409:
                    continue  # changed since we read it (maybe another command): check again
                if exc.status == 404:
                    raise CtlError(
                        f"nlpmodel {name} not found in namespace {namespace} (deleted meanwhile)",
                        EXIT_NOT_FOUND,
                    ) from None
                raise
        replaced = f"; replaced the pending {pending!r}" if pending is not None and pending != command else ""
        return (
            f"{namespace}/{name}: {command} requested ({describe_state(status)}){replaced}; "
            f"at its next reconcile the operator {EFFECTS[command]}"
        )
    raise CtlError(
        f"cannot {command} {namespace}/{name}: the object kept changing ({CONFLICT_RETRIES} tries); try again",
        EXIT_CLUSTER,
    )


# ------------------------------------------------------------------------------------------ status


def _view(model: Mapping[str, Any], output: str, now: datetime) -> str:
    status = model.get("status") or {}
    if output == "json":
        return json.dumps(status, indent=2) + "\n"
    metadata = model.get("metadata") or {}
    return format_status(
        status,
        model.get("spec") or {},
        now,
        name=str(metadata.get("name", "")),
        namespace=str(metadata.get("namespace", "")),
        pending=(metadata.get("annotations") or {}).get(c.ANNOTATION_COMMAND),
    )


def watch(
    fetch: Callable[[], Mapping[str, Any]],
    render: Callable[[Mapping[str, Any], datetime], str],
    out: TextIO,
    *,
    timeout_s: float | None,
    interval_s: float = WATCH_INTERVAL_S,
    redraw: bool = False,
) -> None:
    """Re-render every interval until timeout_s (None: until Ctrl-C), writing only what changed.

    redraw (a terminal): clear the screen and draw the view whenever its text changes (the countdown
    included). Otherwise (a pipe or file): append the view whenever the model changes.
    """
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    last_text: str | None = None
    last_model: Mapping[str, Any] | None = None
    model = fetch()
    while True:
        text = render(model, datetime.now(UTC))
        if redraw and text != last_text:
            out.write(_CLEAR + text)
            out.flush()
        elif not redraw and model != last_model:
            out.write(("\n" if last_model is not None else "") + text)
            out.flush()
        last_text, last_model = text, model
        if deadline is None:
            time.sleep(interval_s)
        else:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(interval_s, left))
            if time.monotonic() >= deadline:
                return
        model = fetch()


def _comparable(model: Mapping[str, Any]) -> dict[str, Any]:
    """What the view shows: status, spec and the pending command (not resourceVersion churn)."""
    metadata = model.get("metadata") or {}
    return {
        "status": model.get("status"),
        "spec": model.get("spec"),
        "command": (metadata.get("annotations") or {}).get(c.ANNOTATION_COMMAND),
        "name": metadata.get("name"),
        "namespace": metadata.get("namespace"),
    }


def cmd_status(args: argparse.Namespace) -> int:
    if args.timeout is not None and not args.watch:
        raise CtlError("--timeout only applies with --watch", EXIT_USAGE)
    if args.timeout is not None and args.timeout <= 0:
        raise CtlError("--timeout must be more than 0 seconds", EXIT_USAGE)
    kube = connect(args.kubeconfig, args.context)
    try:
        namespace = args.namespace or kube.default_namespace
        _check_names(namespace, args.name)
        if not args.watch:
            sys.stdout.write(_view(get_model(kube, namespace, args.name), args.output, datetime.now(UTC)))
            return EXIT_OK

        last: Mapping[str, Any] | None = None
        lost = False

        def fetch() -> Mapping[str, Any]:
            # A blip of the cluster does not end a long watch: keep the last view, say so once.
            nonlocal last, lost
            try:
                view = _comparable(get_model(kube, namespace, args.name))
            except CtlError as exc:
                if exc.exit_code != EXIT_CLUSTER or last is None:
                    raise
                if not lost:
                    print(f"nlpctl: {exc} (retrying)", file=sys.stderr)
                    lost = True
                return last
            if lost:
                print("nlpctl: reconnected", file=sys.stderr)
            last, lost = view, False
            return view

        def render(view: Mapping[str, Any], now: datetime) -> str:
            model = {
                "status": view["status"],
                "spec": view["spec"],
                "metadata": {
                    "name": view["name"],
                    "namespace": view["namespace"],
                    "annotations": {c.ANNOTATION_COMMAND: view["command"]} if view["command"] else {},
                },
            }
            return _view(model, args.output, now)

        with suppress(KeyboardInterrupt):  # Ctrl-C is how a watch ends
            watch(
                fetch,
                render,
                sys.stdout,
                timeout_s=args.timeout,
                redraw=sys.stdout.isatty() and args.output == "text",
            )
        return EXIT_OK
    finally:
        kube.close()


def cmd_command(args: argparse.Namespace) -> int:
    kube = connect(args.kubeconfig, args.context)
    try:
        namespace = args.namespace or kube.default_namespace
        print(request_command(kube, namespace, args.name, args.nlp_command, force=args.force))
        return EXIT_OK
    finally:
        kube.close()


# -------------------------------------------------------------------------------------------- CLI

_COMMAND_HELP: Final[Mapping[str, str]] = {
    "promote": "promote the canary now, skipping the remaining steps (while a canary is in progress)",
    "abort": "roll the canary back to the stable revision (while a canary is in progress)",
    "retry": "roll out the failed revision again (after a rollback: status.failedRevision set)",
    "pause": "hold the canary at its current weight (while a canary is in progress, not paused)",
    "resume": "continue a paused canary",
}


_HELP_WIDTH: Final = 88


def _target_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="the NLPModel")
    p.add_argument(
        "-n", "--namespace", help="its namespace (default: the kubeconfig context's namespace, else default)"
    )
    p.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, else ~/.kube/config)")
    p.add_argument("--context", help="kubeconfig context (default: the current context)")


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds: {text!r}")
    return value


def add_subcommands(sub: Any) -> None:
    """Register promote, abort, retry, pause, resume and status on nlpctl's subparsers."""
    formatter = argparse.RawDescriptionHelpFormatter
    for command in c.COMMANDS:
        p = sub.add_parser(
            command,
            help=_COMMAND_HELP[command],
            description=textwrap.fill(
                f"{_COMMAND_HELP[command][0].upper()}{_COMMAND_HELP[command][1:]}. nlpctl records the "
                f"request in the annotation {c.ANNOTATION_COMMAND}; the operator acts on it at its next "
                f"reconcile and removes it. Refused (exit 1) when it does not apply in the model's "
                f"current state, or while an earlier command is still pending (unless --force).",
                width=_HELP_WIDTH,
            ),
            epilog=EXIT_CODES_HELP,
            formatter_class=formatter,
        )
        _target_arguments(p)
        p.add_argument(
            "--force",
            action="store_true",
            help="replace an earlier command the operator has not acted on yet",
        )
        p.set_defaults(func=cmd_command, nlp_command=command)

    p = sub.add_parser(
        "status",
        help="revision, canary weight, step, time left, conditions, history (--watch: live)",
        description=textwrap.fill(
            "Show the rollout state of an NLPModel: phase, stable and canary revisions, the canary's "
            "weight and steps with the time left in the current one, conditions, each canary "
            "revision's last evaluation and history (newest first). --watch redraws it every second "
            "on a terminal; into a pipe or file it appends the view whenever the model changes.",
            width=_HELP_WIDTH,
        ),
        epilog=EXIT_CODES_HELP,
        formatter_class=formatter,
    )
    _target_arguments(p)
    p.add_argument("-o", "--output", choices=("text", "json"), default="text", help="json: the status object")
    p.add_argument("-w", "--watch", action="store_true", help="re-render every second until Ctrl-C (exit 0)")
    p.add_argument(
        "--timeout",
        type=_positive_seconds,
        metavar="SECONDS",
        help="with --watch: stop after SECONDS (exit 0)",
    )
    p.set_defaults(func=cmd_status)
