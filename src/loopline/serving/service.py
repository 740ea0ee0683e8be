"""The loopline BentoML service: ``bentoml serve loopline.serving.service:LooplineService``.

Start it with ``loopline serve`` (or from a Bento built by ``loopline build``), which writes
the spec this module reads at import time: the model bundle, the sha256 the registry
recorded for it, the request limits and the inference log. Endpoints:

- ``POST /predict`` ``{"records": [{feature: value, ...}, ...]}`` → per record the class
  and the probabilities, plus ``model_version`` and ``request_id``. Records are validated
  against the model's input contract (types, ranges, categories, nullability, no unknown
  fields, at most ``max_batch``); a bad payload gets 400 with one entry per bad field.
- ``POST /feedback`` ``{"labels": [{"request_id": ..., "label": ..., "index": 0}]}``
  records delayed ground truth for ``loopline monitor``.
- ``POST /admin/reload`` ``{"ref": "prod"}`` (``Authorization: Bearer $LOOPLINE_ADMIN_TOKEN``)
  switches every worker to the version now assigned to the stage (or a named version),
  without failing requests in flight.
- ``POST /model`` the served version, its sha256 and input contract; BentoML's ``/livez``,
  ``/readyz`` and Prometheus ``/metrics`` (BentoML's request counts, errors and latency
  histograms, plus ``loopline_*`` predictions by class, inference latency, feedback, reloads).

Every prediction is appended to the inference log off the response path; with a shadow
version configured, its predictions are logged beside the champion's, never returned. A
request to /predict, /predict_batch or /feedback answered 4xx or 5xx is logged too (route,
status, time), for the monitor's error rate.
"""

import asyncio
import hmac
import logging
import os
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Annotated, Any, Literal

import bentoml
import orjson
from pydantic import Field
from starlette.responses import Response
from typing_extensions import NotRequired, Required, TypedDict

from loopline.core.errors import LooplineError
from loopline.serving import contract, failures
from loopline.serving.inference_log import InferenceLog
from loopline.serving.model import CARD_FILE, MODEL_FILE, IntegrityError, ServedModel
from loopline.serving.spec import LOG_ENV, read_spec

logger = logging.getLogger("loopline.serving")

SPEC, SPEC_PATH = read_spec()
_MODEL_TAG = SPEC["model"].get("bentoml_model")
_SHADOW_TAG = (SPEC.get("shadow") or {}).get("bentoml_model")


def _bundle(entry: dict[str, Any]) -> Path:
    """Where a spec entry's model.onnx and card.json are (a bundle dir or a BentoML model)."""
    tag = entry.get("bentoml_model")
    if tag:
        stored = bentoml.models.BentoModel(tag).stored
        if stored is None:
            raise LooplineError(f"BentoML model {tag} is not in the model store")
        return Path(stored.path)
    bundle = Path(entry["bundle"])
    return bundle if bundle.is_absolute() else SPEC_PATH.parent / bundle


def _check_at_import(entry: dict[str, Any]) -> dict[str, Any]:
    """Refuse to start (before any worker) when the model file is not the registry's."""
    from loopline.core.files import read_json, sha256_file

    bundle = _bundle(entry)
    path = bundle / MODEL_FILE
    if not path.is_file():
        raise LooplineError(f"model {entry['version']}: {path} does not exist")
    actual = sha256_file(path)
    if actual != entry["sha256"]:
        raise IntegrityError(
            f"model {entry['version']}: {path} has sha256 {actual[:16]}…, but the registry "
            f"records {entry['sha256'][:16]}…; refusing to serve it")
    return read_json(bundle / CARD_FILE)


_CARD = _check_at_import(SPEC["model"])
if SPEC.get("shadow"):
    _shadow_card = _check_at_import(SPEC["shadow"])
    if _shadow_card.get("inputs") != _CARD.get("inputs"):
        raise LooplineError(f"shadow {SPEC['shadow']['version']} takes different inputs than "
                            f"{SPEC['model']['version']}: its predictions would be meaningless")
_INPUTS = _CARD["inputs"]
_CLASSES = tuple(str(c) for c in _CARD["classes"])

