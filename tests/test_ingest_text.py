"""TextDecoder: raw bytes as one text block, UTF-8 split anywhere, chosen by auto for plain text."""

from __future__ import annotations

import pytest

from tests.ingest_streams import PLAIN_TEXT, final, messages, texts
from warpd.ingest import DECODERS
from warpd.ingest.text import TextDecoder


@pytest.mark.parametrize("format", ["text", "auto"])
def test_whole_input_is_one_text_block(format: str) -> None:
    message = final(PLAIN_TEXT, format)
    assert texts(message, "text") == [PLAIN_TEXT.decode()]
    assert len(message.blocks) == 1
    assert not message.aborted
    assert message.finish_reason is None


def test_characters_split_across_chunks() -> None:
    data = "é✓𝄞".encode()
    one_byte_chunks = [data[i : i + 1] for i in range(len(data))]
    sent = messages(one_byte_chunks, "text")
    assert texts(sent[-1], "text") == ["é✓𝄞"]
    # Every streaming fragment was whole characters: none was a replacement.
    fragments = [b.text for m in sent[:-1] for b in m.blocks]
    assert "".join(fragments) == "é✓𝄞"
    assert "\ufffd" not in "".join(fragments)


def test_bytes_that_are_not_utf8_become_replacement_characters() -> None:
    message = final([b"ok \xff\xfe ", b"cut \xe2\x9c"], "text")
    assert texts(message, "text") == ["ok \ufffd\ufffd cut \ufffd"]
    assert not message.aborted


def test_leading_blank_lines_are_kept_with_auto() -> None:
    message = final([b"\n\n", b"  indented\n"], "auto")
    assert texts(message, "text") == ["\n\n  indented\n"]


@pytest.mark.parametrize(
    "data", [b"d", b"da", b"identity\n", b"dat", b"retr", b"hello: world\n", b"datum: 1\n"]
)
def test_text_that_begins_like_an_sse_field_name(data: bytes) -> None:
    message = final([data[:1], data[1:]] if len(data) > 1 else [data], "auto")
    assert texts(message, "text") == [data.decode()]


def test_empty_input_makes_no_stream() -> None:
    assert messages([b""], "text") == []
    assert messages([b"", b"\n  \n"], "auto") == []


def test_text_is_registered_as_raw_and_never_detected() -> None:
    assert DECODERS["text"] is TextDecoder
    assert TextDecoder.raw
    assert not TextDecoder.detect({"anything": 1})
