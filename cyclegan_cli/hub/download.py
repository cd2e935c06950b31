"""Fetching a file over HTTP into the cache: resumable, checked, atomic.

A transfer goes to ``<file>.part`` beside its destination. When it is cut off (the network drops, Ctrl-C), the
part stays, and the next fetch of the same file resumes it with an HTTP ``Range`` request; a server that answers
with the whole file (200) instead is read from the start. Connection errors are retried with back-off, resuming
each time. A whole transfer is then checked before it is kept: not an HTML page, its sha256 against a pinned
digest where one is known, else against the digest recorded when this file was first fetched (trust on first
use: ``<file>.sha256``, with the URL it came from), and by the caller's own check (e.g. that it loads as a
generator). Only then is it renamed into place. A 404, an HTML page, a digest mismatch, a failed check or a full
disk leaves nothing behind; a lock (``flock`` on the part file, POSIX) keeps two processes from writing the same
part at once.

A host name that does not resolve fails at once (a machine offline stays offline for the seconds a back-off
waits), naming the variable that sets a mirror and where a copied file would be found; a 502, 503 or 504 (a busy
or restarting server or proxy) is retried like a dropped connection; any other answer >= 400 fails at once.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

from cyclegan_cli.atomic import atomic_write_bytes
from cyclegan_cli.errors import CycError
from cyclegan_cli.pace import Pace

RETRY_DELAYS = (1.0, 2.0, 4.0, 8.0)  # seconds before each retry after a connection error
RETRY_STATUSES = frozenset({502, 503, 504})  # answers from a busy or restarting server or proxy: retried too
TIMEOUT_S = 30.0  # connect and between two reads
CHUNK = 1 << 20
_HTML_STARTS = (b"<!doctype html", b"<html", b"<head", b"<body")


class DownloadError(CycError):
    """A file could not be fetched, or what came is not the file; nothing half-written is kept (but a resumable
    ``.part`` after a cut-off transfer)."""

    exit_code = 1


def part_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def record_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".sha256")


def read_record(dest: Path) -> dict | None:
    """The digest record of a fetched file: ``{"sha256", "url", "bytes"}``, or None."""
    try:
        record = json.loads(record_path(dest).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("sha256"), str) else None


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(
    url: str,
    dest: Path,
    *,
    what: str,
    pinned_sha256: str | None = None,
    check: Callable[[Path], None] | None = None,
    progress: TransferProgress | None = None,
    mirror_env: str | None = None,
) -> Path:
    """Download ``url`` to ``dest`` (see the module docstring); return ``dest``. ``what`` names the file in
    messages (e.g. "pretrained model horse2zebra"); ``check`` raises a CycError when the file is not what it
    should be; ``mirror_env`` is the variable that points at a mirror, named when the host cannot be reached."""
    dest = Path(dest)
    if dest.is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(dest)
    progress = progress or TransferProgress(None)
    with _locked(part, progress) as handle:
        if dest.is_file():  # another process finished it while this one waited for the lock
            if handle.seek(0, os.SEEK_END) == 0:
                _remove(part)  # the empty part that opening it made again
            return dest
        try:
            _transfer(url, handle, part, what, progress, _offline_hint(dest, mirror_env))
            digest = sha256_of(part)
            _check_digest(digest, dest, url, what, pinned_sha256)
            if check is not None:
                try:
                    check(part)
                except CycError as error:
                    reason = str(error).replace(f"{part}: ", "")
                    raise DownloadError(f"{what}: refused the file from {url}: {reason}; nothing was kept") from None
            atomic_write_bytes(record_path(dest), _record_bytes(digest, url, part.stat().st_size, dest))
            os.replace(part, dest)
        except (_CutOff, KeyboardInterrupt):
            if handle.seek(0, os.SEEK_END) == 0:  # nothing came: nothing to resume
                _remove(part)
            raise  # else the part stays, and the next fetch resumes it
        except BaseException:
            _remove(part)
            raise
        finally:
            progress.finish()
    return dest


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _offline_hint(dest: Path, mirror_env: str | None) -> str:
    mirror = f"set {mirror_env} to a mirror that holds it, or " if mirror_env else ""
    return f"{mirror}copy the file to {dest}"


class _Busy(Exception):
    """The server answered 502, 503 or 504: worth asking again after a while."""


def _unresolvable(error: BaseException) -> bool:
    """Whether a connection failed because the host name does not resolve (no network, no DNS, a typo)."""
    import socket

    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, socket.gaierror):
            return True
        error = error.__cause__ or error.__context__
    return False


class _CutOff(DownloadError):
    """The transfer stopped before the end and retries did not finish it; the part is kept for the next try."""


def _record_bytes(digest: str, url: str, size: int, dest: Path) -> bytes:
    return (json.dumps({"sha256": digest, "url": url, "bytes": size, "file": dest.name}, indent=2) + "\n").encode()


def _check_digest(digest: str, dest: Path, url: str, what: str, pinned: str | None) -> None:
    if pinned is not None and digest != pinned:
        raise DownloadError(
            f"{what}: the file from {url} has sha256 {digest}, but the published digest is {pinned}: "
            "refused and not kept (a damaged or altered copy)"
        )
    recorded = read_record(dest)
    if pinned is None and recorded is not None and recorded["sha256"] != digest:
        raise DownloadError(
            f"{what}: the file from {url} has sha256 {digest}, but the copy first fetched "
            f"(from {recorded.get('url', '?')}) had {recorded['sha256']}: refused and not kept; "
            f"if the new file is trusted, delete {record_path(dest)} and fetch again"
        )


def _transfer(url: str, handle, part: Path, what: str, progress: TransferProgress, hint: str) -> None:
    """Fill the locked ``part`` (open as ``handle``) with the whole file, resuming what it holds; ``hint`` says
    how to do without the network."""
    import httpx

    host = urlsplit(url).netloc or url
    attempt = 0
    with httpx.Client(timeout=TIMEOUT_S, follow_redirects=True) as client:
        while True:
            have = handle.seek(0, os.SEEK_END)
            try:
                _receive(client, url, handle, have, what, progress)
                _disk_errors(lambda: os.fsync(handle.fileno()), handle, what)
                return
            except (httpx.TransportError, _Busy) as error:
                reason = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
                if _unresolvable(error):
                    raise DownloadError(
                        f"{what}: cannot resolve the host name {host} ({error}): this machine is offline or has "
                        f"no DNS; {hint}"
                    ) from None
                if attempt >= len(RETRY_DELAYS):
                    kept = handle.seek(0, os.SEEK_END)
                    if isinstance(error, _Busy) and not kept:
                        raise DownloadError(
                            f"{what}: {error}, {attempt + 1} times in a row; try again later, or {hint}"
                        ) from None
                    if kept:
                        raise _CutOff(
                            f"{what}: the transfer from {host} was cut off after {_mb(kept)} ({reason}); "
                            f"{part} is kept: run the same command again to resume"
                        ) from None
                    raise DownloadError(
                        f"{what}: cannot reach {host} ({reason}); check the network, or {hint}"
                    ) from None
                progress.note(f"{what}: {reason}; retrying in {RETRY_DELAYS[attempt]:g} s")
                time.sleep(RETRY_DELAYS[attempt])
                attempt += 1


def _receive(client, url: str, handle, have: int, what: str, progress: TransferProgress) -> None:
    headers = {"Range": f"bytes={have}-"} if have else {}
    with client.stream("GET", url, headers=headers) as response:
        if response.status_code == 416 and have:  # the part is no prefix of this file: start again
            handle.truncate(0)
            return _receive(client, url, handle, 0, what, progress)
        if response.status_code in RETRY_STATUSES:
            raise _Busy(f"{url} answered HTTP {response.status_code} {response.reason_phrase}")
        if response.status_code == 404:
            raise DownloadError(f"{what}: not found at {url} (HTTP 404)")
        if response.status_code >= 400:
            raise DownloadError(f"{what}: {url} answered HTTP {response.status_code} {response.reason_phrase}")
        if response.status_code == 206 and _range_start(response) == have:
            progress.note(f"{what}: resuming after {_mb(have)}")
        elif have:  # 200: the whole file, whatever the part held
            handle.seek(0)
            handle.truncate(0)
            have = 0
        if "text/html" in response.headers.get("content-type", "").lower():
            raise DownloadError(f"{what}: {url} answered with an HTML page, not the file (an error or login page?)")
        length = response.headers.get("content-length")
        total = have + int(length) if length and length.isdigit() else None
        progress.start(what, total, have)
        for chunk in response.iter_bytes(CHUNK):
            if have == 0 and chunk.lstrip()[:14].lower().startswith(_HTML_STARTS):
                raise DownloadError(f"{what}: {url} sent an HTML page, not the file (an error or login page?)")
            _disk_errors(lambda chunk=chunk: handle.write(chunk), handle, what)
            have += len(chunk)
            progress.advance(have)
        if total is not None and have < total:
            import httpx

            raise httpx.ReadError(f"the server closed the connection at {_mb(have)} of {_mb(total)}")


def _range_start(response) -> int | None:
    value = response.headers.get("content-range", "")  # "bytes 100-199/200"
    try:
        return int(value.split()[1].split("-")[0])
    except (IndexError, ValueError):
        return None


def _disk_errors(action: Callable[[], object], handle, what: str) -> None:
    """Run a write to the part file; a full disk or another OS error becomes a one-line DownloadError."""
    try:
        action()
    except OSError as error:
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DownloadError(
                f"{what}: the disk is full ({Path(handle.name).parent}); free some space or set CYC_CACHE_DIR "
                "to a folder on a larger disk"
            ) from None
        raise DownloadError(f"{what}: cannot write {handle.name}: {error.strerror or error}") from None


@contextlib.contextmanager
def _locked(part: Path, progress: TransferProgress) -> Iterator:
    """The part file, open for appending and locked against other processes for the whole fetch.

    The lock is taken on the open file; if the process that held it renamed or removed the part meanwhile, the
    part is opened again, so that the lock always covers the file at ``part``."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; two processes at once is the user's own race
        fcntl = None
    while True:
        handle = open(part, "a+b", buffering=0)  # noqa: SIM115 - closed below; unbuffered: a full disk fails the write
        if fcntl is not None:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                progress.note(f"waiting for another cyc process that is downloading {part.name}")
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            same = os.fstat(handle.fileno()).st_ino == os.stat(part).st_ino
        except FileNotFoundError:
            same = False
        if same or part.with_name(part.name[: -len(".part")]).is_file():
            break
        handle.close()
    try:
        yield handle
    finally:
        handle.close()


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


class TransferProgress:
    """A rich bar on a terminal; plain lines every 10 s or 10 % elsewhere; nothing with ``console`` None."""

    def __init__(self, console, *, every_s: float = 10.0, every_fraction: float = 0.1):
        self.console = console
        self._pace = Pace(every_s, every_fraction)
        self._bar = self._task = None
        self._what = ""

    def note(self, text: str) -> None:
        if self.console is not None:
            self.console.print(text, highlight=False, markup=False)

    def start(self, what: str, total: int | None, done: int) -> None:
        self._what, self._pace.total = what, total
        self._pace.restart(done)
        if self.console is not None and self.console.is_terminal:
            from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn

            self._bar = Progress(
                "{task.description}",
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=self.console,
                transient=True,
            )
            self._bar.start()
            self._task = self._bar.add_task(what, total=total, completed=done)

    def advance(self, done: int) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=done)
            return
        if self.console is None:
            return
        if self._pace.due(done):
            total = self._pace.total
            of = f" of {_mb(total)} ({100 * done // total}%)" if total else ""
            self.note(f"{self._what}: {_mb(done)}{of}")

    def finish(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
