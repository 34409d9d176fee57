#!/usr/bin/env python3
"""Build fnagent's local Docker images, idempotently (``make images``).

Usage: ``python3 images/build.py [--force] [NAME...]`` where NAME is a short name
(busybox, python, fn-shell, fn-hello, fn-test) or an image reference; with no NAME
every image is built. An image's parents are always checked (and rebuilt when stale)
first.

No registry is reachable from the machines this runs on, so nothing is pulled:

* ``fnagent/busybox``          a tarball assembled here from Debian's busybox-static, imported
* ``fnagent/python:bookworm``  a debootstrap rootfs (minbase + python3), trimmed, imported
* ``fnagent/fn-shell``, ``fnagent/fn-hello``, ``fnagent/fn-test``
                               built with the legacy builder (DOCKER_BUILDKIT=0) from
                               ``images/<name>/Dockerfile`` on those two

Contract: every image carries the label ``fnagent.image.inputs=<sha256>`` over all of its
inputs: this script, the files in ``images/<name>/``, the parent image's id and, for the
imported images, what their rootfs is made from (the busybox binary; the debootstrap
suite, variant, packages, mirror and architecture). When the tagged image already carries
the hash it is "up to date" and left alone. Rebuilding a parent gives it a new id, so its
children rebuild too.

Scratch lives in ``images/build/`` (gitignored): the debootstrap rootfs tarball, cached
under a key of the debootstrap inputs so that only a change to those re-runs debootstrap;
the FDK installed with ``pip install --target``; the build contexts. A lock file there
serialises concurrent runs.

Environment: ``DOCKER`` (docker client to run, default ``docker``), ``FNAGENT_DEBIAN_MIRROR``
(default: the Debian mirror this host's apt uses). Stdlib only. Exit status 0 on success,
1 with a one-line ``build.py: error: ...`` otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import fnmatch
import hashlib
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
BUILD = HERE / "build"
LABEL = "fnagent.image.inputs"
DOCKER = os.environ.get("DOCKER") or "docker"

STANDARD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

DEBIAN_SUITE = "bookworm"
DEBIAN_DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEBOOTSTRAP_VARIANT = "minbase"
DEBOOTSTRAP_INCLUDE = ("python3",)

# The unprivileged user functions run as (the agent passes --user 1000:1000).
FN_ACCOUNT = {
    "etc/passwd": "fn:x:1000:1000:fn:/tmp:/usr/sbin/nologin",
    "etc/group": "fn:x:1000:",
    "etc/shadow": "fn:*:::::::",
    "etc/gshadow": "fn:!::",
}

# Target of `pip install --target` for fn-hello: bookworm's CPython 3.11 and glibc 2.36,
# whatever Python runs this script.
PIP_TARGET_FLAGS = (
    "--only-binary=:all:",
    "--implementation", "cp",
    "--python-version", "3.11",
    "--abi", "cp311",
    *[arg for minor in range(36, 4, -1) for arg in ("--platform", f"manylinux_2_{minor}_x86_64")],
    "--platform", "manylinux2014_x86_64",
)
IMAGE_PYTHON = "/usr/bin/python3"


class BuildError(Exception):
    """Why the build stopped, in one line."""


@dataclass(frozen=True, kw_only=True)
class Image:
    key: str
    ref: str
    parent: str | None
    extra_inputs: Callable[[], list[tuple[str, bytes]]]
    build: Callable[[Image, str], None]

    @property
    def dir(self) -> Path:
        return HERE / self.key


# --- small helpers -------------------------------------------------------------------

def say(msg: str) -> None:
    print(msg, flush=True)


def step(image: Image, msg: str) -> None:
    say(f"  [{image.key}] {msg}")


def rel(path: Path) -> str:
    try:
        return str(path.relative_to(REPO))
    except ValueError:
        return str(path)


def run(cmd: list[str], *, env: dict[str, str] | None = None, capture: bool = False,
        stdin: int | None = None) -> str:
    """Run a command, its output shown unless captured; raise BuildError when it fails."""
    full_env = {**os.environ, **(env or {})}
    try:
        proc = subprocess.run(cmd, env=full_env, text=True, stdin=stdin,
                              stdout=subprocess.PIPE if capture else None,
                              stderr=subprocess.PIPE if capture else None)
    except FileNotFoundError as exc:
        raise BuildError(f"{cmd[0]} not found") from exc
    if proc.returncode != 0:
        detail = ""
        if capture and proc.stderr.strip():
            detail = ": " + proc.stderr.strip().splitlines()[-1]
        raise BuildError(f"exit status {proc.returncode} from {shlex.join(cmd[:4])}"
                         f"{' ...' if len(cmd) > 4 else ''}{detail}")
    return proc.stdout if capture else ""


def sha256_parts(parts: list[tuple[str, bytes]]) -> str:
    h = hashlib.sha256()
    for name, data in parts:
        h.update(f"{name}\0{len(data)}\0".encode())
        h.update(data)
    return h.hexdigest()


def dir_inputs(directory: Path) -> list[tuple[str, bytes]]:
    """Every file under directory, with its path and executable bit."""
    parts = []
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        mode = "x" if os.access(path, os.X_OK) else "-"
        parts.append((f"file {path.relative_to(HERE)} {mode}", path.read_bytes()))
    return parts


def safe_rmtree(path: Path) -> None:
    """Remove a scratch tree, unmounting first what a killed debootstrap left mounted in it."""
    if not path.exists() and not path.is_symlink():
        return
    prefix = str(path.resolve()) + "/"
    with open("/proc/self/mounts") as f:
        mounts = [line.split()[1].replace("\\040", " ") for line in f]
    for mnt in sorted((m for m in mounts if m.startswith(prefix)), reverse=True):
        run(["umount", "-l", mnt])
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


@contextlib.contextmanager
def build_lock() -> Iterator[None]:
    BUILD.mkdir(parents=True, exist_ok=True)
    with open(BUILD / ".lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say("waiting for another build.py run to finish ...")
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def is_root() -> bool:
    return os.geteuid() == 0


def apt_install(package: str, why: str) -> None:
    """Install a Debian package when we may (root on a Debian-like host), else say how."""
    if not (is_root() and shutil.which("apt-get")):
        raise BuildError(f"{why}: apt-get install {package}")
    say(f"{why}: running apt-get update && apt-get install -y {package}")
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    run(["apt-get", "update", "-q"], env=env)
    run(["apt-get", "install", "-y", "-q", package], env=env)


# --- docker ----------------------------------------------------------------------------

def docker(*args: str, capture: bool = True, env: dict[str, str] | None = None) -> str:
    return run([DOCKER, *args], capture=capture, env=env)


def check_docker() -> None:
    if not shutil.which(DOCKER):
        raise BuildError(f"docker client {DOCKER!r} not found: apt-get install docker.io")
    try:
        docker("version", "--format", "{{.Server.Version}}")
    except BuildError as exc:
        raise BuildError(f"no Docker daemon answers ({exc}): run scripts/ensure-docker.sh") from exc


def inspect_image(ref: str) -> dict[str, Any] | None:
    proc = subprocess.run([DOCKER, "image", "inspect", ref], capture_output=True, text=True)
    if proc.returncode != 0:
        if "no such image" in proc.stderr.lower() or "not found" in proc.stderr.lower():
            return None
        raise BuildError(f"docker image inspect {ref}: {proc.stderr.strip()}")
    info: dict[str, Any] = json.loads(proc.stdout)[0]
    return info


def image_label(info: dict[str, Any] | None) -> str | None:
    if info is None:
        return None
    return ((info.get("Config") or {}).get("Labels") or {}).get(LABEL)


def drop_previous(ref: str, old: dict[str, Any] | None) -> None:
    """Remove the image a rebuild replaced, when nothing else names it (best effort)."""
    if old is None:
        return
    now = inspect_image(old["Id"])
    if now is None or now.get("RepoTags"):
        return
    proc = subprocess.run([DOCKER, "image", "rm", old["Id"]], capture_output=True, text=True)
    if proc.returncode == 0:
        say(f"  removed the previous {ref} ({old['Id'][7:19]})")


def docker_import(image: Image, tarball: Path, inputs: str, changes: list[str]) -> None:
    args = ["import", "--message", f"fnagent images/build.py {image.key}"]
    for change in [*changes, f"LABEL {LABEL}={inputs}"]:
        args += ["--change", change]
    step(image, f"docker import {rel(tarball)} ({tarball.stat().st_size / 2**20:.1f} MiB)")
    docker(*args, str(tarball), image.ref)


def docker_build(image: Image, context: Path, inputs: str) -> None:
    step(image, f"docker build (legacy builder, no network) {rel(context)}")
    docker("build", "--network", "none", "--force-rm", "--label", f"{LABEL}={inputs}",
           "-t", image.ref, str(context), capture=False, env={"DOCKER_BUILDKIT": "0"})


def stage_context(image: Image) -> Path:
    ctx = BUILD / "ctx" / image.key
    safe_rmtree(ctx)
    shutil.copytree(image.dir, ctx)
    return ctx


# --- fnagent/busybox ------------------------------------------------------------------

def busybox_binary() -> Path:
    try:
        status = subprocess.run(["dpkg-query", "-W", "-f=${Status}", "busybox-static"],
                                capture_output=True, text=True)
    except FileNotFoundError as exc:
        raise BuildError("dpkg-query not found: the images need a Debian host "
                         "(busybox-static, debootstrap)") from exc
    if status.returncode != 0 or status.stdout.strip() != "install ok installed":
        apt_install("busybox-static", "busybox-static is not installed")
    for line in run(["dpkg", "-L", "busybox-static"], capture=True).splitlines():
        if line.endswith("/bin/busybox") and Path(line).is_file():
            return Path(line)
    raise BuildError("busybox-static has no bin/busybox: "
                     "apt-get install --reinstall busybox-static")


def busybox_rootfs() -> bytes:
    """A deterministic rootfs tarball: busybox and its applets in /bin, /etc, /tmp."""
    binary = busybox_binary()
    applets = run([str(binary), "--list"], capture=True).split()
    mtime = int(binary.stat().st_mtime)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        def add(name: str, kind: bytes, mode: int, data: bytes = b"", target: str = "") -> None:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime, info.linkname = kind, mode, mtime, target
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data else None)

        for d in ("bin", "etc", "usr", "root"):
            add(d, tarfile.DIRTYPE, 0o700 if d == "root" else 0o755)
        add("tmp", tarfile.DIRTYPE, 0o1777)
        add("bin/busybox", tarfile.REGTYPE, 0o755, binary.read_bytes())
        for applet in sorted(set(applets) - {"busybox"}):
            add(f"bin/{applet}", tarfile.SYMTYPE, 0o777, target="busybox")
        # One directory for everything, so /usr/bin/env and /sbin/ip resolve too.
        add("sbin", tarfile.SYMTYPE, 0o777, target="bin")
        add("usr/bin", tarfile.SYMTYPE, 0o777, target="../bin")
        add("usr/sbin", tarfile.SYMTYPE, 0o777, target="../bin")
        for name in ("passwd", "group"):
            add(f"etc/{name}", tarfile.REGTYPE, 0o644, (HERE / "busybox" / name).read_bytes())
    return buf.getvalue()


BUSYBOX_CHANGES = [f"ENV PATH={STANDARD_PATH}", 'CMD ["sh"]']


def busybox_inputs() -> list[tuple[str, bytes]]:
    return [("rootfs.tar", busybox_rootfs()), ("changes", json.dumps(BUSYBOX_CHANGES).encode())]


def build_busybox(image: Image, inputs: str) -> None:
    tarball = BUILD / "busybox-rootfs.tar"
    tarball.write_bytes(busybox_rootfs())
    try:
        docker_import(image, tarball, inputs, BUSYBOX_CHANGES)
    finally:
        tarball.unlink()


# --- fnagent/python:bookworm ----------------------------------------------------------

def apt_mirror() -> str:
    """The Debian archive URI this host's apt uses for the suite, or deb.debian.org."""
    if os.environ.get("FNAGENT_DEBIAN_MIRROR"):
        return os.environ["FNAGENT_DEBIAN_MIRROR"].rstrip("/")
    candidates: list[tuple[str, list[str]]] = []
    sources = Path("/etc/apt/sources.list.d")
    for path in sorted(sources.glob("*.sources")) if sources.is_dir() else []:
        for stanza in re.split(r"\n\s*\n", path.read_text(errors="replace")):
            fields: dict[str, str] = {}
            for line in stanza.splitlines():
                m = re.match(r"^([A-Za-z-]+):\s*(.*)$", line)
                if m:
                    fields[m.group(1).lower()] = m.group(2)
            if "deb" in fields.get("types", "").split():
                candidates += [(uri, fields.get("suites", "").split())
                               for uri in fields.get("uris", "").split()]
    for path in [Path("/etc/apt/sources.list"),
                 *(sorted(sources.glob("*.list")) if sources.is_dir() else [])]:
        if path.is_file():
            for line in path.read_text(errors="replace").splitlines():
                m = re.match(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+(\S+)", line.strip())
                if m:
                    candidates.append((m.group(1), [m.group(2)]))
    for uri, suites in candidates:
        if DEBIAN_SUITE in suites and re.search(r"/debian/?$", uri):
            return uri.rstrip("/")
    return DEBIAN_DEFAULT_MIRROR


def debootstrap_params() -> dict[str, str]:
    arch = run(["dpkg", "--print-architecture"], capture=True).strip()
    return {"suite": DEBIAN_SUITE, "variant": DEBOOTSTRAP_VARIANT,
            "include": ",".join(DEBOOTSTRAP_INCLUDE), "mirror": apt_mirror(), "arch": arch}


def debootstrap_tarball(params: dict[str, str]) -> Path:
    key = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]
    return BUILD / f"debootstrap-{params['suite']}-{key}.tar"


