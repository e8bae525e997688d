"""Locate (or fetch) the pinned upstream CRDs that rendered objects are checked against.

Lookup order for each of the pinned files (first hit wins):

1. ``$NLPMODEL_SHARED_DIR/upstream-crds/<file>``;
2. ``<repo root>/../shared/upstream-crds/<file>`` (CI keeps ``shared/`` beside the checkout);
3. ``$XDG_CACHE_HOME/nlpmodel-operator/upstream-crds/<file>`` (default ``~/.cache``);
4. a download from the file's official URL at the pinned commit/tag into that cache.

Every file, wherever it comes from, must have the pinned sha256: the schemas are test fixtures and a
silent upstream change would make the schema tests prove something else. Set
``NLPMODEL_UPSTREAM_CRDS_NO_DOWNLOAD=1`` to forbid step 4.

``python -m nlpmodel_harness.upstream_crds --verify-download`` downloads every file into a
temporary directory and checks the pins (run it once on a machine that can reach GitHub after
changing a pin).
"""

from __future__ import annotations

import argparse
import copy
import functools
import hashlib
import os
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from nlpmodel_harness.checkout import SHARED

__all__ = [
    "ENV_NO_DOWNLOAD",
    "ENV_SHARED_DIR",
    "PINNED_FILES",
    "ChecksumMismatchError",
    "PinnedFile",
    "UpstreamCRDError",
    "UpstreamCRDsUnavailableError",
    "cache_dir",
    "crd_for",
    "load_crd",
    "upstream_crd_files",
]

ENV_SHARED_DIR = "NLPMODEL_SHARED_DIR"
ENV_NO_DOWNLOAD = "NLPMODEL_UPSTREAM_CRDS_NO_DOWNLOAD"
DOWNLOAD_TIMEOUT_S = 30.0

_RAW = "https://raw.githubusercontent.com"
_KSERVE_COMMIT = "aaac4e294dae2c7b1aa1886447793f3aa1c30912"
_GATEWAY_API_COMMIT = "4564255ac2c35d582249b3cdf261bdf51c8bca32"
_KEDA_COMMIT = "8b4f083ca8c8c2baf8477e322bd4d16ac4dfa09a"
# The two prometheus-operator files are kube-prometheus-stack's copies (charts/crds/crds/). Their
# `operator.prometheus.io/version: 0.93.1` annotation (and their first line) name the release they were
# taken from; the chart's hack/update_crds.sh fetches example/prometheus-operator-crd/<file> at tag
# v<appVersion> and prepends "# <url>\n", so we rebuild the identical bytes from the tagged release.
PROMETHEUS_OPERATOR_VERSION = "0.93.1"
_PROM_OP = f"{_RAW}/prometheus-operator/prometheus-operator/v{PROMETHEUS_OPERATOR_VERSION}"
# The PodMonitor CRD straight from prometheus-operator at the commit of its 0.93.0 release.
_PROM_OP_COMMIT = "6adcebc5076c34f4f55f8f5f7b1e528929373ac7"
# InferencePool v1 (GA) of the Gateway API Inference Extension.
_INFERENCE_EXTENSION_COMMIT = "84436a96b9e6ce2b59ddacd3d04c31b4fbd442de"


@dataclass(frozen=True)
class PinnedFile:
    name: str  # local file name (as in shared/upstream-crds)
    url: str  # official source at a pinned commit or tag
    sha256: str  # of the local file's bytes
    header: str = ""  # text prepended to the downloaded body to reproduce the local file

    def rebuild(self, body: bytes) -> bytes:
        return self.header.encode() + body


def _prom_file(local: str, upstream: str, sha256: str) -> PinnedFile:
    url = f"{_PROM_OP}/example/prometheus-operator-crd/{upstream}"
    return PinnedFile(local, url, sha256, header=f"# {url}\n")


