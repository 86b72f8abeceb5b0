"""The engine console over HTTP: who may see and do what, every button's effect on the running
engine, message search and detail, and escaping of untrusted message content."""

from __future__ import annotations

import re
from html import unescape
from pathlib import Path
from typing import Any

import httpx

from ehrgate.engine import MessageStore, SearchQuery
from ehrgate.engine.audit import AuditQuery
from ehrgate.engine.store import Incoming
from tests.engine.conftest import hl7, run
from tests.engine.helpers import Receiver, until

from .conftest import console, csrf_of, sign_in

EVIL = "<script>alert('x')</script>"


def web_channel(tmp_path: Path, receiver_port: int | None = None) -> dict[str, Any]:
    """HTTP in, HL7 v2 → FHIR, into the FHIR store and (optionally) to an MLLP receiver."""
    dests: dict[str, Any] = {"fhir-store": {"type": "fhir_store"}}
    if receiver_port is not None:
        dests["downstream"] = {"type": "mllp", "host": "127.0.0.1", "port": receiver_port, "timeout": 5}
    else:
        dests["files"] = {"type": "file", "directory": str(tmp_path / "out")}
    return {"source": "http", "transform": [{"step": "hl7_to_fhir"}], "destinations": dests}


def channels_of(tmp_path: Path, receiver_port: int | None = None) -> dict[str, Any]:
    return {"web": web_channel(tmp_path, receiver_port),
            "lab": {"source": {"type": "mllp", "host": "127.0.0.1", "port": 0},
                    "destinations": {"files": {"type": "file", "directory": str(tmp_path / "lab")}}}}


async def press(http: httpx.AsyncClient, page: str, action: str, csrf: str | None = None) -> httpx.Response:
    """Press a POST button found on ``page`` (with the page's CSRF value unless ``csrf`` is given)."""
    html = (await http.get(page)).text
    return await http.post(action, data={"csrf": csrf_of(html) if csrf is None else csrf})


def card(html: str, channel: str) -> str:
    """The channels page's section of ``channel``."""
    for part in html.split('<section class="channel"')[1:]:
        if re.search(rf'<h2 id="ch-\d+">{channel} <span', part):
            return part.split("</section>")[0]
    raise AssertionError(f"no card for channel {channel}")


def h1(html: str) -> str:
    m = re.search(r"<h1>(.*?)</h1>", html, re.S)
    assert m, html[:300]
    return unescape(re.sub(r"<[^>]+>", "", m.group(1))).strip()


def test_sign_in_first_then_back_to_the_console(store: Any, messages: MessageStore, people: Any,
                                                console_settings: Any, tmp_path: Path) -> None:
    async def body() -> None:
        async with console(store, messages, console_settings, channels_of(tmp_path)) as (http, _eng):
            r = await http.get("/console/messages?status=SENT")
            assert r.status_code == 303
            assert r.headers["location"] == "/auth/login?next=%2Fconsole%2Fmessages%3Fstatus%3DSENT"
            for button, back in (("/console/channels/web/pause", "%2Fconsole"),
                                 ("/console/messages/1/reprocess", "%2Fconsole%2Fmessages%2F1")):
                r = await http.post(button, data={"csrf": "x" * 32})
                assert r.status_code == 303 and r.headers["location"] == f"/auth/login?next={back}"
            r = await sign_in(http, "admin", next_="/console/messages?status=SENT")
            assert r.headers["location"] == "/console/messages?status=SENT"
            page = await http.get("/console")
            assert page.status_code == 200 and h1(page.text) == "Channels"
            assert page.headers["content-security-policy"].startswith("default-src 'none'")
            landing = await http.get("/", headers={"accept": "text/html"})
            assert 'href="/console"' in landing.text
    run(body())


