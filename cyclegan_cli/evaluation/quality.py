"""``cyc eval``: how close a translator's output comes to the target domain's real images, as FID and KID.

For each direction the source domain's test images are translated exactly as ``cyc run`` translates them (the
same model resolution, engines and conversions: :func:`cyclegan_cli.translation.translate.translate`, into a temporary folder of
PNGs), and the PNGs are compared with the target domain's real images.

The features are those of the FID Inception network (the TensorFlow FID graph ported to PyTorch), computed by
torch-fidelity, as are the statistics: FID from the features' means and covariances, KID as the mean and
standard deviation of the polynomial-kernel MMD over random subsets (the library's estimator and seed). Nothing
of the network or the statistics is copied here. Images of any size are read as 8-bit RGB (cyc's reader: EXIF
orientation applied, 16-bit scaled) and resized to 299 x 299 inside the network, as the library does for FID;
images of one size share a batch.

The network's weights are torch-fidelity's published file, fetched on first use through
:func:`cyclegan_cli.hub.download.fetch` (cache, resume, trust on first use) from the library's own URL, or from
``CYC_INCEPTION_URL`` (the file's full URL), and handed to the library as a local file, never through torch hub's
cache. The library unpickles that file with a bare ``torch.load``, which runs any code a pickle holds: so cyc
loads it first with ``weights_only=True``, at the download and at every use, and a file that holds anything but
tensors is refused and deleted.

The real images' features are cached per folder in the cache's ``eval/`` folder (safetensors, written
atomically), keyed by the files' names, sizes and modification times and the network's sha256: evaluating ten
checkpoints against one test set extracts them once.

KID: the libraries' subsets of 1000 images fail on test sets smaller than that (horse2zebra's testA holds 120
images, testB 140); here a subset holds at most as many images as the smaller of the two sets.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cyclegan_cli.errors import CycError, DataError, EngineUnavailable, UsageError, WeightsError, first_line
from cyclegan_cli.models.run_folder import RUNS_DIR

INCEPTION_URL_ENV = "CYC_INCEPTION_URL"
INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"  # the name of torch-fidelity's published file
FEATURE_EXTRACTOR = "inception-v3-compat"  # torch-fidelity's name for the FID Inception network
FEATURE_LAYER = "2048"  # the pool3 features, which FID and KID use
KID_SUBSETS = 100  # the libraries' default
KID_SUBSET_SIZE = 1000  # the libraries' default, capped at the smaller set's size
MIN_IMAGES = 2  # a covariance (FID) and the unbiased MMD (KID) need two images a set
# Where a data folder keeps its test images (an official dataset's layout first): cyc eval's --a / --b under
# --data, and training's held-out images.
HELD_OUT_LAYOUTS = (("testA", "testB"), ("test/A", "test/B"))
_FEATURES_VERSION = 1  # bump when what a cached features file holds changes

if TYPE_CHECKING:
    import torch


def check_installed() -> None:
    """torch-fidelity computes the metrics: without it, one line with the pip command."""
    from cyclegan_cli.plugin_api import missing_library

    reason = missing_library("torch_fidelity", "torch-fidelity (FID and KID for cyc eval)", "eval")
    if reason is not None:
        raise EngineUnavailable(reason)


# --- the network's weights ------------------------------------------------------------------------------------------


def inception_url() -> str:
    """``CYC_INCEPTION_URL``, else the URL torch-fidelity itself downloads the weights from."""
    from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3

    return os.environ.get(INCEPTION_URL_ENV, "").strip() or URL_INCEPTION_V3


def inception_path() -> Path:
    from cyclegan_cli.cache import cache_dir

    return cache_dir("eval") / INCEPTION_FILE


def inception_weights(console=None) -> Path:
    """The Inception weights in the cache, fetched first if they are not there; checked to hold only tensors
    (a file that does not is deleted)."""
    from rich.console import Console

    from cyclegan_cli.hub.download import TransferProgress, fetch

    path = fetch(
        inception_url(),
        inception_path(),
        what="the FID Inception weights",
        check=_holds_only_tensors,
        progress=TransferProgress(console or Console(stderr=True)),
        mirror_env=INCEPTION_URL_ENV,
    )
    try:
        _holds_only_tensors(path)  # at every use: the cached file may have been replaced since it was fetched
    except CycError as error:
        path.unlink(missing_ok=True)
        raise CycError(f"{error}: deleted; the next cyc eval fetches it again") from None
    return path


def _holds_only_tensors(path: Path) -> None:
    import torch

    from cyclegan_cli.models.weights import torch_load  # the weights-only loader, with its one-line errors

    state = torch_load(path, fix="a damaged or altered copy (loading it could run code)")
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path}: not a state dict of tensors")


# --- features -------------------------------------------------------------------------------------------------------


@dataclass
class Inception:
    """torch-fidelity's FID Inception network on ``device``, loaded from the file whose sha256 is ``sha256``."""

    network: object
    device: str
    sha256: str
    batch_size: int = 16

    def features(self, files: list[Path]) -> torch.Tensor:
        """N x 2048 float32 features of the image ``files``, in their order."""
        import torch

        from cyclegan_cli.errors import InputError
        from cyclegan_cli.imageio import read_image

        def images():
            for path in files:
                try:
                    rgb, _ = read_image(path)
                except InputError as error:
                    raise DataError(f"{error}; remove it from the folder or replace it") from None
                yield torch.tensor(rgb).permute(2, 0, 1)

        return self.features_of(images())

    def features_of(self, images) -> torch.Tensor:
        """N x 2048 float32 features of ``images`` (3 x H x W uint8 RGB tensors: what the network takes), in their
        order; images of one size share a batch, and at most a batch of them is held at once."""
        import torch

        rows: list = []
        pending: dict[tuple[int, int], list[tuple[int, torch.Tensor]]] = {}

        def run(batch: list[tuple[int, torch.Tensor]]) -> None:
            stacked = torch.stack([image for _, image in batch]).to(self.device)
            with torch.no_grad():
                (found,) = self.network(stacked)
            for (index, _), row in zip(batch, found.float().cpu()):
                rows[index] = row
            batch.clear()

        for index, image in enumerate(images):
            rows.append(None)
            pending.setdefault(tuple(image.shape[1:]), []).append((index, image))
            if sum(map(len, pending.values())) >= self.batch_size:
                for batch in pending.values():
                    if batch:
                        run(batch)
        for batch in pending.values():
            if batch:
                run(batch)
        return torch.stack(rows)


