"""Pretrained models and datasets by name, fetched from a real HTTP server on 127.0.0.1 that the tests start.

The server serves official-format generators and zips made here, and misbehaves on request: it cuts a transfer
off half-way, ignores ``Range``, answers 404 or an HTML page. ``CYC_PRETRAINED_URL`` / ``CYC_DATASETS_URL`` point
``cyc`` at it and ``CYC_CACHE_DIR`` at a fresh folder, so nothing here touches the network or the user's cache.
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
import tempfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from cyclegan_cli.cli import cli
from cyclegan_cli.hub import download
from tests.helpers import TINY, make_generator, pattern

pytestmark = pytest.mark.timeout(120)


class FileServer(ThreadingHTTPServer):
    """Serves ``files`` (path -> bytes) with ``Range`` support; ``cut`` (path -> bytes) ends the next response
    for that path after so many bytes of the body, ``cuts_left`` times; ``html`` paths answer an HTML page;
    ``statuses`` (path -> HTTP codes) are answered first, one a request, before the file is served."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.files: dict[str, bytes] = {}
        self.html: set[str] = set()
        self.cut: dict[str, int] = {}
        self.cuts_left = 0
        self.ignore_range = False
        self.statuses: dict[str, list[int]] = {}
        self.requests: list[tuple[str, str | None]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: FileServer

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        server, path = self.server, self.path
        server.requests.append((path, self.headers.get("Range")))
        if server.statuses.get(path):
            return self._send(server.statuses[path].pop(0), b"try again", "text/plain")
        if path in server.html:
            return self._send(200, b"<!DOCTYPE html><html><body>Sign in</body></html>", "text/html; charset=utf-8")
        if path not in server.files:
            return self._send(404, b"not found", "text/plain")
        data, start = server.files[path], 0
        wanted = self.headers.get("Range")
        if wanted and not server.ignore_range:
            start = int(wanted.split("=")[1].split("-")[0])
        body = data[start:]
        self.send_response(206 if start else 200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        if path in server.cut and server.cuts_left > 0:
            server.cuts_left -= 1
            self.wfile.write(body[: server.cut[path]])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    def _send(self, code: int, body: bytes, kind: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def server(monkeypatch, tmp_path):
    server = FileServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("CYC_PRETRAINED_URL", f"{server.url}/models")
    monkeypatch.setenv("CYC_DATASETS_URL", f"{server.url}/datasets")
    monkeypatch.setenv("CYC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(download, "RETRY_DELAYS", (0.0, 0.0))
    monkeypatch.setattr(download, "CHUNK", 4096)  # many chunks even for tiny files: cut-offs land mid-stream
    yield server
    server.shutdown()
    server.server_close()


def official_file(seed: int) -> bytes:
    """An official-format generator (``model.*`` keys, a plain state dict) as the authors' ``.pth`` files are."""
    import torch

    buffer = io.BytesIO()
    torch.save(make_generator(seed).state_dict(), buffer)
    return buffer.getvalue()


def translate_directly(generator, image: Path) -> np.ndarray:
    """``generator`` on an RGB image file in fp32: [-1, 1] in, rounded uint8 out, as int."""
    import torch

    x = torch.from_numpy(np.array(Image.open(image).convert("RGB"))).permute(2, 0, 1)[None].float() / 127.5 - 1
    with torch.inference_mode():
        y = generator.eval()(x)[0].permute(1, 2, 0).numpy()
    return np.clip(np.round((y + 1) * 127.5), 0, 255).astype(int)


def cyc(*args) -> object:
    return CliRunner().invoke(cli, [str(a) for a in args])


def cache_files(tmp_path: Path) -> list[str]:
    root = tmp_path / "cache"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.exists() else []


# --- pretrained models ----------------------------------------------------------------------------------------


def test_first_download_is_checked_recorded_and_then_used_offline(server, tmp_path):
    server.files["/models/horse2zebra.pth"] = data = official_file(1)
    done = cyc("pretrained", "download", "horse2zebra")
    assert done.exit_code == 0, done.output
    path = tmp_path / "cache" / "models" / "horse2zebra.pth"
    assert path.read_bytes() == data and done.output.strip().endswith(str(path))
    record = json.loads((tmp_path / "cache" / "models" / "horse2zebra.pth.sha256").read_text())
    assert record["sha256"] == hashlib.sha256(data).hexdigest() and record["url"].startswith(server.url)
    assert cache_files(tmp_path) == ["models/horse2zebra.pth", "models/horse2zebra.pth.sha256"]
    listed = cyc("pretrained", "list")
    assert "horse -> zebra" in listed.output and "yes" in listed.output
    server.files.clear()  # offline from here on: the cached file needs no request
    requests = len(server.requests)
    assert cyc("pretrained", "download", "horse2zebra").exit_code == 0 and len(server.requests) == requests


def test_a_transfer_cut_off_half_way_resumes_with_range(server, tmp_path):
    server.files["/models/horse2zebra.pth"] = data = official_file(1)
    server.cut["/models/horse2zebra.pth"], server.cuts_left = len(data) // 2, 1
    done = cyc("pretrained", "download", "horse2zebra")
    assert done.exit_code == 0, done.output
    path, wanted = server.requests[1]
    assert path == "/models/horse2zebra.pth" and 0 < int(wanted[6:-1]) <= len(data) // 2  # what had arrived
    assert "resuming after" in done.output
    assert (tmp_path / "cache" / "models" / "horse2zebra.pth").read_bytes() == data


def test_a_part_kept_after_a_failed_command_is_resumed_by_the_next(server, tmp_path):
    server.files["/models/zebra2horse.pth"] = data = official_file(2)
    server.cut["/models/zebra2horse.pth"], server.cuts_left = 10_000, 99  # every try is cut off
    first = cyc("pretrained", "download", "zebra2horse")
    assert first.exit_code == 1 and "run the same command again to resume" in first.output
    part = tmp_path / "cache" / "models" / "zebra2horse.pth.part"
    kept = part.stat().st_size
    assert 0 < kept < len(data) and cache_files(tmp_path) == ["models/zebra2horse.pth.part"]
    server.cuts_left = 0
    again = cyc("pretrained", "download", "zebra2horse")
    assert again.exit_code == 0, again.output
    assert server.requests[-1][1] == f"bytes={kept}-"
    assert (tmp_path / "cache" / "models" / "zebra2horse.pth").read_bytes() == data and not part.exists()


def test_a_server_that_ignores_range_is_read_from_the_start(server, tmp_path):
    server.files["/models/horse2zebra.pth"] = data = official_file(1)
    server.cut["/models/horse2zebra.pth"], server.cuts_left = 5000, 1
    server.ignore_range = True
    assert cyc("pretrained", "download", "horse2zebra").exit_code == 0
    assert server.requests[1][1] == "bytes=4096-"  # asked to resume, got the whole file (200), kept it whole
    assert (tmp_path / "cache" / "models" / "horse2zebra.pth").read_bytes() == data


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("404", "not found at"),
        ("html", "HTML page"),
        ("garbage", "not a CycleGAN generator"),
    ],
)
def test_a_bad_answer_leaves_nothing(server, tmp_path, setup, message):
    if setup == "html":
        server.html.add("/models/horse2zebra.pth")
    elif setup == "garbage":
        server.files["/models/horse2zebra.pth"] = b"\x00\x01 this is no weights file" * 100
    done = cyc("pretrained", "download", "horse2zebra")
    assert done.exit_code == 1 and message in done.output and "Traceback" not in done.output
    assert len([line for line in done.output.splitlines() if line.startswith("Error: ")]) == 1
    assert cache_files(tmp_path) == []


@pytest.mark.parametrize(("statuses", "retried"), [([503, 502, 504], True), ([500], False), ([403], False)])
def test_a_busy_server_is_asked_again_and_other_errors_fail_at_once(server, tmp_path, statuses, retried):
    """502, 503 and 504 (a busy or restarting server or proxy) get the back-off of a dropped connection; any
    other answer >= 400 fails on the first request."""
    server.files["/models/horse2zebra.pth"] = data = official_file(1)
    server.statuses["/models/horse2zebra.pth"] = list(statuses)
    done = cyc("pretrained", "download", "horse2zebra")
    if retried:  # the fixture allows two retries: the third busy answer is one too many, then a fresh command works
        assert done.exit_code == 1 and "HTTP 504" in done.output and "3 times in a row" in done.output
        assert "CYC_PRETRAINED_URL" in done.output and len(server.requests) == 3
        assert cyc("pretrained", "download", "horse2zebra").exit_code == 0
        assert (tmp_path / "cache" / "models" / "horse2zebra.pth").read_bytes() == data
    else:
        assert done.exit_code == 1 and f"HTTP {statuses[0]}" in done.output and len(server.requests) == 1
        assert "retrying" not in done.output and cache_files(tmp_path) == []


@pytest.mark.parametrize("kind", ["pretrained", "datasets"])
def test_offline_says_so_at_once_with_the_mirror_and_the_cache(monkeypatch, tmp_path, kind):
    """A host name that does not resolve (no network; .invalid never resolves) fails on the first try, with no
    back-off, naming the variable that sets a mirror and the cache file a copy would go to."""
    monkeypatch.setenv("CYC_CACHE_DIR", str(tmp_path / "cache"))
    variable, name, cached = {
        "pretrained": ("CYC_PRETRAINED_URL", "horse2zebra", tmp_path / "cache" / "models" / "horse2zebra.pth"),
        "datasets": ("CYC_DATASETS_URL", "mini", tmp_path / "cache" / "datasets" / "mini.zip"),
    }[kind]
    monkeypatch.setenv(variable, "http://cyc-offline.invalid/files")
    monkeypatch.setattr(download, "RETRY_DELAYS", (0.0, 0.0, 0.0, 0.0))
    args = [kind, "download", name] + (["--out", tmp_path / "data"] if kind == "datasets" else [])
    done = cyc(*args)
    assert done.exit_code == 1 and "Traceback" not in done.output
    assert "retrying" not in done.output, "no back-off for a name that does not resolve"
    error = [line for line in done.output.splitlines() if line.startswith("Error: ")]
    assert len(error) == 1 and "cannot resolve the host name cyc-offline.invalid" in error[0], done.output
    assert variable in error[0] and str(cached) in error[0]


def test_a_later_copy_that_differs_is_refused(server, tmp_path):
    server.files["/models/horse2zebra.pth"] = first = official_file(1)
    assert cyc("pretrained", "download", "horse2zebra").exit_code == 0
    (tmp_path / "cache" / "models" / "horse2zebra.pth").unlink()  # the record of the first copy stays
    server.files["/models/horse2zebra.pth"] = official_file(7)  # a valid generator, but another one
    done = cyc("pretrained", "download", "horse2zebra")
    assert done.exit_code == 1 and hashlib.sha256(first).hexdigest() in done.output
    assert cache_files(tmp_path) == ["models/horse2zebra.pth.sha256"]


def test_cyc_run_takes_a_pretrained_name_and_its_partner(server, tmp_path):
    server.files["/models/horse2zebra.pth"] = official_file(1)
    server.files["/models/zebra2horse.pth"] = official_file(2)
    image = tmp_path / "horse.png"
    Image.fromarray(pattern(5, 32, 24, noise=True)).save(image)  # textured: a flat image becomes a constant
    exact = ["--device", "cpu", "--engine", "torch", "--precision", "fp32"]
    done = cyc("run", image, "--checkpoint", "horse2zebra", *exact)
    assert done.exit_code == 0, done.output
    back = cyc("run", image, "--checkpoint", "horse2zebra", "--direction", "BtoA", *exact)
    assert back.exit_code == 0, back.output
    assert "using its partner zebra2horse" in back.output
    # each output is what the served file's weights make of the image, run directly here (a batch of one may
    # round the last bit differently: 1 allowed; measured 0 for AtoB and BtoA alike); the two differ by 255
    outputs = {}
    for direction, seed in (("AtoB", 1), ("BtoA", 2)):
        outputs[direction] = np.asarray(Image.open(tmp_path / f"horse_{direction}.png")).astype(int)
        assert np.abs(outputs[direction] - translate_directly(make_generator(seed), image)).max() <= 1, direction
    assert np.abs(outputs["AtoB"] - outputs["BtoA"]).max() > 20
    unknown = cyc("run", image, "--checkpoint", "hors2zebra", "--device", "cpu", "--overwrite")
    assert unknown.exit_code == 2 and "nearest: horse2zebra" in unknown.output
    exported = cyc("export", "horse2zebra", "--format", "onnx", "--device", "cpu")
    assert exported.exit_code == 0, exported.output
    assert (tmp_path / "cache" / "models" / "export" / "G_AB.onnx").is_file()


# --- datasets -----------------------------------------------------------------------------------------------------


def dataset_zip(name: str, extra: dict[str, bytes] | None = None, links: tuple[str, ...] = ()) -> bytes:
    """A zip laid out as the official ones: ``name/trainA``, ``trainB`` (4 tiny PNGs each), ``testA``, ``testB``
    (2 each: the fewest ``cyc eval`` scores)."""
    buffer = io.BytesIO()
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for folder in ("trainA", "trainB", "testA", "testB"):
            for i in range(4 if folder.startswith("train") else 2):
                png = io.BytesIO()
                Image.fromarray(rng.integers(0, 255, (36, 36, 3), dtype=np.uint8)).save(png, "PNG")
                zf.writestr(f"{name}/{folder}/{i}.png", png.getvalue())
        for member, data in (extra or {}).items():
            zf.writestr(member, data)
        for member in links:
            info = zipfile.ZipInfo(member)
            info.external_attr = (0o120777 << 16) | 0  # a symbolic link, as zip stores one
            zf.writestr(info, "/etc/passwd")
    return buffer.getvalue()


def test_a_dataset_unpacks_where_cyc_train_reads_it(server, tmp_path, monkeypatch):
    server.files["/datasets/mini.zip"] = dataset_zip("mini")
    monkeypatch.chdir(tmp_path)
    done = cyc("datasets", "download", "mini")
    assert done.exit_code == 0, done.output
    assert sorted(p.name for p in (tmp_path / "data" / "mini").iterdir() if p.is_dir()) == [
        "testA",
        "testB",
        "trainA",
        "trainB",
    ]
    again = cyc("datasets", "download", "mini")
    assert again.exit_code == 0 and "already complete" in again.output
    trained = cyc("train", "data/mini", "--name", "m", "--max-steps", "2", "--device", "cpu", *TINY)
    assert trained.exit_code == 0, trained.output
    assert "horse2zebra" in cyc("datasets", "list").output


def test_a_dataset_never_overwrites_a_users_folder(server, tmp_path):
    server.files["/datasets/mini.zip"] = dataset_zip("mini")
    mine = tmp_path / "data" / "mini" / "notes.txt"
    mine.parent.mkdir(parents=True)
    mine.write_text("mine")
    done = cyc("datasets", "download", "mini", "--out", tmp_path / "data")
    assert done.exit_code == 2 and "left as it is" in done.output
    assert mine.read_text() == "mine" and sorted(p.name for p in mine.parent.iterdir()) == ["notes.txt"]


@pytest.mark.parametrize(
    ("extra", "links", "message"),
    [
        ({"mini/../../escaped.txt": b"x"}, (), "outside the folder"),
        ({"/tmp/escaped-absolute.txt": b"x"}, (), "outside the folder"),
        ({}, ("mini/trainA/link.png",), "is a link"),
        ({"mini/trainA/zeros.png": bytes(60_000_000)}, (), "would unpack to"),
    ],
)
def test_a_hostile_zip_is_refused_and_nothing_is_written(server, tmp_path, extra, links, message):
    server.files["/datasets/mini.zip"] = dataset_zip("mini", extra, links)
    out = tmp_path / "work" / "data"
    done = cyc("datasets", "download", "mini", "--out", out)
    assert done.exit_code == 1 and message in done.output and "Traceback" not in done.output
    assert not out.exists() and cache_files(tmp_path) == []
    # every place a member could land: anywhere under this test's folder (the cache, --out, its parents, the
    # staging folder beside it), the working directory and the temporary folder, by name
    landed = [*tmp_path.rglob("escaped*"), *Path.cwd().glob("escaped*"), *Path(tempfile.gettempdir()).glob("escaped*")]
    assert landed == [] and not (tmp_path / "work").exists()  # not even --out's parent was made


def understated_zip(name: str, member: str, holds: int, declares: int) -> bytes:
    """``dataset_zip(name)`` plus ``member`` holding ``holds`` zero bytes whose local and central headers declare
    ``declares`` bytes: it passes the checks made before unpacking, which read only what is declared."""
    data = bytearray(dataset_zip(name, {member: bytes(holds)}))
    encoded = member.encode()
    for signature, size_at, name_length_at, name_at in ((b"PK\x03\x04", 22, 26, 30), (b"PK\x01\x02", 24, 28, 46)):
        start = 0
        while (found := data.find(signature, start)) >= 0:
            length = struct.unpack_from("<H", data, found + name_length_at)[0]
            if data[found + name_at : found + name_at + length] == encoded:
                struct.pack_into("<I", data, found + size_at, declares)
            start = found + 4
    return bytes(data)


def test_a_member_larger_than_it_declares_is_refused_while_unpacking(server, tmp_path):
    """2 MB of zeros declared as 1000 bytes: Python's zipfile stops at the declared size and the CRC then fails,
    so the unpack stops there; nothing reaches --out, no staging folder is left and no file holds more."""
    member = "mini/trainA/big.png"
    server.files["/datasets/mini.zip"] = understated_zip("mini", member, holds=2_000_000, declares=1000)
    with zipfile.ZipFile(io.BytesIO(server.files["/datasets/mini.zip"])) as zf:
        assert zf.getinfo(member).file_size == 1000  # what the checks before unpacking see
    out = tmp_path / "work" / "data"
    done = cyc("datasets", "download", "mini", "--out", out)
    assert done.exit_code == 1 and "Traceback" not in done.output, done.output
    assert "damaged zip archive" in done.output or "more than it declares" in done.output, done.output
    assert not (out / "mini").exists()
    assert not [p for p in tmp_path.rglob("*") if ".cyc-tmp-" in p.name], "a staging folder was left"
    assert all(p.stat().st_size < 2_000_000 for p in tmp_path.rglob("*.png"))


def test_cityscapes_says_where_to_get_it(server):
    done = cyc("datasets", "download", "cityscapes")
    assert done.exit_code == 2 and "cityscapes-dataset.com" in done.output


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
def test_a_full_disk_leaves_nothing(server, tmp_path):
    server.files["/models/horse2zebra.pth"] = official_file(1)
    models = tmp_path / "cache" / "models"
    models.mkdir(parents=True)
    (models / "horse2zebra.pth.part").symlink_to("/dev/full")  # every write there fails with ENOSPC, for real
    done = cyc("pretrained", "download", "horse2zebra")
    assert done.exit_code == 1 and "the disk is full" in done.output and "Traceback" not in done.output
    assert cache_files(tmp_path) == [] and not (models / "horse2zebra.pth.part").is_symlink()