def test_clinicians_and_patients_are_refused_with_a_page(store: Any, messages: MessageStore, people: Any,
                                                         console_settings: Any, tmp_path: Path) -> None:
    async def body() -> None:
        for username in ("doctor", "ada"):
            async with console(store, messages, console_settings, channels_of(tmp_path)) as (http, eng):
                await sign_in(http, username)
                for path in ("/console", "/console/messages", "/console/messages/1"):
                    r = await http.get(path)
                    assert r.status_code == 403, path
                    assert h1(r.text) == "The engine console is for integration staff"
                    assert "needs the role admin" in r.text and "Traceback" not in r.text
                    assert "Pause" not in r.text
                r = await http.post("/console/channels/web/pause", data={"csrf": csrf_of(r.text)})
                assert r.status_code == 403 and not eng.runtimes["web"].paused
    run(body())


def test_viewer_sees_everything_and_changes_nothing(store: Any, messages: MessageStore, people: Any,
                                                    console_settings: Any, tmp_path: Path) -> None:
    async def body() -> None:
        async with console(store, messages, console_settings, channels_of(tmp_path)) as (http, eng):
            assert (await http.post("/channels/web/messages", content=hl7("V1"))).status_code == 200
            await until(lambda: messages.search(SearchQuery(status="SENT")) != [], what="V1 sent")
            mid = messages.search(SearchQuery(control_id="V1"))[0]["id"]
            await sign_in(http, "vic")
            page = await http.get("/console")
            assert page.status_code == 200 and "(read only)" in page.text
            assert "<button" not in page.text.split("</header>")[1]  # no control buttons, only Sign out above
            detail = await http.get(f"/console/messages/{mid}")
            assert detail.status_code == 200 and "Reprocess</button>" not in detail.text
            r = await http.post("/console/channels/web/pause", data={"csrf": csrf_of(page.text)})
            assert r.status_code == 403 and h1(r.text) == "Your role can only look"
            assert not eng.runtimes["web"].paused
            r = await http.post(f"/console/messages/{mid}/reprocess", data={"csrf": csrf_of(page.text)})
            assert r.status_code == 403 and len(messages.get(mid)["attempts"]) == 2  # fhir-store + files, once
            # both refusals are in the audit trail, as the admin API records them
            rows = [(r["actor"], r["via"], r["role"], r["action"], r["target"], r["outcome"], r["detail"])
                    for r in messages.audit_log(AuditQuery())]
            assert rows == [("vic", "console", "viewer", "reprocess", "messages", "denied", {"status": 403, "ids": [mid]}),
                            ("vic", "console", "viewer", "pause", "web", "denied", {"status": 403})]
    run(body())


