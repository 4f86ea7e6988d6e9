"""Known credentials never reach the screen or an error, whatever printed them."""

from __future__ import annotations

import pytest

from storycore._redact import redact, remember_basic_auth, remember_secret
from storycore.cli._common import Output
from storycore.errors import ServerResponseError


def test_a_remembered_secret_is_masked_in_every_form_a_server_may_echo() -> None:
    remember_secret("sk-live-123/456")
    remember_basic_auth("ann", "hunter22")
    text = "bad key sk-live-123/456 (sk-live-123%2F456), Basic YW5uOmh1bnRlcjIy, pw hunter22"
    assert redact(text) == "bad key *** (***), Basic ***, pw ***"
    assert redact("abc") == "abc"  # nothing remembered matches: text unchanged


def test_short_values_are_not_treated_as_secrets() -> None:
    remember_secret("ab", None, "")
    assert redact("a cab stand") == "a cab stand"


def test_an_error_never_carries_a_remembered_secret() -> None:
    remember_secret("X-KEY-9f8e7d")
    error = ServerResponseError(
        "401: the key X-KEY-9f8e7d is not valid", where="http://h:1/?k=X-KEY-9f8e7d"
    )
    assert "X-KEY-9f8e7d" not in str(error)
    assert "X-KEY-9f8e7d" not in repr(error.to_dict())


def test_every_printed_notice_and_data_line_is_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    remember_secret("tok-abcdef-1234")
    out = Output(json_mode=False)
    out.data("server said: tok-abcdef-1234")
    out.info("notice: tok-abcdef-1234")
    out.warn("warn: tok-abcdef-1234")
    captured = capsys.readouterr()
    assert "tok-abcdef-1234" not in captured.out + captured.err
    assert captured.out.count("***") == 1 and captured.err.count("***") == 2


def test_json_output_is_redacted_and_stays_valid(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    remember_secret("tok-abcdef-1234")
    Output(json_mode=True).json({"echo": "the key tok-abcdef-1234 was refused"})
    line = capsys.readouterr().out
    assert json.loads(line) == {"echo": "the key *** was refused"}
