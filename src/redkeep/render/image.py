"""The build context of redkeep's own image (the proxy, exporter and backup services).

redkeep is not on a registry, so `redkeep init` writes this release into the bundle as one
wheel, next to a Dockerfile that installs it; `docker compose build` then needs only PyPI for
the dependencies, like `pip install`.

Where the wheel comes from depends on how this redkeep was installed:
- from a wheel: the installed files (its RECORD lists them) are packed again into that wheel;
- from a source tree (an editable install, `make setup`): setuptools builds one offline from
  this package's files, as `pip wheel --no-deps --no-build-isolation` would.
"""

import base64
import csv
import hashlib
import io
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from functools import cache
from importlib import metadata
from pathlib import Path

import redkeep
from redkeep import __version__
from redkeep.errors import RedkeepError, UsageError

DOCKERFILE = """\
# redkeep {version} for the proxy, exporter and backup services, built from this directory.
# The wheel is the redkeep that rendered the bundle; pip fetches its dependencies from PyPI.
FROM python:3.12-slim
COPY {wheel} /tmp/
RUN pip install --no-cache-dir /tmp/{wheel} && rm /tmp/{wheel}
USER 65534:65534
ENTRYPOINT ["redkeep"]
"""
# Installation records that are not part of the wheel (pip writes them when it installs).
INSTALLER_FILES = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"}
NO_SETUPTOOLS = 3  # exit status of BUILD_SCRIPT when setuptools cannot be imported
BUILD_SCRIPT = """\
import sys
try:
    from setuptools import build_meta
except ImportError:
    sys.exit(3)
build_meta.build_wheel(sys.argv[1])
"""
# Zip entries get a fixed time, so the same release always gives the same wheel bytes.
ZIP_TIME = (1980, 1, 1, 0, 0, 0)


@cache
def redkeep_wheel() -> tuple[str, bytes]:
    """(file name, bytes) of a wheel of the running redkeep.

    Raise UsageError with what to do when there is neither an installed wheel to pack nor a
    way to build one.
    """
    try:
        dist = metadata.distribution("redkeep")
    except metadata.PackageNotFoundError:
        raise UsageError(
            "cannot put redkeep into the bundle's image/: this redkeep has no package metadata "
            "(run from a bare copy of its files?); install it with `pip install` (or `make "
            "setup` in its source tree) and run init again"
        ) from None
    files = installed_files(dist)
    if files is not None:
        return repack(dist, files)
    return build_from_package(dist)


def installed_files(dist: metadata.Distribution) -> list[metadata.PackagePath] | None:
    """The files of the wheel `dist` was installed from, if the running package is that
    installation (None for an editable install, whose RECORD lists no package files)."""
    package = Path(redkeep.__file__).resolve().parent
    listed = {Path(dist.locate_file(path)).resolve(): path for path in dist.files or []}
    if package / "__init__.py" not in listed:
        return None
    return [
        path
        for path in listed.values()
        if (path.parts[0] == "redkeep" and "__pycache__" not in path.parts)
        or (path.parts[0].endswith(".dist-info") and path.name not in INSTALLER_FILES)
    ]


