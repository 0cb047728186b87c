"""The picows adapter's opcode shortcut (server/ws_picows.py ``OpcodeMembers``): picows
still hands over the Enum's own members, so the adapter's identity checks hold."""

from __future__ import annotations

from typing import Any

import picows.picows
from picows import WSMsgType
from picows.picows import _make_test_ws_frame

from kapokmq.server import ws_picows


def test_frames_carry_the_enum_members_through_the_plain_lookup() -> None:
    module: Any = picows.picows
    assert module.WSMsgType is ws_picows.OpcodeMembers
    for member in WSMsgType:
        payload = b"\x03\xe8" if member is WSMsgType.CLOSE else b"x"
        frame = _make_test_ws_frame(member, payload, True, False)
        assert frame.msg_type is member
        assert str(frame).startswith(f"WSFrame({member.name},")  # calls module.WSMsgType
    assert module.WSMsgType(1) is WSMsgType.TEXT
    assert ws_picows.OpcodeMembers(8) is WSMsgType.CLOSE