def test_channel_buttons_pause_resume_undeploy_deploy(store: Any, messages: MessageStore, people: Any,
                                                      console_settings: Any, tmp_path: Path) -> None:
    async def body() -> None:
        async with console(store, messages, console_settings, channels_of(tmp_path)) as (http, eng):
            await sign_in(http, "olive")  # an operator controls channels
            page = (await http.get("/console")).text
            assert 'aria-label="Pause web"' in page and 'aria-label="Undeploy lab"' in page
            lab_port = eng.runtimes["lab"].port
            assert f"mllp, port {lab_port}" in page

            r = await press(http, "/console", "/console/channels/web/pause")
            assert r.status_code == 303 and r.headers["location"] == "/console"
            assert eng.runtimes["web"].paused and messages.channel_states()["web"]["paused"]
            page = (await http.get("/console")).text
            assert "Channel &#39;web&#39; is paused" in page and 'role="status"' in page
            assert '<span class="state paused">paused</span>' in page and 'aria-label="Resume web"' in page
            assert "is paused" not in (await http.get("/console")).text  # a flash message shows once

            # paused: received and stored, not processed; the page counts it as queued
            assert (await http.post("/channels/web/messages", content=hl7("Q1"))).status_code == 200
            await until(lambda: messages.search(SearchQuery(control_id="Q1")) != [], what="Q1 stored")
            eng.stats._cache = (0.0, {})  # the queue figures are cached for a second
            page = card((await http.get("/console")).text, "web")
            figures = re.search(r"<dt>Queued</dt><dd>(\d+)</dd></div>\s*<div><dt>Oldest queued</dt><dd>([^<]+)<", page)
            assert figures and figures.group(1) == "1" and figures.group(2).endswith(" s")

            await press(http, "/console", "/console/channels/web/resume")
            assert not eng.runtimes["web"].paused
            await until(lambda: messages.search(SearchQuery(control_id="Q1", status="SENT")) != [], what="Q1 sent")

            await press(http, "/console", "/console/channels/lab/undeploy")
            assert "lab" not in eng.runtimes
            page = (await http.get("/console")).text
            assert '<span class="state stopped">stopped</span>' in page and 'aria-label="Deploy lab"' in page
            await press(http, "/console", "/console/channels/lab/deploy")
            assert "lab" in eng.runtimes
            assert "deployed again from ehrgate.yaml" in (await http.get("/console")).text

            r = await press(http, "/console", "/console/channels/ghost/pause")
            assert r.status_code == 303
            page = (await http.get("/console")).text
            assert "Channel &#39;ghost&#39; was not changed" in page and 'role="alert"' in page
            r = await press(http, "/console", "/console/channels/web/explode")
            assert "Unknown action" in (await http.get("/console")).text

            # every press is in the audit trail: who, from where, what, and the state reached
            rows = list(reversed(messages.audit_log(AuditQuery())))
            assert [(r["action"], r["target"], r["outcome"]) for r in rows] == [
                ("pause", "web", "success"), ("resume", "web", "success"), ("undeploy", "lab", "success"),
                ("deploy", "lab", "success"), ("pause", "ghost", "failure")]
            assert {(r["actor"], r["via"], r["role"], r["peer"]) for r in rows} == {
                ("olive", "console", "operator", "127.0.0.1")}
            assert rows[0]["detail"]["state"]["paused"] is True and rows[1]["detail"]["state"]["paused"] is False
            assert rows[4]["detail"] == {"reason": "unknown channel"}
    run(body())


def test_odd_input_is_answered_not_a_server_error(store: Any, messages: MessageStore, people: Any,
                                                  console_settings: Any, tmp_path: Path) -> None:
    """Digits that are not ASCII (str.isdigit accepts them, int() does not) and a non-ASCII CSRF value
    were 500s, one before sign-in."""
    async def body() -> None:
        async with console(store, messages, console_settings, channels_of(tmp_path)) as (http, eng):
            anonymous = await http.post("/console/messages/%C2%B2/reprocess", data={"csrf": "x"})
            assert anonymous.status_code == 303 and anonymous.headers["location"].startswith("/auth/login")
            await sign_in(http, "admin")
            assert (await http.get("/console", params={"refresh": "\u00b2"})).status_code == 200
            assert (await http.get("/console/messages", params={"before_id": "\u00b2"})).status_code == 400
            assert (await http.get("/console/messages/%C2%B2")).status_code == 404
            r = await http.post("/console/messages/%C2%B2/reprocess", data={"csrf": csrf_of((await http.get(
                "/console")).text)})
            assert r.status_code == 303
            r = await press(http, "/console", "/console/channels/web/pause", csrf="\u00e9t\u00e9-forged-value")
            assert r.status_code == 403 and h1(r.text) == "The console page has expired"
    run(body())


def test_buttons_need_the_pages_csrf_value(store: Any, messages: MessageStore, people: Any,
                                           console_settings: Any, tmp_path: Path) -> None:
    async def body() -> None:
        async with console(store, messages, console_settings, channels_of(tmp_path)) as (http, eng):
            await sign_in(http, "admin")
            for csrf in ("", "forged-value-of-the-right-length"):
                r = await press(http, "/console", "/console/channels/web/pause", csrf=csrf)
                assert r.status_code == 403 and h1(r.text) == "The console page has expired"
            assert not eng.runtimes["web"].paused
            r = await press(http, "/console", "/console/messages/1/reprocess", csrf="")
            assert r.status_code == 403
    run(body())


