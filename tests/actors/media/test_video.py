"""process_video: HLS renditions by the source's size, never upscaled, upright, stripped of
metadata, with a poster; bad uploads refused. Clips are made by ffmpeg's lavfi sources, tiny
and short, so the module runs in seconds."""

from __future__ import annotations

import json
import pickle
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from actors.media.video import (
    ProcessedVideo,
    Rendition,
    VideoRejected,
    ffmpeg_command,
    plan_renditions,
    probe,
    process_video,
)


def _ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-y", "-loglevel", "error", *args], check=True)


def _clip(
    path: Path,
    *,
    size: str = "320x180",
    duration_s: float = 1,
    rate: int = 25,
    audio: bool = True,
    extra: tuple[str, ...] = (),
) -> Path:
    """A testsrc clip, with a sine tone unless `audio` is false."""
    inputs = ["-f", "lavfi", "-i", f"testsrc=size={size}:rate={rate}:duration={duration_s}"]
    if audio:
        inputs += ["-f", "lavfi", "-i", f"sine=frequency=440:duration={duration_s}"]
    _ffmpeg(*inputs, "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", *extra, str(path))
    return path


def _ffprobe(path: Path) -> dict[str, Any]:
    args = ["ffprobe", "-v", "error", "-of", "json", "-show_format", "-show_streams", str(path)]
    done = subprocess.run(args, check=True, capture_output=True)
    info: dict[str, Any] = json.loads(done.stdout)
    return info


def _file(result: ProcessedVideo, name: str) -> Path:
    return next(f.path for f in result.files if f.name == name)


def _uris(playlist: Path) -> list[str]:
    return [line for line in playlist.read_text().splitlines() if line[:1] not in ("", "#")]


def _durations(playlist: Path) -> list[float]:
    return [float(d) for d in re.findall(r"#EXTINF:([\d.]+),", playlist.read_text())]


def _check_hls(result: ProcessedVideo) -> None:
    """The master lists every rendition by a flat name, with its size and bandwidth, and
    every file a playlist names is among `files`, with its content type."""
    names = {f.name for f in result.files}
    assert all(f.path.is_file() and f.path.name == f.name for f in result.files)
    assert len(names) == len(result.files)
    master = _file(result, "hls.m3u8").read_text()
    for rendition in result.renditions:
        playlist = f"hls_{rendition.name}.m3u8"
        resolution = f"RESOLUTION={rendition.width}x{rendition.height}"
        assert re.search(rf"BANDWIDTH={rendition.bandwidth},.*{resolution}.*\n{playlist}\n", master)
        segments = _uris(_file(result, playlist))
        assert segments
        assert all(re.fullmatch(rf"hls_{rendition.name}_\d{{5}}\.ts", s) for s in segments)
        assert set(segments) <= names
        assert max(_durations(_file(result, playlist))) <= 4.5
    assert _uris(_file(result, "hls.m3u8")) == [f"hls_{r.name}.m3u8" for r in result.renditions]
    types = {f.name.rsplit(".", 1)[1]: f.content_type for f in result.files}
    assert types == {
        "m3u8": "application/vnd.apple.mpegurl",
        "ts": "video/mp2t",
        "jpeg": "image/jpeg",
        "webp": "image/webp",
    }


def _video_size(segment: Path) -> tuple[int, int]:
    stream = next(s for s in _ffprobe(segment)["streams"] if s["codec_type"] == "video")
    assert "side_data_list" not in stream  # no rotation left for a player to apply again
    return stream["width"], stream["height"]


