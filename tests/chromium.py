"""Headless chromium for the browser tests: a DOM dump, or a page driven over DevTools.

``rendered_dom`` runs chromium once with ``--dump-dom``. ``devtools`` keeps a
browser open and speaks the DevTools protocol over its websocket (the
``websockets`` library's synchronous client), so a test can click, answer a
``confirm()``, read ``performance.now()`` figures, see every request and
console message, and take a screenshot. It blocks: run it in a worker thread
(``anyio.to_thread.run_sync``) while the server runs on the event loop.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import anyio
import pytest
from websockets.sync.client import ClientConnection, connect

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")
HEADLESS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run")  # CI runs as root


def find_browser() -> str:
    """The installed chromium; skips the test when there is none, unless ``REQUIRE_BROWSER``."""
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    message = "no headless chromium installed (Debian: apt-get install chromium)"
    if os.environ.get("REQUIRE_BROWSER"):
        pytest.fail(message)
    pytest.skip(message)


async def rendered_dom(browser: str, url: str, profile: Path, *, budget_ms: int = 7000) -> str:
    """The page's DOM after ``budget_ms`` of virtual time (its timers run, fetches complete)."""
    command = [
        browser,
        *HEADLESS,
        f"--user-data-dir={profile}",
        f"--virtual-time-budget={budget_ms}",
        "--dump-dom",
        url,
    ]
    with anyio.fail_after(60):
        result = await anyio.run_process(command, check=True)
    return result.stdout.decode("utf-8")


@contextmanager
def devtools(
    browser: str, profile: Path, *, width: int = 1400, height: int = 1000
) -> Iterator[DevTools]:
    """A headless chromium with one page, closed (and waited for) when the block ends."""
    process = subprocess.Popen(
        [
            browser,
            *HEADLESS,
            f"--user-data-dir={profile}",
            "--remote-debugging-port=0",
            f"--window-size={width},{height}",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with connect(_browser_url(process, profile), max_size=None) as socket:
            tools = DevTools(socket)
            try:
                yield tools
            finally:
                with suppress(Exception):  # the browser may close its socket first
                    tools.call("Browser.close")
    finally:
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _browser_url(process: subprocess.Popen[bytes], profile: Path) -> str:
    """Chromium writes its DevTools port and path to ``DevToolsActivePort`` in the profile."""
    written = profile / "DevToolsActivePort"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        lines = written.read_text().split() if written.exists() else []
        if len(lines) == 2:
            return f"ws://127.0.0.1:{lines[0]}{lines[1]}"
        time.sleep(0.05)
    process.kill()
    raise AssertionError("chromium did not open its DevTools socket")


class DevTools:
    """One page of a headless chromium, driven over the DevTools protocol."""

    def __init__(self, socket: ClientConnection) -> None:
        self._socket = socket
        self.events: list[dict[str, Any]] = []
        self.accept_dialogs = True
        self._id = 0
        target = self.call("Target.createTarget", {"url": "about:blank"})
        attached = self.call(
            "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}
        )
        self._session: str = attached["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable", session=True)

    def call(
        self, method: str, params: dict[str, Any] | None = None, *, session: bool = False
    ) -> dict[str, Any]:
        """Send one command and return its result; events seen meanwhile are kept in order."""
        self._id += 1
        message: dict[str, Any] = {"id": self._id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = self._session
        self._socket.send(json.dumps(message))
        while True:
            answer = json.loads(self._socket.recv(timeout=60))
            if answer.get("id") == self._id:
                if "error" in answer:
                    raise AssertionError(f"{method}: {answer['error']}")
                result: dict[str, Any] = answer.get("result", {})
                return result
            if "method" in answer:
                self.events.append(answer)
                if answer["method"] == "Page.javascriptDialogOpening":
                    self._socket.send(
                        json.dumps(
                            {
                                "id": 0,
                                "sessionId": answer["sessionId"],
                                "method": "Page.handleJavaScriptDialog",
                                "params": {"accept": self.accept_dialogs},
                            }
                        )
                    )

    def navigate(self, url: str) -> None:
        self.call("Page.navigate", {"url": url}, session=True)

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (promises awaited)."""
        result = self.call(
            "Runtime.evaluate",
            {"expression": expression, "awaitPromise": True, "returnByValue": True},
            session=True,
        )
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, *, timeout: float = 15.0) -> Any:
        """Poll ``expression`` until it is truthy; its value. Fails after ``timeout`` seconds.

        An expression that throws (the page is still loading) counts as not yet."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                value = self.evaluate(expression)
            except AssertionError as exc:
                value, error = None, exc
            else:
                error = None
            if value:
                return value
            if time.monotonic() > deadline:
                waited = f"timed out after {timeout}s waiting for {expression}"
                raise AssertionError(f"{waited}: {error}")
            time.sleep(0.05)

    def requested_urls(self) -> list[str]:
        return [
            e["params"]["request"]["url"]
            for e in self.events
            if e["method"] == "Network.requestWillBeSent"
        ]

    def console_errors(self) -> list[str]:
        """Uncaught exceptions, console.error calls and browser errors (CSP, failed loads)."""
        errors = []
        for event in self.events:
            method, params = event["method"], event.get("params", {})
            if method == "Runtime.exceptionThrown":
                errors.append(json.dumps(params["exceptionDetails"])[:500])
            elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
                errors.append(json.dumps(params.get("args"))[:500])
            elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                errors.append(params["entry"].get("text", ""))
        return errors

    def screenshot(self, path: Path, *, width: int, height: int) -> None:
        self.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
            session=True,
        )
        shot = self.call("Page.captureScreenshot", {"format": "png"}, session=True)
        path.write_bytes(base64.b64decode(shot["data"]))
