"""The service's Prometheus metrics, beside BentoML's own (requests, errors, latency)."""

from __future__ import annotations

from collections import Counter

import bentoml

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

CLIENT_DISCONNECTS = bentoml.metrics.Counter(
    name="loopline_client_disconnects",
    documentation="Requests whose client went away before sending the whole body, by route",
    labelnames=["route"])


def predicted(version: str, labels: list, seconds: float) -> None:
    """Count one request's predicted classes and observe its model time."""
    INFERENCE.labels(version).observe(seconds)
    if len(labels) == 1:
        PREDICTIONS.labels(version, labels[0]).inc()
    else:
        for cls, n in Counter(labels).items():
            PREDICTIONS.labels(version, cls).inc(n)


def reloaded(outcome: str) -> None:
    """Count a reload: ``ok``, ``refused`` (HTTP), ``followed`` or ``failed`` (the watcher)."""
    RELOADS.labels(outcome).inc()


ROUTES = frozenset({"/predict", "/predict_batch", "/feedback", "/model", "/admin/reload"})


def client_disconnected(route: str) -> None:
    """Count a client that went away mid-body (not a server error: nothing was answered)."""
    CLIENT_DISCONNECTS.labels(route if route in ROUTES else "other").inc()
