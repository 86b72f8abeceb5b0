"""Every message of ../shared/corpus/hl7v2 through a pass-through channel and ``hl7 show``: no
unhandled exception; malformed ones get AR with a reason. Runs when ../shared exists."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from click.testing import CliRunner

from ehrgate.cli import cli
from ehrgate.engine import MessageStore, SearchQuery
from ehrgate.hl7 import parse, read_batch
from tests.conftest import corpus_dir

from .conftest import run
from .helpers import running, until

pytestmark = pytest.mark.corpus


def _files() -> list[Path]:
    root = corpus_dir("hl7v2")
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() not in (".md", ".json", ".fhir",
                                                                                           ".tsv", ".csv"))


def test_every_corpus_message_passes_through_a_channel(messages: MessageStore, engine_name: str,
                                                       tmp_path: Path) -> None:
    if engine_name != "sqlite":
        pytest.skip("the corpus pass-through runs once, on SQLite")
    files = _files()
    raws = [(f, text.encode("utf-8")) for f in files for text in read_batch(f.read_bytes()).messages]
    raws += [(f, f.read_bytes()) for f in files if not read_batch(f.read_bytes()).messages]  # garbage files as they are
    assert len(raws) > 500

    async def body() -> dict[str, int]:
        chan = {"source": "http", "duplicates": "accept",
                "destinations": {"out": {"type": "file", "directory": str(tmp_path / "out")}}}
        codes: dict[str, int] = {}
        async with running(messages, {"corpus": chan}) as eng:
            for start in range(0, len(raws), 64):
                chunk = raws[start:start + 64]
                answers = await asyncio.gather(*(eng.handle("corpus", raw, f"file {f.name}") for f, raw in chunk))
                for (f, _raw), (ack, code) in zip(chunk, answers, strict=True):
                    codes[code] = codes.get(code, 0) + 1
                    msg = parse(ack)
                    assert msg.get("MSA-1") == code
                    if code == "AR":
                        assert msg.get("ERR-8") or msg.get("MSA-3"), f"{f}: AR without a reason"
                    else:
                        assert code in ("AA", "CA"), f"{f}: {code}"
            await until(lambda: not messages.search(SearchQuery(channel="corpus", status="RECEIVED", limit=1))
                        and not messages.search(SearchQuery(channel="corpus", status="QUEUED", limit=1)),
                        timeout=120, what="every corpus message processed")
        return codes

    codes = run(body(), timeout=300)
    rows = messages.search(SearchQuery(channel="corpus", limit=100000))
    assert len(rows) == len(raws)
    unexpected = [r for r in rows if r["status"] == "ERROR" and "cannot be parsed" not in (r["error"] or "")
                  and "not a segment" not in (r["error"] or "") and "expected" not in (r["error"] or "").lower()]
    assert not unexpected, unexpected[:5]
    assert codes.get("AA", 0) > 500


def test_hl7_show_reads_the_whole_corpus() -> None:
    files = [str(p) for p in _files()]
    result = CliRunner().invoke(cli, ["hl7", "show", *files], catch_exceptions=False)
    assert result.exit_code in (0, 1)
    assert "Traceback" not in result.output
    assert result.output.count("== ") > 500