PYTHON_CHANGES = [f"ENV PATH={STANDARD_PATH}", "ENV LANG=C.UTF-8", 'CMD ["python3"]']


def python_inputs() -> list[tuple[str, bytes]]:
    params = debootstrap_params()
    return [("debootstrap", json.dumps(params, sort_keys=True).encode()),
            ("changes", json.dumps(PYTHON_CHANGES).encode())]


def run_debootstrap(image: Image, params: dict[str, str], tarball: Path) -> None:
    if not is_root():
        raise BuildError(f"debootstrap needs root and {rel(tarball)} is not cached yet: "
                         "run `sudo make images` once")
    if not (shutil.which("debootstrap") or Path("/usr/sbin/debootstrap").exists()):
        apt_install("debootstrap", "debootstrap is not installed")
    debootstrap = shutil.which("debootstrap") or "/usr/sbin/debootstrap"
    target = BUILD / "debootstrap-rootfs.tmp"
    safe_rmtree(target)
    step(image, f"debootstrap --variant={params['variant']} --include={params['include']} "
                f"{params['suite']} from {params['mirror']} (a few minutes)")
    started = time.monotonic()
    run([debootstrap, f"--variant={params['variant']}", f"--include={params['include']}",
         f"--arch={params['arch']}", "--components=main",
         params["suite"], str(target), params["mirror"]])
    step(image, f"debootstrap done in {time.monotonic() - started:.0f}s; caching {rel(tarball)}")
    partial = tarball.with_suffix(".tar.part")
    run(["tar", "--numeric-owner", "--sort=name", "-C", str(target), "-cf", str(partial), "."])
    for stale in BUILD.glob("debootstrap-*.tar"):
        stale.unlink()
    os.replace(partial, tarball)
    safe_rmtree(target)