def _sizes(renditions: tuple[Rendition, ...]) -> list[tuple[str, int, int]]:
    return [(r.name, r.width, r.height) for r in renditions]


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ((640, 360), [("240p", 426, 240)]),
        ((1280, 720), [("240p", 426, 240), ("480p", 854, 480), ("720p", 1280, 720)]),
        ((1920, 1080), [("240p", 426, 240), ("480p", 854, 480), ("720p", 1280, 720)]),
        ((640, 480), [("240p", 320, 240), ("480p", 640, 480)]),
        ((1080, 1920), [("240p", 240, 426), ("480p", 480, 854), ("720p", 720, 1280)]),
        ((160, 90), [("90p", 160, 90)]),
        ((161, 91), [("90p", 160, 90)]),
        ((1279, 720), [("240p", 426, 240), ("480p", 852, 480), ("720p", 1278, 720)]),
    ],
)
def test_rungs_follow_the_short_side_and_never_upscale(
    source: tuple[int, int], expected: list[tuple[str, int, int]]
) -> None:
    renditions = plan_renditions(*source)

    assert _sizes(renditions) == expected
    caps = [400_000, 1_200_000, 2_800_000]
    assert [r.bandwidth for r in renditions] == caps[: len(expected)]


def test_a_360p_clip_gets_240p_only(tmp_path: Path) -> None:
    source = _clip(tmp_path / "in.mp4", size="640x360", duration_s=3)

    result = process_video(source, tmp_path / "out")

    assert (result.width, result.height) == (640, 360)
    assert abs(result.duration_ms - 3000) <= 100
    assert _sizes(result.renditions) == [("240p", 426, 240)]
    # What the master states: the cap, the audio and ffmpeg's 10% margin.
    assert result.renditions[0].bandwidth == (400_000 + 128_000) * 11 // 10
    _check_hls(result)
    assert _video_size(_file(result, "hls_240p_00000.ts")) == (426, 240)
    assert (result.poster_width, result.poster_height) == (640, 360)
    for name, pillow_format in (("poster.jpeg", "JPEG"), ("poster.webp", "WEBP")):
        with Image.open(_file(result, name)) as poster:
            assert poster.format == pillow_format
            assert poster.size == (640, 360)
    assert result.blurhash[0] == "L"
    assert len(result.blurhash) == 28


def test_a_720p_clip_gets_every_rung(tmp_path: Path) -> None:
    source = _clip(tmp_path / "in.mp4", size="1280x720", duration_s=1, rate=10)

    result = process_video(source, tmp_path / "out")

    assert _sizes(result.renditions) == [
        ("240p", 426, 240),
        ("480p", 854, 480),
        ("720p", 1280, 720),
    ]
    _check_hls(result)
    for rendition in result.renditions:
        segment = _file(result, f"hls_{rendition.name}_00000.ts")
        assert _video_size(segment) == (rendition.width, rendition.height)
    assert (result.poster_width, result.poster_height) == (1080, 608)


def test_a_clip_smaller_than_240p_keeps_its_own_size(tmp_path: Path) -> None:
    source = _clip(tmp_path / "in.mp4", size="160x90")

    result = process_video(source, tmp_path / "out")

    assert _sizes(result.renditions) == [("90p", 160, 90)]
    _check_hls(result)
    assert _video_size(_file(result, "hls_90p_00000.ts")) == (160, 90)
    assert (result.poster_width, result.poster_height) == (160, 90)


def test_every_rendition_cuts_its_segments_at_the_same_instants(tmp_path: Path) -> None:
    source = _clip(tmp_path / "in.mp4", size="854x480", duration_s=9, rate=10, audio=False)

    result = process_video(source, tmp_path / "out")

    durations = [_durations(_file(result, f"hls_{r.name}.m3u8")) for r in result.renditions]
    assert [r.name for r in result.renditions] == ["240p", "480p"]
    assert durations[0] == durations[1]
    assert len(durations[0]) == 3
    assert max(durations[0]) <= 4.5
    assert abs(sum(durations[0]) - 9) < 0.2
    _check_hls(result)


def _rotated_halves(tmp_path: Path) -> Path:
    """Red on the left, blue on the right, stored with a rotation of 90 degrees."""
    halves = "color=c=red:s=160x180:d=1[a];color=c=blue:s=160x180:d=1[b];[a][b]hstack[out0]"
    plain, rotated = tmp_path / "plain.mp4", tmp_path / "rotated.mp4"
    _ffmpeg("-f", "lavfi", "-i", halves, "-c:v", "libx264", "-preset", "ultrafast", str(plain))
    # ffmpeg 5 turns the old `rotate` tag into a display matrix when it copies a stream.
    _ffmpeg("-i", str(plain), "-c", "copy", "-metadata:s:v:0", "rotate=90", str(rotated))
    return rotated


