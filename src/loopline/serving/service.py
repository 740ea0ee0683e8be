"""The loopline BentoML service: ``bentoml serve loopline.serving.service:LooplineService``.

Started by ``loopline serve`` (or from a Bento built by ``loopline build``), which writes the
spec this module reads at import time (:mod:`loopline.serving.spec`). Endpoints:

- ``POST /predict`` ``{"records": [...]}``: per record the class and the probabilities, plus
  ``model_version`` and ``request_id``; records are validated against the model card's input
  contract (:mod:`loopline.serving.contract`), a bad one gets 400 naming each bad field.
- ``POST /predict_batch`` ``{"columns": {feature: [...]}}``: the same, in columns.
- ``POST /feedback``: delayed ground truth for ``loopline monitor``.
- ``POST /admin/reload`` (bearer token): switch every worker to the version now assigned to
  the stage, without failing requests in flight (:mod:`loopline.serving.reload`).
- ``POST /model``: the served version, the rollout's candidate and share, and the input
  contract; BentoML's ``/livez``,
  ``/readyz`` and ``/metrics`` (with :mod:`loopline.serving.metrics`).

During a rollout, the declared share of requests is answered by the candidate
(:mod:`loopline.serving.split`). Every prediction, with the version that answered (and a
shadow version's, never returned), goes to the inference log off the response path, and so
does every request error (:mod:`loopline.serving.request_errors`).
"""

import asyncio
import logging
import os
import time
from typing import Any

import bentoml
import orjson
from pydantic import ConfigDict, create_model
from starlette.responses import Response

from loopline.serving import bundle, contract, log_check, metrics, request_errors, shipping
from loopline.serving.log_writer import InferenceLog, request_id
from loopline.serving.middleware import NoLog, RequestGuard, quiet_bad_requests
from loopline.serving.openapi import DocumentedErrors
from loopline.serving.reload import Reloader
from loopline.serving.spec import LOG_ENV, read_spec

logger = logging.getLogger("loopline.serving")

SPEC, SPEC_PATH = read_spec()
_CARD = bundle.check_spec(SPEC, SPEC_PATH.parent)  # a wrong file stops start-up here
LOG_PATH = os.environ.get(LOG_ENV) or SPEC["log"]["path"]
if SPEC["log"].get("enabled", True) and os.environ.get(log_check.CHECKED_ENV) != str(LOG_PATH):
    # started without `loopline serve` (a Bento): check the log here, before any worker
    try:
        _state = log_check.open_log(LOG_PATH)
    except log_check.BadLog as err:
        logger.error("error: %s", err)
        raise SystemExit(2) from None
    logger.info("inference log %s checked%s%s", LOG_PATH,
                " (new)" if _state["created"] else "",
                f", {_state['replayed']} spooled rows replayed" if _state["replayed"] else "")
_PASS = _CARD.get("passthrough") or ()  # the file's other columns: accepted, ignored
Records = contract.records_type(contract.record_type(_CARD["inputs"], passthrough=_PASS),
                                SPEC["max_batch"])
Columns = contract.columns_type(_CARD["inputs"], SPEC["max_batch"], passthrough=_PASS)
FeedbackItems = contract.feedback_type(_CARD["classes"])
quiet_bad_requests()


class _Body(bentoml.IODescriptor):
    """A request body: a field the endpoint does not take is refused (400), as in a record."""

    model_config = ConfigDict(extra="forbid")


def _body(name: str, **fields: Any) -> type:
    """The body model of one endpoint: ``field=(type, default)``, nothing else accepted."""
    return create_model(name, __base__=_Body, **fields)


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def _answer(ctx: Any, body: Any, status: int) -> Response:
    """An error answer. BentoML sets the status of the response of a method that takes
    ``ctx`` from ``ctx.response.status_code``, so for those both are set."""
    if ctx is not None:
        ctx.response.status_code = status
    return _json(body, status)


