"""The PyAV video reader and writer on real files: frames, timestamps, rate, audio, rotation, colour, failures.

Every clip is made here (tests/helpers.py) and kept tiny (64x48, <= 48 frames): these run on two shared cores.
"""

from __future__ import annotations

import shutil
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from cyc_plugins.video import VideoReader, VideoWriter
from cyc_plugins.video_timing import dealt_in_display_order
from cyclegan_cli.errors import InputError
from cyclegan_cli.plugin_api import SourceInfo, WriteOptions
from tests.helpers import broadcast_ts, make_audio_switch, make_packed_avi, make_video, pattern, probe, read_index

NTSC = Fraction(30000, 1001)
FRAME = 1001 / 30000  # seconds
FILM = Fraction(2997, 125)  # 23.976 as AVI headers hold it (OpenCV's Megamind.avi: 270 frames at this rate)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("clips")
    return {
        "cfr": make_video(root / "cfr.mp4"),
        "vfr": make_video(root / "vfr.mp4", vfr=True),
    }


def translate(src: Path, out: Path, options: WriteOptions | None = None, *, max_frames=None, fn=None) -> int:
    """What `cyc run` does with an identity model: every frame read, passed through ``fn``, written."""
    count = 0
    with VideoReader(src, max_frames=max_frames) as reader:
        with VideoWriter(out, SourceInfo.of(reader), options or WriteOptions()) as writer:
            for frame in reader.frames():
                writer.write(frame, frame.image if fn is None else fn(frame.image))
                count += 1
    return count


def assert_same_timing(got: dict, want: dict, *, pts_tol: float = 1e-9) -> None:
    assert got["frames"] == want["frames"]
    assert len(got["pts"]) == len(want["pts"])
    assert np.allclose(got["pts"], want["pts"], atol=pts_tol, rtol=0), "every frame keeps its timestamp"
    assert abs(got["duration"] - want["duration"]) <= FRAME


# --- reading -------------------------------------------------------------------------------------------------------


def test_reader_info_and_frames(clips):
    with VideoReader(clips["cfr"]) as reader:
        info = reader.info
        frames = list(reader.frames())
    assert info.kind == "video" and (info.width, info.height) == (64, 48)
    assert info.fps == NTSC and info.frame_count == 48 and info.has_audio
    assert [f.index for f in frames] == list(range(48))
    assert [f.pts for f in frames] == [i * 1001 for i in range(48)]
    assert all(f.time_base == Fraction(1, 30000) for f in frames)
    first = frames[0].image
    assert first.shape == (48, 64, 3) and first.dtype == np.uint8 and first.flags["C_CONTIGUOUS"]
    assert np.abs(first.astype(int) - pattern(0, 64, 48)).mean() < 6  # decoded close to what was encoded


def test_reader_max_frames(clips):
    with VideoReader(clips["cfr"], max_frames=10) as reader:
        assert reader.info.frame_count == 10
        assert len(list(reader.frames())) == 10


def test_empty_file_is_an_input_error(tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="empty.mp4"):
        VideoReader(empty)


def test_not_a_video_is_an_input_error(tmp_path):
    fake = tmp_path / "notes.mp4"
    fake.write_text("this is not a video\n" * 50)
    with pytest.raises(InputError, match="notes.mp4"):
        VideoReader(fake)


def test_audio_only_file_is_an_input_error(tmp_path):
    import av

    path = tmp_path / "tone.m4a"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=48000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 48000, 0
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)
    shutil.copy(path, tmp_path / "tone.mp4")
    with pytest.raises(InputError, match="tone.mp4.*no video stream"):
        VideoReader(tmp_path / "tone.mp4")