def test_a_rotated_clip_is_served_upright(tmp_path: Path) -> None:
    source = _rotated_halves(tmp_path)

    found = probe(source)
    result = process_video(source, tmp_path / "out")

    assert found.rotation in (90, 270)
    assert (found.width, found.height) == (result.width, result.height) == (180, 320)
    assert _sizes(result.renditions) == [("180p", 180, 320)]
    assert _video_size(_file(result, "hls_180p_00000.ts")) == (180, 320)
    assert (result.poster_width, result.poster_height) == (180, 320)
    # Turned: the halves lie one above the other, not squeezed side by side, in the poster
    # and in the video alike.
    frame = tmp_path / "frame.png"
    _ffmpeg("-i", str(_file(result, "hls_180p_00000.ts")), "-frames:v", "1", str(frame))
    poster_rows, video_rows = (_rows(picture) for picture in (_file(result, "poster.webp"), frame))
    assert poster_rows in ([{"red"}, {"blue"}], [{"blue"}, {"red"}])
    assert video_rows == poster_rows


def _rows(picture: Path) -> list[set[str]]:
    """The colours near the top, then near the bottom, of a 180x320 picture."""
    with Image.open(picture) as image:
        return [{_colour(image, (x, y)) for x in (40, 140)} for y in (40, 280)]


def _colour(image: Image.Image, xy: tuple[int, int]) -> str:
    pixel = image.convert("RGB").getpixel(xy)
    assert isinstance(pixel, tuple)
    red, _, blue = pixel
    return "red" if red > 200 > blue else "blue" if blue > 200 > red else "other"


def test_no_metadata_of_the_upload_survives(tmp_path: Path) -> None:
    secrets = ("-metadata", "title=secret", "-metadata", "location=+48.85+002.35/")
    dated = ("-metadata", "creation_time=2020-01-02T03:04:05Z")
    source = _clip(tmp_path / "in.mp4", extra=(*secrets, *dated))
    assert _ffprobe(source)["format"]["tags"]["title"] == "secret"

    result = process_video(source, tmp_path / "out")

    for file in result.files:
        if file.name.endswith(".ts"):
            info = _ffprobe(file.path)
            tags = [info["format"].get("tags", {})] + [s.get("tags", {}) for s in info["streams"]]
            assert not any({"title", "location", "creation_time"} & t.keys() for t in tags)
        data = file.path.read_bytes()
        for secret in (b"secret", b"48.85", b"2020-01-02"):
            assert secret not in data


def test_a_clip_without_audio_makes_video_only_renditions(tmp_path: Path) -> None:
    source = _clip(tmp_path / "in.mp4", audio=False)

    result = process_video(source, tmp_path / "out")

    assert not probe(source).has_audio
    _check_hls(result)
    assert "mp4a" not in _file(result, "hls.m3u8").read_text()
    streams = _ffprobe(_file(result, "hls_180p_00000.ts"))["streams"]
    assert [s["codec_type"] for s in streams] == ["video"]


def test_the_audio_of_a_clip_is_aac(tmp_path: Path) -> None:
    result = process_video(_clip(tmp_path / "in.mp4"), tmp_path / "out")

    streams = _ffprobe(_file(result, "hls_180p_00000.ts"))["streams"]
    assert {s["codec_type"]: s["codec_name"] for s in streams} == {
        "video": "h264",
        "audio": "aac",
    }
    assert {s["profile"] for s in streams if s["codec_type"] == "video"} == {"Main"}


