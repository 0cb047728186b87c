"""Console at scale: fill a broker with N messages, then time the overview and its endpoints.

    python -m benchmarks.console_load [--messages 100000] [--topics 10] [--samples 50]

Starts a real `kapokmq serve` on 127.0.0.1 (free port), publishes the messages over pipelined
WebSocket producers (one per topic, all frames sent before the replies are read), then reports:
- the latency of /Console/CountMessage, /Console/Stats and a first GetMessageList page
  (keep-alive HTTP, `--samples` calls each: median, p95, max);
- the overview's load time in Debian's Chromium: navigation to DOMContentLoaded, and to the
  first complete render (counters, 7-day chart and topic table drawn from the first Stats).
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import statistics
import time
import urllib.parse

import aiohttp

from tests.harness import SECRET, BrokerProcess

PAGE_ONE: dict[str, object] = {"page": 1, "pageSize": 20}
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


async def produce(ws_base: str, topic: str, count: int) -> None:
    """One producer connection: send `count` frames back to back, then collect every `ok`."""
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(f"{ws_base}/Producers/Conn/{topic}/bench-{topic}")
        assert await ws.receive_str(timeout=5) == "Please enter the secret key"
        await ws.send_str(SECRET)
        assert await ws.receive_str(timeout=5) == "Secret key matching succeeded"

        async def replies() -> None:
            for _ in range(count):
                reply = await ws.receive_str(timeout=30)
                assert reply == "ok", reply

        reader = asyncio.create_task(replies())
        for i in range(count):
            await ws.send_str(f'{{"MessageData":"{topic} message {i}","DelayTime":0}}')
        await reader
        await ws.close()


async def fill(ws_base: str, total: int, topics: int) -> float:
    started = time.perf_counter()
    share, rest = divmod(total, topics)
    await asyncio.gather(
        *(produce(ws_base, f"topic{t}", share + (1 if t < rest else 0)) for t in range(topics))
    )
    return time.perf_counter() - started


def latencies(port: int, path: str, samples: int, **form: object) -> list[float]:
    """Milliseconds per call over one keep-alive connection."""
    body = urllib.parse.urlencode({k: str(v) for k, v in form.items()})
    headers = {"secretKey": SECRET, "Content-Type": "application/x-www-form-urlencoded"}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    found: list[float] = []
    try:
        for _ in range(samples):
            started = time.perf_counter()
            conn.request("POST", path, body=body, headers=headers)
            response = conn.getresponse()
            payload = response.read()
            found.append((time.perf_counter() - started) * 1000)
            assert response.status == 200 and b'"code":0' in payload, payload[:200]
    finally:
        conn.close()
    return found


def summary(values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    median = statistics.median(ordered)
    return f"median {median:7.2f} ms   p95 {p95:7.2f} ms   max {ordered[-1]:7.2f} ms"


def overview_load(base: str, expected_all: int, runs: int) -> list[tuple[float, float]]:
    """(DOMContentLoaded ms, fully rendered ms) for each of `runs` fresh page loads."""
    from playwright.sync_api import expect, sync_playwright

    shown = f"{expected_all:,}"
    results: list[tuple[float, float]] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            for _ in range(runs):
                context = browser.new_context(viewport={"width": 1280, "height": 860})
                context.add_init_script(f"sessionStorage.setItem('kapokmq.secretKey', '{SECRET}')")
                page = context.new_page()
                started = time.perf_counter()
                page.goto(base + "/", wait_until="domcontentloaded")
                dom = (time.perf_counter() - started) * 1000
                expect(page.locator("#count-all")).to_have_text(shown, timeout=30_000)
                expect(page.locator("#ov-chart circle.dot")).to_have_count(7)
                expect(page.locator("#ov-topics tbody tr").first).not_to_have_class("empty")
                # the page's own clock: navigation start to its first complete overview
                rendered = page.evaluate(
                    "performance.getEntriesByName('kapokmq:overview-rendered')[0].startTime"
                )
                results.append((dom, float(rendered)))
                context.close()
        finally:
            browser.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--topics", type=int, default=10)
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--page-loads", type=int, default=5)
    args = parser.parse_args()

    broker = BrokerProcess().start()
    try:
        seconds = asyncio.run(fill(broker.ws, args.messages, args.topics))
        rate = args.messages / seconds
        print(f"published {args.messages:,} messages on {args.topics} topics in {seconds:.2f} s")
        print(f"  ({rate:,.0f} msg/s over pipelined WebSocket producers)")
        latencies(broker.port, "/Console/Stats", 3)  # warm-up
        for name, path, form in [
            ("/Console/CountMessage", "/Console/CountMessage", {}),
            ("/Console/Stats", "/Console/Stats", {}),
            ("/Console/GetMessageList page 1", "/Console/GetMessageList", PAGE_ONE),
        ]:
            print(f"{name:34} {summary(latencies(broker.port, path, args.samples, **form))}")
        loads = overview_load(broker.http, args.messages, args.page_loads)
        print(f"{'overview DOMContentLoaded':34} {summary([d for d, _ in loads])}")
        print(f"{'overview fully rendered':34} {summary([r for _, r in loads])}")
    finally:
        broker.cleanup()


if __name__ == "__main__":
    main()
