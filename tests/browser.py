"""Drive headless Chromium from the standard library, through the DevTools protocol over a pipe.

Imported by the report's browser test as ``from browser import Chromium`` (pytest puts tests/ on
``sys.path``). No Selenium, no Playwright, no websocket client: Chromium started with
``--remote-debugging-pipe`` reads protocol commands from its file descriptor 3 and writes replies
and events to its descriptor 4, each message one JSON text followed by a NUL byte. So we spawn it
with two pipes moved to descriptors 3 and 4 (``os.posix_spawn`` does that without a shell), write
``{"id": n, "method": ..., "params": ...}`` and read until the reply with the same id comes back,
keeping the events (console messages, exceptions) that arrive in between.

The protocol's reference: https://chromedevtools.github.io/devtools-protocol/ (Target, Page,
Runtime, Log, Emulation domains).
"""
import base64
import fcntl
import json
import os
import select
import shutil
import signal
import tempfile
import time
from pathlib import Path

# Chromium as root in a container: no sandbox (it refuses to start as root with one), no GPU, and
# nothing that reaches for the network (the machines that run the tests have none).
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-default-apps", "--mute-audio",
         "--remote-debugging-pipe"]


def find_chromium():
    """The path of a Chromium binary, or None. (Debian's package installs /usr/bin/chromium.)"""
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return None


class BrowserError(Exception):
    """Chromium did not start, did not answer in time, or answered a command with an error."""


class Chromium:
    """One headless Chromium with a fresh profile; use it as a context manager.

    ``call(method, **params)`` sends a command to the browser and returns its result;
    ``page_call`` does the same for the page opened by ``open(url)``. ``events`` collects every
    event that arrived (dicts with ``method`` and ``params``).
    """

    def __init__(self, binary=None, timeout=60.0):
        self.binary = binary or find_chromium()
        if self.binary is None:
            raise BrowserError("no chromium on PATH")
        self.timeout = timeout
        self.events = []
        self.next_id = 0
        self.buffer = b""
        self.session = None
        self.pid = None

    def __enter__(self):
        self.profile = tempfile.mkdtemp(prefix="lstm-music-chromium-")
        to_browser_read, to_browser_write = os.pipe()
        from_browser_read, from_browser_write = os.pipe()
        # Move the child's ends above 10 first, so that moving them to 3 and 4 cannot overwrite one
        # with the other (os.pipe may itself have returned 3 or 4).
        child_read = fcntl.fcntl(to_browser_read, fcntl.F_DUPFD_CLOEXEC, 10)
        child_write = fcntl.fcntl(from_browser_write, fcntl.F_DUPFD_CLOEXEC, 10)
        for fd in (to_browser_read, from_browser_write):
            os.close(fd)
        self.log = open(Path(self.profile) / "chromium.log", "wb")
        actions = [(os.POSIX_SPAWN_DUP2, child_read, 3), (os.POSIX_SPAWN_DUP2, child_write, 4),
                   (os.POSIX_SPAWN_DUP2, self.log.fileno(), 1), (os.POSIX_SPAWN_DUP2, self.log.fileno(), 2)]
        argv = [self.binary, *FLAGS, f"--user-data-dir={self.profile}", "about:blank"]
        try:
            self.pid = os.posix_spawn(self.binary, argv, os.environ, file_actions=actions)
        finally:
            os.close(child_read)
            os.close(child_write)
        self.to_browser, self.from_browser = to_browser_write, from_browser_read
        return self

    def __exit__(self, *exc):
        try:
            if self.pid is not None:
                try:
                    self.call("Browser.close", timeout=5)
                except (BrowserError, OSError):
                    pass
                self._wait_or_kill()
        finally:
            for fd in (self.to_browser, self.from_browser):
                os.close(fd)
            self.log.close()
            shutil.rmtree(self.profile, ignore_errors=True)
        return False

    def _wait_or_kill(self, seconds=10.0):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            pid, _ = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                return
            time.sleep(0.05)
        os.kill(self.pid, signal.SIGKILL)  # only the browser this object started
        os.waitpid(self.pid, 0)

    def chromium_log(self):
        """What Chromium wrote to its stdout and stderr so far (for error messages)."""
        self.log.flush()
        return (Path(self.profile) / "chromium.log").read_text(errors="replace")[-3000:]

    # -- the protocol -------------------------------------------------------------------------------

    def call(self, method, timeout=None, session=None, **params):
        """Send one command and return its ``result`` dict; raise ``BrowserError`` on an error reply."""
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params}
        if session is not None:
            message["sessionId"] = session
        os.write(self.to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            reply = self._read_message(deadline, method)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            if "method" in reply:
                self.events.append(reply)

    def _read_message(self, deadline, method):
        while b"\0" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.from_browser], [], [], left)[0]:
                raise BrowserError(f"{method}: no answer in time; chromium said:\n{self.chromium_log()}")
            data = os.read(self.from_browser, 1 << 20)
            if not data:
                raise BrowserError(f"{method}: chromium closed the pipe; it said:\n{self.chromium_log()}")
            self.buffer += data
        text, _, self.buffer = self.buffer.partition(b"\0")
        return json.loads(text)

    def page_call(self, method, timeout=None, **params):
        return self.call(method, timeout=timeout, session=self.session, **params)

    def open(self, url, width=1280, height=800):
        """Open ``url`` in a new tab of ``width`` x ``height`` CSS pixels and wait for its load event."""
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.page_call(f"{domain}.enable")
        self.page_call("Emulation.setDeviceMetricsOverride", width=width, height=height,
                       deviceScaleFactor=1, mobile=False)
        self.page_call("Page.navigate", url=url)
        self.wait_for_event("Page.loadEventFired")

    def wait_for_event(self, method, timeout=None):
        """Wait until an event ``method`` of the page has arrived (or had arrived); return it."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            for event in self.events:
                if event["method"] == method and event.get("sessionId") == self.session:
                    return event
            message = self._read_message(deadline, f"waiting for {method}")
            if "method" in message:
                self.events.append(message)

    def evaluate(self, expression, timeout=None):
        """The value of a JavaScript expression in the page (promises are awaited)."""
        result = self.page_call("Runtime.evaluate", timeout=timeout, expression=expression,
                                returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression!r} raised {result['exceptionDetails']}")
        return result["result"].get("value")

    def problems(self):
        """Console errors, uncaught exceptions and error log entries of the page, as strings."""
        found = []
        for event in self.events:
            method, params = event["method"], event.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                found.append("console: " + " ".join(str(arg.get("value", arg.get("description")))
                                                    for arg in params.get("args", [])))
            elif method == "Runtime.exceptionThrown":
                found.append(f"exception: {params.get('exceptionDetails', {}).get('text')}")
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                entry = params["entry"]
                found.append(f"log: {entry.get('text')} {entry.get('url', '')}")
        return found

    def screenshot(self, path, full_page=True):
        """Save a PNG of the page; ``full_page`` captures beyond the window, to the page's bottom."""
        params = {"format": "png"}
        if full_page:
            metrics = self.page_call("Page.getLayoutMetrics")
            size = metrics.get("cssContentSize") or metrics["contentSize"]
            params.update(captureBeyondViewport=True,
                          clip={"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1})
        data = self.page_call("Page.captureScreenshot", **params)["data"]
        Path(path).write_bytes(base64.b64decode(data))
        return Path(path)
