"""process_video: an uploaded video made into HLS renditions and a poster, by ffmpeg.

ffprobe judges the upload before any transcoding (`actors.media.ffprobe`, which also says
how ffmpeg's tools are run on untrusted files).

One ffmpeg run decodes the source once and encodes every rendition (H.264 main, AAC): each
rung of the 240p/480p/720p ladder the source's short side reaches, or one at the source's
own size if it is smaller; nothing is upscaled. Keyframes fall every `SEGMENT_S` seconds in
every rendition, so all cut their MPEG-TS segments at the same instants and a player can
switch at any segment. ffmpeg turns the picture upright by its rotation metadata and copies
no metadata of the upload (title, GPS position, creation time). A damaged stream stops the
run (`-xerror`): a truncated upload is refused, not served cut short.

Files are written flat in `work_dir` under the names they are stored by: `hls.m3u8` (the
master playlist), `hls_<rung>.m3u8`, `hls_<rung>_<n>.ts`, `poster.jpeg`, `poster.webp`.
`VideoRejected` is the upload's fault, so retrying cannot help; a `TimeoutError` is not.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from io import BytesIO
from pathlib import Path

from PIL import Image

from actors.media.ffprobe import INPUT_LIMITS, Probe, run
from actors.media.ffprobe import VideoRejected as VideoRejected
from actors.media.ffprobe import probe as probe
from actors.media.images import FORMATS, Format, blurhash_of, encoded

SEGMENT_S = 4
POSTER_PX = 1080  # the long side
POSTER_AT_S = 1.0
AUDIO_BPS = 128_000
MASTER = "hls.m3u8"

# (short side, video bit rate cap): the short side is the height of a landscape video.
_LADDER = ((240, 400_000), (480, 1_200_000), (720, 2_800_000))
_HLS_TYPES = {".m3u8": "application/vnd.apple.mpegurl", ".ts": "video/mp2t"}
_STDERR_CHARS = 200
# Bandwidth, width, height and URI of each variant, in the order ffmpeg writes them.
_STREAM_INF = re.compile(r"#EXT-X-STREAM-INF:BANDWIDTH=(\d+),.*RESOLUTION=(\d+)x(\d+).*\n(.*)")


@dataclass(frozen=True)
class VideoOutput:
    name: str  # flat store name: "hls.m3u8", "hls_480p_00000.ts", "poster.webp", …
    path: Path
    content_type: str


@dataclass(frozen=True)
class Rendition:
    """One HLS variant. `bandwidth` (bits/s) is the video's bit rate cap in a plan, and what
    the master playlist states once made (with audio and ffmpeg's 10% margin)."""

    name: str  # "240p", "480p", "720p"
    width: int
    height: int
    bandwidth: int


@dataclass(frozen=True)
class ProcessedVideo:
    width: int  # upright display size of the source
    height: int
    duration_ms: int
    blurhash: str  # of the poster frame
    renditions: tuple[Rendition, ...]
    poster_width: int
    poster_height: int
    files: tuple[VideoOutput, ...]  # everything to store


def plan_renditions(width: int, height: int) -> tuple[Rendition, ...]:
    """The ladder's rungs an upright `width` x `height` source reaches, smallest first."""
    short = min(width, height)
    rungs = [rung for rung in _LADDER if rung[0] <= short] or [(_even(short), _LADDER[0][1])]
    return tuple(_rendition(px, bps, width, height) for px, bps in rungs)


def _rendition(short_px: int, bps: int, width: int, height: int) -> Rendition:
    long_side, short_side = max(width, height), min(width, height)
    long_px = min(_even(long_side), _even(round(short_px * long_side / short_side / 2) * 2))
    size = (long_px, short_px) if width >= height else (short_px, long_px)
    return Rendition(f"{short_px}p", *size, bandwidth=bps)


def _even(px: int) -> int:
    """H.264 in 4:2:0 needs even sides."""
    return max(2, px // 2 * 2)


def ffmpeg_command(
    source: Path, work_dir: Path, probe: Probe, renditions: Sequence[Rendition], *, threads: int
) -> list[str]:
    """The one ffmpeg run that writes the playlists and segments of all `renditions`."""
    if not renditions:
        raise ValueError("renditions must not be empty")
    if "%" in str(work_dir):
        raise ValueError(f"ffmpeg would take the % in {work_dir} for a pattern")
    graph = _filter_graph(probe, renditions)
    return [
        *(*_ffmpeg_head(threads), *INPUT_LIMITS, "-i", f"file:{source}", "-filter_complex", graph),
        *_maps(probe, renditions),
        *_encoder_args(probe, renditions, threads),
        *_hls_args(work_dir, renditions, probe.has_audio),
    ]


def _ffmpeg_head(threads: int) -> list[str]:
    thread_args = ["-threads", str(threads), "-filter_complex_threads", str(threads)]
    return ["ffmpeg", "-nostdin", "-y", "-loglevel", "error", "-xerror", *thread_args]


def _filter_graph(probe: Probe, renditions: Sequence[Rendition]) -> str:
    """Decode once, split, scale each copy: ffmpeg has rotated the input upright already."""
    copies = "".join(f"[s{i}]" for i in range(len(renditions)))
    chains = [f"[0:{probe.video_stream}]split={len(renditions)}{copies}"]
    for i, rendition in enumerate(renditions):
        scale = f"scale={rendition.width}:{rendition.height},setsar=1,format=yuv420p"
        chains.append(f"[s{i}]{scale}[v{i}]")
    return ";".join(chains)


def _maps(probe: Probe, renditions: Sequence[Rendition]) -> list[str]:
    audio = () if probe.audio_stream is None else ("-map", f"0:{probe.audio_stream}")
    return [arg for i in range(len(renditions)) for arg in ("-map", f"[v{i}]", *audio)]


def _encoder_args(probe: Probe, renditions: Sequence[Rendition], threads: int) -> list[str]:
    gop = str(max(1, round(probe.frame_rate * SEGMENT_S)))
    args = ["-map_metadata", "-1", "-map_chapters", "-1", "-threads", str(threads)]
    args += ["-c:v", "libx264", "-preset", "veryfast", "-profile:v", "main", "-crf", "23"]
    # Keyframes on the segment grid at any frame rate, and no others to shift the GOPs.
    args += ["-g", gop, "-sc_threshold", "0"]
    args += ["-force_key_frames", f"expr:gte(t,n_forced*{SEGMENT_S})"]
    for i, rendition in enumerate(renditions):
        # A one-second buffer keeps a segment's bit rate within 1.25 times the cap.
        cap = str(rendition.bandwidth)
        args += [f"-maxrate:v:{i}", cap, f"-bufsize:v:{i}", cap]
    if probe.has_audio:
        args += ["-c:a", "aac", "-b:a", str(AUDIO_BPS), "-ac", "2"]
    return args


def _hls_args(work_dir: Path, renditions: Sequence[Rendition], has_audio: bool) -> list[str]:
    audio = ",a:{i}" if has_audio else ""
    streams = [f"v:{i}{audio.format(i=i)},name:{r.name}" for i, r in enumerate(renditions)]
    return [
        *("-f", "hls", "-hls_time", str(SEGMENT_S), "-hls_playlist_type", "vod"),
        *("-hls_segment_type", "mpegts", "-hls_flags", "independent_segments"),
        *("-hls_segment_filename", str(work_dir / "hls_%v_%05d.ts")),
        *("-master_pl_name", MASTER, "-var_stream_map", " ".join(streams)),
        str(work_dir / "hls_%v.m3u8"),
    ]


def process_video(
    source: Path,
    work_dir: Path,
    *,
    max_duration_s: float = 600.0,
    threads: int = 1,
    timeout_s: float = 900.0,
) -> ProcessedVideo:
    """Check `source`, then write its HLS renditions and poster into `work_dir`.

    Raises `VideoRejected` for an upload Nova will not serve, and `TimeoutError` if ffprobe
    and ffmpeg together take more than `timeout_s`: that is no fault of the upload, so the
    caller should retry. A missing ffmpeg raises `FileNotFoundError`.
    """
    if threads < 1 or max_duration_s <= 0 or timeout_s <= 0:
        raise ValueError("threads, max_duration_s and timeout_s must be positive")
    deadline = time.monotonic() + timeout_s
    found = probe(source, timeout_s=min(30.0, timeout_s))
    if found.duration_ms > max_duration_s * 1000:
        raise VideoRejected(f"longer than {max_duration_s:g} s")
    work_dir.mkdir(parents=True, exist_ok=True)
    planned = plan_renditions(found.width, found.height)
    command = ffmpeg_command(source, work_dir, found, planned, threads=threads)
    _check(run(command, _left(deadline)), source, work_dir)
    renditions, hls_files = _read_playlists(work_dir, planned)
    frame = _poster_frame(source, found, threads, deadline)
    posters = [_save_poster(frame, work_dir, fmt) for fmt in FORMATS]
    return ProcessedVideo(
        width=found.width,
        height=found.height,
        duration_ms=found.duration_ms,
        blurhash=blurhash_of(frame),
        renditions=renditions,
        poster_width=frame.width,
        poster_height=frame.height,
        files=(*hls_files, *posters),
    )


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("no time left to process the video")
    return left


def _check(done: subprocess.CompletedProcess[bytes], source: Path, work_dir: Path) -> None:
    if done.returncode == 0:
        return
    lines = done.stderr.decode(errors="replace").strip().splitlines() or ["no message"]
    # The uploader sees the reason: it names no path of this machine.
    line = lines[-1].replace(f"file:{source}", "the upload").replace(str(work_dir), "")
    raise VideoRejected(f"ffmpeg could not convert it: {line[:_STDERR_CHARS]}")


def _read_playlists(
    work_dir: Path, planned: Sequence[Rendition]
) -> tuple[tuple[Rendition, ...], list[VideoOutput]]:
    """The renditions as the master states them, and every file the playlists name. A
    mismatch is a bug in the command, not a bad upload: it raises `RuntimeError`."""
    master = (work_dir / MASTER).read_text()
    entries = _STREAM_INF.findall(master)
    names = [f"hls_{r.name}.m3u8" for r in planned]
    stated = [(uri, int(width), int(height)) for _, width, height, uri in entries]
    if stated != [(name, r.width, r.height) for name, r in zip(names, planned, strict=True)]:
        raise RuntimeError(f"unexpected master playlist in {work_dir}: {master!r}")
    renditions = tuple(
        replace(r, bandwidth=int(entry[0])) for r, entry in zip(planned, entries, strict=True)
    )
    files = [_output(work_dir, MASTER)]
    for name in names:
        files += [_output(work_dir, name), *_segments(work_dir, name)]
    return renditions, files


def _segments(work_dir: Path, playlist: str) -> list[VideoOutput]:
    lines = (work_dir / playlist).read_text().splitlines()
    names = [line for line in lines if line and not line.startswith("#")]
    pattern = re.escape(playlist.removesuffix(".m3u8")) + r"_\d{5}\.ts"
    if not names or not all(re.fullmatch(pattern, name) for name in names):
        raise RuntimeError(f"unexpected segments in {work_dir / playlist}: {names}")
    return [_output(work_dir, name) for name in names]


def _output(work_dir: Path, name: str) -> VideoOutput:
    path = work_dir / name
    if not path.is_file():
        raise RuntimeError(f"ffmpeg did not write {path}")
    return VideoOutput(name, path, _HLS_TYPES[path.suffix])


def _poster_frame(source: Path, found: Probe, threads: int, deadline: float) -> Image.Image:
    """One upright RGB frame, its long side at most `POSTER_PX`: a second in, past a fade
    from black, unless the video is shorter; the first frame if none can be decoded there
    (the audio may outlast the video)."""
    at_s = min(POSTER_AT_S, found.duration_ms / 2000)
    for seek_s in dict.fromkeys((at_s, 0.0)):
        done = run(_frame_command(source, found, seek_s, threads), _left(deadline))
        if done.returncode == 0 and done.stdout:
            with Image.open(BytesIO(done.stdout), formats=["PPM"]) as image:
                return image.convert("RGB")
    raise VideoRejected("no frame of the video could be decoded")


def _frame_command(source: Path, found: Probe, seek_s: float, threads: int) -> list[str]:
    scale = min(1.0, POSTER_PX / max(found.width, found.height))
    width, height = (max(1, round(side * scale)) for side in (found.width, found.height))
    return [
        *_ffmpeg_head(threads),
        *("-ss", f"{seek_s:.3f}", *INPUT_LIMITS, "-i", f"file:{source}"),
        *("-map", f"0:{found.video_stream}", "-frames:v", "1"),
        *("-vf", f"scale={width}:{height},setsar=1,format=rgb24"),
        *("-f", "image2pipe", "-c:v", "ppm", "pipe:1"),
    ]


def _save_poster(frame: Image.Image, work_dir: Path, fmt: Format) -> VideoOutput:
    """With the settings of picture variants, so a poster looks like one."""
    path = work_dir / f"poster.{fmt}"
    path.write_bytes(encoded(frame, fmt))
    return VideoOutput(path.name, path, f"image/{fmt}")