@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".webm"])
def test_truncated_video_yields_good_frames_then_input_error(tmp_path, suffix):
    # Noisy frames cost about the same bytes each, so half the file holds about half the frames; for mp4,
    # faststart puts the index first so the cut file still opens (a download that stopped half way). A cut
    # Matroska file just ends (FFmpeg says nothing): the reader compares with the track's DURATION tag.
    whole = make_video(tmp_path / f"whole{suffix}", noise=True, faststart=suffix == ".mp4")
    data = whole.read_bytes()
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(data[: len(data) // 2])
    good = []
    with VideoReader(cut) as reader:
        with pytest.raises(InputError) as caught:
            for frame in reader.frames():
                good.append(frame.index)
    message = str(caught.value)
    assert f"cut{suffix}" in message and f"frame {len(good)}" in message and "\n" not in message
    assert 5 <= len(good) < 48, good
    assert good == list(range(len(good)))


@pytest.mark.parametrize("suffix", [".mkv", ".webm", ".mov"])
def test_whole_files_read_to_the_end_without_error(clips, tmp_path, suffix):
    """The truncation check does not fire on whole files: ours, in each container, read back completely."""
    src = make_video(tmp_path / f"src{suffix}", frames=12)
    out = tmp_path / f"out{suffix}"
    translate(src, out)
    for path in (src, out):
        with VideoReader(path) as reader:
            assert len(list(reader.frames())) == 12


def test_rotated_video_is_read_upright(tmp_path):
    path = make_video(tmp_path / "portrait.mp4", frames=4, rotate=90, audio=False)  # a phone held upright
    assert probe(path)["rotation"] == -90  # the display matrix really is in the file
    with VideoReader(path) as reader:
        assert (reader.info.width, reader.info.height) == (48, 64)
        image = next(iter(reader.frames())).image
    assert image.shape == (64, 48, 3)
    # Stored top-left red block; turned 90 degrees clockwise for display it sits at the top-right.
    top_right, top_left = image[:4, -4:].astype(int), image[:4, :4].astype(int)
    assert top_right[..., 0].mean() > 200 and top_right[..., 1].mean() < 60
    assert top_left[..., 0].mean() < 200 or top_left[..., 1].mean() > 60


COLOUR = (40, 180, 90)  # a green where the BT.601 and BT.709 matrices disagree by tens of levels


@pytest.mark.parametrize("colorspace", ["bt709", "bt601"])
def test_colour_matrix_is_respected(tmp_path, colorspace):
    path = make_video(tmp_path / f"{colorspace}.mp4", frames=2, audio=False, colorspace=colorspace, fill=COLOUR)
    with VideoReader(path) as reader:
        assert reader.info.extra["color_matrix"] == {"bt709": "ITU709", "bt601": "ITU601"}[colorspace]
        image = next(iter(reader.frames())).image.astype(int)
    assert np.abs(image.reshape(-1, 3).mean(axis=0) - COLOUR).max() <= 3, image[0, 0]


def test_colour_matrix_wrong_guess_would_be_visible(tmp_path):
    """Guard for the test above: decoding the BT.709 clip with BT.601 really does give other colours."""
    import av

    path = make_video(tmp_path / "709.mp4", frames=1, audio=False, colorspace="bt709", fill=COLOUR)
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
        wrong = frame.to_ndarray(format="rgb24", src_colorspace="ITU601", src_color_range=1, dst_color_range=2)
    assert np.abs(wrong.reshape(-1, 3).mean(axis=0) - COLOUR).max() > 12


def test_colour_survives_the_writer(tmp_path):
    """The writer encodes with the matrix it tags, so the output reads back as the same colour."""
    src = make_video(tmp_path / "709.mp4", frames=2, audio=False, colorspace="bt709", fill=COLOUR)
    out = tmp_path / "out.mp4"
    translate(src, out)
    with VideoReader(out) as reader:
        assert reader.info.extra["color_matrix"] == "ITU709"
        image = next(iter(reader.frames())).image.astype(int)
    assert np.abs(image.reshape(-1, 3).mean(axis=0) - COLOUR).max() <= 4


# --- round trips through the writer -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["cfr", "vfr"])
def test_mp4_round_trip_keeps_frames_rate_timestamps_and_audio(clips, tmp_path, kind):
    src = clips[kind]
    out = tmp_path / f"out_{kind}.mp4"
    assert translate(src, out) == 48
    want, got = probe(src), probe(out)
    assert_same_timing(got, want)
    if kind == "cfr":
        assert got["rate"] == NTSC == want["rate"]
    else:
        assert len(set(np.round(np.diff(got["pts"]), 6))) > 1  # really variable
    assert got["codec"] == "h264"
    assert got["audio"] and got["audio_codec"] == want["audio_codec"] == "aac"
    assert abs(got["audio_duration"] - want["audio_duration"]) <= 0.05
    assert not list(tmp_path.glob(".*cyc-tmp*")), "the temporary file was renamed"


def test_audio_is_muxed_as_the_video_goes(clips, tmp_path):
    """Audio packets are read up to the current video time, not all at the end (bounded memory)."""
    with VideoReader(clips["cfr"]) as reader:
        writer = VideoWriter(tmp_path / "out.mp4", SourceInfo.of(reader), WriteOptions())
        frames = reader.frames()
        for _ in range(24):
            frame = next(frames)
            writer.write(frame, frame.image)
        audio = writer._audio  # white box: where the audio copy stands
        assert audio is not None and audio.pending is not None
        pending_start = Fraction(audio.pending.pts) * audio.tb
        assert abs(float(pending_start) - 24 * FRAME) < 0.05  # stopped at the video's current time
        for frame in frames:
            writer.write(frame, frame.image)
        writer.commit()


def test_webm_gets_vp9_and_opus(clips, tmp_path):
    out = tmp_path / "out.webm"
    translate(clips["cfr"], out)
    want, got = probe(clips["cfr"]), probe(out)
    assert got["codec"] == "vp9" and got["audio_codec"] == "opus"
    assert_same_timing(got, want, pts_tol=0.001)  # Matroska/WebM store milliseconds
    assert abs(got["audio_duration"] - want["audio_duration"]) <= 0.05


def test_audio_reencoded_when_the_container_cannot_hold_it(tmp_path):
    src = make_video(tmp_path / "pcm.mkv", frames=24, audio_codec="pcm_s16le")
    assert probe(src)["audio_codec"] == "pcm_s16le"
    out = tmp_path / "out.mp4"
    translate(src, out)
    want, got = probe(src), probe(out)
    assert got["frames"] == 24 and got["audio_codec"] == "aac"
    assert abs(got["audio_duration"] - want["audio_duration"]) <= 0.05


def test_x265_on_request(clips, tmp_path):
    out = tmp_path / "out.mp4"
    translate(clips["cfr"], out, WriteOptions(codec="libx265"), max_frames=6)
    assert probe(out)["codec"] == "hevc"


def test_webm_refuses_h264(clips, tmp_path):
    with pytest.raises(InputError, match="webm"):
        translate(clips["cfr"], tmp_path / "out.webm", WriteOptions(codec="libx264"), max_frames=2)
    assert not list(tmp_path.iterdir())


def test_no_audio_option_drops_the_audio(clips, tmp_path):
    out = tmp_path / "silent.mp4"
    translate(clips["cfr"], out, WriteOptions(audio=False))
    got = probe(out)
    assert got["frames"] == 48 and not got["audio"]


def test_max_frames_cuts_video_and_audio(clips, tmp_path):
    out = tmp_path / "preview.mp4"
    assert translate(clips["cfr"], out, max_frames=10) == 10
    got = probe(out)
    assert got["frames"] == 10
    assert got["audio"]
    assert got["audio_end"] <= got["video_end"] + 1e-6, "the audio is no longer than the video"
    assert got["audio_end"] >= got["video_end"] - 0.05


def test_larger_output_and_odd_sizes(clips, tmp_path):
    """The writer opens on the first frame (a --compare output is twice as wide); odd sizes are padded."""
    out = tmp_path / "compare.mp4"
    translate(clips["cfr"], out, fn=lambda img: np.concatenate([img, img], axis=1), max_frames=5)
    assert (probe(out)["width"], probe(out)["height"]) == (128, 48)
    odd = tmp_path / "odd.mp4"
    translate(clips["cfr"], odd, fn=lambda img: np.ascontiguousarray(img[:47, :63]), max_frames=5)
    got = probe(odd)
    assert (got["width"], got["height"]) == (64, 48) and got["frames"] == 5


def test_identity_round_trip_keeps_the_picture(clips, tmp_path):
    out = tmp_path / "same.mp4"
    translate(clips["cfr"], out, max_frames=3)
    with VideoReader(clips["cfr"]) as a, VideoReader(out) as b:
        first_a, first_b = next(iter(a.frames())).image, next(iter(b.frames())).image
    assert np.abs(first_a.astype(int) - first_b.astype(int)).mean() < 3


# --- frame rate and duration: AVI, frames without a duration ------------------------------------------------------


def assert_rate_and_duration_kept(got: dict, want: dict, *, tick: float) -> None:
    """The measures a player shows: frame count, average rate (as a fraction), every pts, total duration."""
    assert got["frames"] == want["frames"]
    assert got["rate"] == want["rate"], f"average rate {got['rate']} ({float(got['rate']):.4f}), not {want['rate']}"
    assert np.allclose(got["pts"], want["pts"], atol=1e-9, rtol=0), "every frame keeps its timestamp"
    assert abs(got["duration"] - want["duration"]) <= tick, (got["duration"], want["duration"])


@pytest.mark.parametrize("suffix", [".avi", ".mp4"])
def test_avi_keeps_rate_duration_and_timestamps(tmp_path, suffix):
    """An Xvid-style AVI at 2997/125 (the output takes the input's extension by default, so .avi -> .avi is the
    common case): same frame count, the same average rate as a fraction, every pts, the same duration."""
    src = make_video(tmp_path / "film.avi", frames=24, rate=FILM)
    want = probe(src)
    assert want["codec"] == "mpeg4" and want["rate"] == FILM and want["audio_codec"] == "pcm_s16le"
    out = tmp_path / f"out{suffix}"
    assert translate(src, out) == 24
    got = probe(out)
    assert_rate_and_duration_kept(got, want, tick=1e-6)
    assert got["audio"] and abs(got["audio_end"] - want["audio_end"]) <= 0.03


def test_avi_dropped_frame_slot_is_kept(tmp_path):
    """An AVI with an empty chunk (a dropped frame; FFmpeg writes one after the first frame when AAC's or MP3's
    encoder delay shifts the streams) keeps the slot empty in an .avi output, so its rate still counts it."""
    src = make_video(tmp_path / "dropped.avi", frames=12, rate=FILM, empty_slots=(5,))
    want = probe(src)
    assert want["frames"] == 12 and want["rate"] == FILM
    out = tmp_path / "out.avi"
    translate(src, out)
    assert_rate_and_duration_kept(probe(out), want, tick=1e-6)


def test_frames_without_a_duration_end_on_the_stream_rate(tmp_path):
    """MPEG-4 part 2 in MPEG-TS decodes to frames with no duration (FFmpeg cannot tell one: 90 kHz ticks, no
    fixed VOP rate). The last one lasts a period of the stream's rate and the MP4 track ends where the video
    does (x264's decode times are a tick off the input's 3754/3753-tick gaps), so the average rate and the
    duration are the input's."""
    # No audio: AAC's priming would start the video at 21.33 ms, which MP4's edit list holds to the millisecond.
    src = make_video(tmp_path / "camera.ts", frames=24, rate=FILM, codec="mpeg4", audio=False)
    want = probe(src)
    assert set(want["durations"]) == {0}, "the decoded frames really carry no duration"
    assert want["rate"] == Fraction(24000, 1001)  # FFmpeg's guess for 2997/125 without the AVI header
    out = tmp_path / "out.mp4"
    translate(src, out)
    got = probe(out)
    assert_rate_and_duration_kept(got, want, tick=float(got["time_base"]))
    assert got["durations"][-1] > 0, "the last frame has a duration in the output"


@pytest.mark.parametrize("kind", ["cfr", "vfr"])
def test_mp4_to_avi_keeps_timestamps(clips, tmp_path, kind):
    """An AVI has no timestamps, only frame slots at the stream rate: the NTSC grid, gaps as empty slots."""
    out = tmp_path / "out.avi"
    translate(clips[kind], out)
    want, got = probe(clips[kind]), probe(out)
    assert got["frames"] == 48
    assert np.allclose(got["pts"], want["pts"], atol=1e-9, rtol=0), "every frame keeps its timestamp"
    assert abs(got["duration"] - want["duration"]) <= 1e-6
    assert got["rate"] == NTSC if kind == "cfr" else got["time_base"] == 1 / NTSC
    assert out.stat().st_size < 200_000  # no run of empty chunks for every tick of a fine time base


def decoded_times_and_pictures(path: Path) -> list[tuple[Fraction, int]]:
    """(time in seconds, the number drawn in the picture) of every frame as FFmpeg decodes it, in the order it
    comes."""
    import av

    with av.open(str(path)) as container:
        return [(f.pts * f.time_base, read_index(f.to_ndarray(format="rgb24"))) for f in container.decode(video=0)]


def test_packed_b_frames_are_read_at_their_display_times(tmp_path):
    """A DivX/Xvid AVI with packed B-frames: FFmpeg hands the pictures out in display order but deals their
    timestamps out of order; the reader gives picture k the k-th timestamp, and the writer keeps it."""
    src = make_packed_avi(tmp_path / "packed.avi", frames=30)
    raw = decoded_times_and_pictures(src)
    assert [picture for _, picture in raw] == list(range(30)), "FFmpeg decodes the pictures in display order"
    assert [t * 25 for t, _ in raw][:5] == [1, 3, 2, 5, 4], "the clip really has the disorder (measured on a film)"
    times = sorted(t for t, _ in raw)
    with VideoReader(src) as reader:
        frames = list(reader.frames())
    assert [read_index(f.image) for f in frames] == list(range(30))
    assert [f.pts * f.time_base for f in frames] == times == [Fraction(k, 25) for k in range(1, 31)]
    for suffix in (".mp4", ".avi"):  # picture k at the k-th time, none shifted, in a container with timestamps too
        out = tmp_path / f"out{suffix}"
        assert translate(src, out) == 30
        assert decoded_times_and_pictures(out) == [(t, k) for k, t in enumerate(times)]


def test_avi_slots_count_from_the_start_of_the_source(tmp_path):
    """An AVI stores slots from its own start: a recording whose clock starts at 100 s keeps its frames at
    0, 0.04, ... after that start, not one frame at 0 and 2500 empty slots before the second."""
    src = broadcast_ts(tmp_path / "rec.ts", frames=20)
    out = tmp_path / "rec.avi"
    translate(src, out)
    got = probe(out)
    assert got["frames"] == 20 and got["pts"] == pytest.approx([k / 25 for k in range(20)], abs=1e-9)
    assert out.stat().st_size < 30_000


class Decoded:
    """A decoded frame as far as the timestamp logic sees it: its pts, and which picture it holds."""

    def __init__(self, picture: int, pts: int | None):
        self.picture, self.pts = picture, pts


def dealt(pts: list[int | None], *, window: int = 16, then: Exception | None = None, into: list | None = None):
    """(picture, pts) of each frame as the reader deals them; ``then``: the stream breaks after the last."""

    def decoded():
        yield from (Decoded(picture, t) for picture, t in enumerate(pts))
        if then is not None:
            raise then

    got = [] if into is None else into
    for frame in dealt_in_display_order(decoded(), window):
        got.append((frame.picture, frame.pts))
    return got


def test_timestamps_are_dealt_in_display_order():
    """The sequence measured on the real film (slots 1, 2, 3, 5, 4, 7, 6, ...), rising times untouched, a jump
    back (an MPEG-TS wrap, a spliced stream) left where it is, frames without a time passed on, and frames
    held when the stream breaks handed out before the error."""
    measured = [1, 2, 3, 5, 4, 7, 6, 8, 10, 9, 12, 11]
    assert dealt(measured) == list(enumerate(range(1, 13)))
    assert dealt(measured, window=1) == list(enumerate(range(1, 13)))  # one frame of disorder, one of window
    assert dealt([0, 3, 7, 8, 20]) == list(enumerate([0, 3, 7, 8, 20]))  # variable frame rate: unchanged
    assert dealt([100, 101, 102, 0, 1, 2], window=2) == list(enumerate([100, 101, 102, 0, 1, 2]))
    assert dealt([2, 1, None, 4, 3]) == list(enumerate([1, 2, None, 3, 4]))
    got = []
    with pytest.raises(ValueError, match="broken"):
        dealt([1, 3, 2], then=ValueError("a broken packet"), into=got)
    assert got == [(0, 1), (1, 2), (2, 3)]


# --- errors that are not FFmpeg's --------------------------------------------------------------------------------


def test_audio_changing_layout_mid_stream_is_an_input_error(tmp_path):
    """Re-encoding audio that turns from stereo to mono half way: PyAV's resampler raises ValueError."""
    src = make_audio_switch(tmp_path / "broadcast.ts")
    out = tmp_path / "out.webm"  # the AAC is re-encoded to Opus
    with pytest.raises(InputError, match=r"out\.webm.*audio") as caught:
        translate(src, out, WriteOptions(crf=40))
    assert "\n" not in str(caught.value)
    assert not out.exists() and not list(tmp_path.glob(".*cyc-tmp*"))


def test_frame_that_cannot_be_converted_is_an_input_error(clips, monkeypatch):
    """PyAV raises ValueError for a conversion it cannot do (a hardware frame, an argument it cannot map to
    swscale's); simulated with a colour matrix PyAV cannot map."""
    import cyc_plugins.video as video

    monkeypatch.setattr(video, "_color_of", lambda frame: (1.5, 1))
    with VideoReader(clips["cfr"]) as reader:
        with pytest.raises(InputError, match=r"cfr\.mp4.*frame 0") as caught:
            next(iter(reader.frames()))
    assert "\n" not in str(caught.value)


def test_output_folder_that_cannot_be_made_is_an_input_error(clips, tmp_path):
    (tmp_path / "taken").write_text("a file where the output folder should go")
    out = tmp_path / "taken" / "film.mp4"
    with pytest.raises(InputError, match="film.mp4"):
        translate(clips["cfr"], out, max_frames=2)


def test_output_name_taken_by_a_folder_is_an_input_error(clips, tmp_path):
    out = tmp_path / "film.mp4"
    out.mkdir()
    with pytest.raises(InputError, match="film.mp4"):
        translate(clips["cfr"], out, max_frames=2)
    assert out.is_dir() and not list(tmp_path.glob(".*cyc-tmp*"))


# --- stopping early ----------------------------------------------------------------------------------------------


def test_abort_keeps_a_playable_partial_file(clips, tmp_path):
    out = tmp_path / "film.mp4"
    with VideoReader(clips["cfr"]) as reader:
        writer = VideoWriter(out, SourceInfo.of(reader), WriteOptions())
        for frame in reader.frames():
            writer.write(frame, frame.image)
            if frame.index == 19:
                break
        partial = writer.abort()
    assert partial == tmp_path / "film.partial.mp4"
    assert partial.is_file() and not out.exists()
    assert not list(tmp_path.glob(".*cyc-tmp*"))
    got = probe(partial)
    assert got["frames"] == 20
    assert np.allclose(got["pts"], probe(clips["cfr"])["pts"][:20])
    assert got["audio"] and got["audio_end"] <= got["video_end"] + 1e-6


def test_abort_before_any_frame_leaves_nothing(clips, tmp_path):
    out = tmp_path / "film.mp4"
    with VideoReader(clips["cfr"]) as reader:
        writer = VideoWriter(out, SourceInfo.of(reader), WriteOptions())
        assert writer.abort() is None
    assert list(tmp_path.iterdir()) == []


def test_error_inside_with_block_aborts(clips, tmp_path):
    out = tmp_path / "film.mp4"
    with pytest.raises(KeyboardInterrupt):
        with VideoReader(clips["cfr"]) as reader, VideoWriter(out, SourceInfo.of(reader), WriteOptions()) as writer:
            for frame in reader.frames():
                writer.write(frame, frame.image)
                if frame.index == 4:
                    raise KeyboardInterrupt
    assert not out.exists() and probe(tmp_path / "film.partial.mp4")["frames"] == 5


# --- registration ------------------------------------------------------------------------------------------------


def test_registered_through_entry_points():
    from cyclegan_cli import registry

    for suffix in (".mp4", ".MKV", ".mov", ".webm", ".avi"):
        assert registry.reader_for(Path("clip" + suffix)) is VideoReader
        assert registry.writer_for(Path("clip" + suffix)) is VideoWriter
