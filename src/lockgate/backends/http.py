"""An OpenAI-compatible HTTP endpoint as a backend (OpenAI, vLLM, Ollama, llama.cpp server, TGI)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import httpx
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
        self._client = httpx.AsyncClient(
            limits=httpx.Limits(
                max_connections=config.max_connections, max_keepalive_connections=config.max_connections
            ),
            # Upstream answers are never followed elsewhere, and proxies from the environment would
            # silently reroute local endpoints.
            follow_redirects=False,
            trust_env=False,
        )

    async def start(self) -> None:
        return None

    def is_ready(self) -> bool:
        return True

    async def close(self) -> None:
        await self._client.aclose()

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
        timeout = httpx.Timeout(timeout_s, connect=min(CONNECT_TIMEOUT_S, timeout_s))
        try:
            response = await self._client.post(
                self._url, content=self._payload(call, stream=False), headers=self._headers, timeout=timeout
            )
        except httpx.ConnectError as exc:
            raise BackendFailure("connect", f"cannot connect to {self.name}: {exc}", retryable=True) from exc
        except httpx.TimeoutException as exc:
            raise BackendFailure("timeout", f"{self.name} did not answer in {timeout_s:.1f}s", retryable=True) from exc
        except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
            raise BackendFailure("stream_cut", f"{self.name} closed the connection: {exc}", retryable=True) from exc
        except httpx.HTTPError as exc:
            raise BackendFailure("connect", f"{self.name}: {exc}", retryable=True) from exc
        _raise_for_status(self.name, response.status_code)
        try:
            data = orjson.loads(response.content)
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
        # The read timeout bounds the wait for each piece; the caller bounds the whole stream.
        timeout = httpx.Timeout(first_token_timeout_s, connect=min(CONNECT_TIMEOUT_S, first_token_timeout_s))
        request = self._client.build_request(
            "POST", self._url, content=self._payload(call, stream=True), headers=self._headers, timeout=timeout
        )
        try:
            response = await self._client.send(request, stream=True)
        except httpx.ConnectError as exc:
            raise BackendFailure("connect", f"cannot connect to {self.name}: {exc}", retryable=True) from exc
        except httpx.TimeoutException as exc:
            raise BackendFailure(
                "first_token_timeout", f"{self.name} sent nothing in {first_token_timeout_s:.1f}s", retryable=True
            ) from exc
        except httpx.HTTPError as exc:
            raise BackendFailure("connect", f"{self.name}: {exc}", retryable=True) from exc
        try:
            if response.status_code >= 400:
                await response.aread()
            _raise_for_status(self.name, response.status_code)
            async for delta in _parse_sse(self.name, response.aiter_lines()):
                yield delta
        except httpx.TimeoutException as exc:
            raise BackendFailure("timeout", f"{self.name} stalled mid-stream", retryable=True) from exc
        except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
            raise BackendFailure("stream_cut", f"{self.name} cut the stream: {exc}", retryable=True) from exc
        finally:
            await response.aclose()


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
