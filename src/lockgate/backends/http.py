"""An OpenAI-compatible HTTP endpoint as a backend (OpenAI, vLLM, Ollama, llama.cpp server, TGI).

The client is aiohttp: its connection pool hands out a keep-alive connection in constant time,
where httpx's pool scans every connection on every request, which dominated the gateway's profile
at a few hundred requests per second (bench/results/overhead.md).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson

from lockgate.backends.base import BackendCall, BackendFailure, Completion, StreamDelta
from lockgate.config.schema import HttpBackendConfig

RETRYABLE_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})
CONNECT_TIMEOUT_S = 5.0


class HttpBackend:
    def __init__(self, name: str, config: HttpBackendConfig) -> None:
        self.name = name
        self._url = config.base_url.rstrip("/") + "/chat/completions"
        headers = dict(config.headers)
        if config.api_key_env and os.environ.get(config.api_key_env):
            headers["authorization"] = f"Bearer {os.environ[config.api_key_env]}"
        headers["content-type"] = "application/json"
        self._headers = headers
        self._max_connections = config.max_connections
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        # Made on first use, inside the worker's event loop (a session belongs to one loop).
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._max_connections, keepalive_timeout=30, ttl_dns_cache=300)
            # Proxies from the environment are ignored: they would silently reroute local endpoints.
            self._session = aiohttp.ClientSession(
                connector=connector, headers=self._headers, trust_env=False, auto_decompress=True
            )
        return self._session

    async def start(self) -> None:
        return None

    def is_ready(self) -> bool:
        return True

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def _payload(self, call: BackendCall, *, stream: bool) -> bytes:
        body: dict[str, Any] = {"model": call.model, "messages": call.messages}
        for field in ("temperature", "top_p", "max_tokens", "stop", "seed", "response_format", "user"):
            value = getattr(call, field)
            if value is not None:
                body[field] = value
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return orjson.dumps(body)

    async def complete(self, call: BackendCall, *, timeout_s: float) -> Completion:
        timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=min(CONNECT_TIMEOUT_S, timeout_s))
        try:
            async with self._client().post(self._url, data=self._payload(call, stream=False), timeout=timeout,
                                           allow_redirects=False) as response:
                _raise_for_status(self.name, response.status)
                raw = await response.read()
        except BackendFailure:
            raise
        except Exception as exc:  # noqa: BLE001 - every transport failure becomes a typed BackendFailure
            raise _transport_failure(self.name, exc, timeout_s, first_token=False) from exc
        try:
            data = orjson.loads(raw)
            choice = data["choices"][0]
            usage = data.get("usage") or {}
            return Completion(
                text=choice["message"].get("content") or "",
                finish_reason=choice.get("finish_reason") or "stop",
                prompt_tokens=int(usage.get("prompt_tokens") or 0),
                completion_tokens=int(usage.get("completion_tokens") or 0),
                model=str(data.get("model") or call.model),
            )
        except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
            raise BackendFailure("malformed", f"{self.name} sent a malformed response", retryable=True) from exc

    async def stream(self, call: BackendCall, *, first_token_timeout_s: float) -> AsyncIterator[StreamDelta]:
        # sock_read bounds the wait for each piece (the first one included); the caller bounds the whole.
        timeout = aiohttp.ClientTimeout(
            total=None, sock_read=first_token_timeout_s, sock_connect=min(CONNECT_TIMEOUT_S, first_token_timeout_s)
        )
        try:
            response = await self._client().post(
                self._url, data=self._payload(call, stream=True), timeout=timeout, allow_redirects=False
            )
        except Exception as exc:  # noqa: BLE001 - typed below
            raise _transport_failure(self.name, exc, first_token_timeout_s, first_token=True) from exc
        try:
            _raise_for_status(self.name, response.status)
            async for delta in _parse_sse(self.name, _lines(response)):
                yield delta
        except BackendFailure:
            raise
        except Exception as exc:  # noqa: BLE001 - typed below
            failure = _transport_failure(self.name, exc, first_token_timeout_s, first_token=False)
            if failure.kind == "timeout":
                failure = BackendFailure("timeout", f"{self.name} stalled mid-stream", retryable=True)
            raise failure from exc
        finally:
            response.release()


async def _lines(response: aiohttp.ClientResponse) -> AsyncIterator[str]:
    async for raw in response.content:
        yield raw.decode("utf-8", errors="replace").rstrip("\r\n")


def _transport_failure(name: str, exc: BaseException, timeout_s: float, *, first_token: bool) -> BackendFailure:
    if isinstance(exc, aiohttp.ClientConnectorError):
        return BackendFailure("connect", f"cannot connect to {name}: {exc.os_error or exc}", retryable=True)
    if isinstance(exc, (asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
        if first_token:
            return BackendFailure("first_token_timeout", f"{name} sent nothing in {timeout_s:.1f}s", retryable=True)
        return BackendFailure("timeout", f"{name} did not answer in {timeout_s:.1f}s", retryable=True)
    if isinstance(exc, (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError, ConnectionResetError)):
        return BackendFailure("stream_cut", f"{name} closed the connection: {exc}", retryable=True)
    return BackendFailure("connect", f"{name}: {type(exc).__name__}: {exc}", retryable=True)


def _raise_for_status(name: str, status: int) -> None:
    if status < 400:
        return
    retryable = status in RETRYABLE_STATUSES
    raise BackendFailure("http_status", f"{name} answered HTTP {status}", retryable=retryable, status=status)


async def _parse_sse(name: str, lines: AsyncIterator[str]) -> AsyncIterator[StreamDelta]:
    finished = False
    async for line in lines:
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            if not finished:
                raise BackendFailure("stream_cut", f"{name} ended the stream without a finish_reason", retryable=True)
            return
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise BackendFailure("malformed", f"{name} sent a malformed stream event", retryable=True) from exc
        if not isinstance(chunk, dict):
            raise BackendFailure("malformed", f"{name} sent a malformed stream event", retryable=True)
        if "error" in chunk:
            raise BackendFailure("http_status", f"{name} reported an error mid-stream", retryable=True)
        try:
            usage = chunk.get("usage") or {}
            delta = StreamDelta(
                prompt_tokens=usage.get("prompt_tokens"), completion_tokens=usage.get("completion_tokens")
            )
            for choice in chunk.get("choices") or []:
                piece = (choice.get("delta") or {}).get("content")
                if piece:
                    delta.text += piece
                if choice.get("finish_reason"):
                    delta.finish_reason = choice["finish_reason"]
                    finished = True
        except (AttributeError, TypeError) as exc:  # valid JSON, but not shaped like a chunk
            raise BackendFailure("malformed", f"{name} sent a malformed stream event", retryable=True) from exc
        if delta.text or delta.finish_reason or usage:
            yield delta
    if not finished:
        raise BackendFailure("stream_cut", f"{name} closed the stream before it finished", retryable=True)