def trim_rules() -> list[tuple[bool, str]]:
    rules = []
    for line in (HERE / "python" / "trim.txt").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keep = line.startswith("!")
            rules.append((keep, line[1:] if keep else line))
    return rules


def dropped(path: str, rules: list[tuple[bool, str]]) -> bool:
    drop = False
    for keep, pattern in rules:
        if fnmatch.fnmatchcase(path, pattern):
            drop = not keep
    return drop


def customise_rootfs(source: Path, dest: Path) -> tuple[int, int]:
    """Copy the debootstrap tarball minus trim.txt, with the fn account added."""
    rules = trim_rules()
    gone: set[str] = set()
    kept = 0
    with tarfile.open(source) as src, tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as dst:
        for member in src:
            path = member.name.removeprefix("./").rstrip("/")
            if (not member.isdir() and dropped(path, rules)) or (
                    member.islnk() and member.linkname in gone):
                gone.add(member.name)
                continue
            kept += 1
            if path in FN_ACCOUNT and member.isreg():
                data = src.extractfile(member).read()  # type: ignore[union-attr]
                name = FN_ACCOUNT[path].split(":", 1)[0]
                if not any(line.split(":", 1)[0] == name for line in data.decode().splitlines()):
                    data = data.rstrip(b"\n") + b"\n" + FN_ACCOUNT[path].encode() + b"\n"
                member.size = len(data)
                dst.addfile(member, io.BytesIO(data))
            else:
                dst.addfile(member, src.extractfile(member) if member.isreg() else None)
    return kept, len(gone)


