"""The corpus artifact on an S3 artifact store (moto's S3 server on 127.0.0.1, used through
ZenML's s3 flavour with credentials from a ZenML secret): loading fetches the manifest,
and each media file only when a consumer reads it."""

from __future__ import annotations

import multiprocessing
import pickle
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from timewarp.data.corpus import MANIFEST, RejectionLog, VideoCorpus
from timewarp.data.ingest import list_shards
from timewarp.data.prepare import PrepareConfig, prepare_corpus
from timewarp.data.remote_media import CorpusMediaError
from timewarp.training.collator import FrameSource

BUCKET = "timewarp-artifacts"
SECRET = "timewarp-test-moto-s3"
KEYS = {"aws_access_key_id": "moto-key", "aws_secret_access_key": "moto-secret"}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory):
    port = _free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with open(log, "wb") as output:
        server = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], stdout=output, stderr=output
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(url, timeout=1).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto's S3 server did not start:\n{log.read_text()}") from None
                time.sleep(0.2)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture(scope="module")
def artifact_store(s3_endpoint):
    """An s3 artifact store registered in the tests' ZenML store (not activated)."""
    import boto3
    from zenml.artifacts.utils import load_artifact_store
    from zenml.client import Client
    from zenml.enums import StackComponentType

    from infra.local_stack import other_store_in_this_checkout

    boto3.client(
        "s3", endpoint_url=s3_endpoint, region_name="us-east-1",
        aws_access_key_id=KEYS["aws_access_key_id"], aws_secret_access_key=KEYS["aws_secret_access_key"],
    ).create_bucket(Bucket=BUCKET)
    with other_store_in_this_checkout():
        client = Client()
        client.create_secret(SECRET, values=KEYS)
        component = client.create_stack_component(
            name=f"moto-s3-{uuid.uuid4().hex[:8]}",
            flavor="s3",
            component_type=StackComponentType.ARTIFACT_STORE,
            configuration={
                "path": f"s3://{BUCKET}",
                "authentication_secret": SECRET,
                "client_kwargs": {"endpoint_url": s3_endpoint, "region_name": "us-east-1"},
            },
        )
        yield load_artifact_store(component.id)


@pytest.fixture(scope="module")
def local_corpus(sample_root, tmp_path_factory) -> VideoCorpus:
    config = PrepareConfig(frames_per_video=4, render_shuffled_videos=True)
    corpus, _ = prepare_corpus(list_shards(str(sample_root)), tmp_path_factory.mktemp("corpus"), config, max_videos=6)
    assert len(corpus) == 6
    return corpus


def _materializer(uri: str, store):
    from materializers.video_corpus_materializer import VideoCorpusMaterializer

    return VideoCorpusMaterializer(uri, artifact_store=store)


def _store_corpus(corpus: VideoCorpus, store) -> str:
    uri = f"s3://{BUCKET}/corpus/{uuid.uuid4().hex}"
    _materializer(uri, store).save(corpus)
    return uri


@pytest.fixture
def load_corpus(artifact_store):
    """Loads a corpus artifact as a step would; removes the loads' cache folders afterwards."""
    loaded: list[VideoCorpus] = []

    def load(uri: str) -> VideoCorpus:
        loaded.append(_materializer(uri, artifact_store).load(VideoCorpus))
        return loaded[-1]

    yield load
    for corpus in loaded:
        shutil.rmtree(corpus.root, ignore_errors=True)


def _cached(corpus: VideoCorpus) -> set[str]:
    return {p.relative_to(corpus.root).as_posix() for p in corpus.root.rglob("*") if p.is_file()}


def test_training_reads_only_its_frames_and_export_gets_the_videos(
    local_corpus, artifact_store, load_corpus, tmp_path
):
    from timewarp.data.export import export_corpus

    corpus = load_corpus(_store_corpus(local_corpus, artifact_store))
    assert _cached(corpus) == {MANIFEST}
    assert [v.video_id for v in corpus.videos] == [v.video_id for v in local_corpus.videos]

    # A training step's view: frames of a few videos through the collator's FrameSource.
    used = corpus.videos[:3]
    source = FrameSource(corpus, frames_per_video=4)
    for video in used:
        np.testing.assert_array_equal(source(video.video_id), local_corpus.frames(video))
    assert _cached(corpus) == {MANIFEST} | {video.frame_file(i) for video in used for i in range(4)}

    # The paper export needs the original (and shuffled) videos: fetched now, byte for byte.
    export = tmp_path / "export"
    assert export_corpus(corpus, RejectionLog(), str(export)) == len(local_corpus)
    for video in local_corpus.videos:
        assert (export / "normal_videos" / f"{video.video_id}.mp4").read_bytes() == local_corpus.path(
            video.video_file
        ).read_bytes()
        assert (export / "shuffled_videos" / f"{video.video_id}.mp4").read_bytes() == local_corpus.path(
            video.shuffled_video_file
        ).read_bytes()
    assert _cached(corpus) == {MANIFEST} | {f for video in corpus.videos for f in video.media_files}


