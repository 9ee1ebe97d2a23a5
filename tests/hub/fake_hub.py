"""A small stand-in for the Hugging Face Hub's HTTP API, for upload/download tests without a network.

It answers what `huggingface_hub` 2.4 and `datasets` 5.2 call when creating a repo, validating card YAML,
committing files, listing and downloading them. Like the Hub, the preupload answer sends text files "regular"
(base64 in the NDJSON commit) and binary ones (weights, parquet, > 10 MB) through the basic LFS protocol (batch
API + PUT); clients must run with `HF_HUB_DISABLE_XET=1` (xet storage is not emulated). Files live in a temp dir (`root/<type>/<namespace>/<name>/`), one revision per repo
(the latest commit). It listens on 127.0.0.1 only, port 0 (the OS picks a free one).

`hub.fail_commits = n` (or, from a client process, `POST /_fake/fail-commits` with `{"n": n}`) makes the next n
commits fail with a 500 (an upload that fails mid-way); `hub.requests` records every `(method, path)` seen.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

TOKEN = "hf_fake_test_token"
USER = "tester"
REPO = r"(?P<repo>[^/]+/[^/]+)"
TYPES = r"(?P<type>model|dataset|space)s"
LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".parquet", ".arrow", ".npy", ".wav", ".png", ".jpg", ".mp4")
LFS_THRESHOLD = 10 * 1024 * 1024


def needs_lfs(path: str, size: int, sample: bytes) -> bool:
    return path.endswith(LFS_SUFFIXES) or size > LFS_THRESHOLD or b"\0" in sample


def git_blob_sha(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class FakeHub:
    """The stand-in's state; `start()` serves it on 127.0.0.1 and returns the endpoint URL."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.repos: dict[tuple[str, str], dict] = {}  # (type, repo_id) -> {"sha": ..., "private": ...}
        self.fail_commits = 0
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None

    # ------------------------------------------------------------------ storage
    def repo_dir(self, repo_type: str, repo_id: str) -> Path:
        return self.root / repo_type / repo_id

    def files(self, repo_type: str, repo_id: str) -> dict[str, Path]:
        base = self.repo_dir(repo_type, repo_id)
        return {p.relative_to(base).as_posix(): p for p in sorted(base.rglob("*")) if p.is_file()}

    def commit(self, repo_type: str, repo_id: str, operations: list[dict]) -> str:
        """Apply one commit atomically: build the new tree beside the old one, then swap."""
        base = self.repo_dir(repo_type, repo_id)
        staging = base.with_name(base.name + ".staging")
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(base, staging)
        for op in operations:
            value = op["value"]
            target = staging / value["path"]
            if op["key"] == "file":
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(base64.b64decode(value["content"]))
            elif op["key"] == "lfsFile":
                blob = self.root / "_lfs" / value["oid"]
                if not blob.is_file():
                    shutil.rmtree(staging)
                    raise ValueError(f"LFS object {value['oid']} for {value['path']} was never uploaded")
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(blob, target)
            elif op["key"] == "deletedFile":
                target.unlink()
            elif op["key"] == "deletedFolder":
                shutil.rmtree(target)
            else:
                shutil.rmtree(staging)
                raise ValueError(f"unsupported commit operation {op['key']!r} (this stand-in takes regular files)")
        shutil.rmtree(base)
        staging.rename(base)
        digest = hashlib.sha1()
        for path, file in self.files(repo_type, repo_id).items():
            digest.update(path.encode() + b"\0" + file.read_bytes())
        sha = hashlib.sha1(digest.digest() + str(time.time_ns()).encode()).hexdigest()
        self.repos[(repo_type, repo_id)]["sha"] = sha
        return sha

    # ------------------------------------------------------------------ server
    def start(self) -> str:
        hub = self

        class Handler(_Handler):
            state = hub

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_port}"

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