Record = contract.record_type(_INPUTS, "Record")
Records = contract.records_type(Record, SPEC["max_batch"])
Columns = contract.columns_type(_INPUTS, SPEC["max_batch"])


class FeedbackItem(TypedDict):
    request_id: Required[Annotated[str, Field(min_length=1, max_length=128)]]
    label: Required[Literal[_CLASSES]]  # type: ignore[valid-type]
    index: NotRequired[Annotated[int, Field(ge=0, le=10_000_000)]]


FeedbackItems = Annotated[list[FeedbackItem], Field(min_length=1, max_length=100_000)]


class Prediction(TypedDict):
    """One record's answer (documents the response; the body is written with orjson)."""

    request_id: str
    model_version: str
    predictions: list[dict[str, Any]]


# Prometheus metrics beside BentoML's own (requests, errors, latency per endpoint).
PREDICTIONS = bentoml.metrics.Counter(
    name="loopline_predictions", documentation="Records predicted, by model version and class",
    labelnames=["model_version", "predicted_class"])
INFERENCE = bentoml.metrics.Histogram(
    name="loopline_inference_seconds", documentation="Model time per /predict request",
    labelnames=["model_version"],
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0))
FEEDBACK = bentoml.metrics.Counter(
    name="loopline_feedback", documentation="Feedback labels received, by label",
    labelnames=["label"])
RELOADS = bentoml.metrics.Counter(
    name="loopline_reloads", documentation="Model reloads, by outcome", labelnames=["outcome"])


