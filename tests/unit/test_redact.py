"""The one redaction helper every message built from an exception uses."""

from __future__ import annotations

import json

import pytest

from trustpool.attestation.redact import Redactor

SECRET = "Zm9vYmFy-secret\nsecond-line-of-it"


@pytest.mark.parametrize("form", [
    SECRET, repr(SECRET), json.dumps(SECRET),
    SECRET.encode("unicode_escape").decode(),
    "first: Zm9vYmFy-secret", "second-line-of-it",
])
def test_every_quoted_form_is_masked(form):
    redact = Redactor([SECRET])
    out = redact(f"requests refused header value {form} !")
    assert "Zm9vYmFy" not in out and "second-line" not in out
    assert out.startswith("requests refused header value ")


def test_nothing_to_hide_leaves_text_alone():
    assert Redactor([None, ""])("plain text") == "plain text"
    assert not Redactor([])


def test_short_fragments_are_not_masked_everywhere():
    # a one-letter line of a secret would mangle every message
    assert Redactor(["x\nlong-enough"])("x marks the spot") == \
        "x marks the spot"


def test_an_object_whose_str_raises_still_gives_a_message():
    class Broken(Exception):
        def __str__(self):
            raise RuntimeError("no")

    assert "unprintable Broken" in Redactor(["secret"])(Broken())


def test_a_secret_shown_with_unprintables_replaced_is_masked():
    # messages show peer-supplied text with unprintables as '?'
    redact = Redactor(["topsecret\xa0continued-part"])
    assert "continued" not in redact("HTTP 401 topsecret?continued-part")
