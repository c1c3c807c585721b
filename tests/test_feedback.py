"""`POST /v1/feedback` through real `lockgate serve` processes, real HTTP and real SQLite.

What is promised (see `lockgate.feedback`): thumbs and 1-5 ratings are accepted with 202 and a
normalised score; every bad input is a 400 naming the field; a rating is linked to its request's
trace (route, release) whichever reaches the store first; a key rates only its own requests; the
per-release summary counts one rating per request and rater; Prometheus counts linked ratings per
release, with several workers too; and an acknowledged rating survives a locked database and a SIGKILL.
"""

from __future__ import annotations

import re
import time
from contextlib import closing
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from lockgate.feedback.rating import parse_rating, rating_from_raw
from lockgate.feedback.summary import parse_since
from lockgate.observe.journal import TraceJournal
from lockgate.store import FeedbackRecord
from tests.harness import Gateway, create_key, run_cli, store_at, store_outage, write_config
from tests.openapi_schemas import validate
from tests.test_durability import spool_files, wait_until

CHAT = "/v1/chat/completions"
FEEDBACK = "/v1/feedback"


def auth(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def chat(client: httpx.Client, text: str = "ping", **extra: object) -> str:
    """One chat completion on `echo`; returns its request id."""
    headers = {}
    if "request_id" in extra:
        headers["x-request-id"] = str(extra.pop("request_id"))
    r = client.post(CHAT, json={"model": "echo", "messages": [{"role": "user", "content": text}], **extra},
                    headers=headers)
    assert r.status_code == 200, r.text
    return r.headers["x-request-id"]


def rate(client: httpx.Client, request_id: str, rating: object, **extra: object) -> dict:
    r = client.post(FEEDBACK, json={"request_id": request_id, "rating": rating, **extra})
    assert r.status_code == 202, r.text
    return r.json()


def feedback_rows(data_dir: Path, request_id: str | None = None) -> list[FeedbackRecord]:
    store = store_at(data_dir / "lockgate.sqlite3")
    try:
        return store.list_feedback(request_id=request_id, limit=1000)
    finally:
        store.close()


def linked(data_dir: Path, ids: set[str]) -> bool:
    rows = [r for r in feedback_rows(data_dir) if r.feedback_id in ids]
    return len(rows) == len(ids) and all(r.status != "pending" for r in rows)


def feedback_metrics(gw: Gateway) -> dict[tuple[str, ...], float]:
    """The gateway's feedback samples: (sample name, *label values sorted by label name) -> value."""
    text = httpx.get(gw.base_url + "/metrics", timeout=10).text
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith("lockgate_feedback"):
                out[(sample.name, *(v for _, v in sorted(sample.labels.items())))] = sample.value
    return out


# -- ratings, pure --------------------------------------------------------------------------------


def test_ratings_are_normalised_to_a_score_between_zero_and_one():
    assert (parse_rating("up").score, parse_rating("down").score) == (1.0, 0.0)
    stars = [parse_rating(n) for n in range(1, 6)]
    assert [r.score for r in stars] == [(n - 1) / 4 for n in range(1, 6)]
    assert [r.raw for r in stars] == ["1", "2", "3", "4", "5"]
    assert [r.negative for r in stars] == [True, True, False, False, False]
    assert parse_rating("down").negative and not parse_rating("up").negative


def test_since_windows_parse_and_bad_ones_say_how_to_write_them():
    assert parse_since("30m", now=10_000.0) == 10_000.0 - 1800
    assert parse_since("7d", now=1e6) == 1e6 - 7 * 86400
    with pytest.raises(ValueError, match="30m, 6h, 7d"):
        parse_since("yesterday", now=0.0)


# -- accepted and linked --------------------------------------------------------------------------


def test_thumbs_and_stars_are_accepted_and_linked_to_the_trace(echo_gateway):
    gw, key = echo_gateway
    ratings = ["up", "down", 1, 2, 3, 4, 5]
    with httpx.Client(base_url=gw.base_url, headers=auth(key), timeout=10) as client:
        request_ids = [chat(client, f"question {i}", user="alice") for i in range(len(ratings))]
        answers = [rate(client, rid, rating) for rid, rating in zip(request_ids, ratings, strict=True)]
        commented = rate(client, request_ids[0], "up", user="alice",
                         comment="Great answer, write to me at alice.smith@example.com")

    for rid, rating, answer in zip(request_ids, ratings, answers, strict=True):
        assert re.fullmatch(r"fb_[0-9a-f]{24}", answer["id"]), answer
        assert answer["object"] == "lockgate.feedback"
        assert answer["request_id"] == rid and answer["rating"] == rating
        assert answer["score"] == parse_rating(rating).score
    ids = {a["id"] for a in answers} | {commented["id"]}
    assert len(ids) == len(ratings) + 1

    assert wait_until(lambda: linked(gw.data_dir, ids), timeout_s=10), feedback_rows(gw.data_dir)
    rows = {r.feedback_id: r for r in feedback_rows(gw.data_dir)}
    for rid, rating, answer in zip(request_ids, ratings, answers, strict=True):
        row = rows[answer["id"]]
        assert (row.request_id, row.rating, row.score) == (rid, str(rating), parse_rating(rating).score)
        assert (row.status, row.route, row.release) == ("linked", "echo", "echo@1")
        assert row.linked_at is not None and row.linked_at >= row.ts

    with_comment = rows[commented["id"]]
    assert with_comment.comment == "Great answer, write to me at <EMAIL_REDACTED>"
    # The end user is pseudonymised exactly as in the trace, so the two join.
    trace = gw.trace(request_ids[0])
    assert with_comment.user == trace["user"] and with_comment.user.startswith("u_")
    assert with_comment.rater == with_comment.user and "alice" not in with_comment.user


def test_a_rating_that_arrives_before_its_trace_is_linked_when_the_trace_does(echo_gateway):
    gw, key = echo_gateway
    future_id, never_id = "req_rated_before_served_0001", "req_never_served_0001"
    with httpx.Client(base_url=gw.base_url, headers=auth(key), timeout=10) as client:
        early = rate(client, future_id, 4)
        orphan = rate(client, never_id, "down")
        # Loaded, but its trace is not in the store yet: pending.
        assert wait_until(lambda: len(feedback_rows(gw.data_dir)) == 2, timeout_s=10)
        assert {r.status for r in feedback_rows(gw.data_dir)} == {"pending"}
        chat(client, "served after it was rated", request_id=future_id)

    assert wait_until(lambda: linked(gw.data_dir, {early["id"]}), timeout_s=10), feedback_rows(gw.data_dir)
    (row,) = feedback_rows(gw.data_dir, future_id)
    assert (row.status, row.route, row.release, row.rating) == ("linked", "echo", "echo@1", "4")
    # A request id that never reaches the store stays pending, listed, and counted nowhere.
    (pending,) = feedback_rows(gw.data_dir, never_id)
    assert pending.feedback_id == orphan["id"] and pending.status == "pending" and pending.release is None
    out = run_cli("feedback", "summary", "--route", "echo", data_dir=gw.data_dir).stdout
    assert "1 rating(s) not linked to a trace yet" in out
    assert ("lockgate_feedback_total", "down", "echo@1", "echo") not in feedback_metrics(gw)


def test_a_key_rates_only_its_own_requests(tmp_path, upstream, start_gateway):
    config = write_config(tmp_path / "lockgate.yaml", upstream.base_url)
    data_dir = tmp_path / "data"
    owner, other = create_key(data_dir, "owner"), create_key(data_dir, "other")
    limited = create_key(data_dir, "limited", "--rpm", "2")
    gw = start_gateway(config, data_dir=data_dir)
    with httpx.Client(base_url=gw.base_url, timeout=10) as client:
        client.headers.update(auth(owner))
        rid = chat(client)
        own = rate(client, rid, "up")
        client.headers.update(auth(other))
        foreign = rate(client, rid, "down")  # accepted: the gateway cannot know yet whose request it was

        # Ratings have a bucket of their own per key, at the key's request rate.
        client.headers.update(auth(limited))
        statuses = [client.post(FEEDBACK, json={"request_id": f"req_flood_{i}", "rating": "up"}) for i in range(3)]
        assert [r.status_code for r in statuses] == [202, 202, 429]
        assert "2 feedback requests per minute" in statuses[2].json()["error"]["message"]
        assert int(statuses[2].headers["retry-after"]) >= 1
        chat(client, "ratings did not use up the chat quota")

    assert wait_until(lambda: linked(data_dir, {own["id"], foreign["id"]}), timeout_s=10)
    rows = {r.feedback_id: r for r in feedback_rows(data_dir) if not r.request_id.startswith("req_flood_")}
    assert rows[own["id"]].status == "linked"
    assert rows[foreign["id"]].status == "key_mismatch" and rows[foreign["id"]].release == "echo@1"
    store = store_at(data_dir / "lockgate.sqlite3")
    (summary,) = store.feedback_summary("echo")
    store.close()
    assert (summary.count, summary.negative, summary.mean_score) == (1, 0, 1.0)
    samples = feedback_metrics(gw)
    assert samples[("lockgate_feedback_total", "up", "echo@1", "echo")] == 1
    assert ("lockgate_feedback_total", "down", "echo@1", "echo") not in samples
    assert samples[("lockgate_feedback_key_mismatch_total", "echo@1", "echo")] == 1


# -- bad input ------------------------------------------------------------------------------------

BAD_BODIES: list[tuple[str, bytes | dict, str | None, str]] = [
    # (what, body, param, a phrase the message must contain)
    ("not JSON", b'{"request_id": "req_1", "rating": ', None, "not valid JSON"),
    ("not an object", b'["req_1", "up"]', None, "must be a JSON object"),
    ("missing request_id", {"rating": "up"}, "request_id", "x-request-id header"),
    ("request_id a number", {"request_id": 12, "rating": "up"}, "request_id", "must be a string"),
    ("request_id too long", {"request_id": "r" * 129, "rating": "up"}, "request_id", "1 to 128"),
    ("request_id with a newline", {"request_id": "req\n1", "rating": "up"}, "request_id", "printable ASCII"),
    ("missing rating", {"request_id": "req_1"}, "rating", "Missing required parameter: 'rating'"),
    ("null rating", {"request_id": "req_1", "rating": None}, "rating", '"up", "down", or an integer from 1 to 5'),
    ("unknown word", {"request_id": "req_1", "rating": "meh"}, "rating", "got the string 'meh'"),
    ("capitalised thumb", {"request_id": "req_1", "rating": "Up"}, "rating", "(lower case)"),
    ("stars as a string", {"request_id": "req_1", "rating": "4"}, "rating", "send 4 as a number"),
    ("zero stars", {"request_id": "req_1", "rating": 0}, "rating", "got 0, outside 1 to 5"),
    ("six stars", {"request_id": "req_1", "rating": 6}, "rating", "got 6, outside 1 to 5"),
    ("half a star", {"request_id": "req_1", "rating": 3.5}, "rating", "got 3.5"),
    ("a boolean", {"request_id": "req_1", "rating": True}, "rating", "got true"),
    ("an object", {"request_id": "req_1", "rating": {"stars": 4}}, "rating", "got a JSON object"),
    ("comment a number", {"request_id": "req_1", "rating": "up", "comment": 5}, "comment", "string or null"),
    ("comment too long", {"request_id": "req_1", "rating": "up", "comment": "x" * 2001}, "comment",
     "2001 characters long; the limit is 2000"),
    ("user a list", {"request_id": "req_1", "rating": "up", "user": ["a"]}, "user", "string or null"),
    ("user too long", {"request_id": "req_1", "rating": "up", "user": "u" * 257}, "user", "the limit is 256"),
    ("misspelt field", {"request_id": "req_1", "rating": "up", "commment": "hi"}, "commment",
     "accepts only: request_id, rating, comment, user"),
]


def test_each_bad_input_gets_a_400_naming_the_field_and_nothing_is_stored(echo_gateway):
    gw, key = echo_gateway
    problems = []
    with httpx.Client(base_url=gw.base_url, headers=auth(key), timeout=10) as client:
        for what, body, param, phrase in BAD_BODIES:
            r = client.post(FEEDBACK, content=body) if isinstance(body, bytes) else client.post(FEEDBACK, json=body)
            error = r.json().get("error", {}) if r.headers.get("content-type") == "application/json" else {}
            if r.status_code != 400 or error.get("param") != param or phrase not in error.get("message", ""):
                problems.append(f"{what}: {r.status_code} {r.text[:300]}")
                continue
            validate("ErrorResponse", r.json())
            assert error["type"] == "invalid_request_error" and error["code"], (what, error)
        # Refused before the body is read: authentication, and a body larger than any valid one.
        assert client.post(FEEDBACK, json={"request_id": "req_1", "rating": "up"},
                           headers={"authorization": "Bearer nope"}).status_code == 401
        assert client.post(FEEDBACK, json={"request_id": "req_1", "rating": "up"},
                           headers={"authorization": ""}).status_code == 401
        too_big = client.post(FEEDBACK, json={"request_id": "req_1", "rating": "up", "comment": "x" * 20_000})
        assert too_big.status_code == 413 and too_big.json()["error"]["code"] == "request_too_large"
        assert "comments are limited to 2000 characters" in too_big.json()["error"]["message"]
        assert client.get(FEEDBACK).status_code == 405
        rate(client, "req_the_only_good_one", "up")
    assert not problems, "\n".join(problems)
    # The journal is loaded in order: once the last rating sent is in the store, any earlier one would be.
    assert wait_until(lambda: bool(feedback_rows(gw.data_dir)), timeout_s=10)
    assert [r.request_id for r in feedback_rows(gw.data_dir)] == ["req_the_only_good_one"]


# -- per release ----------------------------------------------------------------------------------


def two_release_config(path: Path, upstream_url: str, serve: str) -> Path:
    """`echo` with two releases; `serve` picks the one that serves."""
    path.write_text(f"""
version: 1
backends:
  up: {{kind: openai, base_url: {upstream_url}}}
routes:
  echo:
    serve: {serve}
    releases:
      v1: {{backend: up, model: ok, system_prompt: You are version one.}}
      v2: {{backend: up, model: ok, system_prompt: You are version two.}}
""")
    return path


def test_summary_and_prometheus_per_release_with_several_workers(tmp_path, upstream, start_gateway):
    data_dir = tmp_path / "data"
    key = create_key(data_dir)
    plans = {  # release -> ratings given, one request each
        "echo@1": ["up", "up", "down", 5, 1, 4],
        "echo@2": ["down", "down", 2, 3, "up"],
    }
    gateways: dict[str, Gateway] = {}
    fids: set[str] = set()
    for label, (release, ratings) in zip(("v1", "v2"), plans.items(), strict=True):
        config = two_release_config(tmp_path / f"{label}.yaml", upstream.base_url, serve=label)
        gw = gateways[release] = start_gateway(config, data_dir=data_dir, workers=2)
        with httpx.Client(base_url=gw.base_url, headers=auth(key), timeout=10) as client:
            for i, rating in enumerate(ratings):
                rid = chat(client, f"{release} question {i}", user=f"user-{i}")
                fids.add(rate(client, rid, rating, user=f"user-{i}")["id"])
            if release == "echo@1":
                # The same user changes their mind on one request: only the latest rating counts.
                fids.add(rate(client, rid, "down", user=f"user-{len(ratings) - 1}")["id"])
        assert wait_until(lambda: linked(data_dir, fids), timeout_s=15), feedback_rows(data_dir)
        # Counted by the supervisor that linked them, summed with the workers' metrics at scrape.
        samples = feedback_metrics(gw)
        given = ratings + (["down"] if release == "echo@1" else [])
        for rating in {str(r) for r in given}:
            assert samples[("lockgate_feedback_total", rating, release, "echo")] == [str(r) for r in given].count(
                rating), (rating, samples)
        assert samples[("lockgate_feedback_score_count", release, "echo")] == len(given)
        assert samples[("lockgate_feedback_score_sum", release, "echo")] == pytest.approx(
            sum(parse_rating(r).score for r in given))
        gw.stop()

    rows = feedback_rows(data_dir)
    assert {r.release for r in rows} == {"echo@1", "echo@2"} and {r.status for r in rows} == {"linked"}
    store = store_at(data_dir / "lockgate.sqlite3")
    summary = {s.release: s for s in store.feedback_summary("echo")}
    assert set(summary) == set(plans)
    for release, ratings in plans.items():
        counted = ratings[:-1] + ["down"] if release == "echo@1" else ratings  # the changed mind
        scores = [parse_rating(r).score for r in counted]
        row = summary[release]
        assert row.count == len(counted)
        assert row.mean_score == pytest.approx(sum(scores) / len(scores))
        assert row.negative == sum(s < 0.5 for s in scores)
        assert row.negative_rate == pytest.approx(row.negative / row.count)
    # `since` counts ratings from then on: none are in the future, all are after the test began.
    assert store.feedback_summary("echo", since=time.time() + 60) == []
    assert len(store.feedback_summary("echo", since=time.time() - 600)) == 2
    assert store.feedback_summary("no-such-route") == []
    store.close()

    out = run_cli("feedback", "summary", "--route", "echo", "--since", "1h", data_dir=data_dir).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("echo@2"))
    assert line.split()[1:3] == [str(summary["echo@2"].count), f"{summary['echo@2'].mean_score:.3f}"]
    bad = run_cli("feedback", "summary", "--route", "echo", "--since", "soon", data_dir=data_dir, check=False)
    assert bad.returncode == 2 and "not a duration" in bad.stderr