def build_python(image: Image, inputs: str) -> None:
    params = debootstrap_params()
    cached = debootstrap_tarball(params)
    if cached.exists():
        step(image, f"using the cached debootstrap rootfs {rel(cached)}")
    else:
        run_debootstrap(image, params, cached)
    rootfs = BUILD / "python-rootfs.tar"
    step(image, f"trimming the rootfs (images/python/trim.txt) into {rel(rootfs)}")
    kept, gone = customise_rootfs(cached, rootfs)
    step(image, f"kept {kept} entries, dropped {gone}")
    try:
        docker_import(image, rootfs, inputs, PYTHON_CHANGES)
    finally:
        rootfs.unlink()


# --- function images ------------------------------------------------------------------

def build_plain(image: Image, inputs: str) -> None:
    docker_build(image, stage_context(image), inputs)


def fdk_install() -> Path:
    """images/build/fdk: the pinned FDK for bookworm's python, re-installed only when
    requirements.txt or the pip flags change."""
    requirements = HERE / "fn-hello" / "requirements.txt"
    target = BUILD / "fdk"
    stamp_path = target / ".fnagent-inputs"
    stamp = sha256_parts([("requirements", requirements.read_bytes()),
                          ("flags", json.dumps(PIP_TARGET_FLAGS).encode())])
    if stamp_path.is_file() and stamp_path.read_text() == stamp:
        return target
    if subprocess.run([sys.executable, "-m", "pip", "--version"],
                      capture_output=True).returncode != 0:
        raise BuildError(f"pip is missing for {sys.executable}: "
                         "apt-get install python3-pip (or python3 -m ensurepip)")
    safe_rmtree(target)
    say(f"  [fn-hello] pip install --target {rel(target)} -r {rel(requirements)} "
        "(cp311 manylinux wheels)")
    run([sys.executable, "-m", "pip", "install", "--disable-pip-version-check",
         "--progress-bar", "off", "--no-compile", "--target", str(target),
         *PIP_TARGET_FLAGS, "-r", str(requirements)])
    stamp_path.write_text(stamp)
    return target


