"""Trunkline: a self-hosted, Twilio-compatible programmable-voice platform.

The subpackages live in top-level folders of the source tree: ``trunkline.gateway`` (SIP, call
control, TwiML, REST), ``trunkline.media`` (RTP, jitter buffer, engine) and ``trunkline.codecs``.
"""

__version__ = "0.1.0"
