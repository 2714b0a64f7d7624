"""``bridge replay --to-sipp TRACE OUTDIR --call CALL-ID``: one call as a SIPp scenario.

Writes ``OUTDIR/scenario.xml`` (the calling side: the trace's INVITE with SIPp's own
addresses, Call-ID and tags, the provisional and final responses, ACK, the RTP, the BYE at
its offset from the answer or the target's BYE answered) and ``OUTDIR/rtp.pcap`` (the calling
side's RTP and RFC 4733 packets, Ethernet/IPv4/UDP as SIPp's ``play_pcap_audio`` wants them,
re-stamped with one SSRC and continuous sequence numbers, timed as in the trace). Run it with::

    sipp HOST:PORT -sf OUTDIR/scenario.xml -t u1 (or t1) -m 1 -i IP -mi IP

from OUTDIR (the scenario names ``rtp.pcap`` relative to it). Only answered calls can be
written; SIP over UDP and TCP both play from the same scenario (``-t``).
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path

import dpkt

from bridge.replay.capture import build_frame
from bridge.replay.trace import Call, TraceError
from bridge.rtp.packet import build_rtp
from bridge.sip.message import SipParseError, SipRequest
from bridge.sip.uri import SipUri

PCAP_NAME = "rtp.pcap"
SCENARIO_NAME = "scenario.xml"


def _sdp_template(call: Call) -> str:
    invite = call.initial_invite
    body = invite.message.body.decode("utf-8", "replace") if invite is not None else ""
    if "m=audio" not in body:
        raise TraceError(f"call {call.call_id!r} has no audio offer in its INVITE")
    text = body.replace("\r\n", "\n").strip("\n")
    text = re.sub(r"(?m)^c=IN IP[46] \S+", "c=IN IP[media_ip_type] [media_ip]", text)
    text = re.sub(r"(?m)^o=(\S+) (\S+) (\S+) IN IP[46] \S+",
                  r"o=\1 \2 \3 IN IP[local_ip_type] [local_ip]", text)
    text = re.sub(r"(?m)^m=audio \d+", "m=audio [media_port]", text, count=1)
    return "\n".join("      " + line for line in text.split("\n"))


def _users(call: Call) -> tuple[str, str]:
    invite = call.initial_invite
    assert invite is not None
    m = invite.message
    assert isinstance(m, SipRequest)
    user = m.uri.user if isinstance(m.uri, SipUri) and m.uri.user else "service"
    try:
        caller = m.from_.uri.user or "sipp"
    except (SipParseError, ValueError):
        caller = "sipp"
    return _xml(user), _xml(caller)


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def scenario_xml(call: Call, pcap_name: str = PCAP_NAME) -> str:
    """The SIPp scenario for ``call``'s calling side."""
    answer = call.answer_time
    invite = call.initial_invite
    if invite is None or answer is None:
        raise TraceError(f"call {call.call_id!r} was not answered: --to-sipp needs an "
                         "answered call")
    user, caller = _users(call)
    headers = (f'      From: "{caller}" <sip:{caller}@[local_ip]:[local_port]>;'
               "tag=[pid]SIPpTag00[call_number]\n"
               f"      To: <sip:{user}@[remote_ip]:[remote_port]>")
    provisional = sorted({status for method, status in call.responses_to_caller()
                          if method == "INVITE" and status < 200})
    media = sorted(r.time for r in call.rtp_out if r.time >= answer - 0.5)
    first = max(0.0, media[0] - answer) if media else None
    bye = next((r for r in call.messages if isinstance(r.message, SipRequest)
                and r.message.method == "BYE"), None)
    caller_bye = bye is not None and call.from_caller(bye)
    parts = [f'''<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<!-- Written by bridge replay --to-sipp from call {_xml(call.call_id)}. -->
<scenario name="replay of {_xml(call.call_id)}">
  <send retrans="500">
    <![CDATA[

      INVITE sip:{user}@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
{headers}
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:sipp@[local_ip]:[local_port];transport=[transport]>
      Max-Forwards: 70
      User-Agent: bridge replay --to-sipp
      Content-Type: application/sdp
      Content-Length: [len]

{_sdp_template(call)}

    ]]>
  </send>
''']
    for status in sorted({100, *provisional}):
        parts.append(f'  <recv response="{status}" optional="true"/>\n')
    parts.append('''  <recv response="200" rtd="true"/>
  <send>
    <![CDATA[

      ACK sip:''' + user + '''@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
''' + headers + '''[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Contact: <sip:sipp@[local_ip]:[local_port];transport=[transport]>
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
''')
    elapsed = 0.0
    if first is not None:
        parts.append(f'  <pause milliseconds="{round(first * 1000)}"/>\n'
                     f'  <nop>\n    <action>\n      <exec play_pcap_audio="{pcap_name}"/>\n'
                     "    </action>\n  </nop>\n")
        elapsed = first
    if caller_bye:
        assert bye is not None
        wait = max(0.0, bye.time - answer - elapsed)
        parts.append(f'''  <pause milliseconds="{round(wait * 1000)}"/>
  <send retrans="500">
    <![CDATA[

      BYE sip:{user}@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
{headers}[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 2 BYE
      Contact: <sip:sipp@[local_ip]:[local_port];transport=[transport]>
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200" crlf="true"/>
''')
    else:
        parts.append('''  <recv request="BYE"/>
  <send>
    <![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
''')
    parts.append("</scenario>\n")
    return "".join(parts)


def rtp_frames(call: Call) -> list[tuple[float, bytes]]:
    """(time from the answer, Ethernet frame) of the calling side's RTP, re-stamped."""
    answer = call.answer_time or call.start
    ssrc = secrets.randbits(32)
    seq = secrets.randbelow(0x8000)
    ts_offset = secrets.randbits(32)
    out: list[tuple[float, bytes]] = []
    records = sorted((r for r in call.rtp_out if r.time >= answer - 0.5), key=lambda r: r.time)
    base = records[0].packet.timestamp if records else 0
    for record in records:
        p = record.packet
        packet = build_rtp(payload_type=p.payload_type, sequence=seq,
                           timestamp=(p.timestamp - base + ts_offset) & 0xFFFFFFFF, ssrc=ssrc,
                           payload=p.payload, marker=p.marker)
        seq = (seq + 1) & 0xFFFF
        src = (record.src[0] if ":" not in record.src[0] else "127.0.0.1", record.src[1])
        dst = (record.dst[0] if ":" not in record.dst[0] else "127.0.0.1", record.dst[1])
        out.append((max(0.0, record.time - answer), build_frame(src, dst, "UDP", packet)))
    return out


def write_sipp(call: Call, outdir: Path) -> tuple[Path, Path]:
    """Write the scenario and the RTP pcap for ``call`` into ``outdir``."""
    xml = scenario_xml(call)
    frames = rtp_frames(call)
    outdir.mkdir(parents=True, exist_ok=True)
    scenario = outdir / SCENARIO_NAME
    scenario.write_text(xml, encoding="iso-8859-1", errors="replace")
    pcap = outdir / PCAP_NAME
    with pcap.open("wb") as handle:
        writer = dpkt.pcap.Writer(handle, linktype=dpkt.pcap.DLT_EN10MB)
        for when, frame in frames:
            writer.writepkt(frame, ts=1_000_000_000 + when)
    return scenario, pcap
