"""Scraping /metrics in tests: over real HTTP, parsed with prometheus_client's parser."""

from __future__ import annotations

import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def fetch(url: str, token: str | None = None, timeout: float = 5.0) -> tuple[int, str]:
    """(status, body) of a GET, errors included."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    req = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as res:  # noqa: S310 - local test server
            return res.status, res.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def scrape(url: str, token: str | None = None) -> Samples:
    status, body = fetch(url, token)
    assert status == 200, (status, body)
    return parse(body)


def try_scrape(url: str, token: str | None = None) -> Samples | None:
    """None while the server is not up yet."""
    try:
        status, body = fetch(url, token, timeout=2.0)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None
    return parse(body) if status == 200 else None


def value(samples: Samples | None, name: str, **labels: str) -> float | None:
    if samples is None:
        return None
    return samples.get((name, frozenset(labels.items())))


def total(samples: Samples, name: str) -> float:
    """The sum of a metric over all its label values."""
    return sum(v for (n, _), v in samples.items() if n == name)
