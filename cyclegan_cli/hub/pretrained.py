"""The official CycleGAN pretrained generators, reachable by name: ``cyc run --checkpoint horse2zebra``.

The authors publish 18 trained generators at ``http://efrosgans.eecs.berkeley.edu/cyclegan/pretrained_models/``,
each a lone generator that translates one way (``horse2zebra``: horse -> zebra). A name is fetched once into the
cache's ``models/`` folder (:mod:`cyclegan_cli.hub.download`: resumable, atomic, checked to load as a generator) and
used from there with no network access at all. ``CYC_PRETRAINED_URL`` replaces the base URL (a mirror, an
air-gapped site, a test server): the file for NAME is ``$CYC_PRETRAINED_URL/NAME.pth``.

Digests: the files are served over plain http and the authors publish no checksums, so each file's sha256 is
recorded at its first download and a later copy that differs is refused (trust on first use). ``PINNED_SHA256``
takes digests for the official site from a source that can be cited; none is known, so it is empty.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cyclegan_cli.errors import UsageError, nearest_hint

OFFICIAL_URL = "http://efrosgans.eecs.berkeley.edu/cyclegan/pretrained_models"
URL_ENV = "CYC_PRETRAINED_URL"
PINNED_SHA256: dict[str, str] = {}  # name -> sha256 of the official file; only from a citable source


@dataclass(frozen=True)
class Pretrained:
    name: str
    source: str  # what it takes
    target: str  # what it makes
    partner: str | None = None  # the published generator that translates the other way

    @property
    def translation(self) -> str:
        return f"{self.source} -> {self.target}"


def _catalogue(*rows: tuple[str, str, str, str | None]) -> dict[str, Pretrained]:
    return {name: Pretrained(name, source, target, partner) for name, source, target, partner in rows}


MODELS = _catalogue(
    ("apple2orange", "apple", "orange", "orange2apple"),
    ("orange2apple", "orange", "apple", "apple2orange"),
    ("summer2winter_yosemite", "summer Yosemite photo", "winter", "winter2summer_yosemite"),
    ("winter2summer_yosemite", "winter Yosemite photo", "summer", "summer2winter_yosemite"),
    ("horse2zebra", "horse", "zebra", "zebra2horse"),
    ("zebra2horse", "zebra", "horse", "horse2zebra"),
    ("monet2photo", "Monet painting", "photo", "style_monet"),
    ("style_monet", "photo", "Monet painting", "monet2photo"),
    ("style_cezanne", "photo", "Cezanne painting", None),
    ("style_ukiyoe", "photo", "Ukiyo-e print", None),
    ("style_vangogh", "photo", "Van Gogh painting", None),
    ("sat2map", "satellite photo", "map", "map2sat"),
    ("map2sat", "map", "satellite photo", "sat2map"),
    ("cityscapes_photo2label", "street photo", "label map", "cityscapes_label2photo"),
    ("cityscapes_label2photo", "label map", "street photo", "cityscapes_photo2label"),
    ("facades_photo2label", "facade photo", "label map", "facades_label2photo"),
    ("facades_label2photo", "label map", "facade photo", "facades_photo2label"),
    ("iphone2dslr_flower", "iPhone flower photo", "DSLR look (shallow depth of field)", None),
)


def base_url() -> str:
    return os.environ.get(URL_ENV, "").rstrip("/") or OFFICIAL_URL


def models_dir() -> Path:
    from cyclegan_cli.cache import cache_dir

    return cache_dir("models")


def cached_path(name: str) -> Path:
    return models_dir() / f"{name}.pth"


def is_bare_name(text: str) -> bool:
    """A word that can only be a pretrained name: no folder part and no suffix."""
    return "/" not in text and os.sep not in text and not Path(text).suffix and bool(text.strip())


def names_one(text: str) -> bool:
    """``text`` (a SOURCE or ``--checkpoint``) means a pretrained model: it is no path here and a bare name."""
    return not Path(text).exists() and is_bare_name(text)


def lookup(name: str) -> Pretrained:
    model = MODELS.get(name)
    if model is None:
        hint = nearest_hint(name, MODELS, "cyc pretrained list")
        raise UsageError(f"{name}: no such file or folder, and no pretrained model of that name{hint}")
    return model


def for_direction(name: str, direction: str) -> tuple[Pretrained, str | None]:
    """The model that translates ``direction`` for ``name``, and a note when that is its published partner."""
    model = lookup(name)
    if direction != "BtoA":
        return model, f"pretrained model {name} ({model.translation})"
    if model.partner is None:
        raise UsageError(
            f"{name} translates one way only ({model.translation}) and has no published partner for "
            f"--direction {direction}: use --direction AtoB"
        )
    partner = MODELS[model.partner]
    return partner, f"{name} translates {model.translation}; for {direction} using its partner {partner.name}"


def ensure(name: str, console=None) -> Path:
    """The cached file of the pretrained model ``name``, fetched first (progress on ``console``, by default
    stderr) if it is not there yet."""
    from rich.console import Console

    from cyclegan_cli.hub.download import TransferProgress, fetch

    model = lookup(name)
    path = cached_path(name)
    if path.is_file():
        return path
    base = base_url()
    pinned = PINNED_SHA256.get(name) if base == OFFICIAL_URL else None
    return fetch(
        f"{base}/{name}.pth",
        path,
        what=f"pretrained model {model.name}",
        pinned_sha256=pinned,
        check=_loads_as_generator,
        progress=TransferProgress(console or Console(stderr=True)),
        mirror_env=URL_ENV,
    )


def _loads_as_generator(path: Path) -> None:
    """The fetched file must be an official generator: read with the weights loader (``weights_only``)."""
    from cyclegan_cli.errors import CycError
    from cyclegan_cli.hub.download import DownloadError
    from cyclegan_cli.models.weights import read_generator_state

    try:
        read_generator_state(path, "AtoB")
    except CycError as error:
        raise DownloadError(f"not a CycleGAN generator ({error})") from None


def resolve(text: str, direction: str, console=None) -> tuple[Path, str, str | None]:
    """``--checkpoint`` / SOURCE: an existing path as it is, else a pretrained name (fetched on first use).

    Returns the weights file, the direction to read from it (an official file holds one generator, AtoB), and a
    note for the user when a partner model stands in for ``direction``."""
    if not names_one(text):
        path = Path(text)
        if not path.exists():
            raise UsageError(f"{path}: no such file or folder")
        return path, direction, None
    model, note = for_direction(text, direction)
    return ensure(model.name, console), "AtoB", note
