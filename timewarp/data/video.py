"""Reading, probing and writing mp4 files.

Frames are read by time: the frame shown at time t is the last frame whose presentation
time is <= t. PyAV and decord implement the same rule, so either backend returns the same
frames; decord is used when installed (it seeks by frame index), PyAV otherwise.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

# Tolerance when comparing annotation times with frame times (float timecodes, rounding).
TIME_EPS = 1e-3
# Seek instead of decoding forward when the next wanted frame is this far ahead.
SEEK_AHEAD_SECONDS = 2.0


# Sampled frames are stored as PNG (lossless). zlib level 1 with run-length matching and the
# average filter encodes a 640x360 frame ~5x faster than Pillow's level 1, and smaller: the
# stored pixels are identical either way.
_PNG_PARAMS = [
    cv2.IMWRITE_PNG_COMPRESSION, 1,
    cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE,
    cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_AVG,
]


def write_png(path: str | Path, rgb: np.ndarray) -> None:
    """Writes an RGB uint8 frame (height, width, 3) to ``path`` as PNG."""
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR), _PNG_PARAMS)
    if not ok:
        raise OSError(f"PNG encoding failed for {path} (frame shape {rgb.shape}, dtype {rgb.dtype})")
    Path(path).write_bytes(encoded.tobytes())


class VideoDecodeError(ValueError):
    """The file cannot be opened or decoded where it must be; the message says why."""


@dataclass(frozen=True)
class VideoInfo:
    duration: float
    fps: float
    width: int
    height: int
    codec: str


def available_backends() -> list[str]:
    backends = ["pyav"]
    if importlib.util.find_spec("decord") is not None:
        backends.insert(0, "decord")
    return backends


def resolve_backend(backend: str = "auto") -> str:
    if backend == "auto":
        return available_backends()[0]
    if backend not in available_backends():
        raise ValueError(f"video backend {backend!r} is not installed (have {available_backends()})")
    return backend


def _open(path: str | Path) -> av.container.InputContainer:
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as error:
        raise VideoDecodeError(f"cannot open as a video file: {error}") from None
    if not container.streams.video:
        container.close()
        raise VideoDecodeError("no video stream")
    return container


def video_info(path: str | Path) -> VideoInfo:
    """Container-level facts; cheap, decodes nothing."""
    with _open(path) as container:
        stream = container.streams.video[0]
        if container.duration is not None:
            duration = container.duration / av.time_base
        elif stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        else:
            raise VideoDecodeError("video has no duration")
        rate = stream.average_rate or stream.base_rate or stream.guessed_rate
        if not rate:
            raise VideoDecodeError("video has no frame rate")
        width, height = stream.codec_context.width, stream.codec_context.height
        if not width or not height:
            raise VideoDecodeError("video stream has no picture size")
        return VideoInfo(
            duration=float(duration),
            fps=float(rate),
            width=int(width),
            height=int(height),
            codec=stream.codec_context.name,
        )


def read_frames(path: str | Path, times: list[float], backend: str = "auto") -> np.ndarray:
    """RGB frames (N, H, W, 3, uint8) shown at each of ``times`` (seconds, any order).

    Raises :class:`VideoDecodeError` when a time lies past the last decodable frame, which
    is how truncated files are caught.
    """
    if not times:
        raise ValueError("no frame times requested")
    if resolve_backend(backend) == "decord":
        return _read_frames_decord(path, times)
    return _read_frames_pyav(path, times)


def _read_frames_pyav(path: str | Path, times: list[float]) -> np.ndarray:
    order = sorted(range(len(times)), key=times.__getitem__)
    frames: list[np.ndarray | None] = [None] * len(times)
    with _open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        origin = float(stream.start_time * stream.time_base) if stream.start_time else 0.0
        span = _frame_span(stream)
        decoder: Iterator[av.VideoFrame] | None = None
        shown: av.VideoFrame | None = None  # last frame with time <= the current target
        ahead: av.VideoFrame | None = None  # first decoded frame after it
        exhausted = False
        for index in order:
            target = times[index]
            cursor = ahead if ahead is not None else shown
            if decoder is None or cursor is None or target - _frame_time(cursor, origin) > SEEK_AHEAD_SECONDS:
                container.seek(int((target + origin) / stream.time_base), stream=stream, backward=True)
                decoder, shown, ahead, exhausted = _decode(container, stream), None, None, False
            while not exhausted and (ahead is None or _frame_time(ahead, origin) <= target + TIME_EPS):
                if ahead is not None:
                    shown = ahead
                ahead = next(decoder, None)
                exhausted = ahead is None
            if shown is None and ahead is not None and _frame_time(ahead, origin) <= target + span:
                shown = ahead  # a target just before the first frame's timestamp
            if shown is None:
                raise VideoDecodeError(f"no frame decodable at {target:.3f}s")
            if exhausted and target > _frame_time(shown, origin) + span + TIME_EPS:
                raise VideoDecodeError(
                    f"decoding stops at {_frame_time(shown, origin):.3f}s, before the {target:.3f}s needed"
                )
            frames[index] = shown.to_ndarray(format="rgb24")
    return np.stack(frames)


def _decode(container: av.container.InputContainer, stream: av.VideoStream) -> Iterator[av.VideoFrame]:
    try:
        for frame in container.decode(stream):
            if frame.pts is not None:
                yield frame
    except av.error.FFmpegError as error:
        raise VideoDecodeError(f"decoding failed: {error}") from None


def _frame_time(frame: av.VideoFrame, origin: float) -> float:
    return float(frame.pts * frame.time_base) - origin


def _frame_span(stream: av.VideoStream) -> float:
    rate = stream.average_rate or stream.base_rate or stream.guessed_rate
    return 1.0 / float(rate) if rate else 0.0


def _read_frames_decord(path: str | Path, times: list[float]) -> np.ndarray:
    import decord

    try:
        reader = decord.VideoReader(str(path), ctx=decord.cpu(0))
    except (decord.DECORDError, RuntimeError) as error:
        raise VideoDecodeError(f"cannot open as a video file: {error}") from None
    count = len(reader)
    if count == 0:
        raise VideoDecodeError("no decodable frames")
    stamps = reader.get_frame_timestamp(list(range(count)))
    starts, last_end = stamps[:, 0], float(stamps[-1, 1])
    indices = []
    for target in times:
        if target > last_end + TIME_EPS:
            raise VideoDecodeError(
                f"decoding stops at {float(starts[-1]):.3f}s, before the {target:.3f}s needed"
            )
        indices.append(max(0, int(np.searchsorted(starts, target + TIME_EPS, side="right")) - 1))
    try:
        return reader.get_batch(indices).asnumpy()
    except (decord.DECORDError, RuntimeError) as error:
        raise VideoDecodeError(f"decoding failed: {error}") from None


def encode_video(
    frames: Iterable[np.ndarray],
    path: str | Path,
    fps: int,
    *,
    preset: str = "veryfast",
    crf: int = 23,
    keyframe_interval: int | None = None,
    codec: str = "libx264",
) -> None:
    """Write RGB frames in an mp4 (yuv420p, moov atom first like web video): H.264 at
    ``preset``/``crf``, or another ffmpeg encoder (``mpeg4``) at its own defaults."""
    with av.open(str(path), mode="w", format="mp4", options={"movflags": "+faststart"}) as out:
        stream: av.VideoStream | None = None
        for frame in frames:
            if stream is None:
                height, width = frame.shape[:2]
                stream = out.add_stream(codec, rate=Fraction(fps))
                stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
                options = {"preset": preset, "crf": str(crf)} if codec == "libx264" else {}
                if keyframe_interval:
                    options["g"] = str(keyframe_interval)
                stream.options = options
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(packet)
        if stream is None:
            raise ValueError("no frames to encode")
        for packet in stream.encode():
            out.mux(packet)


def iter_clip_frames(path: str | Path, spans: list[tuple[float, float]]) -> Iterator[np.ndarray]:
    """Every frame shown in each [start, end) span, spans in the given order."""
    with _open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        origin = float(stream.start_time * stream.time_base) if stream.start_time else 0.0
        for start, end in spans:
            container.seek(int((start + origin) / stream.time_base), stream=stream, backward=True)
            for frame in _decode(container, stream):
                t = _frame_time(frame, origin)
                if t >= end - TIME_EPS:
                    break
                if t >= start - TIME_EPS:
                    yield frame.to_ndarray(format="rgb24")


def render_clips(
    source: str | Path,
    spans: list[tuple[float, float]],
    path: str | Path,
    *,
    preset: str = "veryfast",
    codec: str = "libx264",
) -> None:
    """Re-encode the given spans of ``source``, concatenated in the given order."""
    fps = round(video_info(source).fps)
    encode_video(iter_clip_frames(source, spans), path, fps, preset=preset, codec=codec)