class _Handler(BaseHTTPRequestHandler):
    state: FakeHub
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # keep test output quiet
        pass

    # ------------------------------------------------------------------ plumbing
    def _send(self, status: int, body=None, headers: dict | None = None, head: bool = False):
        data = b"" if body is None else body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        if not isinstance(body, bytes):
            self.send_header("Content-Type", "application/json")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if not head:
            self.wfile.write(data)

    def _error(self, status: int, message: str, head: bool = False):
        self._send(status, {"error": message}, {"X-Error-Message": message}, head=head)

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _authorized(self) -> bool:
        return self.headers.get("Authorization") == f"Bearer {TOKEN}"

    def _repo(self, repo_type: str, repo_id: str, head: bool = False) -> dict | None:
        repo = self.state.repos.get((repo_type, repo_id))
        if repo is None:
            self._send(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"}, head=head)
        return repo

    def _entry(self, repo_type: str, repo_id: str, path: str, file: Path) -> dict:
        data = file.read_bytes()
        return {"type": "file", "path": path, "size": len(data), "oid": git_blob_sha(data)}

    # ------------------------------------------------------------------ verbs
    def do_HEAD(self):
        self._dispatch("HEAD")

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def do_DELETE(self):
        self._dispatch("DELETE")

    def do_PUT(self):
        self._dispatch("PUT")

    def _dispatch(self, method: str):
        url = urlsplit(self.path)
        path = unquote(url.path)
        query = parse_qs(url.query)
        self.state.requests.append((method, path))
        body = self._body() if method in ("POST", "DELETE", "PUT") else b""
        with self.state.lock:
            for route_method, pattern, handler in ROUTES:
                match = re.fullmatch(pattern, path)
                if match and (route_method == method or (route_method == "GET" and method == "HEAD")):
                    try:
                        return handler(self, method, body, query, **match.groupdict())
                    except Exception as error:  # a bug here must show up as a failed request, not a hang
                        return self._error(500, f"fake hub: {type(error).__name__}: {error}", head=method == "HEAD")
        self._error(404, f"fake hub: no route for {method} {path}", head=method == "HEAD")

    # ------------------------------------------------------------------ routes
    def fail_commits(self, method, body, query):
        self.state.fail_commits = int(json.loads(body)["n"])
        self._send(200, {})

    def whoami(self, method, body, query):
        if not self._authorized():
            return self._error(401, "Invalid credentials in Authorization header")
        self._send(200, {"type": "user", "name": USER, "orgs": [], "auth": {"type": "access_token"}})

    def create_repo(self, method, body, query):
        if not self._authorized():
            return self._error(401, "Invalid credentials in Authorization header")
        payload = json.loads(body)
        repo_type = payload.get("type") or "model"
        repo_id = f"{payload.get('organization') or USER}/{payload['name']}"
        prefix = "" if repo_type == "model" else f"{repo_type}s/"
        url = f"http://{self.headers['Host']}/{prefix}{repo_id}"
        if (repo_type, repo_id) in self.state.repos:
            return self._send(409, {"error": "You already created this repo", "url": url})
        self.state.repo_dir(repo_type, repo_id).mkdir(parents=True)
        self.state.repos[(repo_type, repo_id)] = {"sha": "0" * 40, "private": payload.get("visibility") == "private"}
        self._send(200, {"url": url, "name": repo_id})

    def delete_repo(self, method, body, query):
        if not self._authorized():
            return self._error(401, "Invalid credentials in Authorization header")
        payload = json.loads(body)
        repo_type = payload.get("type") or "model"
        repo_id = f"{payload.get('organization') or USER}/{payload['name']}"
        if self.state.repos.pop((repo_type, repo_id), None) is None:
            return self._error(404, "Repository not found")
        shutil.rmtree(self.state.repo_dir(repo_type, repo_id))
        self._send(200, {})

    def validate_yaml(self, method, body, query):
        content = json.loads(body)["content"]
        match = re.match(r"^---\n(.*?)\n---", content, re.S)
        errors = []
        try:
            metadata = yaml.safe_load(match.group(1)) if match else {}
            if not isinstance(metadata or {}, dict):
                errors.append("metadata must be a YAML mapping")
            for key in ("tags", "datasets"):
                if key in (metadata or {}) and not isinstance(metadata[key], list):
                    errors.append(f'"{key}" must be an array')
        except yaml.YAMLError as error:
            errors.append(f"YAML parse error: {error}")
        self._send(400 if errors else 200, {"errors": [{"message": e} for e in errors], "warnings": []})

    def repo_info(self, method, body, query, type, repo, revision=None):
        state = self._repo(type, repo)
        if state is None:
            return
        files = self.state.files(type, repo)
        self._send(
            200,
            {
                "id": repo,
                "sha": state["sha"],
                "private": state["private"],
                "siblings": [{"rfilename": p} for p in files],
                "lastModified": "2025-01-01T00:00:00.000Z",
                "tags": [],
            },
        )

    def preupload(self, method, body, query, type, repo, revision):
        if not self._authorized():
            return self._error(401, "Invalid credentials in Authorization header")
        if self._repo(type, repo) is None:
            return
        existing = self.state.files(type, repo)
        files = [
            {
                "path": f["path"],
                "uploadMode": "lfs" if needs_lfs(f["path"], f["size"], base64.b64decode(f["sample"])) else "regular",
                "shouldIgnore": False,
                "oid": git_blob_sha(existing[f["path"]].read_bytes()) if f["path"] in existing else None,
            }
            for f in json.loads(body)["files"]
        ]
        self._send(200, {"files": files})

    def lfs_batch(self, method, body, query, type, repo):
        if not self._authorized():
            return self._error(401, "Invalid credentials in Authorization header")
        if self._repo(type or "model", repo) is None:
            return
        objects = []
        for obj in json.loads(body)["objects"]:
            entry = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
            if not (self.state.root / "_lfs" / obj["oid"]).is_file():
                entry["actions"] = {"upload": {"href": f"http://{self.headers['Host']}/_lfs_upload/{obj['oid']}"}}
            objects.append(entry)
        self._send(200, {"transfer": "basic", "objects": objects})

    def lfs_upload(self, method, body, query, oid):
        if hashlib.sha256(body).hexdigest() != oid:
            return self._error(400, "LFS upload: content does not match its sha256")
        (self.state.root / "_lfs").mkdir(exist_ok=True)
        (self.state.root / "_lfs" / oid).write_bytes(body)
        self._send(200, {})

    def commit(self, method, body, query, type, repo, revision):
        if not self._authorized():
            return self._error(401, "Invalid credentials in Authorization header")
        if self._repo(type, repo) is None:
            return
        if self.state.fail_commits > 0:
            self.state.fail_commits -= 1
            return self._error(500, "fake hub: commit failed (injected)")
        lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
        try:
            sha = self.state.commit(type, repo, [line for line in lines if line["key"] != "header"])
        except (ValueError, OSError) as error:
            return self._error(400, str(error))
        prefix = "" if type == "model" else f"{type}s/"
        self._send(200, {"commitUrl": f"http://{self.headers['Host']}/{prefix}{repo}/commit/{sha}", "commitOid": sha})

    def tree(self, method, body, query, type, repo, revision, subpath=""):
        if self._repo(type, repo) is None:
            return
        subpath = (subpath or "").strip("/")
        recursive = query.get("recursive", ["false"])[0].lower() in ("1", "true")
        entries, folders = [], set()
        for path, file in self.state.files(type, repo).items():
            if subpath and not path.startswith(subpath + "/"):
                continue
            rest = path[len(subpath) + 1 :] if subpath else path
            parts = rest.split("/")
            for depth in range(1, len(parts)):
                if recursive or depth == 1:
                    folders.add("/".join(([subpath] if subpath else []) + parts[:depth]))
            if recursive or len(parts) == 1:
                entries.append(self._entry(type, repo, path, file))
        if subpath and not entries and not folders:
            return self._send(404, {"error": f"{subpath} does not exist"}, {"X-Error-Code": "EntryNotFound"})
        entries += [{"type": "directory", "path": f, "oid": git_blob_sha(f.encode())} for f in sorted(folders)]
        self._send(200, entries)

    def paths_info(self, method, body, query, type, repo, revision):
        if self._repo(type, repo) is None:
            return
        form = parse_qs(body.decode())
        wanted = form.get("paths", [])
        files = self.state.files(type, repo)
        out = [self._entry(type, repo, p, files[p]) for p in wanted if p in files]
        out += [
            {"type": "directory", "path": p, "oid": git_blob_sha(p.encode())}
            for p in wanted
            if p not in files and any(f.startswith(p.rstrip("/") + "/") for f in files)
        ]
        self._send(200, out)

    def resolve(self, method, body, query, type, repo, revision, filename):
        type = type or "model"
        state = self._repo(type, repo, head=method == "HEAD")
        if state is None:
            return
        file = self.state.files(type, repo).get(filename)
        if file is None:
            headers = {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": state["sha"]}
            return self._send(404, {"error": "Entry not found"}, headers, head=method == "HEAD")
        data = file.read_bytes()
        headers = {"X-Repo-Commit": state["sha"], "ETag": f'"{git_blob_sha(data)}"'}
        self._send(200, data, headers, head=method == "HEAD")


ROUTES = [
    ("POST", r"/_fake/fail-commits", _Handler.fail_commits),
    ("GET", r"/api/whoami-v2", _Handler.whoami),
    ("POST", r"/api/repos/create", _Handler.create_repo),
    ("DELETE", r"/api/repos/delete", _Handler.delete_repo),
    ("POST", r"/api/validate-yaml", _Handler.validate_yaml),
    ("GET", rf"/api/{TYPES}/{REPO}(?:/revision/(?P<revision>[^/]+))?", _Handler.repo_info),
    ("POST", rf"/api/{TYPES}/{REPO}/preupload/(?P<revision>[^/]+)", _Handler.preupload),
    ("POST", rf"/api/{TYPES}/{REPO}/commit/(?P<revision>[^/]+)", _Handler.commit),
    ("GET", rf"/api/{TYPES}/{REPO}/tree/(?P<revision>[^/]+)(?P<subpath>/.*)?", _Handler.tree),
    ("POST", rf"/api/{TYPES}/{REPO}/paths-info/(?P<revision>[^/]+)", _Handler.paths_info),
    ("POST", r"/(?:(?P<type>dataset|space)s/)?(?P<repo>[^/]+/[^/]+?)\.git/info/lfs/objects/batch", _Handler.lfs_batch),
    ("PUT", r"/_lfs_upload/(?P<oid>[0-9a-f]{64})", _Handler.lfs_upload),
    ("GET", rf"/(?:(?P<type>dataset|space)s/)?{REPO}/resolve/(?P<revision>[^/]+)/(?P<filename>.+)", _Handler.resolve),
]
