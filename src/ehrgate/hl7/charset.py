"""Bytes to text per MSH-18 (character set), HL7 table 0211, HL7 v2.5 section 2.15.9.18.

ER7 structure (segment ids, delimiters, MSH) is ASCII, so the header can be read from the raw bytes
before the body is decoded. The first repetition of MSH-18 names the character set of the message;
an empty MSH-18 means ASCII by the standard, which we read as UTF-8 (a superset) because real feeds
put UTF-8 and Latin-1 names into "ASCII" messages. Decoding never crashes: when the bytes are not
valid in the declared set we try UTF-8, then Latin-1 (which maps every byte). The codec actually used
is returned so a message re-encodes to the same bytes.

Character sets that are not ASCII-compatible (UNICODE UTF-16/UTF-32) are not supported.
"""

from __future__ import annotations

import codecs

__all__ = ["CHARSETS", "charset_for", "codec_for", "decode", "header_charset"]

UTF8_BOM = b"\xef\xbb\xbf"

#: HL7 table 0211 values mapped to Python codecs (ASCII-compatible sets only).
CHARSETS: dict[str, str] = {
    "ASCII": "utf-8",
    "8859/1": "latin-1",
    "8859/2": "iso8859-2",
    "8859/3": "iso8859-3",
    "8859/4": "iso8859-4",
    "8859/5": "iso8859-5",
    "8859/6": "iso8859-6",
    "8859/7": "iso8859-7",
    "8859/8": "iso8859-8",
    "8859/9": "iso8859-9",
    "8859/15": "iso8859-15",
    "ISO IR6": "utf-8",
    "ISO IR14": "shift_jis",
    "ISO IR87": "iso2022_jp",
    "GB 18030-2000": "gb18030",
    "KS X 1001": "euc_kr",
    "BIG-5": "big5",
    "UNICODE": "utf-8",
    "UNICODE UTF-8": "utf-8",
}

#: The table 0211 name for a codec; the last name in CHARSETS wins (UTF-8 is 'UNICODE UTF-8').
_NAMES = {codecs.lookup(codec).name: name for name, codec in CHARSETS.items()}

_NOT_ASCII_COMPATIBLE = {"utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be"}


def codec_for(charset: str) -> str | None:
    """The Python codec for an MSH-18 value; common non-table names ('UTF-8', 'CP1252') are accepted."""
    name = charset.strip().upper()
    if not name:
        return None
    if name in CHARSETS:
        return CHARSETS[name]
    try:
        codec = codecs.lookup(name).name
    except LookupError:
        return None
    return None if codec in _NOT_ASCII_COMPATIBLE else codec


def charset_for(codec: str) -> str | None:
    """The HL7 table 0211 name (an MSH-18 value) for a Python codec, None when the table has none."""
    try:
        return _NAMES.get(codecs.lookup(codec).name)
    except LookupError:
        return None


def header_charset(data: bytes) -> str:
    """MSH-18 (first repetition) read from the raw bytes of a message, '' when absent."""
    start = data.find(b"MSH", 0, 64)
    if start < 0:
        start = data.find(b"MSH")
    if start < 0 or len(data) < start + 5:
        return ""
    end = len(data)
    for window in (start + 1024, end):
        for terminator in (b"\r", b"\n"):
            pos = data.find(terminator, start, window)
            if 0 <= pos < end:
                end = pos
        if end < window:
            break
    header = data[start:end].decode("latin-1")
    if len(header) < 4:
        return ""
    fields = header.split(header[3])
    if len(fields) < 18:
        return ""
    value = fields[17]
    encoding_characters = fields[1]
    if len(encoding_characters) > 1:
        value = value.split(encoding_characters[1])[0]
    if encoding_characters:
        value = value.split(encoding_characters[0])[0]
    return value.strip()


def decode(data: bytes, charset: str | None = None) -> tuple[str, str | None]:
    """Decode message bytes; return ``(text, codec)``. ``charset`` overrides MSH-18 when given.

    The codec is None for pure ASCII input: any ASCII-compatible codec gives the same bytes back, so
    the caller may pick one from MSH-18 later.

    A leading UTF-8 byte order mark is dropped (and implies UTF-8).
    """
    if data[:3] == UTF8_BOM:
        data = data[3:]
        if charset is None:
            charset = "UNICODE UTF-8"
    if data.isascii():
        return data.decode("ascii"), codec_for(charset) if charset else None
    declared = codec_for(charset if charset is not None else header_charset(data)) or "utf-8"
    for codec in (declared, "utf-8", "latin-1"):
        try:
            return data.decode(codec), codec
        except UnicodeDecodeError:
            continue
    raise AssertionError("latin-1 decodes every byte")  # pragma: no cover
