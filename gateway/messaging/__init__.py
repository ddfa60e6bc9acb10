"""Programmable messaging over SIP: message records, segment counting, SIP MESSAGE delivery."""