def test_summary_counts_the_latest_rating_of_each_rater_within_the_window(tmp_path):
    """The store query alone, against real SQLite: dedup by (request, rater), window on the rating's time."""
    store = store_at(tmp_path / "lockgate.sqlite3")
    store.migrate()
    journal = TraceJournal(tmp_path / "spool", store)
    for i in range(3):
        journal.append({"trace_id": f"t{i}", "ts": 1000.0 + i, "route": "r", "release": "r@1", "key_id": "k",
                        "status": 200, "outcome": "ok", "latency_ms": 1.0})

    def fb(fid: str, trace: str, rating: str, ts: float, rater: str) -> None:
        journal.append({"kind": "feedback", "feedback_id": fid, "request_id": trace, "ts": ts, "rating": rating,
                        "score": rating_from_raw(rating).score,
                        "comment": None, "user": None, "key_id": "k", "rater": rater})

    fb("a", "t0", "up", 2000.0, "u1")
    fb("b", "t0", "down", 2001.0, "u1")  # u1 changed their mind: only this one counts
    fb("c", "t0", "up", 2002.0, "u2")  # another rater of the same request counts on its own
    fb("d", "t1", "2", 1500.0, "u1")  # before the window below
    fb("e", "t2", "5", 2003.0, "u3")
    journal.flush()
    journal.append({"kind": "feedback", "feedback_id": "a", "request_id": "t0", "ts": 2000.0, "rating": "up",
                    "score": 1.0, "comment": None, "user": None, "key_id": "k", "rater": "u1"})
    journal.flush()  # a replayed line changes nothing
    assert len(store.list_feedback()) == 5

    (everything,) = store.feedback_summary("r")
    assert (everything.count, everything.negative) == (4, 2)  # b, c, d, e
    assert everything.mean_score == pytest.approx((0 + 1 + 0.25 + 1) / 4)
    (windowed,) = store.feedback_summary("r", since=1800.0)
    assert (windowed.count, windowed.negative) == (3, 1)  # b, c, e
    assert store.link_feedback() == []  # each rating is linked once
    store.close()


