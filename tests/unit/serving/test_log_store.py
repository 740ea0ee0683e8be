"""The object store of the inference log (serving/log_store.py): locations and the reader."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from loopline.core.errors import LooplineError
from loopline.serving import contract, log_store
from loopline.serving.inference_log import InferenceLog, read_predictions, read_request_errors
from loopline.serving.shipping import Shipper
from tests.helpers import BIN
from tests.helpers.commands import sh
from tests.helpers.log_records import T0, write_log
from tests.helpers.s3 import S3, local_only_env
from tests.unit.serving.conftest import set_aws_env

HOUR = 3600.0


def ship(log: Path, store: log_store.Store, replica: str) -> None:
    s = Shipper(log, store, artifact="credit", replica=replica, start=False)
    s.ship()
    s.close()


@pytest.fixture()
def store(tmp_path: Path) -> log_store.Store:
    return log_store.parse(f"file://{tmp_path}/store")


def test_parse_names_what_is_wrong() -> None:
    s = log_store.parse("s3://bucket/some/prefix/")
    assert (s.scheme, s.root) == ("s3", "bucket/some/prefix")
    assert log_store.parse("file:///srv/logs").root == "/srv/logs"
    for bad, words in [("gs://b/p", "unsupported scheme 'gs'"), ("s3:///p", "names no bucket"),
                       ("file://rel/dir", "absolute path"), ("logs/x", "not a URL")]:
        with pytest.raises(LooplineError, match=words):
            log_store.parse(bad)
    assert log_store.is_url("s3://b/p") and not log_store.is_url(Path("logs/inference.sqlite"))


def test_configured_store_env_config_off_and_dvc_remote(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(log_store.STORE_ENV, raising=False)
    assert log_store.configured(None, tmp_path) is None
    assert log_store.configured("s3://b/p", tmp_path).url == "s3://b/p"
    assert log_store.configured("off", tmp_path) is None
    monkeypatch.setenv(log_store.STORE_ENV, "file:///srv/log")
    assert log_store.configured("s3://b/p", tmp_path).url == "file:///srv/log"
    monkeypatch.delenv(log_store.STORE_ENV)
    sh("git", "init", "-q", cwd=tmp_path)
    dvc = str(BIN / "dvc")
    sh(dvc, "init", "-q", cwd=tmp_path)
    sh(dvc, "remote", "add", "-d", "storage", "s3://models-bucket/dvc", cwd=tmp_path)
    sh(dvc, "remote", "modify", "storage", "endpointurl", "http://127.0.0.1:9000", cwd=tmp_path)
    sh(dvc, "remote", "modify", "--local", "storage", "access_key_id", "AKID", cwd=tmp_path)
    derived = log_store.configured(None, tmp_path)
    assert derived.url == "s3://models-bucket/inference-log"
    assert derived.options["endpointurl"] == "http://127.0.0.1:9000"
    assert derived.options["access_key_id"] == "AKID"  # config.local, never in the spec
    assert "AKID" not in repr(derived)


def test_the_store_gives_the_frames_of_the_local_reader(tmp_path: Path, store) -> None:
    log = tmp_path / "log.sqlite"
    writer = InferenceLog(log, flush_interval=30.0)
    records = [{"Age": 30, "Home": "rent", "ratio/total": 0.5}, {"Age": None, "Home": "own",
                                                                 "ratio/total": 1.5}]
    writer.predictions("rec", T0, "v1", records, np.array(["bad", "good"], dtype=object),
                       np.array([[0.7, 0.3], [0.2, 0.8]]), ["bad", "good"], 2.0)
    cols = contract.ColumnRecords({"Age": [40, 50, 60], "Home": ["own", "rent", None],
                                   "ratio/total": [1.0, 2.0, 3.0]}, 3)
    writer.predictions("col", T0 + 5, "v2", cols, np.array(["good"] * 3, dtype=object),
                       np.tile([0.1, 0.9], (3, 1)), ["bad", "good"], 3.0)
    writer.feedback([("rec", 1, "bad"), ("col", 2, "good")], T0 + 60)
    writer.feedback([("rec", 1, "good")], T0 + 120)  # a corrected label: the latest wins
    writer.request_error(T0 + 1, "/predict", 400, "v1")
    writer.request_error(T0 + 2, "/feedback", 413, None)
    writer.close()
    window = {"since": T0 + 1, "until": T0 + 10}
    local, local_errors = read_predictions(log), read_request_errors(log)
    local_window = read_predictions(log, **window)
    local_errors_window = read_request_errors(log, **window)
    ship(log, store, "a-1")
    pd.testing.assert_frame_equal(log_store.read_predictions(store.url), local)
    pd.testing.assert_frame_equal(log_store.read_request_errors(store.url), local_errors)
    pd.testing.assert_frame_equal(log_store.read_predictions(store.url, **window), local_window)
    pd.testing.assert_frame_equal(log_store.read_request_errors(store.url, **window),
                                  local_errors_window)
    assert list(local_window["request_id"]) == ["col"] * 3


def _break(store_root: Path, table: str, hour: str, version: str = "v1") -> None:
    """A file no reader can parse in one partition: reading it fails."""
    folder = (store_root / table / "artifact=credit" / f"version={version}" / "date=2026-09-21"
              / f"hour={hour}")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "zz-broken.parquet").write_bytes(b"not parquet at all")


def test_reads_prune_partitions_on_time_and_version(tmp_path: Path, store) -> None:
    log = tmp_path / "log.sqlite"
    write_log(log, 12, step=HOUR / 2)  # 13:30 … 19:00, two per hour
    write_log(log, 2, prefix="w", t0=T0 + 7 * HOUR, version="v2")
    ship(log, store, "a-1")
    root = Path(store.root)
    _break(root, "records", "13")  # outside every window read below
    _break(root, "records", "20", version="v1")
    since, until = T0 + 2 * HOUR, T0 + 4 * HOUR  # 15:30 to 17:30
    df = log_store.read_predictions(store.url, since=since, until=until)
    assert list(df["request_id"]) == ["r4", "r5", "r6", "r7"]  # 15:30 16:00 16:30 17:00
    v2 = log_store.read_predictions(store.url, since=T0, version="v2")
    assert list(v2["request_id"]) == ["w0", "w1"]
    with pytest.raises(LooplineError, match=f"cannot read the inference log store {store.url}"):
        log_store.read_predictions(store.url)  # the whole store opens the broken files


def test_replicas_merge_and_feedback_joins_wherever_it_arrived(tmp_path: Path, store) -> None:
    a, b = tmp_path / "a.sqlite", tmp_path / "b.sqlite"
    write_log(a, 4, prefix="a")
    write_log(b, 3, prefix="b", t0=T0 + 60, feedback=[("a1", 0, "yes"), ("a3", 0, "no")])
    late = InferenceLog(a, flush_interval=30.0)  # a later correction, on replica A
    late.feedback([("a3", 0, "yes")], T0 + 10 * HOUR)
    late.close()
    ship(a, store, "host-a")
    ship(b, store, "host-b")
    df = log_store.read_predictions(store.url)
    assert len(df) == 7 and df["request_id"].is_unique
    labels = dict(zip(df["request_id"], df["label"], strict=True))
    assert labels["a1"] == "yes" and labels["a3"] == "yes"
    assert pd.isna(labels["a0"]) and pd.isna(labels["b0"])
    assert list(df["ts"]) == sorted(df["ts"])


def test_open_log_errors_are_one_line(tmp_path: Path, store) -> None:
    with pytest.raises(LooplineError, match="no inference log at"):
        log_store.open_log(tmp_path / "missing.sqlite")
    with pytest.raises(LooplineError, match="no replica has shipped records there yet"):
        log_store.open_log(store.url)
    down = log_store.parse("s3://bucket/x", {"endpointurl": "http://127.0.0.1:9",
                                              "access_key_id": "k", "secret_access_key": "s"})
    with pytest.raises(LooplineError, match="cannot read the inference log store s3://bucket/x"):
        log_store.open_log(down)  # nothing listens on port 9


def test_the_local_log_and_the_store_answer_the_same_version_filter(tmp_path: Path,
                                                                    store) -> None:
    log = tmp_path / "log.sqlite"
    write_log(log, 3)
    write_log(log, 2, prefix="w", version="v2")
    local = log_store.open_log(log).predictions(version="v2")
    ship(log, store, "a-1")
    pd.testing.assert_frame_equal(log_store.open_log(store.url).predictions(version="v2"), local)
    assert list(local["request_id"]) == ["w0", "w1"]


def test_monitoring_reads_the_configured_store_else_the_local_log(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from loopline.config.operations import ServeConfig
    from loopline.serving.spec import LOG_ENV

    for name in (log_store.STORE_ENV, LOG_ENV):
        monkeypatch.delenv(name, raising=False)
    serve = ServeConfig()
    assert log_store.default_source(tmp_path, serve) == str(tmp_path / serve.log.path)
    monkeypatch.setenv(LOG_ENV, "/var/lib/loopline/inference.sqlite")
    assert log_store.default_source(tmp_path, serve) == "/var/lib/loopline/inference.sqlite"
    configured = ServeConfig(log_store={"url": "s3://bucket/inference-log"})
    assert log_store.default_source(tmp_path, configured).url == "s3://bucket/inference-log"
    monkeypatch.setenv(log_store.STORE_ENV, "off")
    assert log_store.default_source(tmp_path, configured) == "/var/lib/loopline/inference.sqlite"


def test_a_label_from_a_replica_whose_clock_is_behind_still_joins(tmp_path: Path,
                                                                  store) -> None:
    a, b = tmp_path / "a.sqlite", tmp_path / "b.sqlite"
    hour = T0 + 30 * 60  # 14:00:00
    write_log(a, 1, prefix="a", t0=hour + 10)
    fb = InferenceLog(b, flush_interval=30.0)
    fb.feedback([("a0", 0, "yes")], hour - 10)  # B's clock says 13:59:50, the previous hour
    fb.close()
    ship(a, store, "host-a")
    ship(b, store, "host-b")
    df = log_store.read_predictions(store.url, since=hour, until=hour + 60)
    assert df["label"].tolist() == ["yes"]


def test_the_window_views_count_a_batch_shipped_twice_once(tmp_path: Path, store) -> None:
    a, b = tmp_path / "a.sqlite", tmp_path / "b.sqlite"
    write_log(a, 6, prefix="a", step=HOUR / 2, feedback=[("a1", 0, "no")], errors=2)
    write_log(b, 2, prefix="b", feedback=[("a1", 0, "yes"), ("b0", 0, "no")])
    local = log_store.open_log(a)
    with local.window(since=T0, until=T0 + 2 * HOUR, columns=["request_id", "ts"]) as win:
        local_ids = win.con.execute("SELECT request_id FROM requests ORDER BY 1").fetchall()
    ship(a, store, "host-a")  # the shipper empties its spool
    ship(b, store, "host-b")
    # a crash between an upload and the spool's delete: the same rows under another name
    first = sorted(Path(store.root).glob("records/**/host-a-*.parquet"))[0]
    (first.parent / "host-a-999999.parquet").write_bytes(first.read_bytes())
    # and under a new replica name: a re-created container shipping the spool it took over
    other = sorted(Path(store.root).glob("records/**/host-b-*.parquet"))[0]
    (other.parent / "host-c-000001.parquet").write_bytes(other.read_bytes())
    source = log_store.open_log(store.url)
    since, until = T0, T0 + 2 * HOUR  # a0 … a3 and both of b

    def views(src: log_store.LogSource) -> tuple:
        with src.window(since=since, until=until) as win:
            q = win.con.execute
            return (q("SELECT request_id FROM records ORDER BY 1").fetchall(),
                    q("SELECT request_id, idx, label FROM feedback ORDER BY 1, 2").fetchall(),
                    q("SELECT count(*) FROM errors").fetchone()[0])

    requests, feedback, errors = views(source)
    assert [r for (r,) in requests] == ["a0", "a1", "a2", "a3", "b0", "b1"]
    # the latest label wins wherever it arrived: A's (3 h in) over B's (20 min in)
    assert feedback == [("a1", 0, "no"), ("b0", 0, "no")] and errors == 2
    assert local_ids == [("a0",), ("a1",), ("a2",), ("a3",)]  # the SQLite log's window
    labelled = source.labelled(since=since, until=until)
    assert list(labelled["request_id"]) == ["b0", "a1"] and list(labelled["label"]) == ["no",
                                                                                        "no"]
    pd.testing.assert_frame_equal(
        labelled, source.predictions(since=since, until=until).dropna(subset=["label"])
        .reset_index(drop=True))


def ship_as_json(log: Path, store: log_store.Store, replica: str) -> None:
    """Ship ``log`` as stores were shipped before the typed records: ``requests`` as JSON."""
    from loopline.serving import shipping

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(shipping, "SHIPPED_AS", {t: t for t in shipping.SHIPPED_AS})
        mp.setattr(shipping, "shipped_table", log_store.arrow_table)
        ship(log, store, replica)


def test_a_request_shipped_as_json_and_again_as_records_counts_once(tmp_path: Path,
                                                                     store) -> None:
    import sqlite3

    old, upgraded, earlier = (tmp_path / f"{n}.sqlite" for n in ("old", "new", "earlier"))
    write_log(old, 4, prefix="a", feedback=[("a1", 0, "yes")])
    with sqlite3.connect(old) as a, sqlite3.connect(upgraded) as b:
        a.backup(b)  # the spool as the upgraded replica finds it: shipped, not yet deleted
    write_log(earlier, 2, prefix="c", feedback=[("c0", 0, "no")])
    ship_as_json(earlier, store, "host-a")
    ship_as_json(old, store, "host-a")
    ship(upgraded, store, "host-a")
    source = log_store.open_log(store.url)
    with source.window(since=T0, until=T0 + HOUR) as win:
        q = win.con.execute
        assert win.layouts == {"json": True, "typed": True}
        json_ids = [r for (r,) in q("SELECT request_id FROM requests ORDER BY 1").fetchall()]
        typed_ids = [r for (r,) in q("SELECT request_id FROM records ORDER BY 1").fetchall()]
    assert json_ids == ["c0", "c1"] and typed_ids == ["a0", "a1", "a2", "a3"]
    frame = source.predictions(since=T0, until=T0 + HOUR)
    assert sorted(frame["request_id"]) == sorted(json_ids + typed_ids)


def test_the_window_chooses_among_labels_of_one_record_as_the_frames_do(tmp_path: Path,
                                                                         store) -> None:
    a, b, c = tmp_path / "a.sqlite", tmp_path / "b.sqlite", tmp_path / "c.sqlite"
    write_log(a, 3, prefix="a", feedback=[("a0", 0, "yes"), ("a1", 0, "yes"), ("a2", 0, "no")])
    # at the same moment, another replica: the first label in sort order wins a tie
    write_log(b, 3, prefix="b", feedback=[("a0", 0, "no"), ("a1", 0, "yes")])
    write_log(c, 4, prefix="c", feedback=[("a2", 0, "yes")])  # later: the latest wins
    for log, name in ((a, "a"), (b, "b"), (c, "c")):
        ship(log, store, name)
    source = log_store.open_log(store.url)
    with source.window(since=T0, until=T0 + HOUR) as win:
        got = win.con.execute("SELECT request_id, label FROM feedback WHERE request_id LIKE "
                              "'a%' ORDER BY 1").fetchall()
    assert got == [("a0", "no"), ("a1", "yes"), ("a2", "yes")]
    frame = source.predictions(since=T0, until=T0 + HOUR).dropna(subset=["label"])
    assert dict(zip(frame["request_id"], frame["label"], strict=True)) == dict(got)


# ------------------------------------------------------------------------------ S3


def _two_replicas(tmp_path: Path, *stores: log_store.Store) -> tuple[float, float]:
    """Two replicas' logs (labels, errors, a batch shipped twice) in each of ``stores``;
    the window that holds them."""
    a, b = tmp_path / "a.sqlite", tmp_path / "b.sqlite"
    write_log(a, 6, prefix="a", step=HOUR / 2, feedback=[("a1", 0, "no")], errors=3)
    write_log(b, 4, prefix="b", t0=T0 + 60, feedback=[("a1", 0, "yes"), ("b0", 0, "no")],
              errors=1)
    for store in stores:
        for log, replica in ((a, "host-a"), (b, "host-b")):
            copy = tmp_path / f"{replica}-{store.scheme}.sqlite"
            copy.write_bytes(log.read_bytes())  # the shipper empties the log it ships
            ship(copy, store, replica)
    return T0, T0 + 2 * HOUR


def _views(source: log_store.LogSource, since: float, until: float) -> tuple:
    with source.window(since=since, until=until) as win:
        q = win.con.execute
        return (q("SELECT * FROM records ORDER BY request_id, idx").fetchall(),
                q("SELECT * FROM feedback ORDER BY request_id, idx").fetchall(),
                q("SELECT * FROM errors ORDER BY ts").fetchall(),
                win.request_errors().to_dict("records"))


def _fetch_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("loopline-fetch")]


def test_an_s3_window_holds_what_the_same_file_store_holds(tmp_path: Path, s3_env: S3,
                                                          store) -> None:
    bucket = log_store.parse(s3_env.url("unit-window"))
    since, until = _two_replicas(tmp_path, store, bucket)
    copy = s3_env.keys("unit-window/records/")[0]  # a batch shipped again after a crash
    s3_env.client.copy_object(Bucket=s3_env.bucket, Key=copy.replace(".parquet", "9.parquet"),
                              CopySource={"Bucket": s3_env.bucket, "Key": copy})
    first = sorted(Path(store.root).glob("records/**/*.parquet"))[0]
    (first.parent / first.name.replace(".parquet", "9.parquet")).write_bytes(first.read_bytes())
    local, remote = log_store.open_log(store.url), log_store.open_log(bucket)
    records, feedback, errors, _ = _views(remote, since, until)
    assert (records, feedback, errors) == _views(local, since, until)[:3]
    assert len(records) == 8 and len(errors) == 4  # a0 … a3 and b0 … b3, once each
    assert ("a1", 0, "no", T0 + 6 * HOUR / 2) in feedback  # A's label, the latest
    for source in (remote, local):
        with source.window(since=since, until=until) as win:
            pd.testing.assert_frame_equal(win.request_errors(),
                                          local.request_errors(since=since, until=until))
    assert not _fetch_threads()


def test_an_object_compacted_away_after_the_listing_is_listed_again(
        tmp_path: Path, s3_env: S3, monkeypatch: pytest.MonkeyPatch) -> None:
    bucket = log_store.parse(s3_env.url("unit-compact"))
    since, until = _two_replicas(tmp_path, bucket)
    expected = _views(log_store.open_log(bucket), since, until)
    get, moved = log_store._get, []

    def compacted(client: object, path: str, local: str, *, every: bool) -> None:
        key = path.partition("/")[2]
        if "/records/" in key and (every or not moved):  # renamed, as a compaction replaces it
            moved.append(key)
            s3_env.client.copy_object(Bucket=s3_env.bucket, Key=key.replace(".parquet", "c.parquet"),
                                      CopySource={"Bucket": s3_env.bucket, "Key": key})
            s3_env.client.delete_object(Bucket=s3_env.bucket, Key=key)
        get(client, path, local)

    monkeypatch.setattr(log_store, "_get", lambda *a: compacted(*a, every=False))
    assert _views(log_store.open_log(bucket), since, until) == expected
    assert len(moved) == 1
    monkeypatch.setattr(log_store, "_get", lambda *a: compacted(*a, every=True))
    with pytest.raises(LooplineError, match=f"^cannot read the inference log store {bucket.url}: "
                                            "files vanished while reading$"):
        _views(log_store.open_log(bucket), since, until)
    assert not _fetch_threads()


def test_a_store_unreachable_after_the_listing_is_one_line(tmp_path: Path, s3_env: S3,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    bucket = log_store.parse(s3_env.url("unit-down"))
    since, until = _two_replicas(tmp_path, bucket)
    with monkeypatch.context() as env:  # a client of a port where nothing listens
        env.delenv("AWS_ENDPOINT_URL_S3")
        dead = log_store.parse("s3://b/x", {"endpointurl": "http://127.0.0.1:9"}).client()
    monkeypatch.setattr(log_store.Store, "client", lambda self: dead)
    with pytest.raises(LooplineError) as err:
        _views(log_store.open_log(bucket), since, until)
    assert str(err.value).startswith(f"cannot read the inference log store {bucket.url}: ")
    assert "127.0.0.1:9" in str(err.value) and "\n" not in str(err.value)
    assert not _fetch_threads()


def test_the_dvc_remotes_endpoint_and_keys_reach_the_store(tmp_path: Path, s3: S3,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    set_aws_env(monkeypatch, s3.env())
    bucket = log_store.parse(s3.url("unit-remote"))
    since, until = _two_replicas(tmp_path, bucket)
    expected = _views(log_store.open_log(bucket), since, until)
    set_aws_env(monkeypatch, local_only_env(credentials=False))  # no endpoint, no keys
    monkeypatch.delenv("AWS_DEFAULT_REGION")  # nor region
    options = {"endpointurl": s3.endpoint, "access_key_id": "testing",
               "secret_access_key": "testing", "session_token": "tok", "region": "eu-west-3"}
    remote = log_store.parse(bucket.url, options)
    client = remote.client()
    creds = client._request_signer._credentials
    assert (client.meta.endpoint_url, client.meta.region_name) == (s3.endpoint, "eu-west-3")
    assert (creds.access_key, creds.secret_key, creds.token) == ("testing", "testing", "tok")
    assert _views(log_store.open_log(remote), since, until) == expected
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9")  # the environment first
    assert remote.client().meta.endpoint_url == "http://127.0.0.1:9"


def test_deferred_labels_and_errors_are_viewed_when_asked_for_and_are_the_same(
        tmp_path: Path, s3_env: S3, store) -> None:
    """``defer``: the labels' and errors' views exist only after ready() (their files come
    in meanwhile); then the window holds what an eager one holds. A local log has nothing
    to defer."""
    import duckdb

    bucket = log_store.parse(s3_env.url("unit-defer"))
    since, until = _two_replicas(tmp_path, store, bucket)
    sqlite = tmp_path / "local.sqlite"
    write_log(sqlite, 3, feedback=[("r0", 0, "no")], errors=1)
    for source in (log_store.open_log(bucket), log_store.open_log(store.url)):
        eager = _views(source, since, until)
        with source.window(since=since, until=until, defer=("feedback", "errors")) as win:
            q = win.con.execute
            assert len(q("SELECT * FROM records").fetchall()) == 8
            for view in ("feedback", "errors"):
                with pytest.raises(duckdb.CatalogException):
                    q(f"SELECT * FROM {view}")
            win.ready("feedback")
            assert q("SELECT * FROM feedback ORDER BY request_id, idx").fetchall() == eager[1]
            with pytest.raises(duckdb.CatalogException):
                q("SELECT * FROM errors")
            assert win.request_errors().to_dict("records") == eager[3]  # asks for its view
            assert q("SELECT * FROM errors ORDER BY ts").fetchall() == eager[2]
            win.ready()  # nothing left: no view is made twice
        assert not _fetch_threads()
    local = log_store.open_log(sqlite)
    with local.window(defer=("feedback", "errors")) as win:
        assert win.con.execute("SELECT count(*) FROM feedback").fetchone() == (1,)
    with pytest.raises(ValueError, match="cannot defer"):
        local.window(defer=("records",))


def test_the_first_tables_objects_are_fetched_before_the_others(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``first``: every object of the first tables is queued for fetching before any of the
    others', whichever listing ends first (the others' files come in behind the queries over
    the first ones); without it, the tables' objects are queued as their listings end."""
    import concurrent.futures
    import time
    import types

    order: list[str] = []  # the tables of the objects, in the order they were queued
    lock = threading.Lock()

    def get(client: object, path: str, local: str) -> None:
        pass

    class Queued(concurrent.futures.ThreadPoolExecutor):
        def submit(self, fn, /, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
            with lock:
                if fn is get:
                    order.append(args[1].split("/")[0])
                return super().submit(fn, *args, **kwargs)

    class Reader:
        store = types.SimpleNamespace(scheme="s3", client=lambda: object())

        def listing(self, name: str, expr: object) -> list[str]:
            if name == "records":
                time.sleep(0.3)  # the slowest listing: the others' would be queued first
            return [f"{name}/{i}.parquet" for i in range(40)]

        def retrying(self, read):  # noqa: ANN001, ANN202
            return read()

    monkeypatch.setattr(log_store, "_get", get)
    monkeypatch.setattr(concurrent.futures, "ThreadPoolExecutor", Queued)
    exprs = {"records": None, "feedback": None, "errors": None}
    for first, records_first in ((("records",), True), ((), False)):
        order.clear()
        fetches = log_store._Fetches(Reader(), tmp_path, exprs, first=first)
        try:
            for name in exprs:
                fetches.files(name)
        finally:
            fetches.close()
        assert len(order) == 120
        assert (order[:40] == ["records"] * 40) is records_first, order
