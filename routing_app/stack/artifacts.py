"""Downloads the Kafka jars and the Apicurio Registry distribution from Maven Central.

Both land in ``settings.cache_dir`` (shared by every stack on the machine, so tests and the
demo stack download once). Maven does the fetching: it already knows Maven Central, mirrors
and proxies configured in ~/.m2/settings.xml, and caches in ~/.m2.
"""

from __future__ import annotations

import contextlib
import fcntl
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from routing_app.config import Settings
from routing_app.stack.errors import StackError

KAFKA_VERSION = "4.4.0"
APICURIO_VERSION = "3.3.3"
# Kafka depends on slf4j-api without a binding; slf4j-simple makes it log to stderr.
SLF4J_VERSION = "1.7.36"
MARKER = ".complete"
MVN_TIMEOUT_S = 1800

Progress = Callable[[str], None]

_KAFKA_POM = f"""<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>routing-app</groupId>
  <artifactId>local-kafka</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId>
      <version>{KAFKA_VERSION}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId>
      <version>{KAFKA_VERSION}</version>
    </dependency>
    <dependency>
      <groupId>org.slf4j</groupId><artifactId>slf4j-simple</artifactId>
      <version>{SLF4J_VERSION}</version>
    </dependency>
  </dependencies>
</project>
"""

# A pom is needed only because `mvn` refuses to run some goals without a project.
_EMPTY_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>routing-app</groupId>
  <artifactId>local-registry</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
</project>
"""


def _quiet(_: str) -> None:
    pass


def kafka_home(settings: Settings) -> Path:
    return settings.cache_dir / f"kafka-{KAFKA_VERSION}"


def registry_home(settings: Settings) -> Path:
    return settings.cache_dir / f"apicurio-registry-{APICURIO_VERSION}"


def kafka_classpath(settings: Settings) -> str:
    """A ``java -cp`` value with every Kafka jar (broker, tools, clients), downloading if needed.

    Lets callers run Kafka's Java tools, e.g. ``org.apache.kafka.tools.consumer.ConsoleConsumer``.
    """
    return str(ensure_kafka(settings) / "libs" / "*")


def is_complete(home: Path) -> bool:
    return (home / MARKER).is_file()


def _require_mvn() -> str:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise StackError(
            "Maven (`mvn`) is needed to download Kafka and Apicurio Registry from Maven Central "
            "and was not found on PATH. Install it with `apt-get install maven` (Debian/Ubuntu), "
            "or point ROUTING_BOOTSTRAP_SERVERS / ROUTING_SCHEMA_REGISTRY_URL at an existing "
            "cluster and registry instead."
        )
    if shutil.which("java") is None:
        # mvn itself is a Java program; its own error for this is cryptic.
        raise StackError(
            "Maven needs a `java` on PATH and none was found. Install one with "
            "`apt-get install openjdk-17-jre-headless`."
        )
    return mvn


def _run_mvn(args: list[str], cwd: Path, what: str) -> None:
    mvn = _require_mvn()
    try:
        done = subprocess.run(
            [mvn, "-B", "-q", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=MVN_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise StackError(
            f"Downloading {what} with Maven took more than {MVN_TIMEOUT_S} s. Check network "
            "access to Maven Central (or the mirror in ~/.m2/settings.xml)."
        ) from exc
    if done.returncode != 0:
        output = (done.stdout + done.stderr).strip().splitlines()
        tail = "\n".join(output[-25:]) or "(mvn printed nothing)"
        raise StackError(
            f"Downloading {what} with Maven failed (exit {done.returncode}). Check network "
            "access to Maven Central (or the mirror/proxy in ~/.m2/settings.xml).\n"
            f"Last lines of mvn's output:\n{tail}"
        )


@contextlib.contextmanager
def _locked(cache_dir: Path, name: str) -> Iterator[None]:
    """Serialises downloads between processes (a test session and the CLI, say)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(cache_dir / f".{name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _publish(staging: Path, home: Path) -> None:
    """Moves a finished download into place; the marker goes last so half-copies never count."""
    if home.exists():
        shutil.rmtree(home)
    # mkdtemp made it owner-only; the cache is shared like any other download.
    staging.chmod(0o755)
    staging.rename(home)
    (home / MARKER).write_text("ok\n")


def _fetch_once(
    settings: Settings, home: Path, announce: str, progress: Progress, fill: Callable[[Path], Path]
) -> Path:
    """``home`` complete, fetching it the first time. ``fill`` downloads into a private staging
    folder and returns the folder to publish; concurrent callers wait on a lock, and a failed
    or interrupted download leaves nothing that looks complete."""
    if is_complete(home):
        return home
    with _locked(settings.cache_dir, home.name):
        if is_complete(home):
            return home
        progress(announce)
        staging = Path(tempfile.mkdtemp(prefix=f".{home.name}-", dir=settings.cache_dir))
        try:
            _publish(fill(staging), home)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return home


def ensure_kafka(settings: Settings, progress: Progress = _quiet) -> Path:
    """The folder whose ``libs/`` holds the Kafka jars; downloads them the first time."""

    def fill(staging: Path) -> Path:
        (staging / "pom.xml").write_text(_KAFKA_POM)
        _run_mvn(
            [
                "dependency:copy-dependencies",
                f"-DoutputDirectory={staging / 'libs'}",
                "-DincludeScope=runtime",
            ],
            cwd=staging,
            what=f"Kafka {KAFKA_VERSION}",
        )
        if not any((staging / "libs").glob("kafka_2.13-*.jar")):
            raise StackError(f"Maven finished but no Kafka jar is in {staging / 'libs'}.")
        return staging

    return _fetch_once(
        settings,
        kafka_home(settings),
        f"Downloading Kafka {KAFKA_VERSION} jars from Maven Central (first run only)",
        progress,
        fill,
    )


def ensure_registry(settings: Settings, progress: Progress = _quiet) -> Path:
    """The unpacked Apicurio Registry (the folder with ``quarkus-run.jar``)."""

    def fill(staging: Path) -> Path:
        (staging / "pom.xml").write_text(_EMPTY_POM)
        download = staging / "download"
        _run_mvn(
            [
                "dependency:copy",
                f"-Dartifact=io.apicurio:apicurio-registry-app:{APICURIO_VERSION}:tar.gz:all",
                f"-DoutputDirectory={download}",
            ],
            cwd=staging,
            what=f"Apicurio Registry {APICURIO_VERSION}",
        )
        archives = sorted(download.glob("*.tar.gz"))
        if not archives:
            raise StackError(f"Maven finished but no registry archive is in {download}.")
        progress(f"Unpacking Apicurio Registry {APICURIO_VERSION}")
        app = staging / "app"
        with tarfile.open(archives[0]) as tar:
            tar.extractall(app, filter="data")
        if not (app / "quarkus-run.jar").is_file():
            raise StackError(f"{archives[0].name} has no quarkus-run.jar at its top level.")
        return app

    return _fetch_once(
        settings,
        registry_home(settings),
        f"Downloading Apicurio Registry {APICURIO_VERSION} (~160 MB) from Maven Central (first run only)",
        progress,
        fill,
    )
