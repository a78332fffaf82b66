"""
Headless Chromium (Debian's C{chromium}) for page tests: the DOM after the
page's scripts ran, a screenshot, and whatever the page wrote to its
console.
"""

from __future__ import annotations

import os
import subprocess
import tempfile

from attrs import frozen
from twisted.trial.unittest import SynchronousTestCase

from .tools import require

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--window-size=1280,1100",
    "--virtual-time-budget=5000",
    "--enable-logging=stderr",
    "--v=0",
]


@frozen
class Rendered:
    """
    @ivar console: every console message and uncaught error the page
        produced (Chromium logs them as C{INFO:CONSOLE} lines).
    """

    dom: str
    console: list[str]
    screenshot: str


def require_chromium(case: SynchronousTestCase) -> str:
    return require("chromium")


def render(chromium: str, url: str, screenshot: str, *, timeout: float = 90) -> Rendered:
    """
    Load C{url} twice in fresh profiles: once for the DOM, once for a PNG
    screenshot at C{screenshot}.
    """
    console: list[str] = []
    outputs = []
    for action in ("--dump-dom", f"--screenshot={screenshot}"):
        with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
            result = subprocess.run(
                [chromium, *FLAGS, f"--user-data-dir={profile}", action, url],
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        outputs.append(result.stdout)
        console += [line for line in result.stderr.splitlines() if ":CONSOLE" in line]
    if not os.path.exists(screenshot):
        raise AssertionError(f"chromium made no screenshot of {url}")
    return Rendered(dom=outputs[0], console=console, screenshot=screenshot)
