"""The Console API extensions the web console relies on (beyond the original's,
docs/protocol.md "HTTP API")."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from typing import Any

from tests.harness import SECRET, BrokerProcess


def post(broker: BrokerProcess, path: str, key: str = SECRET, **form: object) -> Any:
    body = urllib.parse.urlencode({k: str(v) for k, v in form.items()}).encode()
    request = urllib.request.Request(broker.http + path, data=body, headers={"secretKey": key})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


def test_config_sections_follow_application_yaml_without_secrets(broker: BrokerProcess) -> None:
    answer = post(broker, "/Console/GetConfigSections")
    assert answer["code"] == 0
    sections = answer["data"]
    assert list(sections) == ["server", "mq", "cluster", "sync"]
    assert sections["server"]["addr"] == "127.0.0.1"
    assert sections["mq"]["pushType"] == 1
    assert "secretKey" not in sections["mq"]
    assert sections["cluster"]["registryGossipPort"] == "8041"
    assert sections["sync"]["masterProtocol"] == "ws"
    # every GetConfig key is somewhere in the sections
    flat = post(broker, "/Console/GetConfig")["data"]
    grouped = {key for values in sections.values() for key in values}
    assert set(flat) <= grouped


def test_config_sections_needs_the_key(broker: BrokerProcess) -> None:
    assert post(broker, "/Console/GetConfigSections", key="wrong")["code"] == -1


def test_paged_message_list_reports_the_total(broker: BrokerProcess) -> None:
    codes = [
        post(broker, "/Producer/Send", messageData=f"m{i}", topic="paged", delayTime=0)["msg"]
        for i in range(5)
    ]
    post(broker, "/Producer/Send", messageData="other", topic="elsewhere", delayTime=0)
    first = post(broker, "/Console/GetMessageList", topic="paged", page=1, pageSize=2)
    assert first["total"] == 5
    assert len(first["data"]) == 2
    last = post(broker, "/Console/GetMessageList", topic="paged", page=3, pageSize=2)
    assert last["total"] == 5
    assert len(last["data"]) == 1
    seen = {m["MessageCode"] for m in first["data"] + last["data"]}
    assert seen <= set(codes)
    # without paging the answer keeps the original's shape
    unpaged = post(broker, "/Console/GetMessageList", topic="paged")
    assert set(unpaged) == {"code", "data"}
    assert len(unpaged["data"]) == 5


def test_message_list_refuses_an_unknown_reason(broker: BrokerProcess) -> None:
    for reason in ("expired", "max deliveries"):
        assert post(broker, "/Console/GetMessageList", status=2, reason=reason)["code"] == 0
    answer = post(broker, "/Console/GetMessageList", status=2, reason="max_deliveries")
    assert answer == {
        "code": -1,
        "msg": "reason must be one of expired, max deliveries; got 'max_deliveries'",
    }


def test_send_says_why_a_ttl_is_refused(broker: BrokerProcess) -> None:
    def send(ttl: str) -> Any:
        return post(broker, "/Producer/Send", topic="t", messageData="x", delayTime=0, ttl=ttl)

    assert send("-1")["msg"] == "ttl must be a whole number of seconds >= 0"
    assert send(str(1 << 63))["msg"] == "ttl is out of the 64-bit integer range"
    assert send("1.5")["msg"] == "ttl must be an integer, got '1.5'"


def test_due_times_and_deadlines_stay_in_the_64_bit_range(broker: BrokerProcess) -> None:
    most = (1 << 63) - 1  # DelayTime and TTL may be this large (no upper bound)
    code = post(broker, "/Producer/Send", topic="far", messageData="x", delayTime=most)["msg"]
    lives = post(broker, "/Producer/Send", topic="far", messageData="y", delayTime=0, ttl=most)
    [scheduled] = post(broker, "/Console/GetScheduled", topic="far")["data"]
    assert scheduled["MessageCode"] == code and scheduled["DueTime"] == most
    assert (
        post(broker, "/Console/GetMessage", messageCode=lives["msg"])["data"]["ExpiresAt"] == most
    )
