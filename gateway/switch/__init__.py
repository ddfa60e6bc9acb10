"""The switch: calls, legs, routing and bridging.

* ``legs``: INVITE sessions on both sides (``InboundLeg``, ``OutboundLeg``);
* ``leg_manager``: ``LegManager`` creates and tracks the legs of a user agent;
* ``trunks``: trunk registration, OPTIONS pings, outbound dialling with failover;
* ``security``: the inbound guard (trunk ACL, endpoint digest, 403);
* ``location``: where registered endpoints are reached;
* ``demo_call``: the temporary handler answering inbound calls;
* ``calls``: call records and their status machine.
"""
