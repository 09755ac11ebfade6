"""`hfkit serve`: an OpenAI-compatible HTTP server (FastAPI + uvicorn) for run folders, adapter runs
and cached Hub ids: `/v1/chat/completions` (with and without streaming), `/v1/completions` and
`/v1/models`.

Why not `transformers serve`: it answers chats through a chat template only, and hfkit's instruction
runs converse through their own prompt format (hfkit.conversation); here every answer is produced by
`hfkit.inference.generate`, the function behind `hfkit generate` and `hfkit chat`, so a greedy answer
is the same text those commands give. A completion's prompt is encoded as `hfkit generate` encodes
it; a chat goes through the run's chat template or its prompt format, as `hfkit chat`.

Decoding: `temperature` 0 or absent is greedy (the run's own default, as `hfkit generate`; OpenAI's
default is 1), above 0 samples; `top_p`, `seed`, `stop` and `max_tokens` (absent: 64 as `hfkit
generate`, `max_completion_tokens` too) as OpenAI has them; `n` is 1. Errors are OpenAI's shape
(`{"error": {"message", "type", "param", "code"}}`) with 4xx statuses; a bad request never stops
the server. Requests to one model are answered one at a time (one lock per model).
"""
# no `from __future__ import annotations`: FastAPI reads the endpoints' annotations (Request) at definition
import json
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import HfkitError

LOOPBACK = ("127.0.0.1", "localhost", "::1")
API_KEY_ENV = "HFKIT_API_KEY"
DEFAULT_MAX_TOKENS = 64  # as `hfkit generate`


@dataclass
class Served:
    """One model the server answers for."""
    id: str
    ref: str
    model: Any
    tokenizer: Any
    talk: Any = None  # hfkit.conversation.Conversation, or None: the model does not converse
    no_chat: str = ""  # why it does not
    created: int = field(default_factory=lambda: int(time.time()))
    lock: threading.Lock = field(default_factory=threading.Lock)


def model_id(ref: str) -> str:
    """A run folder is served under its folder's name, a Hub id under itself."""
    p = Path(ref)
    return p.resolve().name if p.is_dir() else ref


def load_served(refs: list[str]) -> dict[str, Served]:
    """Every model, loaded once (an adapter run on its base, through peft); ids must differ."""
    from .conversation import conversation_for
    from .data.tokenizer import load_tokenizer
    from .models import load_model

    ids: dict[str, str] = {}
    for ref in refs:
        name = model_id(ref)
        if name in ids:
            raise HfkitError(f"'{ref}' and '{ids[name]}' would both be served as model '{name}': serve one of them, "
                             f"or copy one to a folder of another name")
        ids[name] = ref
    served = {}
    for name, ref in ids.items():
        model, tokenizer = load_model(ref), load_tokenizer(ref)
        model.eval()
        try:
            talk, why = conversation_for(ref, tokenizer), ""
        except HfkitError as e:
            talk, why = None, str(e)
        served[name] = Served(name, ref, model, tokenizer, talk, why)
    return served


class ApiError(Exception):
    """An OpenAI-style error response."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


def _settings(req: dict) -> dict:
    """GenerationSettings from an OpenAI request's decoding fields, checked."""
    from .inference.generation import GenerationSettings, out_of_range

    max_tokens = req.get("max_completion_tokens", req.get("max_tokens"))
    max_tokens = DEFAULT_MAX_TOKENS if max_tokens is None else max_tokens
    temperature = req.get("temperature")
    top_p = req.get("top_p")
    n = req.get("n")
    checks = [("max_tokens", max_tokens, int, {"min": 1}), ("temperature", temperature, float, {"min": 0, "max": 2}),
              ("top_p", top_p, float, {"above": 0, "max": 1}), ("n", n, int, {"min": 1, "max": 1}),
              ("seed", req.get("seed"), int, {})]
    for name, value, kind, limits in checks:
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not isinstance(value, int)):
            raise ApiError(400, f"'{name}' must be {'an integer' if kind is int else 'a number'}, got {value!r}", name)
        problem = out_of_range(value, limits)
        if problem:
            raise ApiError(400, f"'{name}' {problem}" + (" (one choice per request)" if name == "n" else ""), name)
    sample = bool(temperature)
    return GenerationSettings(max_new_tokens=max_tokens, do_sample=sample,
                              temperature=float(temperature) if sample else 1.0,
                              top_p=float(top_p) if sample and top_p is not None else None).kwargs()


