"""Store metrics in the Prometheus text format, through ``prometheus_client``.

Needs the ``metrics`` extra (``pip install 'tornadose[metrics]'``). From Python, the
same numbers are in :meth:`tornadose.core.store.BaseStore.snapshot`.

Metrics, each labelled with ``store`` (the name it was registered under):

==========================================  ======  =====================================
``tornadose_subscribers``                   gauge   subscribers registered now
``tornadose_queued_messages``               gauge   messages waiting in subscriber queues
``tornadose_history_messages``              gauge   messages kept for resuming clients
``tornadose_published_total``               counter messages accepted
``tornadose_delivered_total``               counter messages handed to transports
``tornadose_dropped_total``                 counter messages thrown away by overflow
``tornadose_discarded_total``               counter messages queued for clients that left
``tornadose_replayed_total``                counter messages replayed to resuming clients
``tornadose_resets_total``                  counter resumes answered with the reset signal
``tornadose_disconnects_total{reason}``     counter closed subscriptions, by reason
``tornadose_backend_up``                    gauge   1 while the last round trip to
                                                    Redis succeeded or got a refused
                                                    command; 0 after it was
                                                    unreachable, busy, redirected, or
                                                    refused the login
``tornadose_backend_errors_total{kind}``    counter failed round trips to Redis, by
                                                    kind: ``unreachable``, ``busy``
                                                    (Redis said "not now": BUSY,
                                                    NOREPLICAS, LOADING...),
                                                    ``refused``, ``redirected`` (a
                                                    cluster moving a slot or failing
                                                    over), ``other``
``tornadose_invalid_entries_total``         counter stream entries skipped as invalid
``tornadose_publish_failures_total``        counter submissions Redis did not take
``tornadose_presence_subscribers``          gauge   (``Channels``) subscribers in every
                                                    process (:mod:`tornadose.http.presence`)
==========================================  ======  =====================================
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from tornadose.core.store import BaseStore
from tornadose.http.answer import Answer

__all__ = ["PresenceCollector", "StoreCollector", "metrics_answer", "registry_for"]

StoreMap = Mapping[str, BaseStore] | Callable[[], Mapping[str, BaseStore]]


class StoreCollector(Collector):
    """A ``prometheus_client`` collector reading the stats of named stores at scrape
    time. ``stores`` is a mapping, or a callable returning one (for sets of stores
    that change)."""

    def __init__(self, stores: StoreMap) -> None:
        self._stores = stores

    def collect(self) -> Iterator[Metric]:
        stores = self._stores() if callable(self._stores) else self._stores
        gauges = {
            "subscribers": "Subscribers registered now.",
            "queued_messages": "Messages waiting in subscriber queues.",
            "history_messages": "Messages kept for resuming clients.",
        }
        counters = {
            "published": "Messages accepted by submit().",
            "delivered": "Messages handed to subscribers' transports.",
            "dropped": "Messages thrown away by overflow policies.",
            "discarded": "Messages still queued for subscribers that left or were cut.",
            "replayed": "Messages replayed to resuming clients.",
            "resets": "Resumes answered with the reset signal.",
        }
        families: dict[str, GaugeMetricFamily | CounterMetricFamily] = {
            name: GaugeMetricFamily(f"tornadose_{name}", text, labels=["store"])
            for name, text in gauges.items()
        }
        families.update(
            (name, CounterMetricFamily(f"tornadose_{name}", text, labels=["store"]))
            for name, text in counters.items()
        )
        # Stores with a backend (RedisStore) report these too.
        backend_gauges = {
            "backend_up": (
                "1 while the last round trip to the store's backend succeeded (or got a "
                "refused command), 0 after it was unreachable, busy, redirected or "
                "refused the login."
            )
        }
        backend_counters = {
            "invalid_entries": "Backend entries skipped as invalid messages.",
            "publish_failures": "Submissions the backend did not take (StoreUnavailable).",
        }
        families.update(
            (name, GaugeMetricFamily(f"tornadose_{name}", text, labels=["store"]))
            for name, text in backend_gauges.items()
        )
        families.update(
            (name, CounterMetricFamily(f"tornadose_{name}", text, labels=["store"]))
            for name, text in backend_counters.items()
        )
        errors = CounterMetricFamily(
            "tornadose_backend_errors",
            "Failed round trips to the store's backend, by kind (unreachable, busy, "
            "refused, redirected, other).",
            labels=["store", "kind"],
        )
        disconnects = CounterMetricFamily(
            "tornadose_disconnects", "Closed subscriptions, by reason.", labels=["store", "reason"]
        )
        for store_name, store in stores.items():
            snapshot = store.snapshot()
            for name, family in families.items():
                if name in snapshot:
                    family.add_metric([store_name], snapshot[name])
            if "backend_errors" in snapshot:
                kinds = {
                    name.removeprefix("backend_errors_"): count
                    for name, count in snapshot.items()
                    if name.startswith("backend_errors_")
                }
                # A backend that does not tell kinds: all of them as "other".
                for kind, count in (kinds or {"other": snapshot["backend_errors"]}).items():
                    errors.add_metric([store_name, kind], count)
            for reason, count in store.stats.disconnects.items():
                disconnects.add_metric([store_name, reason], count)
        yield from families.values()
        yield errors
        yield disconnects


class PresenceCollector(Collector):
    """``tornadose_presence_subscribers{store}``: each channel's subscribers in every
    process (:mod:`tornadose.http.presence`), read at scrape time from ``counts``
    (``{channel: {"everywhere": n, ...}}``)."""

    def __init__(self, counts: Callable[[], Mapping[str, Mapping[str, int]]]) -> None:
        self._counts = counts

    def collect(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily(
            "tornadose_presence_subscribers",
            "Subscribers of the channel in every process sharing it.",
            labels=["store"],
        )
        for name, counts in self._counts().items():
            gauge.add_metric([name], counts["everywhere"])
        yield gauge


def registry_for(
    stores: StoreMap, presence: Callable[[], Mapping[str, Mapping[str, int]]] | None = None
) -> CollectorRegistry:
    """A registry holding a :class:`StoreCollector` of ``stores`` and, with
    ``presence``, a :class:`PresenceCollector`."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(stores))
    if presence is not None:
        registry.register(PresenceCollector(presence))
    return registry


def metrics_answer(registry: CollectorRegistry) -> Answer:
    """The HTTP answer serving ``registry`` in the Prometheus text format."""
    return Answer(200, generate_latest(registry), (("Content-Type", CONTENT_TYPE_LATEST),))
