"""What a user opens after a run, for the browser tests: headless Chromium (Debian's
package, driven by Playwright), the ZenML dashboard started by ``zenml login --local`` and
the MLflow UI started by ``make mlflow-ui``'s command, each on a free loopback port."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
# Offline and quiet: no GPU, no QUIC, no first-run, update, sync or other background traffic.
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# Kept after the session (git-ignored) so a person can look at what the tests saw.
SCREENSHOTS = Path(__file__).resolve().parent.parent / ".timewarp" / "test-artifacts" / "screenshots"
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def chromium() -> Iterator:
    """A headless Chromium; a browser that cannot start fails the test, saying why."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (`apt-get install -y chromium`; "
                    "`make test` does it when run as root)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as error:
        pytest.fail(f"Playwright is not installed ({error}): `pip install -e '.[dev]'` (or `make setup`)")
    with sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS, timeout=60_000)
        except Exception as error:  # noqa: BLE001 - any launch failure is reported, not skipped
            pytest.fail(f"headless Chromium ({CHROMIUM}) did not start: {error}")
        try:
            yield browser
        finally:
            browser.close()


def screenshot(page, name: str) -> Path:
    """Save what the page shows under SCREENSHOTS. Through the DevTools protocol: Playwright's
    own screenshot waits for web fonts, and the ZenML dashboard's data: fonts never load (its
    content security policy blocks them)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    session = page.context.new_cdp_session(page)
    path.write_bytes(base64.b64decode(session.send("Page.captureScreenshot", {"format": "png"})["data"]))
    session.detach()
    return path


def _run(command: list[str], env: dict, cwd: Path, timeout: float) -> None:
    result = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode:
        pytest.fail(f"`{' '.join(command)}` failed ({result.returncode}):\n{result.stdout[-3000:]}{result.stderr[-3000:]}")


@contextmanager
def zenml_dashboard(config_path: str, workdir: Path) -> Iterator[str]:
    """``zenml login --local`` on the ZenML store at ``config_path`` (what the README tells a
    user), yielding the dashboard's URL; ``zenml logout --local`` stops it and points the
    store's configuration back at the local database. Run from ``workdir`` so this checkout's
    ``.zen`` is left alone."""
    port = free_port()
    env = {**os.environ, "ZENML_CONFIG_PATH": config_path, "ZENML_AUTO_OPEN_DASHBOARD": "false",
           "ZENML_ANALYTICS_OPT_IN": "false"}
    _run([str(BIN / "zenml"), "login", "--local", "--port", str(port)], env, workdir, timeout=300)
    url = f"http://127.0.0.1:{port}"
    try:
        # A new user answers the dashboard's first-visit survey once; record the same answer
        # through the endpoint its form posts to, so the pages open instead of the survey.
        request = urllib.request.Request(
            f"{url}/api/v1/current-user", method="PUT", headers={"Content-Type": "application/json"},
            data=json.dumps({"email_opted_in": False, "user_metadata": {"finished_onboarding_survey": True}}).encode())
        urllib.request.urlopen(request, timeout=30).close()
        yield url
    finally:
        _run([str(BIN / "zenml"), "logout", "--local"], env, workdir, timeout=120)


def _wait_for_http(url: str, process: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the MLflow UI exited ({process.returncode}) before serving:\n{log.read_text()[-3000:]}")
        try:
            urllib.request.urlopen(url, timeout=5).close()
            return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"the MLflow UI did not answer at {url} within {timeout:.0f} s:\n{log.read_text()[-3000:]}")


@contextmanager
def mlflow_ui(tracking_uri: str, log: Path) -> Iterator[str]:
    """``make mlflow-ui``'s command (``mlflow ui --backend-store-uri ...``) on a free port,
    yielding its URL; stopped with its worker processes (its own process group) afterwards."""
    port = free_port()
    # One worker and no job runner (MLflow's GenAI jobs, which the UI pages here never use): the
    # default four workers and a job runner take most of a minute to start on two busy cores.
    command = [str(BIN / "mlflow"), "ui", "--backend-store-uri", tracking_uri, "--host", "127.0.0.1",
               "--port", str(port), "--workers", "1"]
    with log.open("w") as output:
        process = subprocess.Popen(command, env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
                                   stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for_http(url, process, log, timeout=180)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
