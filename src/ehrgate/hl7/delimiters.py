"""Message delimiters: MSH-1 (field separator) and MSH-2 (encoding characters).

HL7 v2.5 section 2.5.4 and v2.7 section 2.5.4: MSH-2 holds, in order, the component separator,
the repetition separator, the escape character, the subcomponent separator and, from v2.7, the
truncation character. Any of them may be left out at the end of MSH-2 (v2.1 messages and some
senders send ``^~\\``); a character that is not declared is treated as plain data rather than
guessed, so ``&`` in a message declaring ``^~\\`` is text.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ErrorLocation, ParseError

__all__ = ["DEFAULT", "Delimiters"]

_NAMES = ("component separator", "repetition separator", "escape character", "subcomponent separator",
          "truncation character")


@dataclass(frozen=True, slots=True)
class Delimiters:
    """The delimiters of one message. An empty string means "not declared in MSH-2"."""

    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"
    truncation: str = ""

    @property
    def encoding_characters(self) -> str:
        """The MSH-2 value these delimiters serialize to."""
        return self.component + self.repetition + self.escape + self.subcomponent + self.truncation

    @classmethod
    def from_header(cls, field: str, encoding_characters: str, *, segment: str = "MSH") -> Delimiters:
        """Validate MSH-1/MSH-2 (or FHS/BHS-1/2) and build the delimiters.

        Raises ParseError (code 102, data type error) naming the bad character: delimiters must be
        distinct, printable and not letters or digits, otherwise the message cannot be split reliably.
        """
        where = ErrorLocation(segment, 1, 2)
        if not _is_delimiter(field):
            raise ParseError(
                f"{segment}-1 field separator {field!r} is not usable (expected a printable, non-alphanumeric "
                "character such as '|')", code=102, location=ErrorLocation(segment, 1, 1))
        if not encoding_characters:
            raise ParseError(
                f"{segment}-2 encoding characters are empty (expected '^~\\&' or similar)", code=101,
                location=where)
        if len(encoding_characters) > 5:
            raise ParseError(
                f"{segment}-2 encoding characters {encoding_characters!r} are {len(encoding_characters)} "
                "characters long (expected 4, or 5 with the v2.7 truncation character)", code=102,
                location=where)
        seen = {field}
        for name, char in zip(_NAMES, encoding_characters, strict=False):
            if not _is_delimiter(char):
                raise ParseError(
                    f"{segment}-2 {name} {char!r} in {encoding_characters!r} is not usable (expected a printable, "
                    "non-alphanumeric character)", code=102, location=where)
            if char in seen:
                raise ParseError(
                    f"{segment}-2 {name} {char!r} in {encoding_characters!r} repeats another delimiter "
                    f"(expected {len(encoding_characters) + 1} distinct characters with MSH-1 {field!r})",
                    code=102, location=where)
            seen.add(char)
        chars = list(encoding_characters) + [""] * (5 - len(encoding_characters))
        return cls(field, chars[0], chars[1], chars[2], chars[3], chars[4])


def _is_delimiter(char: str) -> bool:
    return len(char) == 1 and char.isprintable() and not char.isalnum() and not char.isspace()


DEFAULT = Delimiters()