def load_inception(device: str, batch_size: int = 16, console=None) -> Inception:
    """The network, from the cached weights (fetched on first use), through torch-fidelity's own constructor."""
    import torch
    from torch_fidelity.utils import create_feature_extractor

    from cyclegan_cli.hub.download import sha256_of

    path = inception_weights(console)
    try:
        # its layers' default initialisation (overwritten by the weights) draws from torch's global random stream:
        # drawn from a copy, so that loading the network mid-training leaves that stream (saved in checkpoints) alone
        with torch.random.fork_rng(devices=[]):
            network = create_feature_extractor(
                FEATURE_EXTRACTOR, [FEATURE_LAYER], cuda=False, feature_extractor_weights_path=str(path), verbose=False
            )
    except RuntimeError as error:  # load_state_dict: tensors, but not this network's
        raise WeightsError(f"{path}: not the FID Inception network's weights ({first_line(error, 160)})") from None
    return Inception(network.to(device), device, sha256_of(path), batch_size)


def image_files(folder: Path, option: str) -> list[Path]:
    """The images under ``folder`` (recursively, as ``cyc run`` reads a folder): at least :data:`MIN_IMAGES`."""
    from cyclegan_cli.files import list_images
    from cyclegan_cli.imageio import IMAGE_EXTENSIONS

    if not folder.is_dir():
        raise DataError(f"{option} {folder}: no such folder; give a folder of the domain's test images")
    files = list_images(folder)
    if len(files) < MIN_IMAGES:
        kinds = ", ".join(sorted(e.lstrip(".") for e in IMAGE_EXTENSIONS))
        held = f"no images ({kinds})" if not files else "only 1 image"
        raise DataError(
            f"{option} {folder}: {held}; FID and KID need at least {MIN_IMAGES} images a set: add test images, "
            f"or point {option} at a folder that holds them"
        )
    return files


