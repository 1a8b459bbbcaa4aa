"""The benches' HTTP client: one keep-alive urllib3 pool, safe to share between threads.

The client runs on the cores the measured service runs on, so it must cost little. A multipart POST of a
280 KB photo to /represent and reading its JSON answer took 1.3 ms of CPU with urllib3 and 10.4 ms with httpx
(2 cores, concurrency 4): with httpx the measuring client alone took ~7% of the machine from our side.
"""

from __future__ import annotations

import json
from typing import Any

import urllib3

API_KEY = "mt_photos_ai_extra"


class BenchClient:
    def __init__(self, base_url: str, api_key: str = API_KEY, timeout_s: float = 300.0, connections: int = 16) -> None:
        self.base_url = base_url.rstrip("/")
        self.headers = {"api-key": api_key}
        self.pool = urllib3.PoolManager(maxsize=connections, timeout=urllib3.Timeout(total=timeout_s), retries=False)

    def post_file(self, route: str, data: bytes, filename: str = "photo.jpg") -> Any:
        """A multipart upload in the field `file`, as MT Photos sends photos; the JSON answer."""
        fields = {"file": (filename, data, "application/octet-stream")}
        response = self.pool.request("POST", self.base_url + route, fields=fields, headers=self.headers)
        return self._answer(route, response)

    def post_predict(self, entries: Any, image: bytes) -> Any:
        """immich's `/predict` as its server posts it: multipart `entries` (JSON) and a Blob `image`, no key."""
        fields = {"entries": json.dumps(entries), "image": ("blob", image, "application/octet-stream")}
        response = self.pool.request("POST", self.base_url + "/predict", fields=fields)
        return self._answer("/predict", response)

    def post_json(self, route: str, body: Any) -> Any:
        headers = {**self.headers, "Content-Type": "application/json"}
        response = self.pool.request("POST", self.base_url + route, body=json.dumps(body).encode(), headers=headers)
        return self._answer(route, response)

    @staticmethod
    def _answer(route: str, response: urllib3.BaseHTTPResponse) -> Any:
        """The JSON answer; an HTTP error or an MT Photos failure (a 200 body with `msg`) raises."""
        if response.status != 200:
            raise RuntimeError(f"{route}: HTTP {response.status}: {response.data[:200]!r}")
        body = json.loads(response.data)
        if isinstance(body, dict) and "msg" in body:
            raise RuntimeError(f"{route} failed: {body['msg']}")
        return body