PINNED_FILES: tuple[PinnedFile, ...] = (
    PinnedFile(
        "kserve.serving.kserve.io_inferenceservices.yaml",
        f"{_RAW}/kserve/kserve/{_KSERVE_COMMIT}/config/crd/full/serving.kserve.io_inferenceservices.yaml",
        "57c3bf13f77de94678bf2ae3748056ec071ad2b9e88d6a28f44fb4710758fcff",
    ),
    PinnedFile(
        "kserve.serving.kserve.io_servingruntimes.yaml",
        f"{_RAW}/kserve/kserve/{_KSERVE_COMMIT}/config/crd/full/serving.kserve.io_servingruntimes.yaml",
        "5a262831474e7bd23e7c4f76556d84e1a11fb3ad74a78a6d18cfc71fd8fca7a2",
    ),
    PinnedFile(
        "kserve.serving.kserve.io_clusterservingruntimes.yaml",
        f"{_RAW}/kserve/kserve/{_KSERVE_COMMIT}/config/crd/full/serving.kserve.io_clusterservingruntimes.yaml",
        "f721d19516670d4a81181e231b1e58cbc32c36435969182ae457fad537151cc8",
    ),
    PinnedFile(
        "gateway-api.gateway.networking.k8s.io_httproutes.yaml",
        f"{_RAW}/kubernetes-sigs/gateway-api/{_GATEWAY_API_COMMIT}"
        "/config/crd/standard/gateway.networking.k8s.io_httproutes.yaml",
        "5b746e5dd696239cdf7d1a6dc6293d103fb78056598aa3f2e14f7512dc8c362b",
    ),
    PinnedFile(
        "keda.keda.sh_scaledobjects.yaml",
        f"{_RAW}/kedacore/keda/{_KEDA_COMMIT}/config/crd/bases/keda.sh_scaledobjects.yaml",
        "207afc4ca44fd9e3f4bbfb1c8fae08f3a365e098a52714fe8eb672bbd239cbcd",
    ),
    _prom_file(
        "prometheus-operator.monitoring.coreos.com_servicemonitors.yaml",
        "monitoring.coreos.com_servicemonitors.yaml",
        "3322d612f23bf144c887c94bf247b0b4a69189adf37c0d482d2c6267ffe906ab",
    ),
    _prom_file(
        "prometheus-operator.monitoring.coreos.com_prometheusrules.yaml",
        "monitoring.coreos.com_prometheusrules.yaml",
        "72b1e5f9959e67990d1598eb31b24ca4415007e31df3916356ef216316b2bf40",
    ),
    # LLMInferenceService v1alpha1 + v1alpha2 (the storage version): 2.7 MB of YAML, 0.9 MB as JSON.
    PinnedFile(
        "kserve.serving.kserve.io_llminferenceservices.yaml",
        f"{_RAW}/kserve/kserve/{_KSERVE_COMMIT}"
        "/config/crd/full/llmisvc/serving.kserve.io_llminferenceservices.yaml",
        "fbd625c2a2ac7b79e17c9763b7a0c4acf3cd3eaa99ebf0fab06db008785b35f3",
    ),
    PinnedFile(
        "prometheus-operator.monitoring.coreos.com_podmonitors.yaml",
        f"{_RAW}/prometheus-operator/prometheus-operator/{_PROM_OP_COMMIT}"
        "/example/prometheus-operator-crd/monitoring.coreos.com_podmonitors.yaml",
        "45a93443daa687d3654f7e9631909ff7edcdf3ec09c5e60251b74aa2722aee5d",
    ),
    PinnedFile(
        "gateway-api-inference-extension.inference.networking.k8s.io_inferencepools.yaml",
        f"{_RAW}/kubernetes-sigs/gateway-api-inference-extension/{_INFERENCE_EXTENSION_COMMIT}"
        "/config/crd/bases/inference.networking.k8s.io_inferencepools.yaml",
        "db48c012c3f8a476be1f09f9c9eb7f4a45391d423cf540214f1f0049ca10f4a9",
    ),
)
_BY_NAME: dict[str, PinnedFile] = {p.name: p for p in PINNED_FILES}


class UpstreamCRDError(RuntimeError):
    """Base class of this module's errors."""


class UpstreamCRDsUnavailableError(UpstreamCRDError):
    """Neither a local copy nor the network could provide a pinned file."""


class ChecksumMismatchError(UpstreamCRDError):
    """A file's bytes differ from the pinned sha256."""


def _search_dirs() -> list[Path]:
    dirs = []
    if shared := os.environ.get(ENV_SHARED_DIR):
        dirs.append(Path(shared) / "upstream-crds")
    dirs.append(SHARED / "upstream-crds")
    return dirs


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "nlpmodel-operator" / "upstream-crds"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _fetch(url: str) -> bytes:
    """One HTTP GET; separate so tests can replace the network."""
    with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as resp:
        data: bytes = resp.read()
        return data


def _atomic_write(path: Path, data: bytes) -> None:
    # Temp file in the same directory + rename: readers never see a partial file, and two
    # concurrent downloaders just replace each other's identical bytes.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _download(pin: PinnedFile, dest: Path) -> None:
    try:
        body = _fetch(pin.url)
    except (urllib.error.URLError, OSError) as exc:
        raise UpstreamCRDsUnavailableError(
            f"upstream CRD {pin.name} is not available locally and could not be downloaded from "
            f"{pin.url}: {exc}. Looked in: {', '.join(str(d) for d in [*_search_dirs(), dest.parent])}. "
            f"Point ${ENV_SHARED_DIR} at a directory holding upstream-crds/, or run where GitHub is "
            "reachable."
        ) from exc
    data = pin.rebuild(body)
    got = _sha256(data)
    if got != pin.sha256:
        raise ChecksumMismatchError(
            f"downloaded {pin.url} but its sha256 is {got}, not the pinned {pin.sha256} "
            f"(for {pin.name}); refusing to use it. If upstream really changed, re-pin deliberately."
        )
    _atomic_write(dest, data)


