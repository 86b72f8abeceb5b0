"""ehrgate.hl7.escape: HL7 v2.5 section 2.7 escape sequences."""

from __future__ import annotations

import pytest

from ehrgate.hl7 import Delimiters, EncodeError, escape, unescape

D = Delimiters()
V27 = Delimiters(truncation="#")
ODD = Delimiters("*", "$", "!", "/", "@")


@pytest.mark.parametrize(("er7", "text"), [
    ("plain", "plain"),
    ("a\\F\\b", "a|b"),
    ("a\\S\\b", "a^b"),
    ("a\\T\\b", "a&b"),
    ("a\\R\\b", "a~b"),
    ("a\\E\\b", "a\\b"),
    ("line1\\.br\\line2", "line1\nline2"),
    ("cr\\X0D\\lf\\X0A\\", "cr\rlf\n"),
    ("\\X48656C6C6F\\", "Hello"),
    ("utf8 \\XC3A9\\", "utf8 é"),
    ("latin1 \\XE9\\", "latin1 é"),
    ("\\F\\\\S\\\\T\\\\R\\\\E\\", "|^&~\\"),
    ("\\H\\bold\\N\\", "\\H\\bold\\N\\"),            # highlighting kept verbatim
    ("\\Zlocal\\", "\\Zlocal\\"),                     # locally defined kept verbatim
    ("\\.sp2\\", "\\.sp2\\"),                         # other formatting commands kept
    ("\\C2842\\", "\\C2842\\"),                       # character-set switch kept
    ("\\X0\\", "\\X0\\"),                             # odd hex digit count kept
    ("\\XZZ\\", "\\XZZ\\"),                           # not hex kept
    ("\\P\\", "\\P\\"),                               # no truncation character declared
    ("unpaired \\ escape", "unpaired \\ escape"),
    ("trailing\\", "trailing\\"),
    ("\\\\", "\\\\"),                                 # empty sequence kept
])
def test_unescape(er7: str, text: str) -> None:
    assert unescape(er7, D) == text


def test_unescape_truncation_and_custom_delimiters() -> None:
    assert unescape("lot \\P\\7", V27) == "lot #7"
    assert unescape("a/F/b/S/c/T/d/R/e/E/f", ODD) == "a*b$c@d!e/f"
    assert unescape("a\\F\\b", ODD) == "a\\F\\b"  # backslash is plain text there
    assert unescape("x\\F\\y", Delimiters(escape="")) == "x\\F\\y"


@pytest.mark.parametrize(("text", "er7"), [
    ("plain", "plain"),
    ("a|b^c&d~e\\f", "a\\F\\b\\S\\c\\T\\d\\R\\e\\E\\f"),
    ("two\nlines", "two\\.br\\lines"),
    ("crlf\r\n", "crlf\\X0D\\\\.br\\"),
    ("bell\x07 vt\x0b fs\x1c del\x7f", "bell\\X07\\ vt\\X0B\\ fs\\X1C\\ del\\X7F\\"),
    ("tab\tstays", "tab\tstays"),
    ("#hash", "#hash"),
    ("Ünïcödé", "Ünïcödé"),
])
def test_escape(text: str, er7: str) -> None:
    assert escape(text, D) == er7
    assert unescape(er7, D) == text


def test_escape_truncation_character() -> None:
    assert escape("#1", V27) == "\\P\\1"
    assert escape("a*b$c!d@e/f", ODD) == "a/F/b/S/c/R/d/T/e/E/f"


def test_escape_without_escape_character_refuses_delimiters() -> None:
    bare = Delimiters(escape="", subcomponent="")
    assert escape("fine & dandy", bare) == "fine & dandy"
    with pytest.raises(EncodeError, match="declares no escape character"):
        escape("a^b", bare)
    with pytest.raises(EncodeError):
        escape("line\nbreak", bare)


@pytest.mark.parametrize(("text", "plain", "kept"), [
    ("a\\.sp 2\\b", "a\n\nb", "a\\.sp 2\\b"),
    ("a\\.sp\\b", "a\nb", "a\\.sp\\b"),
    ("a\\.sk 3\\b", "a   b", "a\\.sk 3\\b"),
    ("x\\.ce\\Title", "x\nTitle", "x\\.ce\\Title"),
    ("\\H\\bold\\N\\ text", "bold text", "\\H\\bold\\N\\ text"),
    ("\\.in +4\\\\.fi\\\\.nf\\x", "x", "\\.in +4\\\\.fi\\\\.nf\\x"),
    ("a\\.br\\b\\F\\c", "a\nb|c", "a\nb|c"),
    ("a\\.sp 999\\b", "a" + "\n" * 9 + "b", "a\\.sp 999\\b"),
])
def test_plain_reads_ft_formatting_commands_as_text(text: str, plain: str, kept: str) -> None:
    """HL7 v2.5.1 section 2.7.6: with ``plain`` the FT formatting commands become plain text (highlighting,
    indents and fill modes are dropped); without it they are kept verbatim, as before."""
    assert unescape(text, plain=True) == plain
    assert unescape(text) == kept