def _unlogged(ctx: Any = None) -> Response:
    """503 while neither the inference log nor its spool can be written: a prediction the
    log would lose is not answered (the service log says why)."""
    return _answer(ctx, {"error": "the inference log cannot be written: predictions are "
                                  "paused until it can (see the service log)"}, 503)


def _load(entry: dict[str, Any]) -> bundle.ServedVersion:
    return bundle.load(bundle.locate(entry, SPEC_PATH.parent), version=entry["version"],
                       sha256=entry["sha256"], threads=SPEC["threads"])


@bentoml.service(name=f"{SPEC['artifact']}-service", workers=SPEC["workers"],
                 traffic={"timeout": SPEC["timeout"]})
class LooplineService:
    """Serves one registry version (plus an optional shadow) and logs every inference."""

    if SPEC["model"].get("bentoml_model"):
        champion_ref = bentoml.models.BentoModel(SPEC["model"]["bentoml_model"])
    if (SPEC.get("shadow") or {}).get("bentoml_model"):
        shadow_ref = bentoml.models.BentoModel(SPEC["shadow"]["bentoml_model"])

    def __init__(self) -> None:
        self.reloader = Reloader(SPEC, _load, metrics.reloaded)
        self.shadow = _load(SPEC["shadow"]) if SPEC.get("shadow") else None
        log = SPEC["log"]
        self.log = NoLog()
        self.shipper = None
        if log.get("enabled", True):
            self.log = InferenceLog(LOG_PATH, flush_interval=log["flush_interval"],
                                    flush_rows=log["flush_rows"], shadow=lambda: self.shadow,
                                    count=metrics.log_rows)
            self.shipper = shipping.start(SPEC, LOG_PATH, on_backlog=metrics.log_backlog)
        # an error before routing (a bad request) is the serving version's
        request_errors.SINKS[:] = [lambda ts, route, status, version: self.log.request_error(
            ts, route, status, version or self.reloader.served.version)]
        self.reloader.start()
        served = self.reloader.served
        routed = self.reloader.split
        logger.info("serving %s %s (sha256 %s)%s%s", SPEC["artifact"], served.version,
                    served.sha256[:12], f", shadow {self.shadow.version}" if self.shadow else "",
                    f", rollout {routed.tag}: {routed.share:g}% to {routed.candidate.version}"
                    if routed.candidate else "")

    @bentoml.api(route="/predict", input_spec=_body("PredictInput", records=(Records, ...),
                                                    key=(str | None, None)))
    async def predict(self, records: Records, ctx: bentoml.Context,  # type: ignore[valid-type]
                      key: str | None = None) -> contract.Prediction:
        """Class and probabilities for each record (1 to max_batch records).

        During a rollout, ``key`` (or the header ``X-Loopline-Key``) keeps a caller on one
        version; ``model_version`` says which answered.
        """
        if not self.log.accepting:
            return _unlogged(ctx)
        rid = request_id()
        # one split per request: a reload never changes the version of a request under way
        served = self.reloader.split.route(key, ctx.request.headers, rid)
        request_errors.routed_to(ctx.request.scope, served.version)
        start = time.perf_counter()
        labels, proba = served.model.run_records(records)
        elapsed = time.perf_counter() - start
        labs = labels.tolist()
        body = {"request_id": rid, "model_version": served.version,
                "predictions": [{"class": lab, "probabilities": dict(zip(served.classes, p, strict=True))}
                                for lab, p in zip(labs, proba.tolist(), strict=True)]}
        self.log.predictions(rid, time.time(), served.version, records, labels, proba,
                             served.classes, elapsed * 1000.0)
        metrics.predicted(served.version, labs, elapsed)
        return _json(body)

    @bentoml.api(route="/predict_batch",
                 input_spec=_body("PredictBatchInput", columns=(Columns, ...),
                                  key=(str | None, None)))
    async def predict_batch(self, columns: Columns, ctx: bentoml.Context,  # type: ignore[valid-type]
                            key: str | None = None) -> dict:
        """Batch scoring in columns: ``{"columns": {feature: [v1, v2, ...]}}``.

        Returns ``predictions`` (one class per row) and ``probabilities`` (one list per row,
        in the order of ``classes``); validation and response are columnar, so a batch of
        1,000 rows costs about a tenth of the same rows as records.
        """
        if not self.log.accepting:
            return _unlogged(ctx)
        if _PASS:  # the file's other columns: accepted in any shape, ignored
            columns = {k: v for k, v in columns.items() if k not in _PASS}
        n, bad = contract.column_length(columns)
        if bad:
            return _answer(ctx, {"error": f"{len(bad)} column(s) of the wrong length",
                                 "detail": bad}, 400)
        rid = request_id()
        served = self.reloader.split.route(key, ctx.request.headers, rid)
        request_errors.routed_to(ctx.request.scope, served.version)
        start = time.perf_counter()
        labels, proba = served.model.run_columns(columns, n)
        elapsed = time.perf_counter() - start
        labs = labels.tolist()
        body = orjson.dumps({"request_id": rid, "model_version": served.version,
                             "classes": served.classes, "predictions": labs,
                             "probabilities": proba}, option=orjson.OPT_SERIALIZE_NUMPY)
        self.log.predictions(rid, time.time(), served.version, contract.ColumnRecords(columns, n),
                             labels, proba, served.classes, elapsed * 1000.0)
        metrics.predicted(served.version, labs, elapsed)
        return Response(body, media_type="application/json")

    @bentoml.api(route="/feedback", input_spec=_body("FeedbackInput", labels=(FeedbackItems, ...)))
    async def feedback(self, labels: FeedbackItems) -> dict:  # type: ignore[valid-type]
        """Delayed ground truth: the label of record ``index`` (default 0) of a request."""
        if not self.log.accepting:
            return _unlogged()
        self.log.feedback(((item["request_id"], item.get("index", 0), item["label"])
                           for item in labels), time.time())
        for item in labels:
            metrics.FEEDBACK.labels(item["label"]).inc()
        return _json({"recorded": len(labels)})

    @bentoml.api(route="/model", input_spec=_body("ModelInput"))
    async def model_info(self) -> dict:
        """The served version, its sha256, classes and input contract."""
        m = self.reloader.served
        return _json({"artifact": SPEC["artifact"], "model_version": m.version,
                      "sha256": m.sha256, "classes": m.classes,
                      "positive_class": m.positive_class, "inputs": m.inputs,
                      "shadow_version": self.shadow.version if self.shadow else None,
                      **self.reloader.split.describe(),
                      "max_batch": SPEC["max_batch"]})

    @bentoml.api(route="/admin/reload", input_spec=_body("ReloadInput", ref=(str | None, None)))
    async def reload(self, ctx: bentoml.Context, ref: str | None = None) -> dict:
        """Switch to the version of ``ref`` (a stage or version; default: what was served from).

        Needs ``Authorization: Bearer <token>`` with the token from the environment variable
        named by ``serve.admin_token_env``; disabled when that variable is unset.
        """
        status, body = await asyncio.to_thread(
            self.reloader.handle, ctx.request.headers.get("authorization", ""), ref)
        metrics.reloaded("ok" if status == 200 else "refused")
        ctx.response.status_code = status
        return body

    @bentoml.on_shutdown
    def _shutdown(self) -> None:
        self.reloader.stop()
        self.log.close()
        if self.shipper is not None:
            self.shipper.close()


# RequestErrors first, so it is the outer one and sees RequestGuard's 4xx too
LooplineService.add_asgi_middleware(DocumentedErrors)
LooplineService.add_asgi_middleware(request_errors.RequestErrors)
LooplineService.add_asgi_middleware(RequestGuard, max_bytes=SPEC["max_body_bytes"],
                                    total_timeout=float(SPEC["timeout"]),
                                    on_disconnect=metrics.client_disconnected)