def test_threads_asking_for_one_file_share_one_download(local_corpus, artifact_store, load_corpus):
    corpus = load_corpus(_store_corpus(local_corpus, artifact_store))
    fetched: list[str] = []
    real_fetch = corpus.remote.fetch

    def counted(relative: str, destination: Path) -> None:
        fetched.append(relative)
        time.sleep(0.05)  # keep the copy in flight while the other threads ask
        real_fetch(relative, destination)

    corpus.remote.fetch = counted
    video = corpus.videos[0]
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: corpus.frames(video), range(8)))
    assert sorted(fetched) == sorted(video.frame_file(i) for i in range(4))
    for frames in results:
        np.testing.assert_array_equal(frames, local_corpus.frames(video))
    assert not [p for p in corpus.root.rglob("*.part")]


def test_a_pickled_corpus_fetches_in_another_process(local_corpus, artifact_store, load_corpus, tmp_path):
    """What torchrun workers get: the corpus pickled (no credentials in the pickle); they
    fetch through the same artifact store, loaded from ZenML by its id."""
    corpus = load_corpus(_store_corpus(local_corpus, artifact_store))
    call = tmp_path / "corpus.pkl"
    call.write_bytes(pickle.dumps(corpus))
    assert KEYS["aws_secret_access_key"].encode() not in call.read_bytes()
    video = corpus.videos[-1]
    script = tmp_path / "worker.py"
    script.write_text(
        "import pickle, sys, numpy as np\n"
        "corpus = pickle.loads(open(sys.argv[1], 'rb').read())\n"
        "video = next(v for v in corpus.videos if v.video_id == sys.argv[2])\n"
        "np.save(sys.argv[3], corpus.frames(video))\n"
    )
    result = tmp_path / "frames.npy"
    done = subprocess.run(
        [sys.executable, str(script), str(call), video.video_id, str(result)],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    np.testing.assert_array_equal(np.load(result), local_corpus.frames(video))
    assert _cached(corpus) == {MANIFEST} | {video.frame_file(i) for i in range(4)}


def _frames_to(corpus: VideoCorpus, video_id: str, result: str) -> None:
    np.save(result, corpus.frames(next(v for v in corpus.videos if v.video_id == video_id)))


def test_a_forked_process_fetches_with_its_own_storage_client(local_corpus, artifact_store, load_corpus, tmp_path):
    """DataLoader workers are forked: the parent's S3 client must not be reused there."""
    corpus = load_corpus(_store_corpus(local_corpus, artifact_store))
    corpus.frames(corpus.videos[0])  # the parent's storage client is in use before the fork
    video, result = corpus.videos[1], tmp_path / "frames.npy"
    worker = multiprocessing.get_context("fork").Process(target=_frames_to, args=(corpus, video.video_id, str(result)))
    worker.start()
    worker.join(timeout=60)
    assert worker.exitcode == 0
    np.testing.assert_array_equal(np.load(result), local_corpus.frames(video))


def test_a_lazily_loaded_corpus_saves_whole_and_bad_files_are_named(
    local_corpus, artifact_store, load_corpus, tmp_path
):
    from timewarp.data.export import export_corpus

    first = load_corpus(_store_corpus(local_corpus, artifact_store))
    first.frames(first.videos[0])
    # Saving a corpus a step got lazily stores all of it, not just what the step read.
    uri = f"s3://{BUCKET}/corpus/{uuid.uuid4().hex}"
    _materializer(uri, artifact_store).save(first)
    corpus = load_corpus(uri)
    assert artifact_store.exists(f"{uri}/{corpus.videos[-1].video_file}")

    missing, corrupt = corpus.videos[1], corpus.videos[2]
    artifact_store.remove(f"{uri}/{missing.frame_file(1)}")
    with artifact_store.open(f"{uri}/{corrupt.frame_file(0)}", "wb") as handle:
        handle.write(b"\x89PNG\r\n\x1a\n not really a frame")

    with pytest.raises(CorpusMediaError) as error:
        FrameSource(corpus)(missing.video_id)
    assert uri in str(error.value) and missing.frame_file(1) in str(error.value)
    assert "FileNotFoundError" in str(error.value)
    with pytest.raises(CorpusMediaError) as error:
        corpus.frames(corrupt)
    assert uri in str(error.value) and corrupt.frame_file(0) in str(error.value)
    assert not [p for p in corpus.root.rglob("*.part")]

    # The export's first media file is the first video's original mp4.
    artifact_store.remove(f"{uri}/{corpus.videos[0].video_file}")
    with pytest.raises(CorpusMediaError, match=corpus.videos[0].video_file) as error:
        export_corpus(corpus, RejectionLog(), str(tmp_path / "export"))
    assert uri in str(error.value)
