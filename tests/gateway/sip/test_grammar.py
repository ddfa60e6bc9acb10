"""Grammar helpers: quoting, generic parameters, the compiled ABNF patterns."""

from __future__ import annotations

import pytest

from trunkline.gateway.sip.grammar import (
    CALL_ID,
    DATE,
    REQUEST_LINE,
    STATUS_LINE,
    TOKEN,
    SipParseError,
    parse_gen_params,
    quote,
    serialize_params,
    unquote,
)


def test_quote_unquote() -> None:
    assert unquote('"a \\"b\\" \\\\ c"') == 'a "b" \\ c'
    assert unquote("token") == "token"
    assert quote('a "b" \\ c') == '"a \\"b\\" \\\\ c"'
    assert unquote(quote('x"\\y')) == 'x"\\y'


def test_gen_params() -> None:
    params = parse_gen_params(' ; Tag = abc ;lr; q=0.5;received=[2001:db8::1];x="a;b,c"', "To")
    assert params == {"tag": "abc", "lr": None, "q": "0.5", "received": "[2001:db8::1]", "x": '"a;b,c"'}
    assert serialize_params(params) == ';tag=abc;lr;q=0.5;received=[2001:db8::1];x="a;b,c"'
    assert parse_gen_params("", "To") == {}
    for bad in (";", ";=a", ";a=", "x", ";a b"):
        with pytest.raises(SipParseError) as info:
            parse_gen_params(bad, "To")
        assert info.value.header == "To"


def test_patterns() -> None:
    assert TOKEN.fullmatch("!interesting-Method0123456789_*+`.%indeed'~")
    assert not TOKEN.fullmatch("a b")
    m = REQUEST_LINE.fullmatch("INVITE sip:a@b SIP/2.0")
    assert m is not None and m.groups() == ("INVITE", "sip:a@b", "SIP/2.0")
    assert REQUEST_LINE.fullmatch("INVITE <sip:a@b> SIP/2.0") is None
    m = STATUS_LINE.fullmatch("SIP/2.0 404 Not Found")
    assert m is not None and m.groups() == ("SIP/2.0", "404", "Not Found")
    assert CALL_ID.fullmatch("abc@[::1]") and not CALL_ID.fullmatch("a b") and not CALL_ID.fullmatch("a@b@c")
    assert DATE.fullmatch("Sat, 13 Nov 2010 23:29:00 GMT") and not DATE.fullmatch(
        "Sat, 13 Nov 2010 23:29:00 EST"
    )
    assert repr(SipParseError("x", 505)) == "SipParseError('x', status_code=505)"