# -- durability -----------------------------------------------------------------------------------


def test_feedback_is_accepted_while_the_database_is_locked_and_linked_after(tmp_path, upstream, start_gateway):
    config = write_config(tmp_path / "lockgate.yaml", upstream.base_url)
    data_dir = tmp_path / "data"
    key = create_key(data_dir)
    gw = start_gateway(config, data_dir=data_dir)

    with closing(store_at(data_dir / "lockgate.sqlite3")) as store, store_outage(store):
        fids = set()
        with httpx.Client(base_url=gw.base_url, headers=auth(key), timeout=15) as client:
            for i in range(10):
                fids.add(rate(client, chat(client, f"during outage {i}"), i % 5 + 1)["id"])
        assert spool_files(data_dir), "acknowledged feedback must be spooled while the store is down"
        assert wait_until(lambda: "trace store unavailable" in gw.logs(), timeout_s=20), gw.logs()

    assert wait_until(lambda: linked(data_dir, fids), timeout_s=15), feedback_rows(data_dir)
    assert {r.status for r in feedback_rows(data_dir)} == {"linked"}
    assert sum(v for k, v in feedback_metrics(gw).items() if k[0] == "lockgate_feedback_total") == 10


def test_acknowledged_feedback_survives_a_sigkill(tmp_path, upstream, start_gateway):
    config = write_config(tmp_path / "lockgate.yaml", upstream.base_url)
    slow_loader = write_config(tmp_path / "slow-loader.yaml", upstream.base_url)
    with slow_loader.open("a") as f:
        f.write("tracing:\n  flush_interval_s: 60\n")  # nothing is loaded before the kill
    data_dir = tmp_path / "data"
    key = create_key(data_dir)
    gw = start_gateway(slow_loader, data_dir=data_dir, workers=2)
    with httpx.Client(base_url=gw.base_url, headers=auth(key), timeout=10) as client:
        fids = {rate(client, chat(client, f"before the kill {i}"), "up")["id"] for i in range(5)}
    gw.kill()
    assert feedback_rows(data_dir) == [] and spool_files(data_dir)

    start_gateway(config, data_dir=data_dir, workers=2)  # recovers the dead workers' segments
    assert wait_until(lambda: linked(data_dir, fids), timeout_s=15), (feedback_rows(data_dir), spool_files(data_dir))
    assert {r.status for r in feedback_rows(data_dir)} == {"linked"}
