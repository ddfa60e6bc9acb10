"""The Twilio-compatible REST API (aiohttp)."""