def repack(dist: metadata.Distribution, files: list[metadata.PackagePath]) -> tuple[str, bytes]:
    """Pack an installed wheel's files again, with a new RECORD (the installed bytes, hashed)."""
    info_dir = next(path.parts[0] for path in files if path.parts[0].endswith(".dist-info"))
    tags = [
        line.split(":", 1)[1].strip()
        for line in (dist.read_text("WHEEL") or "").splitlines()
        if line.startswith("Tag:")
    ]
    if not tags:
        raise RedkeepError(f"{dist.locate_file(info_dir)}/WHEEL names no tag: reinstall redkeep")
    # Several tags are written as one compressed tag set (PEP 425): py2.py3-none-any.
    columns = zip(*(tag.split("-") for tag in tags), strict=True)  # pythons, abis, platforms
    tag = "-".join(".".join(dict.fromkeys(column)) for column in columns)
    # Package files first, the .dist-info directory last, as wheels are laid out.
    ordered = sorted(files, key=lambda path: (path.parts[0] == info_dir, str(path)))
    buffer, record = io.BytesIO(), io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as wheel:
        for path in ordered:
            data = Path(dist.locate_file(path)).read_bytes()
            _add(wheel, str(path), data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            writer.writerow([str(path), f"sha256={digest.decode()}", len(data)])
        writer.writerow([f"{info_dir}/RECORD", "", ""])
        _add(wheel, f"{info_dir}/RECORD", record.getvalue().encode())
    return f"{info_dir.removesuffix('.dist-info')}-{tag}.whl", buffer.getvalue()


def _add(wheel: zipfile.ZipFile, name: str, data: bytes) -> None:
    entry = zipfile.ZipInfo(name, ZIP_TIME)
    entry.external_attr = 0o644 << 16
    entry.compress_type = zipfile.ZIP_DEFLATED
    wheel.writestr(entry, data)


def build_from_package(dist: metadata.Distribution) -> tuple[str, bytes]:
    """Build a wheel with setuptools, offline, from this package's files in a temp project
    (the source tree itself is never written to)."""
    with tempfile.TemporaryDirectory(prefix="redkeep-wheel-") as tmp:
        project, out = Path(tmp) / "project", Path(tmp) / "dist"
        for path, data in package_files():
            target = project / "src" / "redkeep" / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        (project / "pyproject.toml").write_text(render_pyproject(dependencies(dist)))
        result = subprocess.run(
            [sys.executable, "-c", BUILD_SCRIPT, str(out)],
            cwd=project,
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
            env={**os.environ, "SOURCE_DATE_EPOCH": "315532800"},  # 1980: same bytes every time
        )
        if result.returncode == NO_SETUPTOOLS:
            raise UsageError(
                "cannot build redkeep's wheel for the bundle's image/: setuptools is not "
                f"installed in redkeep's environment ({sys.prefix}); install it there "
                "(`pip install setuptools`), or install redkeep from its wheel"
            )
        wheels = sorted(out.glob("*.whl"))
        if result.returncode != 0 or len(wheels) != 1:
            lines = (result.stderr or result.stdout).strip().splitlines() or ["no wheel"]
            raise RedkeepError(f"building redkeep's wheel for image/ failed: {lines[-1]}")
        return wheels[0].name, wheels[0].read_bytes()


def package_files() -> list[tuple[str, bytes]]:
    """(path under redkeep/, bytes) of the running package: code and data files."""
    root = Path(redkeep.__file__).parent
    return [
        (path.relative_to(root).as_posix(), path.read_bytes())
        for path in sorted(root.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    ]


def dependencies(dist: metadata.Distribution) -> list[str]:
    """This release's runtime requirements (its test extras left out)."""
    return [req for req in dist.requires or [] if "extra ==" not in req]


def render_pyproject(requirements: list[str]) -> str:
    """The project file of the temp build: every file of the package goes into the wheel."""
    # json.dumps quotes and escapes as TOML's basic strings do (markers hold double quotes).
    deps = "".join(f"    {json.dumps(req)},\n" for req in requirements)
    return (
        '[build-system]\nrequires = ["setuptools>=68"]\nbuild-backend = "setuptools.build_meta"\n\n'
        f'[project]\nname = "redkeep"\nversion = "{__version__}"\nrequires-python = ">=3.11"\n'
        f"dependencies = [\n{deps}]\n\n"
        '[project.scripts]\nredkeep = "redkeep.cli:main"\n\n'
        '[tool.setuptools.packages.find]\nwhere = ["src"]\n\n'
        '[tool.setuptools.package-data]\nredkeep = ["**/*"]\n'
    )


def render_dockerfile(wheel: str) -> str:
    return DOCKERFILE.format(version=__version__, wheel=wheel)