class BodyLimit:
    """ASGI middleware: a request body over ``max_bytes`` gets 413 before it is read."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def _reject(self, send: Any, declared: int | None) -> None:
        body = orjson.dumps({"error": f"request body too large: limit is {self.max_bytes} bytes"
                             + (f", got {declared}" if declared is not None else "")})
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        for key, value in scope["headers"]:
            if key == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = self.max_bytes + 1
                if declared > self.max_bytes:
                    return await self._reject(send, declared)
                return await self.app(scope, receive, send)
        # no Content-Length (chunked): read up to the limit, then replay the body to the app
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return None  # the client went away
            body += message.get("body", b"")
            if len(body) > self.max_bytes:
                return await self._reject(send, None)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Any:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        return await self.app(scope, replay, send)


class _QuietBadRequests(logging.Filter):
    """Drop BentoML's traceback for a request that failed validation (it answers 400 and
    the access log keeps the line): a flood of bad payloads must not flood the log."""

    def filter(self, record: logging.LogRecord) -> bool:
        from pydantic import ValidationError

        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, ValidationError)


logging.getLogger("bentoml._internal.server.http_app").addFilter(_QuietBadRequests())


class _NoLog:
    """Stands in for the inference log when ``serve.log.enabled`` is false (benchmarks)."""

    def predictions(self, *args: Any) -> None:
        pass

    def feedback(self, items: Any, ts: float) -> None:
        pass

    def error(self, *args: Any) -> None:
        pass

    def close(self) -> None:
        pass


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


@bentoml.service(
    name=f"{SPEC['artifact']}-service",
    workers=SPEC["workers"],
    traffic={"timeout": SPEC["timeout"]},
)
class LooplineService:
    """Serves one registry version (plus an optional shadow) and logs every inference."""

    if _MODEL_TAG:
        champion_ref = bentoml.models.BentoModel(_MODEL_TAG)
    if _SHADOW_TAG:
        shadow_ref = bentoml.models.BentoModel(_SHADOW_TAG)

    def __init__(self) -> None:
        self.threads = SPEC["threads"]
        self._control = Path(SPEC["control"]) if SPEC.get("control") else None
        # a worker (re)started after a reload serves what the others were switched to
        self.model = self._load(self._reloaded_entry() or SPEC["model"])
        self.shadow = self._load(SPEC["shadow"]) if SPEC.get("shadow") else None
        log = SPEC["log"]
        self.log = _NoLog()
        if log.get("enabled", True):
            self.log = InferenceLog(os.environ.get(LOG_ENV) or log["path"],
                                    flush_interval=log["flush_interval"],
                                    flush_rows=log["flush_rows"], shadow=lambda: self.shadow)
        failures.SINKS[:] = [lambda ts, route, status: self.log.error(
            ts, route, status, self.model.version)]
        self._reload_lock = threading.Lock()
        self._control_mtime = self._mtime()
        self._stop = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="loopline-reload-watch",
                                         daemon=True)
        self._watcher.start()
        logger.info("serving %s %s (sha256 %s)%s", SPEC["artifact"], self.model.version,
                    self.model.sha256[:12],
                    f", shadow {self.shadow.version}" if self.shadow else "")

    def _reloaded_entry(self) -> dict[str, Any] | None:
        import json

        try:
            return json.loads(self._control.read_text(encoding="utf-8")) if self._control else None
        except (OSError, ValueError):
            return None

    def _load(self, entry: dict[str, Any]) -> ServedModel:
        return ServedModel.load(_bundle(entry), version=entry["version"], sha256=entry["sha256"],
                                threads=self.threads)

    # ------------------------------------------------------------------ predict

    @bentoml.api(route="/predict")
    async def predict(self, records: Records) -> Prediction:  # type: ignore[valid-type]
        """Class and probabilities for each record (1 to max_batch records)."""
        start = time.perf_counter()
        model = self.model  # one reference for the whole request: a reload never splits it
        labels, proba = model.predict(records)
        elapsed = time.perf_counter() - start
        rid = uuid.uuid4().hex
        classes = model.classes
        labs = labels.tolist()
        probs = proba.tolist()
        body = {"request_id": rid, "model_version": model.version,
                "predictions": [{"class": lab, "probabilities": dict(zip(classes, p))}
                                for lab, p in zip(labs, probs)]}
        self.log.predictions(rid, time.time(), model.version, records, labels, proba, classes,
                             elapsed * 1000.0)
        INFERENCE.labels(model.version).observe(elapsed)
        if len(labs) == 1:
            PREDICTIONS.labels(model.version, labs[0]).inc()
        else:
            for cls, n in Counter(labs).items():
                PREDICTIONS.labels(model.version, cls).inc(n)
        return _json(body)

    @bentoml.api(route="/predict_batch")
    async def predict_batch(self, columns: Columns) -> dict:  # type: ignore[valid-type]
        """Batch scoring in columns: ``{"columns": {feature: [v1, v2, ...]}}``.

        Returns ``predictions`` (one class per row) and ``probabilities`` (one list per row,
        in the order of ``classes``); validation and response are columnar, so a batch of
        1,000 rows costs about a tenth of the same rows as records.
        """
        n, bad = contract.column_length(columns)
        if bad:
            return _json({"error": f"{len(bad)} column(s) of the wrong length", "detail": bad}, 400)
        start = time.perf_counter()
        model = self.model
        labels, proba = model.predict_columns(columns, n)
        elapsed = time.perf_counter() - start
        rid = uuid.uuid4().hex
        labs = labels.tolist()
        body = orjson.dumps({"request_id": rid, "model_version": model.version,
                             "classes": model.classes, "predictions": labs, "probabilities": proba},
                            option=orjson.OPT_SERIALIZE_NUMPY)
        self.log.predictions(rid, time.time(), model.version, contract.ColumnRecords(columns, n),
                             labels, proba, model.classes, elapsed * 1000.0)
        INFERENCE.labels(model.version).observe(elapsed)
        for cls, k in Counter(labs).items():
            PREDICTIONS.labels(model.version, cls).inc(k)
        return Response(body, media_type="application/json")

    # ----------------------------------------------------------------- feedback

    @bentoml.api(route="/feedback")
    async def feedback(self, labels: FeedbackItems) -> dict:  # type: ignore[valid-type]
        """Delayed ground truth: the label of record ``index`` (default 0) of a request."""
        self.log.feedback(((item["request_id"], item.get("index", 0), item["label"])
                           for item in labels), time.time())
        for item in labels:
            FEEDBACK.labels(item["label"]).inc()
        return _json({"recorded": len(labels)})

    # ------------------------------------------------------------ model, reload

    @bentoml.api(route="/model")
    async def model_info(self) -> dict:
        """The served version, its sha256, classes and input contract."""
        m = self.model
        return _json({"artifact": SPEC["artifact"], "model_version": m.version, "sha256": m.sha256,
                      "classes": m.classes, "positive_class": m.positive_class,
                      "inputs": m.inputs, "shadow_version": self.shadow.version if self.shadow else None,
                      "max_batch": SPEC["max_batch"]})

    @bentoml.api(route="/admin/reload")
    async def reload(self, ctx: bentoml.Context, ref: str | None = None) -> dict:
        """Switch to the version of ``ref`` (a stage or version; default: what was served from).

        Needs ``Authorization: Bearer <token>`` with the token from the environment variable
        named by ``serve.admin_token_env``; disabled when that variable is unset.
        """
        status, body = self._authorize(ctx.request.headers.get("authorization", ""))
        if status == 200:
            try:
                body = await asyncio.to_thread(self._reload_to, ref)
            except IntegrityError as err:
                status, body = 409, {"error": str(err)}
            except LooplineError as err:
                status, body = (409 if "no registry" in str(err) else 400), {"error": str(err)}
        RELOADS.labels("ok" if status == 200 else "refused").inc()
        ctx.response.status_code = status
        return body

    def _authorize(self, header: str) -> tuple[int, dict]:
        env = SPEC["admin_token_env"]
        token = os.environ.get(env, "")
        if not token:
            return 403, {"error": f"reload is disabled: {env} is not set for the service"}
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            return 401, {"error": "missing or wrong bearer token"}
        return 200, {}

    def _reload_to(self, ref: str | None) -> dict:
        """Resolve ``ref`` in the registry, load it, swap it in, tell the other workers."""
        from loopline.serving.spec import resolve_model, write_spec

        root = SPEC.get("root")
        if not root:
            raise LooplineError("no registry in this deployment (a built Bento serves the version "
                                "it was built with): deploy the image of the wanted version")
        with self._reload_lock:
            entry = resolve_model(Path(root), ref if ref is not None else SPEC.get("ref"),
                                  models=SPEC.get("models", "models"),
                                  default_stage=SPEC.get("default_stage", "prod"))
            previous = self.model
            new = self._swap(entry)
            if self._control is not None:
                write_spec(self._control, entry)
                self._control_mtime = self._mtime()
        return {"model_version": new.version, "previous_version": previous.version,
                "sha256": new.sha256, "changed": new.version != previous.version}

    def _swap(self, entry: dict[str, Any]) -> ServedModel:
        if entry["version"] == self.model.version and entry["sha256"] == self.model.sha256:
            return self.model
        new, old = self._load(entry), self.model
        if not new.same_contract(old):
            raise LooplineError(f"{new.version} takes different inputs or classes than "
                                f"{old.version}; restart the service to switch to it")
        self.model = new
        logger.info("reloaded: now serving %s (was %s)", new.version, old.version)
        return new

    def _mtime(self) -> int | None:
        try:
            return self._control.stat().st_mtime_ns if self._control else None
        except OSError:
            return None

    def _watch(self) -> None:
        """Follow reloads made through another worker (they rewrite the control file)."""
        import json

        while not self._stop.wait(SPEC["reload_poll"]):
            mtime = self._mtime()
            if mtime is None:
                continue
            with self._reload_lock:
                self._control_mtime = mtime
                try:  # the file is tiny: compare its content, not only its mtime
                    entry = json.loads(self._control.read_text(encoding="utf-8"))
                    if (entry.get("version"), entry.get("sha256")) == (self.model.version,
                                                                       self.model.sha256):
                        continue
                    self._swap(entry)
                    RELOADS.labels("followed").inc()
                except (OSError, ValueError, LooplineError) as err:
                    RELOADS.labels("failed").inc()
                    logger.error("reload from %s failed, still serving %s: %s",
                                 self._control, self.model.version, err)

    @bentoml.on_shutdown
    def _shutdown(self) -> None:
        self._stop.set()
        self.log.close()


# ErrorLog first, so it is the outer one and sees BodyLimit's 413 too
LooplineService.add_asgi_middleware(failures.ErrorLog)
LooplineService.add_asgi_middleware(BodyLimit, max_bytes=SPEC["max_body_bytes"])
