"""A GGUF model run in-process through llama-cpp-python.

A llama.cpp context is not thread-safe, so each model has one worker thread and requests queue for
it. Generation always runs as a token stream inside that thread, which lets a timed-out or
abandoned request stop the model between tokens instead of holding it to the end.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from lockgate.backends.base import BackendCall, BackendFailure, Completion, StreamDelta
from lockgate.backends.model_files import ModelFileError, resolve_model_file
from lockgate.config.schema import LlamaCppBackendConfig

log = logging.getLogger(__name__)

_END = object()


class LlamaCppBackend:
    def __init__(self, name: str, config: LlamaCppBackendConfig, *, data_dir: Path, threads: int) -> None:
        self.name = name
        self._config = config
        self._data_dir = data_dir
        self._threads = config.threads or threads
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"llama-{name}")
        self._llama: Any = None
        self._load_error: str | None = None
        self._loading: asyncio.Future[None] | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    def is_ready(self) -> bool:
        return self._llama is not None

    @property
    def load_error(self) -> str | None:
        return self._load_error

    async def start(self) -> None:
        """Loads the model in its thread; safe to call many times and from many requests."""
        if self._llama is not None:
            return
        if self._loading is None:
            loop = asyncio.get_running_loop()
            self._loading = asyncio.ensure_future(loop.run_in_executor(self._executor, self._load))
        await asyncio.shield(self._loading)

    def _load(self) -> None:
        from llama_cpp import Llama  # imported late: importing loads the shared library

        from lockgate.backends import chat_templates

        chat_templates.register()
        _avoid_amx_weight_repacking()
        started = time.perf_counter()
        try:
            path = resolve_model_file(self._config.model_file, data_dir=self._data_dir)
            self._llama = Llama(
                model_path=str(path),
                n_ctx=self._config.context_length,
                n_threads=self._threads,
                n_threads_batch=self._threads,
                chat_format=self._config.chat_format,
                verbose=False,
            )
        except (ModelFileError, ValueError, OSError, RuntimeError) as exc:
            self._load_error = str(exc)
            self._loading = None
            log.error("backend %s failed to load: %s", self.name, exc)
            raise
        log.info("backend %s loaded %s in %.1fs", self.name, path.name, time.perf_counter() - started)

    async def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    # -- generation -----------------------------------------------------------------------------

    async def complete(self, call: BackendCall, *, timeout_s: float) -> Completion:
        pieces: list[str] = []
        finish_reason = "stop"
        prompt_tokens = completion_tokens = 0
        async for delta in self._generate(call, first_token_timeout_s=timeout_s, total_timeout_s=timeout_s):
            pieces.append(delta.text)
            if delta.finish_reason:
                finish_reason = delta.finish_reason
            prompt_tokens = delta.prompt_tokens or prompt_tokens
            completion_tokens = delta.completion_tokens or completion_tokens
        return Completion(
            text="".join(pieces),
            finish_reason=finish_reason,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            model=call.model,
        )

    def stream(self, call: BackendCall, *, first_token_timeout_s: float) -> AsyncIterator[StreamDelta]:
        return self._generate(call, first_token_timeout_s=first_token_timeout_s, total_timeout_s=None)

    async def _generate(
        self, call: BackendCall, *, first_token_timeout_s: float, total_timeout_s: float | None
    ) -> AsyncIterator[StreamDelta]:
        try:
            await asyncio.wait_for(self.start(), timeout=first_token_timeout_s)
        except TimeoutError as exc:
            raise BackendFailure("first_token_timeout", f"{self.name} is still loading", retryable=True) from exc
        except Exception as exc:
            raise BackendFailure("internal", f"{self.name} could not load its model", retryable=False) from exc

        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        cancelled = threading.Event()
        started = time.monotonic()

        def put(item: Any) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        def run() -> None:
            if cancelled.is_set():  # gave up while waiting for the model
                put(_END)
                return
            try:
                self._run_generation(call, cancelled, put)
            except Exception as exc:  # noqa: BLE001 - reported to the waiting request, not lost
                put(exc)
            finally:
                put(_END)

        loop.run_in_executor(self._executor, run)
        first = True
        try:
            while True:
                timeout = first_token_timeout_s if first else None
                if total_timeout_s is not None:
                    remaining = total_timeout_s - (time.monotonic() - started)
                    timeout = remaining if timeout is None else min(timeout, remaining)
                try:
                    item = await asyncio.wait_for(queue.get(), timeout=timeout)
                except TimeoutError as exc:
                    kind = "first_token_timeout" if first else "timeout"
                    raise BackendFailure(kind, f"{self.name} timed out", retryable=True) from exc
                if item is _END:
                    return
                if isinstance(item, Exception):
                    raise BackendFailure("internal", f"{self.name} failed: {item}", retryable=False) from item
                first = False
                yield item
        finally:
            cancelled.set()

    def _run_generation(self, call: BackendCall, cancelled: threading.Event, put: Any) -> None:
        llama = self._llama
        kwargs: dict[str, Any] = {
            "messages": call.messages,
            "stream": True,
            "max_tokens": call.max_tokens or 256,
        }
        if call.temperature is not None:
            kwargs["temperature"] = call.temperature
        if call.top_p is not None:
            kwargs["top_p"] = call.top_p
        if call.stop:
            kwargs["stop"] = call.stop
        if call.seed is not None:
            kwargs["seed"] = call.seed
        if call.response_format and call.response_format.get("type") == "json_object":
            kwargs["response_format"] = {"type": "json_object"}
        # Evaluate every prompt from scratch: reusing a cached prefix changes the batch shapes and so the
        # floating-point logits a little, and a seeded request must give the same answer every time.
        llama.reset()
        prompt_tokens = _count_prompt_tokens(llama, call.messages)
        completion_tokens = 0
        finish_reason = "stop"
        generator = llama.create_chat_completion(**kwargs)
        try:
            for chunk in generator:
                if cancelled.is_set():
                    return
                choice = chunk["choices"][0]
                piece = (choice.get("delta") or {}).get("content") or ""
                if piece:
                    completion_tokens += 1
                    put(StreamDelta(text=piece))
                if choice.get("finish_reason"):
                    finish_reason = choice["finish_reason"]
        finally:
            generator.close()
        put(StreamDelta(finish_reason=finish_reason, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens))


def _count_prompt_tokens(llama: Any, messages: list[dict[str, Any]]) -> int:
    # The chat template adds a few tokens per message; 4 is the usual allowance for chatml-like ones.
    text = "\n".join(str(m.get("content") or "") for m in messages)
    return len(llama.tokenize(text.encode("utf-8"), add_bos=False)) + 4 * len(messages)


def default_threads(workers: int) -> int:
    """Shares the machine's cores between worker processes, each holding its own model copy."""
    return max(1, (os.cpu_count() or 1) // max(1, workers))


_AMX_GUARD = threading.Lock()
_amx_checked = False


def _cpu_has_amx() -> bool:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            return any(line.startswith("flags") and " amx_int8" in line for line in cpuinfo)
    except OSError:
        return False


def _avoid_amx_weight_repacking() -> None:
    """On CPUs with AMX (Xeon Sapphire Rapids and later), llama.cpp repacks the weights into AMX
    buffers, and its AMX matrix multiply crashes the process in the first decode (a segfault in
    libggml-cpu; ggml-org/llama.cpp#20824). Repacking is only a speed-up, and llama-cpp-python 0.3.36
    has no argument for it, so on such CPUs every model is loaded with `use_extra_bufts` off."""
    global _amx_checked
    with _AMX_GUARD:
        if _amx_checked:
            return
        _amx_checked = True
        if not _cpu_has_amx():
            return
        import llama_cpp.llama as llama_module

        default_params = llama_module.llama_cpp.llama_model_default_params

        def params_without_repacking() -> Any:
            params = default_params()
            params.use_extra_bufts = False
            return params

        llama_module.llama_cpp.llama_model_default_params = params_without_repacking
        log.info("this CPU has AMX: llama.cpp weight repacking is off (it crashes there)")
