"""What the console's browser tests do to the page, and read back from it and from the service."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.console.cdp import Page

ROWS_JS = """[...document.querySelectorAll('#models tbody tr')].map(tr => ({
  name: tr.dataset.model, batch: tr.querySelector('[data-batch]').dataset.batch,
  cells: [...tr.cells].map(td => td.textContent.trim())}))"""
BOXES_JS = """[...document.querySelectorAll('%s rect.box')].map(r => ({
  x: +r.getAttribute('x'), y: +r.getAttribute('y'), w: +r.getAttribute('width'), h: +r.getAttribute('height'),
  label: r.nextElementSibling.textContent}))"""


def set_value(page: Page, selector: str, value: str) -> None:
    page.evaluate(f"(() => {{ const e = document.querySelector({json.dumps(selector)}); e.value = {json.dumps(value)};"
                  " e.dispatchEvent(new Event('input')); return true; })()")


def message(page: Page, selector: str) -> dict[str, str]:
    """The panel's message once it has settled (not 'working')."""
    page.wait_for(f"(e => e.dataset.kind === 'ok' || e.dataset.kind === 'key' || e.dataset.kind === 'error')"
                  f"(document.querySelector({json.dumps(selector)}))", timeout=90)
    return page.evaluate(f"(e => ({{kind: e.dataset.kind, text: e.textContent}}))"
                         f"(document.querySelector({json.dumps(selector)}))")


def boxes(page: Page, svg: str) -> list[dict[str, Any]]:
    return page.evaluate(BOXES_JS % svg)


def families(page: Page) -> dict[str, dict[str, str]]:
    page.wait_for("document.querySelectorAll('#families .fam').length === 3")
    return {f["name"]: f for f in page.evaluate(
        "[...document.querySelectorAll('#families .fam')].map(f => ({name: f.dataset.family, state: f.dataset.state,"
        " text: f.textContent}))")}


def route_requests(page: Page, route: str) -> int:
    value = page.evaluate(f"(e => e ? e.dataset.requests : null)"
                          f"(document.querySelector('#routes tr[data-route=\"{route}\"] [data-requests]'))")
    return int(value) if value is not None else -1


def exposed(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """`/metrics` of the service, by sample name and labels."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def requests_of(url: str, route: str) -> int:
    """Every request `/metrics` counted for `route`, whatever its outcome."""
    return int(sum(value for (name, labels), value in exposed(url).items()
                   if name == "mtphotos_requests_total" and dict(labels).get("route") == route))


def upload(page: Page, selector: str, path: Path) -> None:
    page.set_files(selector, [path])