def real_features(inception: Inception, folder: Path, files: list[Path], say=print) -> tuple[torch.Tensor, bool]:
    """The features of a folder of real images, from the cache when its files and the network are unchanged;
    and whether they came from the cache."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    from cyclegan_cli.atomic import atomic_path
    from cyclegan_cli.cache import cache_dir

    root = folder.resolve()
    listing = []
    for path in files:
        stat = path.stat()
        listing.append([str(path.relative_to(folder)), stat.st_size, stat.st_mtime_ns])
    key = hashlib.sha256(
        json.dumps(
            {"version": _FEATURES_VERSION, "network": inception.sha256, "layer": FEATURE_LAYER, "files": listing}
        ).encode()
    ).hexdigest()
    cached = cache_dir("eval") / "features" / f"{hashlib.sha256(str(root).encode()).hexdigest()[:24]}.safetensors"
    try:
        with safe_open(cached, framework="pt") as stored:
            if stored.metadata().get("key") == key:
                return stored.get_tensor("features"), True
    except Exception:  # noqa: BLE001 - no cache file, or a damaged one: extracted again below
        pass
    say(f"Inception features of the {len(files)} real images in {folder} (cached for the next cyc eval)")
    features = inception.features(files)
    with atomic_path(cached) as tmp:
        save_file({"features": features.contiguous()}, tmp, metadata={"key": key, "folder": str(root)})
    return features, False


# --- the metrics ----------------------------------------------------------------------------------------------------


@dataclass
class Metrics:
    fid: float | None  # None: not asked for (training's evaluations skip it on small sets)
    kid_mean: float
    kid_std: float
    kid_subset_size: int
    kid_subsets: int = KID_SUBSETS


def compare(fake: torch.Tensor, real: torch.Tensor, with_fid: bool = True) -> Metrics:
    """FID (unless ``with_fid`` is False: two eigendecompositions of 2048 x 2048, seconds on a CPU) and KID
    between two sets of features, by torch-fidelity's functions, in the order its
    ``calculate_metrics(input1=fake, input2=real)`` takes them (KID's subsets are drawn in that order)."""
    from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_features_to_statistics, fid_statistics_to_metric
    from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD, kid_features_to_metric

    subset = min(KID_SUBSET_SIZE, len(fake), len(real))
    fid = None
    if with_fid:
        statistics = fid_features_to_statistics(fake), fid_features_to_statistics(real)
        fid = float(fid_statistics_to_metric(*statistics, verbose=False)[KEY_METRIC_FID])
    kid = kid_features_to_metric(fake, real, kid_subsets=KID_SUBSETS, kid_subset_size=subset, verbose=False)
    return Metrics(fid, float(kid[KEY_METRIC_KID_MEAN]), float(kid[KEY_METRIC_KID_STD]), subset)


# --- cyc eval -------------------------------------------------------------------------------------------------------


@dataclass
class EvalRequest:
    source: str | None
    a: str | None = None
    b: str | None = None
    data: str | None = None
    direction: str = "both"
    runs_dir: str = RUNS_DIR
    engine: str = "auto"
    device: str = "auto"
    precision: str = "fp32"
    batch_size: int = 16


@dataclass
class Score:
    direction: str
    fid: float
    kid_mean: float
    kid_std: float
    kid_subset_size: int
    kid_subsets: int
    translated: int  # source-domain images translated
    real: int  # target-domain real images
    source_folder: str
    target_folder: str
    engine: str  # what translated them
    real_features_cached: bool


@dataclass
class EvalReport:
    scores: list[Score]
    settings: dict = field(default_factory=dict)

    def as_json(self) -> str:
        return json.dumps({"scores": [asdict(s) for s in self.scores], "settings": self.settings}, indent=2)


def held_out_dirs(dataroot: str | None) -> tuple[Path, Path] | None:
    """The data folder's held-out A and B folders, in the first of :data:`HELD_OUT_LAYOUTS` it has; None where
    it has none."""
    if dataroot is None:
        return None
    for name_a, name_b in HELD_OUT_LAYOUTS:
        dir_a, dir_b = Path(dataroot) / name_a, Path(dataroot) / name_b
        if dir_a.is_dir() and dir_b.is_dir():
            return dir_a, dir_b
    return None


def eval_folders(data: str | None, a: str | None, b: str | None) -> tuple[Path, Path]:
    """``--a`` / ``--b``, each defaulting to the held-out folders under ``--data`` (``testA/`` and ``testB/``, or
    ``test/A`` and ``test/B``)."""
    if data is None and (a is None or b is None):
        raise UsageError(
            "no test images: give --data DIR (a dataset folder holding testA/ and testB/) or both --a DIR and --b DIR"
        )
    found = held_out_dirs(data)
    if found is None and data is not None:  # named as the official layout in the error that follows
        found = (Path(data) / HELD_OUT_LAYOUTS[0][0], Path(data) / HELD_OUT_LAYOUTS[0][1])
    return (Path(a) if a is not None else found[0]), (Path(b) if b is not None else found[1])


def evaluate(request: EvalRequest, say=print, progress=None) -> EvalReport:
    """Translate each direction's source-domain test images and score them against the target domain's.
    ``progress`` makes a fresh :class:`cyclegan_cli.translation.jobs.Progress` context for each direction's translation."""
    import contextlib

    from cyclegan_cli.devices import resolve_device
    from cyclegan_cli.files import list_images
    from cyclegan_cli.hub.sources import source_directions
    from cyclegan_cli.translation.translate import RunOptions, failed, translate

    check_installed()
    dir_a, dir_b = eval_folders(request.data, request.a, request.b)
    files = {"A": image_files(dir_a, "--a"), "B": image_files(dir_b, "--b")}
    directions = source_directions(request.source, request.runs_dir, request.direction)
    device = resolve_device(request.device)
    inception = load_inception(device, request.batch_size)
    scores = []
    for direction in directions:
        (source_dir, source_key), (target_dir, target_key) = (
            ((dir_a, "A"), (dir_b, "B")) if direction == "AtoB" else ((dir_b, "B"), (dir_a, "A"))
        )
        with tempfile.TemporaryDirectory(prefix="cyc-eval-") as out:
            options = RunOptions(
                inputs=[str(source_dir)],
                direction=direction,
                out=out,
                ext="png",
                checkpoint=request.source,
                runs_dir=request.runs_dir,
                engine=request.engine,
                device=request.device,
                precision=request.precision,
                batch_size=request.batch_size,
            )
            with progress() if progress is not None else contextlib.nullcontext() as bar:
                report = translate(options, progress=bar, say=say)
            bad = failed(report.stats.results)
            if bad:
                first = bad[0].message or str(bad[0].job.source)
                raise CycError(
                    f"{direction}: {len(bad)} of the {len(report.stats.results)} images in {source_dir} could not "
                    f"be translated (first: {first}); remove or replace them"
                )
            translated = list_images(Path(out))
            if len(translated) < MIN_IMAGES:  # a folder of videos, say: cyc run writes them, but not as images
                raise DataError(
                    f"{direction}: {source_dir} gave {len(translated)} translated image(s); FID and KID need at least "
                    f"{MIN_IMAGES}: point {'--a' if direction == 'AtoB' else '--b'} at a folder of still images"
                )
            say(f"Inception features of the {len(translated)} translated images")
            fake = inception.features(translated)
        real, cached = real_features(inception, target_dir, files[target_key], say)
        metrics = compare(fake, real)
        scores.append(
            Score(
                direction=direction,
                fid=metrics.fid,
                kid_mean=metrics.kid_mean,
                kid_std=metrics.kid_std,
                kid_subset_size=metrics.kid_subset_size,
                kid_subsets=metrics.kid_subsets,
                translated=len(translated),
                real=len(real),
                source_folder=str(source_dir),
                target_folder=str(target_dir),
                engine=report.engine,
                real_features_cached=cached,
            )
        )
    return EvalReport(scores, _settings(request, device, inception))


_NOT_KERNEL = ("subsets", "subset_size", "kernel_rbf_sigma")


def _settings(request: EvalRequest, device: str, inception: Inception) -> dict:
    from importlib.metadata import version

    from torch_fidelity.defaults import DEFAULTS

    return {
        "source": request.source,
        "device": device,
        "precision": request.precision,
        "feature_extractor": f"torch-fidelity {FEATURE_EXTRACTOR}, features {FEATURE_LAYER}",
        "resize": "to 299x299 inside the network (bilinear, as TensorFlow 1.x)",
        "inception_url": inception_url(),
        "inception_sha256": inception.sha256,
        # the library's defaults, which its KID uses (named kid_degree... in 0.3, kid_kernel_poly_degree... in 0.4)
        "kid_kernel": {k[4:]: v for k, v in DEFAULTS.items() if k.startswith("kid_") and k[4:] not in _NOT_KERNEL},
        "kid_subsets": KID_SUBSETS,
        "kid_seed": DEFAULTS["rng_seed"],
        "torch_fidelity": version("torch-fidelity"),
    }
