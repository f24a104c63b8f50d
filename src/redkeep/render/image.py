"""A container image context for redkeep itself (exporter and backup services in compose).

redkeep is not on a registry, so `redkeep init` writes the build context into the bundle:
this release's package source, a pyproject.toml with its dependencies, and a Dockerfile.
`docker compose build` then needs only PyPI, like `pip install`.
"""

import json
from importlib import metadata
from pathlib import Path

import redkeep
from redkeep import __version__

PACKAGE_DATA = [
    "render/templates/*",
    "render/*.yaml",
    "monitoring/*.yaml",
    "audit/*.yaml",
    "audit/*.txt",
]
DOCKERFILE = """\
# redkeep {version} for the exporter and backup services, built from this bundle.
FROM python:3.12-slim
COPY . /src
RUN pip install --no-cache-dir /src && rm -rf /src
USER 65534:65534
ENTRYPOINT ["redkeep"]
"""


def package_files() -> list[tuple[str, bytes]]:
    """(path under src/redkeep, bytes) of this release's package: code and data files."""
    root = Path(redkeep.__file__).parent
    files = []
    for path in sorted(root.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            files.append((path.relative_to(root).as_posix(), path.read_bytes()))
    return files


def dependencies() -> list[str]:
    """This release's runtime requirements (its test extras left out)."""
    requirements = metadata.requires("redkeep") or []
    return [req for req in requirements if "extra ==" not in req]


def render_pyproject() -> str:
    # json.dumps quotes and escapes as TOML's basic strings do (markers hold double quotes).
    deps = "".join(f"    {json.dumps(req)},\n" for req in dependencies())
    data = ", ".join(f'"{item}"' for item in PACKAGE_DATA)
    return (
        '[build-system]\nrequires = ["setuptools>=68"]\nbuild-backend = "setuptools.build_meta"\n\n'
        f'[project]\nname = "redkeep"\nversion = "{__version__}"\nrequires-python = ">=3.11"\n'
        f"dependencies = [\n{deps}]\n\n"
        '[project.scripts]\nredkeep = "redkeep.cli:main"\n\n'
        '[tool.setuptools.packages.find]\nwhere = ["src"]\n\n'
        f"[tool.setuptools.package-data]\nredkeep = [{data}]\n"
    )


def render_dockerfile() -> str:
    return DOCKERFILE.format(version=__version__)