def build_fn_hello(image: Image, inputs: str) -> None:
    fdk = fdk_install()
    ctx = stage_context(image)
    shutil.copytree(fdk, ctx / "python",
                    ignore=shutil.ignore_patterns("__pycache__", ".fnagent-inputs"))
    # pip wrote the host interpreter into the console scripts' shebangs.
    for script in (ctx / "python" / "bin").iterdir():
        data = script.read_bytes()
        if data.startswith(b"#!") and b"python" in data.split(b"\n", 1)[0]:
            script.write_bytes(f"#!{IMAGE_PYTHON}".encode() + data[data.index(b"\n"):])
    docker_build(image, ctx, inputs)


# --- the image list -------------------------------------------------------------------

IMAGES = [
    Image(key="busybox", ref="fnagent/busybox:latest", parent=None,
          extra_inputs=busybox_inputs, build=build_busybox),
    Image(key="python", ref="fnagent/python:bookworm", parent=None,
          extra_inputs=python_inputs, build=build_python),
    Image(key="fn-shell", ref="fnagent/fn-shell:latest", parent="busybox",
          extra_inputs=list, build=build_plain),
    Image(key="fn-hello", ref="fnagent/fn-hello:latest", parent="python",
          extra_inputs=list, build=build_fn_hello),
    Image(key="fn-test", ref="fnagent/fn-test:latest", parent="python",
          extra_inputs=list, build=build_plain),
]
BY_KEY = {image.key: image for image in IMAGES}


