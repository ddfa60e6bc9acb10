"""TwiML: fetching, parsing and running Twilio Markup Language documents."""