def test_search_show_and_reprocess_a_message(store: Any, messages: MessageStore, people: Any,
                                             console_settings: Any, tmp_path: Path) -> None:
    async def body() -> None:
        receiver = Receiver()
        port = await receiver.start()
        try:
            async with console(store, messages, console_settings, channels_of(tmp_path, port)) as (http, eng):
                raw = hl7("S1", patient="MRN77", name="Quill^Ada")
                assert (await http.post("/channels/web/messages", content=raw)).status_code == 200
                assert (await http.post("/channels/web/messages", content=hl7("S2", kind="ADT^A08"))).status_code == 200
                await until(lambda: len(messages.search(SearchQuery(status="SENT"))) == 2, what="both sent")
                mid = messages.search(SearchQuery(control_id="S1"))[0]["id"]
                await sign_in(http, "admin")

                for criteria in ({"text": "quill"}, {"control_id": "S1"}, {"patient": "MRN77"}, {"type": "ADT^A01"},
                                 {"type": "ADT_A01", "status": "sent", "channel": "web", "since": "1h"}):
                    page = await http.get("/console/messages", params=criteria)
                    assert page.status_code == 200, criteria
                    assert f'href="/console/messages/{mid}"' in page.text and "S2" not in page.text, criteria
                    for value in criteria.values():
                        assert f'value="{value}"' in page.text or f'value="{value}" selected' in page.text \
                            or value == "sent", criteria  # the form shows what was asked
                listing = (await http.get("/console/messages")).text
                assert "2 messages, newest first" in listing
                assert listing.index(">S2<") < listing.index(">S1<")
                assert "No messages match" in (await http.get("/console/messages", params={"text": "nobody"})).text

                bad = await http.get("/console/messages", params={"status": "LOST", "since": "yesterday"})
                assert bad.status_code == 400 and 'role="alert"' in bad.text
                assert "Status &#39;LOST&#39; is not a status" in bad.text and "Since: Time &#39;yesterday&#39;" in bad.text
                assert 'value="yesterday"' in bad.text and "Traceback" not in bad.text

                detail = (await http.get(f"/console/messages/{mid}")).text
                assert h1(detail) == f"Message {mid} SENT"
                assert "MSH|^~\\&amp;|LAB|FAC|EHRGATE|HUB|20240401120000||ADT^A01|S1|P|2.5.1||||||UNICODE UTF-8\nEVN|" in detail
                assert "PID|1||MRN77^^^FAC^MR||Quill^Ada||19800101|F\n" in detail
                assert "<dt>Patient identifiers</dt><dd>MRN77</dd>" in detail
                assert '  &#34;resourceType&#34;: &#34;Bundle&#34;,' in detail  # pretty-printed FHIR JSON
                assert "<h3 id=\"dest-1\">downstream" in detail and "<h3 id=\"dest-2\">fhir-store" in detail
                assert "MSA|AA|S1" in detail  # the downstream ACK, as the delivery's response
                assert detail.count("<td>SENT</td>") == 2

                r = await press(http, f"/console/messages/{mid}", f"/console/messages/{mid}/reprocess")
                assert r.status_code == 303 and r.headers["location"] == f"/console/messages/{mid}"
                page = (await http.get(f"/console/messages/{mid}")).text
                assert f"Message {mid} is queued to go through its channel again" in page
                await until(lambda: len(messages.get(mid)["attempts"]) == 4, what="second deliveries")
                await until(lambda: receiver.control_ids().count("S1") == 2, what="sent downstream again")
                detail = (await http.get(f"/console/messages/{mid}")).text
                assert detail.count("<td>SENT</td>") == 4
                # attempt numbers restart in the second run: each attempt says its run, and who began it
                runs = re.findall(r"<li>Run (\d): (\w+) [^<]*?(?: by (\w+))?</li>", detail)
                assert runs == [("1", "received", ""), ("2", "reprocessed", "admin")]
                tries = re.findall(r'<tr><td class="n">(\d)</td><td class="n">(\d)</td><td>[^<]*</td><td>SENT</td>', detail)
                assert sorted(tries) == [("1", "1"), ("1", "1"), ("2", "1"), ("2", "1")]
                audit = messages.audit_log(AuditQuery(action="reprocess"))
                assert [(a["actor"], a["via"], a["outcome"], a["detail"]["ids"]) for a in audit] == [
                    ("admin", "console", "success", [mid])]

                # not reprocessable while queued (the channel is paused): the flash says why
                await eng.pause("web")
                await press(http, f"/console/messages/{mid}", f"/console/messages/{mid}/reprocess")
                assert messages.get(mid)["status"] == "RECEIVED"
                await http.post(f"/console/messages/{mid}/reprocess", data={"csrf": csrf_of(detail)})
                page = (await http.get(f"/console/messages/{mid}")).text
                assert f"Message {mid} is RECEIVED (still being processed)" in page and 'role="alert"' in page
                assert "It can be reprocessed once it is SENT, FILTERED or ERROR." in page

                for missing in ("999999", "abc"):
                    r = await http.get(f"/console/messages/{missing}")
                    assert r.status_code == 404 and h1(r.text) == "No such message"
        finally:
            await receiver.stop()
    run(body())


