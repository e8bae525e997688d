"""Container images from our own build files, with no registry: a Debian base and a Dockerfile builder.

* The base stands in for ``python:3.11-slim``: a Debian bookworm root filesystem from ``mmdebstrap``
  (Debian's python3) with a virtual environment at ``/usr/local``, so ``python`` and ``pip`` are on
  PATH and ``pip install --prefix=/install`` lays files out as the official image does (Debian's own
  interpreter would use its ``local/`` scheme and refuse system installs).
* :func:`build` interprets the instructions our Dockerfiles use (ARG, FROM … AS, WORKDIR, COPY
  [--from], RUN, ENV, USER, EXPOSE, ENTRYPOINT, CMD, LABEL) the way ``docker build`` does: stages in
  their own root filesystems, RUN in a chroot with the build's environment, ``.dockerignore`` (or
  BuildKit's ``<Dockerfile>.dockerignore``) applied to the context. Anything else is refused rather
  than approximated. The image is the base layer plus one layer with what the final stage changed.
* Images are written in ``docker save`` form and imported with ``ctr images import``.

Everything is cached under ``~/.cache/nlpmodel-operator/images/`` keyed by a hash of its inputs (the
base recipe; the Dockerfile, the context files it copies and the build arguments), so a second run
rebuilds nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final

from nlpmodel_harness import dockercontext
from nlpmodel_harness.localplane_build import cache_root, ensure_apt_packages, file_lock, log

__all__ = [
    "BASE_IMAGE",
    "BuildError",
    "Image",
    "Layer",
    "base_image",
    "build",
    "images_dir",
    "normalized_name",
    "write_image_archive",
]

BASE_RECIPE_VERSION: Final = "1"  # bump when the recipe changes in a way the mmdebstrap command does not show
BASE_SUITE: Final = "bookworm"
BASE_PACKAGES: Final = ("python3", "python3-venv", "passwd", "ca-certificates")
BASE_IMAGE: Final = "localhost/nlpmodel-base:python3-bookworm"
_DOC_PATHS: Final = ("/usr/share/doc/*", "/usr/share/man/*", "/usr/share/locale/*", "/usr/share/info/*")
DEFAULT_PATH: Final = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# The machine's trust store: where HTTPS goes through an intercepting proxy, its CA is only in there.
HOST_CA_BUNDLE: Final = Path("/etc/ssl/certs/ca-certificates.crt")
# Like docker's predefined proxy ARGs: handed to RUN steps without a declaration, never kept in the image.
NETWORK_ENV: Final = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy")


class BuildError(RuntimeError):
    """An image could not be built (with the step and its output)."""


def images_dir() -> Path:
    return cache_root().parent / "images"


def normalized_name(name: str) -> str:
    """The name containerd stores (docker's normalization): `nlpmodel-operator:0.1.0` is a Docker Hub name."""
    first = name.split("/", 1)[0]
    if "/" not in name or ("." not in first and ":" not in first and first != "localhost"):
        name = f"docker.io/{name if '/' in name else 'library/' + name}"
    if ":" not in name.rsplit("/", 1)[-1] and "@" not in name:
        name += ":latest"
    return name


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------- layers


@dataclass(frozen=True)
class Layer:
    path: Path  # an uncompressed tar
    diff_id: str  # sha256 hex of that tar

    @classmethod
    def from_tar(cls, path: Path) -> Layer:
        return cls(path, _sha256_file(path))

    @classmethod
    def from_directory(cls, root: Path, out: Path) -> Layer:
        """A layer holding root's whole tree, owned by root:root."""
        with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
            for entry in sorted(root.rglob("*")):
                info = tar.gettarinfo(str(entry), arcname=str(entry.relative_to(root)))
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                if entry.is_file() and not entry.is_symlink():
                    with entry.open("rb") as fh:
                        tar.addfile(info, fh)
                else:
                    tar.addfile(info)
        return cls.from_tar(out)


@dataclass(frozen=True)
class Image:
    """A built image: its layers and its config (the docker `config` object: Env, Entrypoint, …)."""

    name: str
    layers: tuple[Layer, ...]
    config: Mapping[str, Any]

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        meta = {
            "name": self.name,
            "config": dict(self.config),
            "layers": [{"path": str(layer.path), "diff_id": layer.diff_id} for layer in self.layers],
        }
        (directory / "image.json").write_text(json.dumps(meta, indent=2))

    @classmethod
    def load(cls, directory: Path) -> Image | None:
        try:
            meta = json.loads((directory / "image.json").read_text())
        except (OSError, ValueError):
            return None
        layers = tuple(Layer(Path(x["path"]), x["diff_id"]) for x in meta["layers"])
        if not all(layer.path.is_file() for layer in layers):
            return None
        return cls(meta["name"], layers, meta["config"])

    def write_archive(self, out: Path | IO[bytes]) -> None:
        write_image_archive(out, self.name, list(self.layers), self.config)


def _archive_members(
    name: str, layers: Sequence[Layer], config: Mapping[str, Any]
) -> Iterator[tuple[str, bytes | Path]]:
    image_config = {
        "architecture": "amd64",
        "os": "linux",
        "config": dict(config),
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{layer.diff_id}" for layer in layers]},
        "history": [{"created_by": "nlpmodel_harness.images"} for _ in layers],
    }
    config_bytes = json.dumps(image_config, sort_keys=True).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    manifest = [
        {
            "Config": config_name,
            "RepoTags": [normalized_name(name)],
            "Layers": [f"{layer.diff_id}/layer.tar" for layer in layers],
        }
    ]
    yield config_name, config_bytes
    for layer in layers:
        yield f"{layer.diff_id}/layer.tar", layer.path
    yield "manifest.json", json.dumps(manifest).encode()


def write_image_archive(
    out: Path | IO[bytes], name: str, layers: Sequence[Layer], config: Mapping[str, Any]
) -> None:
    """A `docker save` tarball (what `ctr images import` reads) of name with these layers, to a file or
    written as a stream (a pipe)."""
    kwargs: dict[str, Any] = (
        {"name": out, "mode": "w"} if isinstance(out, Path) else {"fileobj": out, "mode": "w|"}
    )
    with tarfile.open(**kwargs) as tar:
        for member, data in _archive_members(name, layers, config):
            if isinstance(data, Path):
                tar.add(str(data), arcname=member)
            else:
                info = tarfile.TarInfo(member)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


# ----------------------------------------------------------------------------------------------- base


def _mmdebstrap_cmd(out: Path) -> list[str]:
    return [
        "mmdebstrap",
        "--variant=minbase",  # what debian:*-slim holds: libstdc++ (torch needs it), apt
        f"--include={','.join(BASE_PACKAGES)}",
        *(f"--dpkgopt=path-exclude={p}" for p in _DOC_PATHS),
        # The python:3.11-slim layout: python and pip on PATH, installs land in /usr/local.
        '--customize-hook=chroot "$1" python3 -m venv /usr/local',
        '--customize-hook=rm -f "$1"/usr/local/bin/activate* "$1"/usr/local/bin/Activate.ps1',
        BASE_SUITE,
        str(out),
    ]


def _base_key() -> str:
    recipe = {"v": BASE_RECIPE_VERSION, "cmd": _mmdebstrap_cmd(Path("out"))}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def base_image() -> Image:
    """The python3 base (built once per machine with mmdebstrap: about a minute)."""
    entry = images_dir() / f"base-{_base_key()}"
    with file_lock(images_dir() / "base.lock"):
        cached = Image.load(entry)
        if cached is not None:
            return cached
        ensure_apt_packages(["mmdebstrap"])
        shutil.rmtree(entry, ignore_errors=True)
        entry.mkdir(parents=True)
        layer_tar = entry / "layer.tar"
        log(f"bootstrapping the base root filesystem (mmdebstrap {BASE_SUITE}: {', '.join(BASE_PACKAGES)})")
        started = time.monotonic()
        cmd = _mmdebstrap_cmd(layer_tar)
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            shutil.rmtree(entry, ignore_errors=True)
            raise BuildError(f"mmdebstrap failed:\n{done.stderr[-3000:]}")
        config = {"Env": [f"PATH={DEFAULT_PATH}", "LANG=C.UTF-8"], "Cmd": ["python3"]}
        image = Image(BASE_IMAGE, (Layer.from_tar(layer_tar),), config)
        image.save(entry)
        log(f"base root filesystem built in {time.monotonic() - started:.0f}s")
        _remove_older(entry)
        return image


# ------------------------------------------------------------------------------------------ Dockerfile


@dataclass(frozen=True)
class Instruction:
    keyword: str
    rest: str
    line: int


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions with continuation lines joined and comments dropped (Dockerfile syntax)."""
    out: list[Instruction] = []
    buf: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not buf and (not stripped or stripped.startswith("#")):
            continue
        if buf and stripped.startswith("#"):
            continue  # comments inside a continued instruction are dropped too
        if not buf:
            start = number
        if stripped.endswith("\\"):
            buf.append(stripped[:-1])
            continue
        buf.append(stripped)
        joined = " ".join(part.strip() for part in buf if part.strip())
        buf = []
        keyword, _, rest = joined.partition(" ")
        out.append(Instruction(keyword.upper(), rest.strip(), start))
    if buf:
        raise BuildError("Dockerfile ends inside a continued line")
    return out


_VAR: Final = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))")


def expand(text: str, variables: Mapping[str, str]) -> str:
    """$VAR, ${VAR} and ${VAR:-default} as Dockerfiles expand them (unset: empty)."""

    def sub(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(3)
        value = variables.get(name, "")
        if m.group(2) is not None and not value:
            return m.group(2)
        return value

    return _VAR.sub(sub, text)


def _key_values(rest: str, variables: Mapping[str, str]) -> list[tuple[str, str]]:
    words = shlex.split(rest, posix=True)
    if words and "=" not in words[0]:  # legacy `ENV KEY value with spaces`
        key, _, value = rest.partition(" ")
        return [(key, expand(value.strip(), variables))]
    pairs = []
    for word in words:
        key, sep, value = word.partition("=")
        pairs.append((key, expand(value, variables) if sep else ""))
    return pairs


def _json_or_shell(rest: str) -> list[str]:
    if rest.startswith("["):
        try:
            parsed = json.loads(rest)
        except ValueError:
            parsed = None
        if isinstance(parsed, list) and all(isinstance(x, str) for x in parsed):
            return list(parsed)
    return ["/bin/sh", "-c", rest]


@dataclass
class _Stage:
    name: str | None
    root: Path
    base_layers: tuple[Layer, ...]
    snapshot: dict[str, tuple[int, ...] | str]
    env: dict[str, str] = field(default_factory=dict)
    args: dict[str, str] = field(default_factory=dict)
    workdir: str = "/"
    user: str = ""
    config: dict[str, Any] = field(default_factory=dict)


def _snapshot(root: Path) -> dict[str, tuple[int, ...] | str]:
    """path -> what identifies its content and metadata (to find what a stage changed)."""
    snap: dict[str, tuple[int, ...] | str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            rel = os.path.relpath(full, root)
            if os.path.islink(full):
                snap[rel] = "link:" + os.readlink(full)
            else:
                snap[rel] = (st.st_mode, st.st_size, st.st_mtime_ns, st.st_uid, st.st_gid)
    return snap


def _diff_layer(stage: _Stage, out: Path) -> Layer:
    """One layer with what the stage added or changed, and whiteouts for what it removed."""
    now = _snapshot(stage.root)
    changed = sorted(p for p, v in now.items() if stage.snapshot.get(p) != v)
    removed = sorted(p for p in stage.snapshot if p not in now)
    removed = [p for p in removed if os.path.dirname(p) == "" or os.path.dirname(p) not in set(removed)]
    listing = out.with_suffix(".list")
    listing.write_bytes(b"".join(f"./{p}".encode() + b"\0" for p in changed))
    done = subprocess.run(
        ["tar", "--create", f"--file={out}", "--no-recursion", "--numeric-owner", "--xattrs",
         "-C", str(stage.root), "--null", f"--files-from={listing}"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    listing.unlink()
    if done.returncode != 0:
        raise BuildError(f"tar of the changed files failed: {done.stderr[-2000:]}")
    if removed:
        with tarfile.open(out, "a") as tar:
            for path in removed:
                head, tail = os.path.split(path)
                info = tarfile.TarInfo(os.path.join(".", head, ".wh." + tail))
                tar.addfile(info, io.BytesIO(b""))
    return Layer.from_tar(out)


def _extract(layers: Sequence[Layer], root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for layer in layers:
        done = subprocess.run(
            ["tar", "--extract", f"--file={layer.path}", "--numeric-owner", "--same-permissions", "-C", str(root)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise BuildError(f"extracting {layer.path} failed: {done.stderr[-2000:]}")


def _passwd_ids(root: Path, user: str) -> tuple[int, int]:
    name, _, group = user.partition(":")
    uid = gid = None
    if name.isdigit():
        uid = int(name)
    else:
        for line in (root / "etc" / "passwd").read_text().splitlines():
            fields = line.split(":")
            if fields[0] == name:
                uid, gid = int(fields[2]), int(fields[3])
    if uid is None:
        raise BuildError(f"USER {user}: no such user in the image")
    if group:
        gid = int(group) if group.isdigit() else None
    return uid, gid if gid is not None else uid


class Builder:
    """One `docker build` of a Dockerfile with a context directory (see the module docstring)."""

    def __init__(
        self,
        dockerfile: Path,
        context: Path,
        *,
        tag: str,
        build_args: Mapping[str, str],
        base: Image,
        work: Path,
        run_mounts: Sequence[Path] = (),
    ) -> None:
        self.dockerfile = dockerfile
        self.context = context
        self.tag = tag
        self.build_args = dict(build_args)
        self.base = base
        self.work = work
        self.run_mounts = list(run_mounts)  # host paths mounted read-only at the same path for RUN
        self.rules = dockercontext.rules_for(context, dockerfile)
        self.stages: list[_Stage] = []

    def ignored(self, relative: str) -> bool:
        return dockercontext.excluded(os.path.normpath(relative), self.rules)

    def context_files(self) -> list[Path]:
        """The files of the context a build may read (the cache key covers exactly these)."""
        return [self.context / rel for rel in dockercontext.context_files(self.context, self.dockerfile)]

    def run(self) -> Image:
        instructions = parse_dockerfile(self.dockerfile.read_text())
        global_args: dict[str, str] = {}
        stage: _Stage | None = None
        for ins in instructions:
            where = f"{self.dockerfile}:{ins.line} {ins.keyword}"
            try:
                if ins.keyword == "ARG" and stage is None:
                    for key, value in _key_values(ins.rest, global_args):
                        global_args[key] = self.build_args.get(key, value)
                elif ins.keyword == "FROM":
                    stage = self._from(ins.rest, global_args)
                else:
                    self._step(_require(stage), ins, global_args)
            except BuildError as exc:
                raise BuildError(f"{where}: {exc}") from None
        if stage is None:
            raise BuildError(f"{self.dockerfile}: no FROM")
        log(f"{self.tag}: packing the final stage's changes")
        layer = _diff_layer(stage, self.work / "layer.tar")
        config = {"Env": [f"{k}={v}" for k, v in stage.env.items()], "WorkingDir": stage.workdir}
        if stage.user:
            config["User"] = stage.user
        config.update(stage.config)
        return Image(self.tag, (*stage.base_layers, layer), config)

    def _from(self, rest: str, global_args: Mapping[str, str]) -> _Stage:
        words = expand(rest, global_args).split()
        words = [w for w in words if not w.startswith("--platform")]
        ref = words[0]
        name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
        root = self.work / f"stage{len(self.stages)}"
        parent = next((s for s in self.stages if s.name == ref), None)
        if parent is not None:
            shutil.copytree(parent.root, root, symlinks=True)
            stage = _Stage(name, root, parent.base_layers, parent.snapshot, dict(parent.env))
            stage.workdir, stage.user, stage.config = parent.workdir, parent.user, dict(parent.config)
        elif ref == self.base.name:
            _extract(self.base.layers, root)
            env = dict(e.split("=", 1) for e in self.base.config.get("Env", []))
            stage = _Stage(name, root, self.base.layers, _snapshot(root), env)
        else:
            raise BuildError(f"FROM {ref}: only {self.base.name} and earlier stages exist here (no registry)")
        self.stages.append(stage)
        log(f"{self.tag}: FROM {ref}{f' AS {name}' if name else ''}")
        return stage

    def _vars(self, stage: _Stage) -> dict[str, str]:
        return {**stage.args, **stage.env}

    def _step(self, stage: _Stage, ins: Instruction, global_args: Mapping[str, str]) -> None:
        kw, rest = ins.keyword, ins.rest
        if kw == "ARG":
            for key, value in _key_values(rest, self._vars(stage)):
                default = value or global_args.get(key, "")
                if key in self.build_args or default or "=" in rest:
                    stage.args[key] = self.build_args.get(key, default)
        elif kw == "ENV":
            for key, value in _key_values(rest, self._vars(stage)):
                stage.env[key] = value
        elif kw == "WORKDIR":
            path = os.path.normpath(os.path.join(stage.workdir, expand(rest, self._vars(stage))))
            (stage.root / path.lstrip("/")).mkdir(parents=True, exist_ok=True)
            stage.workdir = path
        elif kw == "COPY":
            self._copy(stage, rest)
        elif kw == "RUN":
            self._run(stage, _json_or_shell(rest))
        elif kw == "USER":
            stage.user = expand(rest, self._vars(stage))
        elif kw == "EXPOSE":
            ports = expand(rest, self._vars(stage)).split()
            exposed = stage.config.setdefault("ExposedPorts", {})
            for port in ports:
                exposed[port if "/" in port else f"{port}/tcp"] = {}
        elif kw in ("ENTRYPOINT", "CMD"):
            stage.config["Entrypoint" if kw == "ENTRYPOINT" else "Cmd"] = _json_or_shell(rest)
        elif kw == "LABEL":
            stage.config.setdefault("Labels", {}).update(dict(_key_values(rest, self._vars(stage))))
        else:
            raise BuildError(f"{kw} is not supported by this builder")

    def _copy(self, stage: _Stage, rest: str) -> None:
        words = shlex.split(expand(rest, self._vars(stage)))
        source_stage = None
        while words and words[0].startswith("--"):
            flag = words.pop(0)
            if flag.startswith("--from="):
                ref = flag.split("=", 1)[1]
                source_stage = next(
                    (s for s in self.stages if s.name == ref or str(self.stages.index(s)) == ref), None
                )
                if source_stage is None:
                    raise BuildError(f"COPY --from={ref}: no such stage")
            else:
                raise BuildError(f"COPY {flag} is not supported by this builder")
        *sources, dest = words
        dest_abs = os.path.normpath(os.path.join(stage.workdir, dest))
        into_dir = dest.endswith("/") or len(sources) > 1
        target = stage.root / dest_abs.lstrip("/")
        for source in sources:
            if source_stage is not None:
                matches = sorted(source_stage.root.glob(source.lstrip("/"))) or [
                    source_stage.root / source.lstrip("/")
                ]
            else:
                matches = sorted(self.context.glob(source)) or [self.context / source]
            for src in matches:
                if not src.exists():
                    raise BuildError(f"COPY {source}: not found")
                if source_stage is None and self.ignored(os.path.relpath(src, self.context)):
                    raise BuildError(f"COPY {source}: excluded by .dockerignore")
                if src.is_dir() and not src.is_symlink():
                    self._copy_tree(src, target, from_context=source_stage is None)
                else:
                    dst = target / src.name if (into_dir or target.is_dir()) else target
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(src, dst, follow_symlinks=False)
                    if source_stage is None:
                        os.lchown(dst, 0, 0)

    def _copy_tree(self, src: Path, target: Path, *, from_context: bool) -> None:
        target.mkdir(parents=True, exist_ok=True)
        for dirpath, dirnames, filenames in os.walk(src):
            rel_dir = os.path.relpath(dirpath, src)
            if from_context:
                ctx_rel = os.path.relpath(dirpath, self.context)
                if not any(rule.include for rule in self.rules):
                    dirnames[:] = [
                        d for d in dirnames if not self.ignored(os.path.normpath(os.path.join(ctx_rel, d)))
                    ]
                kept = [f for f in filenames if not self.ignored(os.path.normpath(os.path.join(ctx_rel, f)))]
            else:
                kept = filenames
            out_dir = target / rel_dir
            out_dir.mkdir(parents=True, exist_ok=True)
            shutil.copystat(dirpath, out_dir)
            for name in kept:
                dst = out_dir / name
                shutil.copy2(os.path.join(dirpath, name), dst, follow_symlinks=False)
                if from_context:  # docker COPY from the context: owned by root
                    os.lchown(dst, 0, 0)
            if from_context:
                os.lchown(out_dir, 0, 0)

    def _run(self, stage: _Stage, argv: list[str]) -> None:
        env = {"PATH": DEFAULT_PATH, "HOME": "/root", **stage.args, **stage.env}
        env.update({k: os.environ[k] for k in NETWORK_ENV if k in os.environ})
        root = stage.root
        binds = ["/etc/resolv.conf", "/etc/hosts", *map(str, self.run_mounts)]
        if HOST_CA_BUNDLE.is_file():
            binds.append(str(HOST_CA_BUNDLE))
            env.update({"PIP_CERT": str(HOST_CA_BUNDLE), "SSL_CERT_FILE": str(HOST_CA_BUNDLE)})
        script = ["set -e", "mount --make-rprivate /", f"mount -t proc proc {shlex.quote(str(root / 'proc'))}",
                  f"mount --rbind /dev {shlex.quote(str(root / 'dev'))}",
                  f"mount -t sysfs sysfs {shlex.quote(str(root / 'sys'))}"]  # fmt: skip
        created: list[Path] = []
        for host in binds:
            inside = root / host.lstrip("/")
            if not inside.exists():
                if Path(host).is_dir():
                    inside.mkdir(parents=True)
                else:
                    inside.parent.mkdir(parents=True, exist_ok=True)
                    inside.touch()
                created.append(inside)
            script.append(f"mount --bind -o ro {shlex.quote(host)} {shlex.quote(str(inside))} || "
                          f"mount --bind {shlex.quote(host)} {shlex.quote(str(inside))}")  # fmt: skip
        chroot = ["chroot"]
        if stage.user and stage.user not in ("root", "0", "0:0"):
            uid, gid = _passwd_ids(root, stage.user)
            chroot.append(f"--userspec={uid}:{gid}")
        workdir = stage.workdir
        inner = " ".join(
            shlex.quote(a) for a in ["/bin/sh", "-c", 'cd "$1" && shift && exec "$@"', "sh", workdir, *argv]
        )
        script.append(f"exec {' '.join(chroot)} {shlex.quote(str(root))} {inner}")
        log(f"{self.tag}: RUN {' '.join(argv[2:] if argv[:2] == ['/bin/sh', '-c'] else argv)[:160]}")
        started = time.monotonic()
        log_path = self.work / f"run-{len(list(self.work.glob('run-*.log')))}.log"
        with log_path.open("wb") as out:
            done = subprocess.run(
                ["unshare", "--mount", "--fork", "/bin/sh", "-c", "\n".join(script)],
                env=env, stdout=out, stderr=subprocess.STDOUT, check=False,
            )  # fmt: skip
        for path in reversed(created):
            with contextlib.suppress(OSError):
                path.rmdir() if path.is_dir() else path.unlink()
        if done.returncode != 0:
            tail = log_path.read_text(errors="replace")[-4000:]
            raise BuildError(f"RUN failed with exit code {done.returncode}:\n{tail}")
        log(f"{self.tag}:   done in {time.monotonic() - started:.0f}s")


def _require(stage: _Stage | None) -> _Stage:
    if stage is None:
        raise BuildError("instruction before the first FROM")
    return stage


def build_key(builder: Builder) -> str:
    digest = hashlib.sha256()
    digest.update(builder.dockerfile.read_bytes())
    digest.update(json.dumps([builder.tag, sorted(builder.build_args.items()), builder.base.layers[0].diff_id,
                              [str(m) for m in builder.run_mounts]]).encode())  # fmt: skip
    for path in builder.context_files():
        digest.update(str(path.relative_to(builder.context)).encode() + b"\0")
        digest.update(path.read_bytes() if not path.is_symlink() else os.readlink(path).encode())
    return digest.hexdigest()[:16]


def build(
    dockerfile: Path,
    context: Path,
    *,
    tag: str,
    build_args: Mapping[str, str] | None = None,
    run_mounts: Sequence[Path] = (),
) -> Image:
    """Build (or reuse from the cache) dockerfile with context on the local base as BASE_IMAGE."""
    base = base_image()
    args = {"BASE_IMAGE": base.name, **(build_args or {})}
    with tempfile.TemporaryDirectory(prefix="nlpmodel-build-", dir=images_dir()) as tmp:
        builder = Builder(dockerfile, context, tag=tag, build_args=args, base=base, work=Path(tmp),
                          run_mounts=run_mounts)  # fmt: skip
        key = build_key(builder)
        entry = images_dir() / f"{re.sub(r'[^A-Za-z0-9.]+', '-', tag)}-{key}"
        with file_lock(images_dir() / f"{entry.name}.lock"):
            cached = Image.load(entry)
            if cached is not None:
                return cached
            log(f"building {tag} from {dockerfile}")
            started = time.monotonic()
            image = builder.run()
            shutil.rmtree(entry, ignore_errors=True)
            entry.mkdir(parents=True)
            layer = image.layers[-1]
            kept = entry / "layer.tar"
            shutil.move(str(layer.path), kept)
            image = Image(image.name, (*image.layers[:-1], Layer(kept, layer.diff_id)), image.config)
            image.save(entry)
            log(f"built {tag} in {time.monotonic() - started:.0f}s")
            _remove_older(entry)
            return image


def _remove_older(entry: Path) -> None:
    """Drop earlier builds of the same tag (keyed by an older content hash)."""
    prefix = entry.name.rsplit("-", 1)[0] + "-"
    for other in entry.parent.glob(prefix + "*"):
        if other != entry and other.is_dir() and re.fullmatch(r"[0-9a-f]{16}", other.name[len(prefix) :]):
            shutil.rmtree(other, ignore_errors=True)


# ----------------------------------------------------------------------------------- the project's images


def operator_image() -> Image:
    """The operator image from the repository's Dockerfile, named as the chart renders it by default."""
    from nlpmodel_harness.checkout import REPO  # noqa: PLC0415

    chart = yaml_load(REPO / "charts" / "nlpmodel-operator" / "Chart.yaml")
    values = yaml_load(REPO / "charts" / "nlpmodel-operator" / "values.yaml")
    tag = f"{values['image']['repository']}:{values['image']['tag'] or chart['appVersion']}"
    return build(REPO / "Dockerfile", REPO, tag=tag)


def runtime_image() -> Image:
    """The transformers runtime from runtimes/transformers/Dockerfile, named as the engine renders it.

    CPU-only: a wheelhouse on the machine with a CPU torch (pip's find-links, e.g. /opt/wheels) is
    mounted for the build and torch pinned to the runtime venv's version; PyPI's torch would bring
    several GB of CUDA libraries a CPU node never loads."""
    from nlpmodel_operator import __version__  # noqa: PLC0415
    from nlpmodel_operator.core.engines.transformers import IMAGE_REPOSITORY  # noqa: PLC0415

    from nlpmodel_harness.checkout import REPO  # noqa: PLC0415
    from nlpmodel_harness.runtime_venv import TORCH  # noqa: PLC0415

    support = images_dir() / "build-support"
    support.mkdir(parents=True, exist_ok=True)
    constraints = support / "constraints.txt"
    if not constraints.is_file() or constraints.read_text() != f"{TORCH}\n":
        constraints.write_text(f"{TORCH}\n")
    args = {"PIP_CONSTRAINT": str(constraints)}
    mounts = [support]
    wheelhouse = Path(os.environ.get("PIP_FIND_LINKS") or "/opt/wheels")
    if wheelhouse.is_dir():
        args["PIP_FIND_LINKS"] = str(wheelhouse)
        mounts.append(wheelhouse)
    return build(
        REPO / "runtimes" / "transformers" / "Dockerfile",
        REPO,
        tag=f"{IMAGE_REPOSITORY}:v{__version__}",
        build_args=args,
        run_mounts=mounts,
    )


def yaml_load(path: Path) -> Any:
    import yaml  # noqa: PLC0415

    return yaml.safe_load(path.read_text())


def main() -> int:
    """`python -m nlpmodel_harness.images`: build (or find cached) both images; print their names."""
    for image in (operator_image(), runtime_image()):
        print(f"{image.name}: {', '.join(str(layer.path) for layer in image.layers)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