def _stops(req: dict) -> list[str]:
    stop = req.get("stop")
    if stop is None:
        return []
    stops = [stop] if isinstance(stop, str) else stop
    if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops) or len(stops) > 4:
        raise ApiError(400, "'stop' must be a non-empty string or a list of up to 4 of them", "stop")
    return stops


def _message_text(content, i: int) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
                                         for p in content):
        return "".join(p["text"] for p in content)
    raise ApiError(400, f"messages[{i}].content must be text (a string, or a list of text parts)", f"messages[{i}].content")


def _messages(req: dict) -> list[dict]:
    messages = req.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "'messages' must be a non-empty list of {role, content} objects", "messages")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant", "developer"):
            raise ApiError(400, f"messages[{i}] must be an object with a role of system, user or assistant",
                           f"messages[{i}]")
        out.append({"role": "system" if m["role"] == "developer" else m["role"],
                    "content": _message_text(m.get("content"), i)})
    return out


class _Counter:
    """A generation streamer that counts the new tokens (the first `put` is the prompt) and, given a
    text streamer, passes everything on to it."""

    def __init__(self, inner=None):
        self.inner, self.tokens, self.first = inner, 0, True

    def put(self, value):
        if self.first:
            self.first = False
        else:
            self.tokens += int(value.numel())
        if self.inner is not None:
            self.inner.put(value)

    def end(self):
        if self.inner is not None:
            self.inner.end()

    def finish(self, stopped: bool, settings: dict) -> str:
        """OpenAI's finish_reason: a stop string or the end of the answer, else the token limit."""
        return "stop" if stopped or self.tokens < settings["max_new_tokens"] else "length"

    def usage(self, n_prompt: int) -> dict:
        return {"prompt_tokens": n_prompt, "completion_tokens": self.tokens, "total_tokens": n_prompt + self.tokens}


def _cut(text: str, stops: list[str]) -> tuple[str, bool]:
    """The text up to the first stop string, and whether one was found."""
    hits = [text.index(s) for s in stops if s in text]
    return (text[:min(hits)], True) if hits else (text, False)