def test_untrusted_content_is_escaped_everywhere(store: Any, messages: MessageStore, people: Any,
                                                 console_settings: Any, tmp_path: Path) -> None:
    async def body() -> None:
        async with console(store, messages, console_settings, channels_of(tmp_path)) as (http, _eng):
            raw = hl7(EVIL, patient=EVIL, name=f"{EVIL}^Eve", sender=EVIL, kind="ADT^A01",
                      extra=f"NTE|1||{EVIL}\r")
            assert (await http.post("/channels/web/messages", content=raw)).status_code == 200
            await until(lambda: messages.search(SearchQuery(control_id=EVIL)) != [], what="stored")
            await until(lambda: messages.search(SearchQuery(control_id=EVIL))[0]["status"] in ("SENT", "ERROR"),
                        what="processed")
            mid = messages.search(SearchQuery(control_id=EVIL))[0]["id"]
            await sign_in(http, "admin")
            pages = [await http.get(f"/console/messages/{mid}"),
                     await http.get("/console/messages", params={"control_id": EVIL}),
                     await http.get("/console/messages", params={"text": EVIL, "since": EVIL}),
                     await http.get("/console/messages/<img src=x onerror=alert(1)>")]
            assert pages[3].status_code == 404 and "&lt;img src=x onerror=alert(1)&gt;" in pages[3].text
            for page in pages:
                assert "<script" not in page.text.lower() and "<img" not in page.text.lower(), page.url
            assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in pages[0].text
            assert pages[1].text.count(f'href="/console/messages/{mid}"') == 1
    run(body())


def test_pages_of_older_messages(store: Any, messages: MessageStore, people: Any, console_settings: Any,
                                 tmp_path: Path) -> None:
    async def body() -> None:
        async with console(store, messages, console_settings, channels_of(tmp_path)) as (http, eng):
            await eng.pause("lab")
            messages.receive([Incoming("lab", hl7(f"N{i:02d}"), "test", "ADT^A01", f"N{i:02d}", "LAB")
                              for i in range(60)])
            await sign_in(http, "vic")
            first = (await http.get("/console/messages", params={"channel": "lab"})).text
            assert "50 messages (more below), newest first" in first
            assert ">N59<" in first and ">N10<" in first and ">N09<" not in first
            older = unescape(re.search(r'<a href="([^"]+)">Older messages</a>', first).group(1))
            assert older.startswith("/console/messages?channel=lab&before_id=")
            second = (await http.get(older)).text
            assert "10 messages, newest first" in second and ">N09<" in second and ">N00<" in second
            assert ">N10<" not in second and "Older messages" not in second
            assert '<a href="/console/messages?channel=lab">Newest messages</a>' in second
    run(body())


def test_console_without_an_engine_says_so(store: Any, messages: MessageStore, people: Any,
                                           console_settings: Any) -> None:
    async def body() -> None:
        async with console(store, messages, console_settings, None) as (http, _eng):
            await sign_in(http, "admin")
            for path in ("/console", "/console/messages", "/console/messages/1"):
                r = await http.get(path)
                assert r.status_code == 503 and h1(r.text) == "The HL7 engine is not running here", path
                assert "ehrgate serve" in r.text
    run(body())
