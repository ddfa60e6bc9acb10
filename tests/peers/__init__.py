"""Real-peer test harness: SIPp, pjsua2 phones, pcap and audio checks, all on 127.0.0.1.

Modules (each docstring has usage examples):

- ``tests.peers.sipp``: :class:`~tests.peers.sipp.Sipp` runs ``/usr/bin/sipp`` headless
  (``-nostdin``, bounded by ``-m``/``-timeout`` and a hard kill) and returns a
  :class:`~tests.peers.sipp.SippResult` (counters, per-message screen rows, logs).
  ``scenario("uac_cancel")`` finds the files in ``tests/peers/scenarios``;
  ``derive_scenario`` / ``dtmf_2833_scenario`` make variants.
- ``tests.peers.pjsua_phone``: :class:`~tests.peers.pjsua_phone.PjsuaPhone`, a pjsua2 phone in
  its own process (register, call, answer, hangup, hold, DTMF, WAV play/record, MESSAGE, events).
- ``tests.peers.pcap``: read RTP from pcap files, write pcaps of tones / RFC 4733 digits for
  SIPp's ``play_pcap_audio``, capture loopback traffic with dumpcap.
- ``tests.peers.audio``: G.711 via ``audioop`` (independent of the product), tone, DTMF, level
  and correlation checks.
- ``tests.peers.ports``: free UDP/TCP ports and RTP/RTCP pairs on 127.0.0.1.

A gateway e2e test typically looks like::

    async def test_inbound_call_plays_tone(tmp_path, gateway):       # gateway: your fixture
        async with PjsuaPhone(workdir=tmp_path, name="caller") as phone:
            call = await phone.call(f"sip:+15550100@127.0.0.1:{gateway.sip_port}")
            await phone.record_to(tmp_path / "heard.wav", call=call)
            await phone.wait_for("call_state", state="CONFIRMED")
            await asyncio.sleep(2)
            await phone.hangup(call=call)
            await phone.finished_wav(tmp_path / "heard.wav")
        heard, rate = audio.read_wav(tmp_path / "heard.wav")
        assert audio.contains_tone(heard, rate, 440.0)

        uac = Sipp(scenario("uac_info_dtmf"), remote=f"127.0.0.1:{gateway.sip_port}",
                   workdir=tmp_path, service="+15550100", timeout=15)
        (await uac.run()).check(calls=1)
"""