class Server:
    """The models and what each endpoint does with a request (the FastAPI app calls these)."""

    def __init__(self, served: dict[str, Served]):
        self.served = served

    def model(self, req: dict) -> Served:
        name = req.get("model")
        if not isinstance(name, str):
            raise ApiError(400, "'model' is required (GET /v1/models lists them)", "model")
        if name not in self.served:
            raise ApiError(404, f"The model '{name}' does not exist (served: {', '.join(self.served)})", "model",
                           "model_not_found")
        return self.served[name]

    def models(self) -> dict:
        return {"object": "list", "data": [{"id": s.id, "object": "model", "created": s.created, "owned_by": "hfkit"}
                                           for s in self.served.values()]}

    def _prepare(self, req: dict, chat: bool):
        served = self.model(req)
        settings, stops = _settings(req), _stops(req)
        if chat:
            if served.talk is None:
                raise ApiError(400, served.no_chat + " (use /v1/completions)", "model", "model_does_not_chat")
            try:
                prompt = served.talk.prompt(_messages(req))
            except HfkitError as e:
                raise ApiError(400, str(e), "messages") from None
            kw = served.talk.generate_kwargs()
            reply = served.talk.reply
        else:
            prompt = req.get("prompt")
            if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
                prompt = prompt[0]
            if not isinstance(prompt, str):
                raise ApiError(400, "'prompt' must be a string (one prompt per request)", "prompt")
            kw, reply = {}, (lambda text: text)
        n_prompt = len(served.tokenizer(prompt, add_special_tokens=kw.get("add_special_tokens", False))["input_ids"])
        from .models import max_positions

        limit = None if getattr(served.model.config, "is_encoder_decoder", False) else max_positions(served.model.config)
        if limit is not None and n_prompt + settings["max_new_tokens"] > limit:
            raise ApiError(400, f"This model's maximum context length is {limit} tokens. However, you requested "
                                f"{n_prompt + settings['max_new_tokens']} tokens ({n_prompt} in the prompt, "
                                f"{settings['max_new_tokens']} for the completion). Please reduce the length of the "
                                f"messages or completion.", "max_tokens", "context_length_exceeded")
        return served, prompt, settings, stops, kw, reply, n_prompt

    def _generate(self, served: Served, prompt: str, settings: dict, kw: dict, seed, streamer) -> str:
        from .inference.generation import generate

        with served.lock:
            try:
                return generate(served.model, served.tokenizer, [prompt], seed=seed, streamer=streamer, **kw,
                                **settings)[0][0]
            except HfkitError as e:
                raise ApiError(400, str(e), "max_tokens", "context_length_exceeded") from None

    def answer(self, req: dict, chat: bool) -> dict:
        served, prompt, settings, stops, kw, reply, n_prompt = self._prepare(req, chat)
        counter = _Counter()
        text = self._generate(served, prompt, settings, kw, req.get("seed"), counter)
        text, stopped = _cut(reply(text), stops)
        finish, usage = counter.finish(stopped, settings), counter.usage(n_prompt)
        created, rid = int(time.time()), uuid.uuid4().hex
        if chat:
            return {"id": f"chatcmpl-{rid}", "object": "chat.completion", "created": created, "model": served.id,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                 "finish_reason": finish, "logprobs": None}], "usage": usage}
        return {"id": f"cmpl-{rid}", "object": "text_completion", "created": created, "model": served.id,
                "choices": [{"index": 0, "text": text, "finish_reason": finish, "logprobs": None}], "usage": usage}

    def stream(self, req: dict, chat: bool):
        """Server-sent events: the answer in pieces whose concatenation is the non-streamed answer."""
        from transformers import TextIteratorStreamer

        served, prompt, settings, stops, kw, reply, n_prompt = self._prepare(req, chat)
        text_streamer = TextIteratorStreamer(served.tokenizer, skip_prompt=True, skip_special_tokens=True)
        counter = _Counter(text_streamer)
        failure: list[Exception] = []

        def work():
            try:
                self._generate(served, prompt, settings, kw, req.get("seed"), counter)
            except Exception as e:  # reported in the stream
                failure.append(e)
                text_streamer.end()

        created, rid = int(time.time()), uuid.uuid4().hex
        kind = "chat.completion.chunk" if chat else "text_completion"
        include_usage = bool((req.get("stream_options") or {}).get("include_usage"))

        def chunk(delta: str | None, finish: str | None = None, first: bool = False) -> str:
            if chat:
                d = {"role": "assistant", "content": ""} if first else ({"content": delta} if delta is not None else {})
                choice = {"index": 0, "delta": d, "finish_reason": finish, "logprobs": None}
                body = {"id": f"chatcmpl-{rid}", "object": kind, "created": created, "model": served.id,
                        "choices": [choice]}
            else:
                body = {"id": f"cmpl-{rid}", "object": kind, "created": created, "model": served.id,
                        "choices": [{"index": 0, "text": delta or "", "finish_reason": finish, "logprobs": None}]}
            return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

        def events():
            thread = threading.Thread(target=work, daemon=True)
            thread.start()
            if chat:
                yield chunk(None, first=True)
            hold = max((len(s) for s in stops), default=1) - 1  # a stop string may be arriving
            raw, sent, stopped = "", "", False
            for piece in text_streamer:
                raw += piece
                text, stopped = _cut(reply(raw), stops)
                ready = text if stopped else text[:len(text) - hold] if hold else text
                if ready.startswith(sent) and len(ready) > len(sent):
                    yield chunk(ready[len(sent):])
                    sent = ready
                if stopped:
                    break
            thread.join()
            if failure:
                err = failure[0] if isinstance(failure[0], ApiError) else ApiError(500, str(failure[0]), kind="server_error")
                yield f"data: {json.dumps(err.body())}\n\n"
                return
            text, stopped = _cut(reply(raw), stops)
            if text.startswith(sent) and len(text) > len(sent):
                yield chunk(text[len(sent):])
            finish = counter.finish(stopped, settings)
            yield chunk(None, finish)
            if include_usage:
                usage = counter.usage(n_prompt)
                yield f"data: {json.dumps({'id': rid, 'object': kind, 'created': created, 'model': served.id, 'choices': [], 'usage': usage})}\n\n"
            yield "data: [DONE]\n\n"

        return events()


