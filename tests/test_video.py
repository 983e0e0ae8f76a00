import numpy as np
import pytest
from PIL import Image

from timewarp.data.finevideo import validate_annotation
from timewarp.data.scenes import SceneRules, frame_times, select_scenes
from timewarp.data.video import VideoDecodeError, available_backends, read_frames, render_clips, video_info, write_png
from helpers import background_colour, caption_colour, good_row


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    mp4, annotation = good_row("clip", seed=3)
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    path.write_bytes(mp4)
    scenes = select_scenes(validate_annotation(annotation), SceneRules()).scenes
    return path, scenes


def test_info(clip):
    path, scenes = clip
    info = video_info(path)
    assert (info.width, info.height, info.fps, info.codec) == (96, 64, 8.0, "h264")
    assert info.duration >= scenes[-1].end


@pytest.mark.parametrize("backend", available_backends())
def test_frames_show_the_scene_their_time_falls_in(clip, backend):
    path, scenes = clip
    plan = frame_times(scenes, 8)
    frames = read_frames(path, [t for _, t in plan], backend)
    assert frames.shape == (8, 64, 96, 3) and frames.dtype == np.uint8
    assert [background_colour(f) for f in frames] == [caption_colour(scenes[s].caption) for s, _ in plan]


def test_order_of_requested_times_is_kept(clip):
    path, scenes = clip
    times = [scenes[-1].start + 0.1, scenes[0].start + 0.1, scenes[1].start + 0.1]
    colours = [background_colour(f) for f in read_frames(path, times, "pyav")]
    assert colours == [caption_colour(scenes[i].caption) for i in (-1, 0, 1)]


@pytest.mark.skipif("decord" not in available_backends(), reason="decord not installed")
def test_decord_and_pyav_return_the_same_frames(clip):
    path, _ = clip
    times = list(np.linspace(0.0, video_info(path).duration - 0.01, 23))
    assert np.array_equal(read_frames(path, times, "pyav"), read_frames(path, times, "decord"))


@pytest.mark.parametrize("backend", available_backends())
def test_truncated_file_fails_to_decode_its_end(clip, tmp_path, backend):
    path, scenes = clip
    data = path.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoDecodeError):
        info = video_info(cut)  # faststart: the header still claims the full duration
        assert info.duration >= scenes[-1].end
        read_frames(cut, [scenes[-1].end - 0.05], backend)


@pytest.mark.parametrize("payload", [b"", b"not a video at all" * 100, b"\x00" * 4096])
def test_non_video_bytes(tmp_path, payload):
    path = tmp_path / "x.mp4"
    path.write_bytes(payload)
    with pytest.raises(VideoDecodeError):
        video_info(path)


def test_audio_only_file_has_no_video_stream(tmp_path):
    import av

    path = tmp_path / "audio.mp4"
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), dtype=np.float32), format="fltp", layout="mono")
        frame.sample_rate = 16000
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    with pytest.raises(VideoDecodeError, match="no video stream"):
        video_info(path)


def test_rendered_clips_play_scenes_in_the_given_order(clip, tmp_path):
    path, scenes = clip
    order = [2, 0, 1]
    out = tmp_path / "shuffled.mp4"
    render_clips(path, [(scenes[i].start, scenes[i].end) for i in order], out)
    clock, times = 0.0, []
    for i in order:
        times.append(clock + scenes[i].duration / 2)
        clock += scenes[i].duration
    colours = [background_colour(f) for f in read_frames(out, times, "pyav")]
    assert colours == [caption_colour(scenes[i].caption) for i in order]
    # Gaps between scenes are not in the rendered video.
    assert video_info(out).duration == pytest.approx(sum(scenes[i].duration for i in order), abs=0.3)


def test_write_png_stores_the_exact_rgb_pixels(tmp_path):
    """Frames are stored losslessly in RGB order (OpenCV encodes BGR: a swapped channel order
    would pass a size check but not this one)."""
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, size=(36, 64, 3), dtype=np.uint8)
    frame[:, :8] = (255, 0, 0)  # a pure red band
    write_png(tmp_path / "frame.png", frame)
    with Image.open(tmp_path / "frame.png") as image:
        assert image.mode == "RGB" and image.size == (64, 36)
        assert np.array_equal(np.asarray(image), frame)
