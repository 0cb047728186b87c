"""HTTP and WebSocket helpers for the console tests (no client library on purpose)."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from playwright.sync_api import Page

from tests.harness import SECRET, BrokerProcess

SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"


def post(broker: BrokerProcess, path: str, key: str = SECRET, **form: object) -> Any:
    """POST a form to the broker's HTTP API; returns the parsed JSON (None for an empty body)."""
    body = urllib.parse.urlencode({k: str(v) for k, v in form.items()}).encode()
    request = urllib.request.Request(broker.http + path, data=body, headers={"secretKey": key})
    with urllib.request.urlopen(request, timeout=5) as response:
        raw = response.read()
    return json.loads(raw) if raw else None


def send(broker: BrokerProcess, data: str, topic: str = "orders", delay: int = 0) -> str:
    """Publish one message over HTTP; returns its MessageCode."""
    answer = post(broker, "/Producer/Send", messageData=data, topic=topic, delayTime=delay)
    assert answer["code"] == 0, answer
    code: str = answer["msg"]
    return code


def shoot(page: Page, name: str) -> Path:
    """Save a full-page screenshot as a test artefact (artifacts/ is ignored by git)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


# Opens a WebSocket client from a page with no console code on it and completes
# the handshake; resolves once the broker said the key matched. A consumer acks what it gets
# only when `ack` is true.
WS_CLIENT = """
([url, key, ack]) => new Promise((resolve, reject) => {
  const ws = new WebSocket(url);
  (window.sockets = window.sockets || []).push(ws);
  ws.onmessage = (ev) => {
    if (ev.data === "Please enter the secret key") ws.send(key);
    else if (ev.data === "Secret key matching succeeded") resolve(true);
    else if (ev.data === "Secret key matching error") reject(new Error("key refused"));
    else if (ack && ev.data.startsWith("{")) ws.send(JSON.parse(ev.data).MessageCode);
  };
  ws.onerror = () => reject(new Error("websocket error"));
})
"""


def connect_client(
    page: Page, broker: BrokerProcess, kind: str, topic: str, client_id: str, ack: bool = False
) -> None:
    """Connect a producer or consumer (kind "Producers" or "Consumers") from `page`.
    A blank page is first taken to the broker's origin: with the default key the broker
    refuses WebSocket upgrades from other origins (docs/protocol.md "Origins")."""
    if page.url == "about:blank":
        page.goto(broker.http + "/healthz")
    page.evaluate(WS_CLIENT, [f"{broker.ws}/{kind}/Conn/{topic}/{client_id}", SECRET, ack])