def make_app(served: dict[str, Served], api_key: str | None = None):
    """The FastAPI app over `served`; with `api_key`, every request needs `Authorization: Bearer KEY`."""
    import hmac

    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, StreamingResponse
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from .version import __version__

    server = Server(served)
    app = FastAPI(title="hfkit serve", version=__version__)

    @app.exception_handler(ApiError)
    async def api_error(request, e: ApiError):
        return JSONResponse(e.body(), status_code=e.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(request, e):
        return JSONResponse(ApiError(400, f"invalid request: {e.errors()[:1]}").body(), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, e):
        return JSONResponse(ApiError(e.status_code, str(e.detail), code=None,
                                     kind="invalid_request_error").body(), status_code=e.status_code)

    @app.middleware("http")
    async def authorize(request: Request, call_next):
        if api_key is not None:
            given = request.headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {api_key}".encode()):
                return JSONResponse(ApiError(401, "Incorrect API key provided", code="invalid_api_key",
                                             kind="authentication_error").body(), status_code=401)
        return await call_next(request)

    async def body_of(request: Request) -> dict:
        try:
            req = json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ApiError(400, f"the request body is not valid JSON ({e})") from None
        if not isinstance(req, dict):
            raise ApiError(400, "the request body must be a JSON object")
        return req

    async def respond(request: Request, chat: bool):
        req = await body_of(request)
        if req.get("stream"):
            events = await run_in_threadpool(server.stream, req, chat)  # checks raise before the stream starts
            return StreamingResponse(events, media_type="text/event-stream")
        return JSONResponse(await run_in_threadpool(server.answer, req, chat))

    @app.get("/v1/models")
    async def models():
        return server.models()

    @app.get("/v1/models/{name:path}")
    async def one_model(name: str):
        return next(m for m in server.models()["data"] if m["id"] == server.model({"model": name}).id)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        return await respond(request, True)

    @app.post("/v1/completions")
    async def completions(request: Request):
        return await respond(request, False)

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    return app


def check_bind(host: str, allow_remote: bool, needs: str = "an API key", use: str = "clients send it as their api_key"
               ) -> str | None:
    """Loopback by default; another host needs `--allow-remote` and a key in HFKIT_API_KEY (`needs`:
    what the command calls it, `use`: how it is used). Returns the key, if set."""
    key = os.environ.get(API_KEY_ENV) or None
    if host in LOOPBACK:
        return key
    if not allow_remote:
        raise HfkitError(f"--host {host} is not loopback: it would open your models to the network; add "
                         f"--allow-remote (and set {API_KEY_ENV}) if that is what you want")
    if not key:
        raise HfkitError(f"--host {host} with --allow-remote needs {needs}: set {API_KEY_ENV} ({use})")
    return key
