"""The inference log across replicas: an object store of Parquet partitions, and one reader.

Every replica keeps its own SQLite log (:mod:`loopline.serving.inference_log`) as a local,
crash-safe spool; when a store is configured, its shipper (:mod:`loopline.serving.shipping`)
moves the rows there, one Parquet file per table and partition::

    <store>/<table>/artifact=<a>/version=<v>/date=<YYYY-MM-DD>/hour=<HH>/<replica>-<seq>.parquet

``table`` is ``records`` (the requests, typed, one row per record:
:mod:`loopline.serving.log_records`), ``feedback`` or ``errors`` (the columns of the SQLite
tables), each plus ``replica``. Stores shipped before the typed records hold ``requests``
instead (the SQLite table's JSON columns); the readers take both, side by side.
A store is ``s3://bucket/prefix`` (credentials and endpoint from the
environment: ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``,
``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL``, ``AWS_REGION``/``AWS_DEFAULT_REGION``; or the
DVC remote's config when the store is derived from it) or ``file:///dir``.

:func:`open_log` takes a local path or a store URL and reads either into the same frames
(:func:`loopline.serving.inference_log.read_predictions` and ``read_request_errors``). The
store's reader prunes partitions on date/hour (and version when asked), merges replicas, keeps
one row per ``(request_id, idx)`` (a batch shipped twice, after a crash between the upload and the
spool's delete, or a file beside its compacted copy, counts once), the latest label per
``(request_id, idx)`` wherever it arrived, and one row per distinct error. pyarrow reads
(DuckDB's wheel cannot reach S3 offline); DuckDB de-duplicates over the arrow tables when
there is anything to de-duplicate.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from loopline.core.errors import LooplineError
from loopline.core.layout import LOG_STORE_PREFIX

T = TypeVar("T")

STORE_ENV = "LOOPLINE_LOG_STORE"
OFF = "off"
TABLES = ("requests", "feedback", "errors")
PARTITIONS = ("artifact", "version", "date", "hour")
NO_VERSION = "none"  # the version partition of a row without one (feedback, some errors)
_URL = re.compile(r"^([a-z][a-z0-9+.-]*)://(.*)$")
REQUEST_COLUMNS = ("request_id", "ts", "model_version", "n", "inputs", "predictions",
                   "probabilities", "classes", "latency_ms", "shadow_version",
                   "shadow_predictions", "shadow_probabilities")
MEMORY_LIMIT = "400MB"  # DuckDB's working memory for a window; it spills to disk beyond
CONNECT_TIMEOUT, REQUEST_TIMEOUT, ATTEMPTS = 2.0, 10.0, 2  # an unreachable store fails fast
# S3 requests in flight while a window's files are fetched: a GET waits mostly on the round
# trip, so many at once. 1,164 objects (10,000,000 records) from moto with 20 ms added to each
# request: 4.24 s with 8, 3.27 s with 32 (then the server's own pace); no slower without delay
FETCH_THREADS = 32


def _schemas() -> dict[str, Any]:
    import pyarrow as pa

    s, f, i = pa.string(), pa.float64(), pa.int64()
    return {
        "requests": pa.schema([("request_id", s), ("ts", f), ("model_version", s), ("n", i),
                               ("inputs", s), ("predictions", s), ("probabilities", s),
                               ("classes", s), ("latency_ms", f), ("shadow_version", s),
                               ("shadow_predictions", s), ("shadow_probabilities", s),
                               ("replica", s)]),
        "feedback": pa.schema([("request_id", s), ("idx", i), ("label", s), ("ts", f),
                               ("replica", s)]),
        "errors": pa.schema([("ts", f), ("route", s), ("status", i), ("model_version", s),
                             ("replica", s)]),
    }


def is_url(source: str | os.PathLike[str] | None) -> bool:
    """Whether ``source`` names a store (``scheme://…``) rather than a local file."""
    return source is not None and bool(_URL.match(str(source)))


@dataclass(frozen=True)
class Store:
    """An object store location; ``options`` are S3 settings read from the DVC remote
    (endpoint, region, keys), used where the environment has none."""

    url: str
    scheme: str
    root: str  # the path inside the filesystem: "bucket/prefix" or "/dir"
    options: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    def settings(self) -> dict[str, str | None]:
        """The S3 endpoint, region and keys: the environment first, then the DVC remote's
        options (a key's secret and token come with it), so the filesystem and the client
        of :meth:`client` reach the same store as the same user."""
        env, opt = os.environ, self.options
        key = env.get("AWS_ACCESS_KEY_ID") or opt.get("access_key_id")
        return {
            "endpoint": (env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
                         or opt.get("endpointurl")),
            "region": (env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
                       or opt.get("region") or "us-east-1"),
            "key": key,
            "secret": (env.get("AWS_SECRET_ACCESS_KEY") or opt.get("secret_access_key")) if key
            else None,
            "token": (env.get("AWS_SESSION_TOKEN") or opt.get("session_token")) if key else None,
        }

    def filesystem(self) -> Any:
        """A pyarrow filesystem for the store (nothing is contacted yet)."""
        from pyarrow import fs

        if self.scheme == "file":
            return fs.LocalFileSystem()
        s = self.settings()
        kwargs: dict[str, Any] = {
            "region": s["region"], "connect_timeout": CONNECT_TIMEOUT,
            "request_timeout": REQUEST_TIMEOUT,
            "retry_strategy": fs.AwsStandardS3RetryStrategy(max_attempts=ATTEMPTS)}
        if s["key"]:
            kwargs.update(access_key=s["key"], secret_key=s["secret"], session_token=s["token"])
        if s["endpoint"]:
            scheme, _, rest = s["endpoint"].partition("://")
            kwargs.update(endpoint_override=rest.rstrip("/") if rest else scheme,
                          scheme=scheme if rest else "https")
        return fs.S3FileSystem(**kwargs)

    def client(self, connections: int = FETCH_THREADS) -> Any:
        """A botocore S3 client with the settings of :meth:`filesystem` (path-style addressing
        at a configured endpoint, as pyarrow's): a GetObject is one request per object where
        pyarrow's input streams ask for the size first (HEAD, then GET)."""
        import botocore.session
        from botocore.config import Config

        s = self.settings()
        endpoint = s["endpoint"]
        if endpoint and "://" not in endpoint:
            endpoint = f"https://{endpoint}"
        config = Config(connect_timeout=CONNECT_TIMEOUT, read_timeout=REQUEST_TIMEOUT,
                        retries={"mode": "standard", "total_max_attempts": ATTEMPTS},
                        max_pool_connections=connections,
                        s3={"addressing_style": "path"} if endpoint else None)
        return botocore.session.get_session().create_client(
            "s3", region_name=s["region"], endpoint_url=endpoint, aws_access_key_id=s["key"],
            aws_secret_access_key=s["secret"], aws_session_token=s["token"], config=config)

    def table_dir(self, table: str) -> str:
        return f"{self.root}/{table}"

    def partition_dir(self, table: str, artifact: str, version: str | None, ts: float) -> str:
        moment = datetime.fromtimestamp(ts, UTC)
        return (f"{self.table_dir(table)}/artifact={artifact}/version={version or NO_VERSION}/"
                f"date={moment:%Y-%m-%d}/hour={moment:%H}")


def parse(url: str, options: Mapping[str, str] | None = None) -> Store:
    """The store of ``s3://bucket/prefix`` or ``file:///dir``.

    Raises:
        LooplineError: another scheme, no bucket, or a relative file path.
    """
    m = _URL.match(url.strip())
    if not m:
        raise LooplineError(f"log store {url!r} is not a URL: use s3://bucket/prefix or "
                            "file:///absolute/dir")
    scheme, rest = m.groups()
    if scheme == "s3":
        bucket, _, prefix = rest.partition("/")
        if not bucket:
            raise LooplineError(f"log store {url!r} names no bucket (s3://bucket/prefix)")
        root = "/".join(p for p in (bucket, prefix.strip("/")) if p)
    elif scheme == "file":
        if not rest.startswith("/"):
            raise LooplineError(f"log store {url!r}: a file store needs an absolute path "
                                "(file:///dir)")
        root = rest.rstrip("/") or "/"
    else:
        raise LooplineError(f"log store {url!r}: unsupported scheme {scheme!r} (s3:// or "
                            "file://)")
    return Store(url.strip(), scheme, root, dict(options or {}))


def dvc_remote(root: Path) -> dict[str, str] | None:
    """The DVC default remote's settings at ``root`` (url, endpointurl, keys…), if any."""
    config = root / ".dvc" / "config"
    if not config.is_file() or "remote" not in config.read_text(errors="replace"):
        return None
    from dvc.config import Config

    try:
        cfg = Config(dvc_dir=str(root / ".dvc"), validate=False)
        name = cfg["core"].get("remote")
        return {k: str(v) for k, v in cfg["remote"][name].items()} if name else None
    except Exception:  # an unreadable DVC config means no derived store, not a failure here
        return None


def configured(url: str | None, root: Path | None) -> Store | None:
    """The store in effect: ``LOOPLINE_LOG_STORE``, else ``url`` (``serve.log_store.url``),
    else the DVC remote's bucket under ``inference-log/`` when that remote is S3; None when
    there is none or it is ``off``."""
    chosen = os.environ.get(STORE_ENV) or url
    if chosen:
        return None if chosen.strip() == OFF else parse(chosen)
    remote = dvc_remote(root) if root is not None else None
    if not remote or not remote.get("url", "").startswith("s3://"):
        return None
    bucket = remote["url"][len("s3://"):].split("/", 1)[0]
    return parse(f"s3://{bucket}/{LOG_STORE_PREFIX}", remote)


# ------------------------------------------------------------------------- writing


def write_parquet(filesystem: Any, path: str, table: Any) -> None:
    """Write ``table`` to ``path`` atomically: one PUT on S3, temp file + rename on disk."""
    import pyarrow.parquet as pq
    from pyarrow import fs

    parent = path.rsplit("/", 1)[0]
    if isinstance(filesystem, fs.LocalFileSystem):
        filesystem.create_dir(parent, recursive=True)
        tmp = f"{parent}/.{uuid.uuid4().hex}.tmp"  # a leading dot: datasets skip it
        try:
            pq.write_table(table, tmp, filesystem=filesystem, compression="zstd")
            filesystem.move(tmp, path)
        finally:
            if filesystem.get_file_info(tmp).type != fs.FileType.NotFound:
                filesystem.delete_file(tmp)
        return
    pq.write_table(table, path, filesystem=filesystem, compression="zstd")


SHIPPED_AS = {"requests": "records", "feedback": "feedback", "errors": "errors"}


def shipped_table(name: str, rows: list[tuple], replica: str) -> Any:
    """What the shipper writes for ``rows`` of SQLite table ``name``: the typed records of
    requests (:mod:`loopline.serving.log_records`), the other tables' columns as they are."""
    if name == "requests":
        from loopline.serving.log_records import records_table

        return records_table(rows, replica)
    return arrow_table(name, rows, replica)


def arrow_table(name: str, rows: list[tuple], replica: str) -> Any:
    """An arrow table of ``rows`` of SQLite table ``name`` (its columns, in order) + replica:
    the layout of every table as first shipped (``requests`` with JSON, still read)."""
    import pyarrow as pa

    schema = _schemas()[name]
    columns = list(zip(*rows, strict=True)) if rows else [()] * (len(schema) - 1)
    arrays = [pa.array(list(col), type=f.type) for col, f in zip(columns, schema, strict=False)]
    arrays.append(pa.array([replica] * len(rows), type=pa.string()))
    return pa.Table.from_arrays(arrays, schema=schema)


# ------------------------------------------------------------------------- reading


def _hour(ts: float) -> tuple[str, str]:
    moment = datetime.fromtimestamp(ts, UTC)
    return f"{moment:%Y-%m-%d}", f"{moment:%H}"


def _window(since: float | None, until: float | None, *, rows: bool = True) -> Any:
    """The dataset filter for ``since <= ts < until``: partitions first, then rows."""
    import pyarrow.dataset as ds

    date, hour, ts = ds.field("date"), ds.field("hour"), ds.field("ts")
    expr = None

    def both(a: Any, b: Any) -> Any:
        return b if a is None else a & b

    if since is not None:
        d, h = _hour(since)
        expr = both(expr, (date > d) | ((date == d) & (hour >= h)))
        if rows:
            expr = expr & (ts >= since)
    if until is not None:
        d, h = _hour(until)
        expr = both(expr, (date < d) | ((date == d) & (hour <= h)))
        if rows:
            expr = expr & (ts < until)
    return expr


class StoreReader:
    """Reads one store's tables, partition-pruned, into arrow tables."""

    def __init__(self, store: Store, artifact: str | None = None) -> None:
        self.store, self.artifact = store, artifact
        self._fs = store.filesystem()

    def _fail(self, err: Exception) -> LooplineError:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        return LooplineError(f"cannot read the inference log store {self.store.url}: {first}")

    def has(self, table: str) -> bool:
        from pyarrow import fs

        try:
            info = self._fs.get_file_info(self.store.table_dir(table))
        except OSError as err:
            raise self._fail(err) from None
        return info.type == fs.FileType.Directory

    def _filter(self, expr: Any, version: str | None) -> Any:
        import pyarrow.dataset as ds

        if self.artifact is not None:
            expr = (ds.field("artifact") == self.artifact) & expr if expr is not None else \
                ds.field("artifact") == self.artifact
        if version is not None:
            cond = ds.field("version") == version
            expr = cond if expr is None else expr & cond
        return expr

    def _dataset(self, name: str) -> Any:
        import pyarrow as pa
        import pyarrow.dataset as ds

        part = pa.schema([(p, pa.string()) for p in PARTITIONS])
        # the typed records' columns differ from file to file: only their partitions are named
        schema = pa.unify_schemas([_schemas()[name], part]) if name in _schemas() else None
        return ds.dataset(self.store.table_dir(name), filesystem=self._fs, format="parquet",
                          schema=schema, partitioning=ds.partitioning(part, flavor="hive"))

    def files(self, name: str, expr: Any = None, version: str | None = None) -> list[str]:
        """The paths of ``name``'s files in the partitions ``expr`` and ``version`` keep."""
        expr = self._filter(expr, version)
        return self.retrying(lambda: self.listing(name, expr))

    def listing(self, name: str, expr: Any) -> list[str]:
        """The paths of ``name``'s files in the partitions ``expr`` (already filtered on
        artifact and version) keeps, sorted; read once (see :meth:`retrying`)."""
        if not self.has(name):
            return []
        return sorted(f.path for f in self._dataset(name).get_fragments(filter=expr))

    def table(self, name: str, expr: Any = None, version: str | None = None) -> Any:
        """The rows of ``name`` matching ``expr`` (an empty table when none were shipped)."""
        import pyarrow as pa

        schema = _schemas()[name]
        if not self.has(name):
            return pa.Table.from_batches([], schema=schema)
        expr = self._filter(expr, version)
        return self.retrying(lambda: self._dataset(name).to_table(filter=expr,
                                                                   columns=schema.names))

    def retrying(self, read: Callable[[], T]) -> T:
        """``read()``, again (up to 3 times) when a replica compacted files between the
        listing and the read; a store error as one line naming the store."""
        import pyarrow as pa

        for attempt in range(3):
            try:
                return read()
            except FileNotFoundError:
                if attempt == 2:
                    raise self._fail(FileNotFoundError("files vanished while reading")) from None
            except (OSError, pa.ArrowInvalid) as err:
                raise self._fail(err) from None
        raise AssertionError("unreachable")


def _rows(table: Any, columns: list[str]) -> list[tuple]:
    """``columns`` of an arrow table as Python tuples, row by row."""
    return list(zip(*(table.column(c).to_pylist() for c in columns), strict=True))


def _unique_requests(table: Any) -> Any:
    """One row per request_id (a batch shipped twice counts once), by time then id."""
    import pyarrow.compute as pc

    if len(table) and pc.count_distinct(table.column("request_id")).as_py() < len(table):
        import duckdb

        con = duckdb.connect()
        try:
            con.register("requests", table)
            rel = con.sql("SELECT DISTINCT ON (request_id) * FROM requests "
                          "ORDER BY request_id, replica")
            # DuckDB 2 names it to_arrow_table; 1.x arrow()
            table = (getattr(rel, "to_arrow_table", None) or rel.arrow)()
        finally:
            con.close()
    return table.sort_by([("ts", "ascending"), ("request_id", "ascending")])


def _labels(reader: StoreReader, since: float | None) -> dict[tuple[str, int], tuple[str, float]]:
    """The latest label of every ``(request_id, idx)`` that may belong to a request since
    ``since``: ``(label, ts)``."""
    # a label arrives after its request, so partitions before `since` hold none (an hour
    # earlier still, for the clocks of replicas that disagree)
    early = None if since is None else since - 3600.0
    feedback = reader.table("feedback", _window(early, None, rows=False)).sort_by(
        [("ts", "ascending"), ("label", "descending")])
    # in time order, so the latest label of (request_id, idx) is the one kept
    return {(r, i): (lab, t) for r, i, lab, t in
            _rows(feedback, ["request_id", "idx", "label", "ts"])}


def _typed_records(reader: StoreReader, since: float | None, until: float | None,
                   version: str | None, ids: set[str] | None) -> list[dict]:
    """The records of the typed ``records`` files in the window (only those of ``ids``
    when given), one dict per record, read file by file (each file names its columns)."""
    import pyarrow.parquet as pq

    paths = reader.files("records", _window(since, until, rows=False), version)

    def read_one(path: str) -> Any:
        return pq.read_table(path, filesystem=reader._fs, partitioning=None)

    def read() -> list[dict]:
        from concurrent.futures import ThreadPoolExecutor

        out: list[dict] = []
        # read FETCH_THREADS at a time (a file of S3 is two requests' round trips), each
        # file's records then taken in path order
        with ThreadPoolExecutor(min(FETCH_THREADS, max(1, len(paths)))) as pool:
            tables = pool.map(read_one, paths)
            for table in tables:
                out.extend(_window_records(table, since, until, ids))
        return out

    return reader.retrying(read)


def _window_records(table: Any, since: float | None, until: float | None,
                    ids: set[str] | None) -> list[dict]:
    """The records of one typed file between ``since`` and ``until`` (of ``ids`` when given)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from loopline.serving.log_records import frame_records

    keep = pc.is_valid(table["ts"])
    if since is not None:
        keep = pc.and_kleene(keep, pc.greater_equal(table["ts"], since))
    if until is not None:
        keep = pc.and_kleene(keep, pc.less(table["ts"], until))
    if ids is not None:
        keep = pc.and_kleene(keep, pc.is_in(table["request_id"],
                                            pa.array(sorted(ids), pa.string())))
    return frame_records(table.filter(keep))


def store_predictions(reader: StoreReader, *, since: float | None = None,
                      until: float | None = None, with_feedback: bool = True,
                      version: str | None = None, labelled_only: bool = False) -> Any:
    """The frame of :func:`loopline.serving.inference_log.read_predictions` from a store:
    the typed ``records`` and the JSON ``requests`` of stores shipped before, one row per
    ``(request_id, idx)``, by time, request and record (``labelled_only``: only the records
    that have a label, read without the others)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from loopline.serving.inference_log import json_records, records_frame

    labels = _labels(reader, since) if with_feedback or labelled_only else {}
    ids = {r for r, _ in labels} if labelled_only else None
    requests = _unique_requests(reader.table("requests", _window(since, until), version))
    if ids is not None:
        requests = requests.filter(pc.is_in(requests["request_id"],
                                            pa.array(sorted(ids), pa.string())))
    rows = _rows(requests, [c for c in requests.column_names if c != "replica"])
    found: dict[tuple[str, int], dict] = {}
    for rec in [*json_records(rows), *_typed_records(reader, since, until, version, ids)]:
        found.setdefault((rec["request_id"], rec["idx"]), rec)  # a copy counts once
    ordered = sorted(found.values(), key=lambda r: (r["ts"], r["request_id"], r["idx"]))
    if labelled_only:
        ordered = [r for r in ordered if (r["request_id"], r["idx"]) in labels]
    return records_frame(ordered, labels)


def store_request_errors(reader: StoreReader, *, since: float | None = None,
                         until: float | None = None) -> Any:
    """The frame of :func:`loopline.serving.inference_log.read_request_errors` from a store."""
    import duckdb

    errors = reader.table("errors", _window(since, until))
    con = duckdb.connect()
    try:
        con.register("_shipped_errors", errors)
        return _errors_frame(con, "_shipped_errors", None, None)
    finally:
        con.close()


def _errors_frame(con: Any, errors: str | None, since: float | None,
                  until: float | None) -> Any:
    """The request errors of relation ``errors`` (None: none shipped) between ``since`` and
    ``until``, one row per distinct error of a replica, by time."""
    import pandas as pd

    columns = ["ts", "route", "status", "model_version"]
    rows = [] if errors is None else con.execute(
        "SELECT ts, route, status, model_version FROM (SELECT DISTINCT ts, route, status, "
        f"model_version, replica FROM {errors} WHERE {_ts_where(since, until)}) "
        "ORDER BY ts, route, status").fetchall()
    return pd.DataFrame(rows, columns=columns)


class LogSource:
    """The inference log at a local path or in a store, read into the same frames."""

    def __init__(self, source: str | os.PathLike[str] | Store, *,
                 artifact: str | None = None) -> None:
        if isinstance(source, Store):
            self.store: Store | None = source
        else:
            self.store = parse(str(source)) if is_url(source) else None
        self.where = self.store.url if self.store else str(source)
        self.path = None if self.store else Path(source)
        self._reader = StoreReader(self.store, artifact) if self.store else None

    def check(self) -> LogSource:
        """Raises LooplineError when there is no log at all (no file, nothing shipped)."""
        if self._reader is not None:
            if not (self._reader.has("records") or self._reader.has("requests")):
                raise LooplineError(f"no inference log in {self.where}: no replica has shipped "
                                    "records there yet (is serve.log_store set on the service?)")
        elif not self.path.is_file():
            raise LooplineError(f"no inference log at {self.where} (serve the model first, or "
                                "pass --log PATH or s3://bucket/prefix)")
        return self

    def predictions(self, *, since: float | None = None, until: float | None = None,
                    with_feedback: bool = True, version: str | None = None) -> Any:
        if self._reader is not None:
            return store_predictions(self._reader, since=since, until=until,
                                     with_feedback=with_feedback, version=version)
        from loopline.serving.inference_log import read_predictions

        df = read_predictions(self.path, since=since, until=until, with_feedback=with_feedback)
        return df if version is None else df[df["model_version"] == version].reset_index(drop=True)

    def labelled(self, *, since: float | None = None, until: float | None = None,
                 version: str | None = None) -> Any:
        """The frame of :meth:`predictions`, only the records that have a feedback label
        (what a retraining takes), without reading the other records' inputs."""
        from loopline.serving.inference_log import frame

        if self._reader is not None:
            return store_predictions(self._reader, since=since, until=until, version=version,
                                     labelled_only=True)
        with self.window(since=since, until=until, version=version) as win:
            rows = win.con.execute(
                "SELECT * FROM requests WHERE request_id IN (SELECT request_id FROM feedback) "
                "ORDER BY ts, request_id").fetchall()
            labels = {(r, i): (lab, t) for r, i, lab, t in win.con.execute(
                "SELECT request_id, idx, label, ts FROM feedback WHERE request_id IN (SELECT "
                "request_id FROM requests)").fetchall()}
        df = frame(rows, labels)
        return df[df["label"].notna()].reset_index(drop=True)

    def window(self, *, since: float | None = None, until: float | None = None,
               version: str | None = None,
               columns: tuple[str, ...] | list[str] = REQUEST_COLUMNS,
               defer: Collection[str] = ()) -> LogWindow:
        """The records of ``since <= ts < until`` as DuckDB views (:class:`LogWindow`)."""
        return LogWindow(self, since=since, until=until, version=version, columns=columns,
                         defer=defer)

    def request_errors(self, *, since: float | None = None, until: float | None = None) -> Any:
        if self._reader is not None:
            return store_request_errors(self._reader, since=since, until=until)
        from loopline.serving.inference_log import read_request_errors

        return read_request_errors(self.path, since=since, until=until)


def arrow(result: Any) -> Any:
    """A DuckDB relation as an arrow table (DuckDB 2 names it to_arrow_table; 1.x arrow())."""
    return (getattr(result, "to_arrow_table", None) or result.arrow)()


def _duplicated(con: Any, paths: list[str], key: str = "request_id") -> Any:
    """The request_ids whose ``key`` occurs more than once in the files at ``paths`` (local).

    A request is logged into the partition of its own time and version, so a copy can only
    sit in another file of the same partition, and every way one is made copies a file's
    records whole into another (a batch shipped again after a crash under another replica
    name, when a re-created container took over the spool: the same rows from the same
    first one, fewer or more; a file beside its compacted copy): one file's records are a
    subset of another's, so its request_id range (from the Parquet footers, no data read)
    lies within the other's. Only partitions with such a pair are read, and only their
    request_id and ``key`` columns."""
    import pyarrow as pa

    groups: dict[str, list[str]] = {}
    for path in paths:
        groups.setdefault(path.rpartition("/")[0], []).append(path)
    many = [p for files in groups.values() if len(files) > 1 for p in files]
    suspect = _nested(con, many) if many else []
    if not suspect:
        return pa.table({"request_id": pa.array([], pa.string())})
    # DuckDB's aggregate spills to disk past the connection's memory limit
    return arrow(con.sql(f"SELECT DISTINCT request_id FROM (SELECT request_id FROM "
                         f"{_parquet(suspect)} GROUP BY {key} HAVING count(*) > 1)"))


def _nested(con: Any, paths: list[str]) -> list[str]:
    """The files of the partitions (folders) in which one file's request_id range lies
    within another's, or whose footers give no range."""
    rows = con.execute("SELECT file_name, min(stats_min_value), max(stats_max_value) FROM "
                       "parquet_metadata(?) WHERE path_in_schema = 'request_id' "
                       "GROUP BY file_name", [paths]).fetchall()
    ranges: dict[str, list[tuple]] = {}
    for name, lo, hi in rows:
        ranges.setdefault(name.rpartition("/")[0], []).append((lo, hi))
    out = []
    for folder, files in ranges.items():
        nested = any(a is None or b is None or c is None or d is None or (c <= a and b <= d)
                     for i, (a, b) in enumerate(files) for j, (c, d) in enumerate(files)
                     if i != j)
        if nested:
            out.extend(p for p in paths if p.rpartition("/")[0] == folder)
    return out


def _get(client: Any, path: str, local: str) -> None:
    """Object ``path`` (``bucket/key``) into the file ``local`` with one GetObject: a missing
    object as FileNotFoundError (compacted since the listing), any other failure as OSError."""
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, _, key = path.partition("/")
    Path(local).parent.mkdir(parents=True, exist_ok=True)
    try:
        body = client.get_object(Bucket=bucket, Key=key)["Body"]
        with body, open(local, "wb") as out:
            for chunk in body.iter_chunks(1 << 20):
                out.write(chunk)
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            raise FileNotFoundError(f"{path} vanished") from None
        raise OSError(str(err)) from None
    except BotoCoreError as err:
        raise OSError(str(err)) from None


class _Fetches:
    """The window's files of every table, listed and (from S3) fetched by one pool of
    threads started at once, so one table's last objects are in flight with the next one's
    first and no table waits for another's listing; each object is one GetObject (its size
    is not needed), into ``folder``. A table's views wait for its own files only. The tables
    in ``first`` have their objects fetched before the others' (queued ahead of them), so
    queries over those tables can start while the others' objects come in."""

    def __init__(self, reader: StoreReader, folder: Path, exprs: Mapping[str, Any],
                 first: Collection[str] = ()) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.reader, self.folder, self.exprs = reader, folder, exprs
        self.client = None if reader.store.scheme == "file" else reader.store.client()
        self.pool = ThreadPoolExecutor(FETCH_THREADS, thread_name_prefix="loopline-fetch")
        self.first = [n for n in exprs if n in first]
        self.listings: dict[str, Any] = {}
        self.started: dict[str, Any] = {}
        for name in sorted(exprs, key=lambda n: n not in self.first):  # the first ones first
            self.started[name] = self.listings[name] = self._start(name)

    def _start(self, name: str) -> Any:
        return self.pool.submit(self._list_and_get, name)

    def _list_and_get(self, name: str) -> list[tuple[str, Any]]:
        """``(local path, its fetch or None)`` of each of ``name``'s files, in path order."""
        paths = self.reader.listing(name, self.exprs[name])
        if self.client is None:  # a file store's files are read in place
            return [(path, None) for path in paths]
        if name not in self.first:  # behind the first tables' fetches, once they are queued
            for other in self.first:
                self.listings[other].exception()  # waits; its own files() raises its error
        local = [str(self.folder / p) for p in paths]
        return [(dest, self.pool.submit(_get, self.client, path, dest))
                for path, dest in zip(paths, local, strict=True)]

    def files(self, name: str) -> list[str]:
        """The local paths of ``name``'s files, once fetched; listed and fetched again when
        an object vanished since the listing (a replica compacted its partition)."""
        from concurrent.futures import wait

        job = self.started.pop(name)

        def fetched() -> list[str]:
            nonlocal job
            current, job = job or self._start(name), None
            pairs = current.result()
            fetches = [f for _, f in pairs if f is not None]
            wait(fetches)  # all of them end before a retry writes to the same paths
            for f in fetches:
                f.result()
            return [dest for dest, _ in pairs]

        return self.reader.retrying(fetched)

    def close(self) -> None:
        """Ends the fetches: those not started are dropped, the running ones awaited."""
        self.pool.shutdown(wait=True, cancel_futures=True)


def _parquet(paths: list[str]) -> str:
    listed = ", ".join("'" + p.replace("'", "''") + "'" for p in paths)
    return f"read_parquet([{listed}], union_by_name = true)"


def _ts_where(since: float | None, until: float | None) -> str:
    return " AND ".join([*([f"ts >= {since!r}"] if since is not None else []),
                         *([f"ts < {until!r}"] if until is not None else [])]) or "true"


class LogWindow:
    """The log between ``since`` and ``until`` as DuckDB views, read column by column.

    - ``requests``: the columns of the SQLite table (or those asked for), one row per
      ``request_id`` (a batch shipped twice counts once);
    - ``feedback``: ``request_id, idx, label, ts``, the latest label of each record wherever
      it arrived;
    - ``errors``: ``ts, route, status, model_version``, one row per distinct error;
    - ``records``: the typed records of the store (:mod:`loopline.serving.log_records`,
      every column of every file by name), one row per ``(request_id, idx)``; ``requests``
      holds what was shipped before, as JSON. :attr:`layouts` says which of the two have
      files in the window (a local log is all ``requests``).

    A store's views scan its Parquet partitions in place (pruned on date/hour and version,
    only the columns a query names); a local SQLite log is first copied, window only and
    batch by batch, into a temporary Parquet file (DuckDB's SQLite scanner is an extension
    that cannot be installed offline), so both are read by the same SQL in bounded memory.
    Use as a context manager; :attr:`con` is the DuckDB connection.

    A store's ``feedback`` and ``errors`` named in ``defer`` are viewed only once
    :meth:`ready` asks for them: their objects are fetched behind the records' (queued after
    them) while queries read the records alone. From moto's S3 on 127.0.0.1, 10,000,000
    records (684 of the 1,164 objects are labels and errors): ``loopline monitor`` took
    8.98–9.43 s (median 9.28) against 9.31–9.79 s (9.54), 7 alternating runs each; deferring
    without queueing the records' objects first had measured no faster.
    """

    DEFERRABLE = ("feedback", "errors")

    def __init__(self, source: LogSource, *, since: float | None = None,
                 until: float | None = None, version: str | None = None,
                 columns: tuple[str, ...] | list[str] = REQUEST_COLUMNS,
                 memory_limit: str = MEMORY_LIMIT, defer: Collection[str] = ()) -> None:
        import tempfile

        import duckdb

        self.source, self.since, self.until = source, since, until
        self.layouts = {"json": True, "typed": False}
        self._fetches: _Fetches | None = None
        self._errors: list[str] = []  # a store's error files of the window, local
        self._pending: dict[str, Callable[[], None]] = {}  # deferred views, by name
        if unknown := set(defer) - set(self.DEFERRABLE):
            raise ValueError(f"cannot defer {sorted(unknown)}: only {self.DEFERRABLE}")
        self._tmp = Path(tempfile.mkdtemp(prefix="loopline-log-"))
        self.con = duckdb.connect()
        try:
            self.con.execute(f"SET memory_limit = '{memory_limit}'")
            self.con.execute(f"SET temp_directory = '{self._tmp / 'spill'}'")
            self.con.execute("SET preserve_insertion_order = false")
            cols = ", ".join(columns)
            if source._reader is not None:
                self._store_views(source._reader, cols, version, defer)
                for name in [n for n in self.DEFERRABLE if n not in defer]:
                    self.ready(name)
            else:
                self._sqlite_views(source.path, list(columns), version)
        except BaseException:
            self.close()
            raise

    def _store_views(self, reader: StoreReader, cols: str, version: str | None,
                     defer: Collection[str] = ()) -> None:
        con = self.con
        rows = _window(self.since, self.until)
        where = _ts_where(self.since, self.until)
        if version is not None:
            where += f" AND model_version = '{version.replace(chr(39), chr(39) * 2)}'"
        # a label arrives after its request, so partitions before `since` hold none (an hour
        # earlier still, for the clocks of replicas that disagree)
        early = None if self.since is None else self.since - 3600.0
        self._fetches = _Fetches(reader, self._tmp / "store", {
            "records": reader._filter(rows, version), "requests": reader._filter(rows, version),
            "feedback": reader._filter(_window(early, None, rows=False), None),
            "errors": reader._filter(rows, None)}, first=("records", "requests") if defer else ())
        self._records_view(where)
        requests = self._fetches.files("requests")
        if not requests:  # no predictions in the span: typed, empty (errors may still be)
            con.register("_no_requests", _schemas()["requests"].empty_table())
            con.execute(f"CREATE VIEW requests AS SELECT {cols} FROM _no_requests")
            self.layouts["json"] = False
        else:
            con.execute(f"CREATE VIEW _requests AS SELECT * FROM {_parquet(requests)} "
                        f"WHERE {where}")
            if self.layouts["typed"]:
                # a replica upgraded between shipping a batch and marking it shipped ships
                # its requests again as records: the records' copy counts, the JSON one not
                con.execute("CREATE VIEW _json AS SELECT q.* FROM _requests q ANTI JOIN "
                            "_records r ON q.request_id = r.request_id")
            else:
                con.execute("CREATE VIEW _json AS SELECT * FROM _requests")
            _one_copy_view(con, "requests", "_json", requests, "request_id", cols)
        self._pending = {"feedback": self._feedback_view, "errors": self._errors_view}

    def ready(self, *names: str) -> None:
        """Create the deferred views ``names`` (every one by default), once their files are
        in; a view made already, or a local log's, is left as it is."""
        for name in names or list(self._pending):
            make = self._pending.pop(name, None)
            if make is not None:
                make()

    def _feedback_view(self) -> None:
        con = self.con
        feedback = self._fetches.files("feedback")
        if not feedback:
            con.execute("CREATE VIEW feedback AS SELECT NULL::VARCHAR AS request_id, "
                        "NULL::BIGINT AS idx, NULL::VARCHAR AS label, NULL::DOUBLE AS ts LIMIT 0")
        else:
            # the latest label wins; at the same time, the first label in sort order. Most
            # records have one label: only those with more pay for choosing (2.5x faster
            # than choosing for all, 2,500,000 labels)
            con.execute("CREATE VIEW _feedback AS SELECT request_id, idx, label, ts FROM "
                        f"{_parquet(feedback)}")
            con.execute(
                "CREATE VIEW feedback AS WITH g AS (SELECT request_id, idx, count(*) AS c, "
                "min(label) AS label, max(ts) AS ts FROM _feedback GROUP BY request_id, idx) "
                "SELECT request_id, idx, label, ts FROM g WHERE c = 1 UNION ALL SELECT "
                "request_id, idx, x.label, x.ts FROM (SELECT request_id, idx, arg_min({'label': "
                "label, 'ts': ts}, {'t': -ts, 'label': label}) AS x FROM _feedback SEMI JOIN "
                "(SELECT request_id, idx FROM g WHERE c > 1) USING (request_id, idx) "
                "GROUP BY request_id, idx)")

    def _errors_view(self) -> None:
        con = self.con
        errors = self._errors = self._fetches.files("errors")
        if not errors:
            con.execute("CREATE VIEW errors AS SELECT NULL::DOUBLE AS ts, NULL::VARCHAR AS "
                        "route, NULL::BIGINT AS status, NULL::VARCHAR AS model_version LIMIT 0")
        else:
            con.execute("CREATE VIEW errors AS SELECT DISTINCT ts, route, status, model_version "
                        f"FROM {_parquet(errors)} WHERE {_ts_where(self.since, self.until)}")

    def _records_view(self, where: str) -> None:
        """The ``records`` view: the typed files of the window, a copy of a record once."""
        con = self.con
        records = self._fetches.files("records")
        self.layouts["typed"] = bool(records)
        if not records:
            _empty_records(con)
            return
        con.execute(f"CREATE VIEW _records AS SELECT * FROM {_parquet(records)} WHERE {where}")
        _one_copy_view(con, "records", "_records", records, "request_id, idx")

    def _sqlite_views(self, path: Path, columns: list[str], version: str | None) -> None:
        import sqlite3

        from loopline.serving.inference_log import _ts_range, _unreadable, connect

        where, args = _ts_range(self.since, self.until)
        if version is not None:
            where = (where + " AND" if where else " WHERE") + " model_version = ?"
            args = [*args, version]
        schema = _schemas()["requests"]
        conn = connect(path, readonly=True)
        try:
            self._copy(conn, f"SELECT {', '.join(columns)} FROM requests{where}", args,
                       [schema.field(c) for c in columns], "requests")
            _empty_records(self.con)
            self._copy(conn, "SELECT request_id, idx, label, ts FROM feedback", [],
                       list(_schemas()["feedback"])[:4], "feedback")
            has_errors = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND "
                                      "name = 'errors'").fetchone()
            if has_errors:  # every error of the window: a failed request may have no version
                e_where, e_args = _ts_range(self.since, self.until)
                self._copy(conn, f"SELECT ts, route, status, model_version FROM errors{e_where}",
                           e_args, list(_schemas()["errors"])[:4], "errors")
            else:
                self.con.execute("CREATE VIEW errors AS SELECT NULL::DOUBLE AS ts, NULL::VARCHAR "
                                 "AS route, NULL::BIGINT AS status, NULL::VARCHAR AS "
                                 "model_version LIMIT 0")
        except sqlite3.DatabaseError as err:
            raise _unreadable(path, err) from err
        finally:
            conn.close()

    def _copy(self, conn: Any, sql: str, args: list, fields: list, name: str,
              batch: int = 100_000) -> None:
        """Rows of ``sql`` into a temporary Parquet file, viewed as ``name``."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = pa.schema(fields)
        out = self._tmp / f"{name}.parquet"
        cursor = conn.execute(sql, args)
        with pq.ParquetWriter(out, schema, compression="zstd", compression_level=1) as writer:
            while rows := cursor.fetchmany(batch):
                cols = list(zip(*rows, strict=True))
                writer.write_table(pa.Table.from_arrays(
                    [pa.array(c, type=f.type) for c, f in zip(cols, fields, strict=True)],
                    schema=schema))
        self.con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{out}')")

    def request_errors(self) -> Any:
        """The frame of :meth:`LogSource.request_errors` for the window; a store's from the
        error files the window has already fetched."""
        if self.source._reader is None:
            return self.source.request_errors(since=self.since, until=self.until)
        self.ready("errors")
        return _errors_frame(self.con, _parquet(self._errors) if self._errors else None,
                             self.since, self.until)

    def close(self) -> None:
        import shutil

        try:
            if self._fetches is not None:
                self._fetches.close()
        finally:
            try:
                self.con.close()
            finally:
                shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> LogWindow:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _one_copy_view(con: Any, name: str, source: str, paths: list[str], key: str,
                   cols: str = "*") -> None:
    """View ``name``: ``cols`` of view ``source`` (over the files at ``paths``), one row per
    ``key`` (the first replica's copy); only the request_ids with a copy
    (:func:`_duplicated`) pay for choosing it."""
    dups = _duplicated(con, paths, key)
    if not len(dups):
        con.execute(f"CREATE VIEW {name} AS SELECT {cols} FROM {source}")
        return
    con.register(f"_{name}_dups", dups)
    con.execute(
        f"CREATE VIEW {name} AS SELECT {cols} FROM {source} WHERE request_id NOT IN (SELECT "
        f"request_id FROM _{name}_dups) UNION ALL BY NAME SELECT {cols} FROM (SELECT * FROM "
        f"{source} WHERE request_id IN (SELECT request_id FROM _{name}_dups) QUALIFY "
        f"row_number() OVER (PARTITION BY {key} ORDER BY replica) = 1)")


def _empty_records(con: Any) -> None:
    """A ``records`` view without rows, with the typed records' fixed columns."""
    from loopline.serving.log_records import FIXED

    types = {"idx": "BIGINT", "n": "BIGINT", "ts": "DOUBLE", "latency_ms": "DOUBLE"}
    cols = ", ".join(f"NULL::{types.get(c, 'VARCHAR')} AS {c}" for c in FIXED)
    con.execute(f"CREATE VIEW records AS SELECT {cols} LIMIT 0")


def open_log(source: str | os.PathLike[str] | Store, *, artifact: str | None = None) -> LogSource:
    """The log at ``source`` (a local SQLite path or a store URL), checked to exist."""
    return LogSource(source, artifact=artifact).check()


def read_predictions(source: str | os.PathLike[str], **kwargs: Any) -> Any:
    """:func:`loopline.serving.inference_log.read_predictions` for a path or a store URL."""
    return open_log(source).predictions(**kwargs)


def read_request_errors(source: str | os.PathLike[str], **kwargs: Any) -> Any:
    """:func:`loopline.serving.inference_log.read_request_errors` for a path or a store URL."""
    return open_log(source).request_errors(**kwargs)


def default_source(root: Path, serve: Any) -> Store | str:
    """Where monitoring reads by default: the configured store (with the DVC remote's
    settings when derived from it), else the local log (``LOOPLINE_INFERENCE_LOG``, else
    ``serve.log.path``)."""
    from loopline.serving.spec import LOG_ENV

    store = configured(serve.log_store.url, root)
    if store is not None:
        return store
    return os.environ.get(LOG_ENV) or str(root / serve.log.path)