def resolve(names: list[str]) -> tuple[list[Image], set[str]]:
    """The images named (all when none) and their ancestors, parents first; and the named."""
    wanted: set[str] = set()
    named: set[str] = set()
    for name in names or [image.key for image in IMAGES]:
        bare = name.removeprefix("fnagent/")
        match = BY_KEY.get(bare) or next(
            (i for i in IMAGES if name in (i.ref, i.ref.removesuffix(":latest"))), None)
        if match is None:
            raise BuildError(f"unknown image {name!r}: choose from {', '.join(BY_KEY)}")
        named.add(match.key)
        key: str | None = match.key
        while key is not None:
            wanted.add(key)
            key = BY_KEY[key].parent
    return [image for image in IMAGES if image.key in wanted], named


def inputs_of(image: Image) -> str:
    parts = [("build.py", Path(__file__).read_bytes()), ("ref", image.ref.encode())]
    parts += dir_inputs(image.dir)
    if image.parent is not None:
        parent = inspect_image(BY_KEY[image.parent].ref)
        if parent is None:
            raise BuildError(f"parent image {BY_KEY[image.parent].ref} is missing")
        parts.append(("parent", parent["Id"].encode()))
    parts += image.extra_inputs()
    return sha256_parts(parts)


def build_all(images: list[Image], forced: set[str]) -> None:
    for image in images:
        inputs = inputs_of(image)
        current = inspect_image(image.ref)
        force = image.key in forced
        if image_label(current) == inputs and not force:
            say(f"{image.ref}: up to date ({inputs[:12]})")
            continue
        why = ("forced" if force and current is not None else
               "missing" if current is None else "inputs changed")
        say(f"{image.ref}: building ({why}; inputs {inputs[:12]})")
        started = time.monotonic()
        image.build(image, inputs)
        built = inspect_image(image.ref)
        if image_label(built) != inputs:
            raise BuildError(f"{image.ref} was built but does not carry {LABEL}={inputs[:12]}...")
        assert built is not None
        say(f"{image.ref}: built {built['Id'][7:19]}, {built['Size'] / 1e6:.1f} MB, "
            f"in {time.monotonic() - started:.1f}s")
        if current is not None and current["Id"] != built["Id"]:
            drop_previous(image.ref, current)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"images to build ({', '.join(BY_KEY)})")
    parser.add_argument("--force", action="store_true",
                        help="rebuild the named images (not their parents) even when up to date")
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        images, named = resolve(args.names)
        check_docker()
        with build_lock():
            build_all(images, named if args.force else set())
    except BuildError as exc:
        print(f"build.py: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("build.py: interrupted", file=sys.stderr)
        return 130
    say(f"images ready in {time.monotonic() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
