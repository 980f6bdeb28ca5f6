"""A real ComfyUI server for tests: start it, queue prompts, read the results.

Standard library only (HTTP through urllib), so it runs in the project's own
venv. Part of the support code for testing ComfyUI workflows (:mod:`comfy_e2e`
re-exports it).

* :func:`start_server` / :func:`post_and_wait` run a real ComfyUI server on
  127.0.0.1 and execute a prompt on it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# --------------------------------------------------------------------------
# Real server
# --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_custom_nodes_dir(repo_root: str | os.PathLike, parent: str | os.PathLike, name: str = "ComfyUI-LiWi") -> Path:
    """A folder holding only a symlink ``name`` -> ``repo_root``.

    ComfyUI imports each folder under custom_nodes by path; the repo's own
    folder may be called ``main``, which would shadow ComfyUI's main.py.
    """
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    link = parent / name
    if not link.exists():
        link.symlink_to(Path(repo_root).resolve(), target_is_directory=True)
    return parent


class ServerError(RuntimeError):
    pass


@dataclasses.dataclass
class Server:
    base_url: str
    port: int
    proc: subprocess.Popen
    log_path: Path
    output_dir: Path
    input_dir: Path
    temp_dir: Path

    def log_tail(self, n: int = 80) -> str:
        return log_tail(self.log_path, n)

    def object_info(self, node_class: str | None = None) -> dict:
        url = f"{self.base_url}/object_info" + (f"/{node_class}" if node_class else "")
        status, body = http_json("GET", url)
        if status != 200:
            raise ServerError(f"GET {url}: {status} {body!r}")
        return body


def http_json(method: str, url: str, body: Any = None, timeout: float = 60.0) -> tuple[int, Any]:
    """``(status, decoded JSON or text)``; HTTP error statuses are returned, not raised."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    try:
        return status, json.loads(raw.decode() or "null")
    except (UnicodeDecodeError, json.JSONDecodeError):
        return status, raw.decode(errors="replace")


def log_tail(path: str | os.PathLike, n: int = 80) -> str:
    try:
        lines = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(lines[-n:])


def import_failures(log_text: str, pack_name: str) -> list[str]:
    """Log lines saying that the pack (a custom_nodes folder name) didn't import."""
    out = []
    for line in log_text.splitlines():
        if pack_name not in line:
            continue
        if "IMPORT FAILED" in line or "Cannot import" in line or "Error while calling comfy_entrypoint" in line:
            out.append(line.strip())
    return out