def test_ffmpeg_command_is_what_process_video_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = _clip(tmp_path / "in.mp4")
    ran: list[list[str]] = []
    real_run = subprocess.run

    def spy(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
        ran.append(args)
        done: subprocess.CompletedProcess[bytes] = real_run(args, **kwargs)
        return done

    monkeypatch.setattr(subprocess, "run", spy)
    result = process_video(source, tmp_path / "out", threads=2)
    monkeypatch.undo()

    found = probe(source)
    planned = plan_renditions(found.width, found.height)
    assert ffmpeg_command(source, tmp_path / "out", found, planned, threads=2) in ran
    direct = tmp_path / "direct"
    direct.mkdir()
    subprocess.run(ffmpeg_command(source, direct, found, planned, threads=2), check=True)
    hls = {f.name for f in result.files if not f.name.startswith("poster.")}
    assert {p.name for p in direct.iterdir()} == hls


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        ("text", "not an MP4, MOV or WebM video"),
        ("png", "not an MP4, MOV or WebM video"),
        ("playlist", "not an MP4, MOV or WebM video"),
        ("audio", "no video stream"),
        ("cover", "no video stream"),
        ("truncated", "not an MP4, MOV or WebM video"),
        ("truncated_faststart", "ffmpeg could not convert it: "),
        ("wide", "larger than 8192 pixels on a side"),
    ],
)
def test_what_is_not_a_usable_video_is_rejected(tmp_path: Path, make: str, reason: str) -> None:
    upload = _upload(tmp_path, make)

    with pytest.raises(VideoRejected) as rejected:
        process_video(upload, tmp_path / "out")
    assert rejected.value.reason.startswith(reason)
    assert str(tmp_path) not in rejected.value.reason


def _upload(tmp_path: Path, make: str) -> Path:
    upload = tmp_path / "upload"
    if make == "text":
        upload.write_bytes(b"plain text, not a video\n")
    elif make == "png":
        Image.new("RGB", (64, 64), "red").save(upload, "PNG")
    elif make == "playlist":
        # An HLS playlist would have ffmpeg read a local file as a segment.
        upload.write_text("#EXTM3U\n#EXTINF:1,\n/etc/passwd\n#EXT-X-ENDLIST\n")
    elif make == "audio":
        _ffmpeg("-f", "lavfi", "-i", "sine=duration=1", "-f", "mp4", str(upload))
    elif make == "cover":
        # A song with its album's cover: the picture is a video stream to ffprobe.
        cover = tmp_path / "cover.jpeg"
        Image.new("RGB", (64, 64), "red").save(cover)
        sound = ("-f", "lavfi", "-i", "sine=duration=1", "-i", str(cover), "-map", "0", "-map", "1")
        picture = ("-c:v", "copy", "-disposition:v", "attached_pic")
        _ffmpeg(*sound, *picture, "-c:a", "aac", "-f", "mp4", str(upload))
    elif make.startswith("truncated"):
        faststart = ("-movflags", "+faststart") if make.endswith("faststart") else ()
        whole = _clip(tmp_path / "whole.mp4", size="320x180", duration_s=2, extra=faststart)
        upload.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    else:
        _clip(tmp_path / "wide.mp4", size="8200x16", rate=1, audio=False).rename(upload)
    return upload


def test_an_over_long_clip_is_rejected_before_any_work(tmp_path: Path) -> None:
    source = _clip(tmp_path / "in.mp4", duration_s=2)

    with pytest.raises(VideoRejected, match=r"^longer than 1 s$"):
        process_video(source, tmp_path / "out", max_duration_s=1)
    assert not (tmp_path / "out").exists()


def test_a_timeout_is_not_the_uploads_fault(tmp_path: Path) -> None:
    source = _clip(tmp_path / "in.mp4")

    with pytest.raises(TimeoutError):
        process_video(source, tmp_path / "out", timeout_s=0.001)


def test_an_anamorphic_clip_reports_its_display_size(tmp_path: Path) -> None:
    source = _clip(tmp_path / "in.mp4", audio=False, extra=("-vf", "setsar=4/3"))

    found = probe(source)

    assert (found.width, found.height) == (427, 180)


def test_video_rejected_survives_pickling() -> None:
    error = VideoRejected("no video stream")

    copy = pickle.loads(pickle.dumps(error))

    assert type(copy) is VideoRejected
    assert copy.reason == error.reason
    assert str(copy) == str(error)


@pytest.mark.parametrize("bad", [{"threads": 0}, {"max_duration_s": 0}, {"timeout_s": 0}])
def test_limits_must_be_positive(tmp_path: Path, bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="must be positive"):
        process_video(tmp_path / "in.mp4", tmp_path / "out", **bad)
