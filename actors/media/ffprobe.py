"""What ffprobe says of an uploaded video, and how Nova runs ffmpeg's tools on uploads.

Uploads are untrusted, and ffmpeg reads far more than video (a playlist or a concat script
can make it open other files), so every run is limited to the MP4/MOV and Matroska/WebM
demuxers on local files (`INPUT_LIMITS`), is bounded in time, and dies with the worker
that started it.
"""

from __future__ import annotations

import ctypes
import json
import re
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAX_SIDE_PX = 8192
INPUT_LIMITS = ("-format_whitelist", "mov,matroska", "-protocol_whitelist", "file")
UNREADABLE = "not an MP4, MOV or WebM video that ffmpeg can read"
_PR_SET_PDEATHSIG = 1  # prctl(2)


class VideoRejected(Exception):
    """The upload is not a video Nova will serve; `reason` can be shown to its uploader."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Probe:
    """What ffprobe says of a source; the size is upright, in square pixels."""

    width: int
    height: int
    duration_ms: int
    rotation: int  # degrees, 0 to 359, as the stream's display matrix states it
    frame_rate: float
    video_stream: int  # ffmpeg's index of the stream to use
    audio_stream: int | None

    @property
    def has_audio(self) -> bool:
        return self.audio_stream is not None


def probe(source: Path, *, timeout_s: float = 30.0) -> Probe:
    """The source as ffprobe reads it; raises `VideoRejected` unless it is a usable video."""
    args = ["ffprobe", "-v", "error", *INPUT_LIMITS, "-of", "json", "-show_format", "-show_streams"]
    done = run([*args, f"file:{source}"], timeout_s)
    if done.returncode != 0:
        raise VideoRejected(UNREADABLE)
    info = json.loads(done.stdout.decode(errors="replace"))  # tags may be in any encoding
    video, audio = (_first(info.get("streams", []), kind) for kind in ("video", "audio"))
    if video is None:
        raise VideoRejected("no video stream")
    width, height = _display_size(video)
    rotation = _rotation(video)
    if rotation % 180 == 90:
        width, height = height, width
    return Probe(
        width=width,
        height=height,
        duration_ms=_duration_ms(info.get("format", {}), video),
        rotation=rotation,
        frame_rate=_frame_rate(video),
        video_stream=int(video["index"]),
        audio_stream=None if audio is None else int(audio["index"]),
    )


def _first(streams: list[dict[str, Any]], codec_type: str) -> dict[str, Any] | None:
    """The first stream of a type; cover art (an attached picture) is not video."""
    for stream in streams:
        cover = stream.get("disposition", {}).get("attached_pic") == 1
        if stream.get("codec_type") == codec_type and not cover:
            return stream
    return None


def _display_size(video: dict[str, Any]) -> tuple[int, int]:
    width, height = int(video.get("width") or 0), int(video.get("height") or 0)
    if width < 1 or height < 1:
        raise VideoRejected(UNREADABLE)
    if max(width, height) > MAX_SIDE_PX:
        raise VideoRejected(f"larger than {MAX_SIDE_PX} pixels on a side")
    # Anamorphic video stores wide pixels: shown, it is wider than it is stored.
    sar = ratio(video.get("sample_aspect_ratio", ""))
    if sar > 0:
        width = min(MAX_SIDE_PX, max(1, round(width * sar)))
    return width, height


def _rotation(video: dict[str, Any]) -> int:
    for side_data in video.get("side_data_list", []):
        if "rotation" in side_data:
            return round(float(side_data["rotation"])) % 360
    # ffprobe before 5.0 reports it as a tag.
    return round(float(video.get("tags", {}).get("rotate", 0))) % 360


def _duration_ms(format_: dict[str, Any], video: dict[str, Any]) -> int:
    duration_ms = round(float(format_.get("duration") or video.get("duration") or 0) * 1000)
    if duration_ms <= 0:
        raise VideoRejected("the video has no duration")
    return duration_ms


def _frame_rate(video: dict[str, Any]) -> float:
    for key in ("avg_frame_rate", "r_frame_rate"):
        rate = ratio(video.get(key, ""))
        if 0 < rate <= 1000:
            return rate
    return 30.0


def ratio(text: str) -> float:
    """A ratio such as 30000/1001 or 16:9 as a number; 0 if it is not one."""
    try:
        num, den = (float(part) for part in re.split("[:/]", text))
    except ValueError:
        return 0.0
    return num / den if den > 0 else 0.0


def run(args: list[str], timeout_s: float) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(
            args, capture_output=True, timeout=timeout_s, check=False, preexec_fn=_die_with_us
        )
    except subprocess.TimeoutExpired as e:
        raise TimeoutError(f"{args[0]} did not finish within {timeout_s:.0f} s") from e


def _die_with_us() -> None:
    """In the child: be killed when the task's worker dies (Ray cancelling it, a lost
    worker), instead of transcoding on for nobody."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
