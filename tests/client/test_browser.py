"""examples/browser-consumer.html consumes and acks a message in headless Chromium.

Uses Chromium directly (no Playwright needed): the page is opened headless and the test
waits until the broker reports the message consumed, which only the page's ack can do.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlencode

import pytest

from kapokmq.client import ConsoleClient, send_http
from tests.harness import BrokerProcess

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
PAGE = Path(__file__).resolve().parents[2] / "examples" / "browser-consumer.html"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="chromium not installed")


async def test_browser_consumer_acks(broker_factory, tmp_path: Path) -> None:
    # a page opened from a file has Origin "null"; with the default key the broker
    # refuses foreign origins unless they are listed (docs/client.md)
    broker: BrokerProcess = broker_factory(settings={"server.allowedOrigins": "null"})
    code = await send_http(broker.http, "browser", "<b>hello from KapokMQ</b>")
    query = urlencode({"url": broker.http, "topic": "browser", "key": "test", "count": 1})
    browser = subprocess.Popen(
        [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", f"{PAGE.as_uri()}?{query}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        async with ConsoleClient(broker.http) as console, asyncio.timeout(30):
            while (await console.get_message(code))["Status"] != 1:
                await asyncio.sleep(0.1)
    finally:
        browser.terminate()
        try:
            browser.wait(10)
        except subprocess.TimeoutExpired:
            browser.kill()
            browser.wait()