def _resolve(pin: PinnedFile) -> Path:
    for d in _search_dirs():
        path = d / pin.name
        if path.is_file():
            got = _sha256(path.read_bytes())
            if got != pin.sha256:
                raise ChecksumMismatchError(
                    f"{path} has sha256 {got}, not the pinned {pin.sha256}; update PINNED_FILES in "
                    f"{__name__} if the shared copy was changed on purpose."
                )
            return path
    cached = cache_dir() / pin.name
    if cached.is_file() and _sha256(cached.read_bytes()) == pin.sha256:
        return cached
    if os.environ.get(ENV_NO_DOWNLOAD):
        raise UpstreamCRDsUnavailableError(
            f"upstream CRD {pin.name} not found in {', '.join(str(d) for d in _search_dirs())} or "
            f"{cached.parent}, and ${ENV_NO_DOWNLOAD} forbids downloading it from {pin.url}."
        )
    _download(pin, cached)  # also replaces a corrupt cache entry
    return cached


def upstream_crd_files() -> dict[str, Path]:
    """File name -> local path of every pinned upstream CRD file (downloading missing ones)."""
    return {pin.name: _resolve(pin) for pin in PINNED_FILES}


@functools.lru_cache(maxsize=16)
def _parse(path: Path, sha256: str) -> tuple[dict[str, Any], ...]:
    # Keyed by hash too, so a replaced file is re-read. libyaml: the InferenceService CRD is ~2 MB.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with path.open("rb") as fh:
        docs = [d for d in yaml.load_all(fh, Loader=loader) if isinstance(d, dict)]
    return tuple(d for d in docs if d.get("kind") == "CustomResourceDefinition")


def _crds_in(name: str) -> tuple[dict[str, Any], ...]:
    pin = _BY_NAME[name]
    return _parse(_resolve(pin), pin.sha256)


def load_crd(name: str) -> dict[str, Any]:
    """The CRD in a pinned file, by file name or by CRD name (``inferenceservices.serving.kserve.io``).

    Returns a private deep copy: callers may mutate it.
    """
    if name in _BY_NAME:
        crds = _crds_in(name)
        if len(crds) != 1:
            raise UpstreamCRDError(f"{name} holds {len(crds)} CustomResourceDefinitions, expected 1")
        return copy.deepcopy(crds[0])
    for file_name in _BY_NAME:
        for crd in _crds_in(file_name):
            if crd.get("metadata", {}).get("name") == name:
                return copy.deepcopy(crd)
    raise KeyError(f"no pinned upstream CRD file or CRD named {name!r}; known files: {sorted(_BY_NAME)}")


def _group_of(api_version: str) -> str:
    return api_version.rpartition("/")[0]


def crd_for(api_version: str, kind: str) -> dict[str, Any]:
    """The pinned upstream CRD defining ``kind`` in the group of ``api_version`` (version not checked:
    :func:`~nlpmodel_harness.schemacheck.check_custom_object` reports unserved versions)."""
    group = _group_of(api_version)
    files = upstream_crd_files()

    def likely(item: tuple[str, Path]) -> bool:
        text = item[1].read_text(encoding="utf-8")
        return f"kind: {kind}" in text and f"group: {group}" in text

    # Likely files first: parsing the InferenceService CRD takes about a second; the text test is
    # only an ordering hint, every file is still parsed before giving up.
    for file_name, _ in sorted(files.items(), key=lambda item: not likely(item)):
        for crd in _crds_in(file_name):
            spec: Mapping[str, Any] = crd.get("spec", {})
            if spec.get("group") == group and spec.get("names", {}).get("kind") == kind:
                return copy.deepcopy(crd)
    raise KeyError(
        f"no pinned upstream CRD defines {kind} in group {group!r} (pinned files: {sorted(files)}); "
        "e.g. no Gateway or InferenceObjective CRD is pinned"
    )


def _verify_download() -> int:
    """Download every pinned file into a temporary directory and check its hash."""
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        for pin in PINNED_FILES:
            try:
                _download(pin, Path(tmp) / pin.name)
                print(f"ok       {pin.name}  {pin.url}")
            except UpstreamCRDError as exc:
                failures += 1
                print(f"FAILED   {pin.name}: {exc}", file=sys.stderr)
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--verify-download",
        action="store_true",
        help="download every pinned file from its official URL and check the pinned sha256",
    )
    args = parser.parse_args(argv)
    if args.verify_download:
        return _verify_download()
    for name, path in upstream_crd_files().items():
        print(f"{name}\t{path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