@contextlib.contextmanager
def start_server(
    comfy_dir: str | os.PathLike,
    python: str | os.PathLike,
    custom_nodes_parent: str | os.PathLike | None,
    output_dir: str | os.PathLike,
    input_dir: str | os.PathLike,
    port: int | None = None,
    *,
    pack_name: str | None = "ComfyUI-LiWi",
    work_dir: str | os.PathLike | None = None,
    extra_args: list[str] = (),
    startup_timeout: float = 300.0,
    model_paths: dict[str, str | os.PathLike] | None = None,
) -> Iterator[Server]:
    """Run ``python main.py --cpu`` on 127.0.0.1 until the block ends.

    ``custom_nodes_parent`` is added as a custom_nodes folder through a
    temporary ``--extra-model-paths-config`` (see :func:`make_custom_nodes_dir`), with
    ``model_paths`` (model folder name -> path, e.g. ``{"liwi": ...}``) beside it.
    Temp, user folder and database go under ``work_dir`` (a new temporary
    folder by default). Waits for ``GET /object_info``; raises
    :class:`ServerError` with the log tail if the server exits, doesn't answer
    in time, or logs an import failure of ``pack_name``.
    """
    comfy_dir = Path(comfy_dir).resolve()
    port = port or free_port()
    own_work = work_dir is None
    work = Path(tempfile.mkdtemp(prefix="comfy_e2e_")) if own_work else Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    user_dir = work / "user"
    user_dir.mkdir(exist_ok=True)
    temp_parent = work / "tmp"
    output_dir, input_dir = Path(output_dir).resolve(), Path(input_dir).resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    input_dir.mkdir(parents=True, exist_ok=True)
    log_path = work / "comfyui.log"
    cmd = [
        str(python), "main.py", "--cpu",
        "--listen", "127.0.0.1", "--port", str(port),
        "--disable-auto-launch",
        "--output-directory", str(output_dir),
        "--input-directory", str(input_dir),
        "--temp-directory", str(temp_parent),
        "--user-directory", str(user_dir),
        "--database-url", "sqlite:///:memory:",
    ]
    if custom_nodes_parent is not None:
        yaml_path = work / "extra_model_paths.yaml"
        cn = str(Path(custom_nodes_parent).resolve())
        lines = [f"  custom_nodes: {json.dumps(cn)}"]
        lines += [f"  {name}: {json.dumps(str(Path(p).resolve()))}" for name, p in (model_paths or {}).items()]
        yaml_path.write_text("comfy_e2e:\n" + "\n".join(lines) + "\n")
        cmd += ["--extra-model-paths-config", str(yaml_path)]
    cmd += list(extra_args)
    env = dict(os.environ, PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1", DO_NOT_TRACK="1")
    log = open(log_path, "wb")
    proc = subprocess.Popen(
        cmd, cwd=comfy_dir, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        env=env, start_new_session=True,
    )
    server = Server(f"http://127.0.0.1:{port}", port, proc, log_path, output_dir, input_dir, temp_parent / "temp")
    try:
        deadline = time.monotonic() + startup_timeout
        while True:
            if proc.poll() is not None:
                raise ServerError(f"ComfyUI exited with {proc.returncode} during start-up:\n{server.log_tail()}")
            try:
                if http_json("GET", f"{server.base_url}/object_info", timeout=30)[0] == 200:
                    break
            except (OSError, urllib.error.URLError):
                pass
            if time.monotonic() > deadline:
                raise ServerError(f"ComfyUI did not answer /object_info in {startup_timeout:.0f} s:\n{server.log_tail()}")
            time.sleep(0.5)
        if pack_name:
            failed = import_failures(log_path.read_text(errors="replace"), pack_name)
            if failed:
                raise ServerError(f"{pack_name} failed to import: {failed}\n{server.log_tail(120)}")
        yield server
    finally:
        _stop(proc)
        log.close()
        if own_work:
            shutil.rmtree(work, ignore_errors=True)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)  # our own session: the server and its children only
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=20)


class PromptError(RuntimeError):
    pass


def post_and_wait(base_url: str, prompt: dict, timeout: float = 600.0, *, poll: float = 0.25) -> dict:
    """POST a prompt, wait for it, and return its ``/history`` entry.

    Raises :class:`PromptError` with the server's node errors when the prompt
    is refused, or with the exception message when execution fails.
    """
    client_id = uuid.uuid4().hex
    status, body = http_json("POST", f"{base_url}/prompt", {"prompt": prompt, "client_id": client_id})
    if status != 200:
        raise PromptError(f"prompt refused ({status}): {json.dumps(body, indent=1)[:6000]}")
    if body.get("node_errors"):
        raise PromptError(f"prompt has node errors: {json.dumps(body['node_errors'], indent=1)[:6000]}")
    prompt_id = body["prompt_id"]
    deadline = time.monotonic() + timeout
    while True:
        hstatus, history = http_json("GET", f"{base_url}/history/{prompt_id}")
        if hstatus != 200:
            raise PromptError(f"GET /history/{prompt_id}: {hstatus} {history!r}")
        entry = history.get(prompt_id)
        if entry is not None:
            status = entry.get("status") or {}
            if status.get("status_str") == "error" or (status.get("completed") is False and status.get("messages")):
                raise PromptError(f"prompt {prompt_id} failed: {_execution_error(status)}")
            if status.get("completed", True):
                return entry
        if time.monotonic() > deadline:
            raise PromptError(f"prompt {prompt_id} did not finish in {timeout:.0f} s")
        time.sleep(poll)


def _execution_error(status: dict) -> str:
    for kind, data in status.get("messages") or []:
        if kind in ("execution_error", "execution_interrupted"):
            tb = "".join(data.get("traceback") or [])
            return (f"{kind} in node {data.get('node_id')} ({data.get('node_type')}): "
                    f"{data.get('exception_type')}: {data.get('exception_message')}\n{tb}")
    return json.dumps(status)[:4000]


def output_files(history_entry: dict) -> list[dict]:
    """Every ``{filename, subfolder, type}`` that the output nodes reported."""
    files = []
    for node_id, out in (history_entry.get("outputs") or {}).items():
        for key, items in out.items():
            if not isinstance(items, list):
                continue
            for item in items:
                if isinstance(item, dict) and "filename" in item:
                    files.append({**item, "node_id": node_id, "key": key})
    return files
