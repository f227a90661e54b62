"""A thin, typed wrapper over the ``git`` command line for the GitOps repository.

Everything runs through :func:`git`, which turns a failing command into one
:class:`~modelops.errors.ExternalError` whose ``retryable`` flag says whether trying again can help
(a network hiccup: yes; a rejected password, a missing repository, a hook that said no: no).

The publisher never needs a working tree: it clones bare and shallow, builds the new commit with
``git fast-import`` (one process, one pack, whatever the number of files) and pushes without
``--force``. ``git push`` updates a ref atomically on the receiving side, so a publisher killed
at any moment leaves the remote branch either where it was or at the complete new commit.

A push into a repository on this filesystem runs ``git receive-pack`` as a child of the
publisher; killed with it, receive-pack leaves its quarantine (``objects/tmp_objdir-incoming-*``,
the objects of a push not yet accepted) behind. Such pushes run receive-pack holding a shared lock
on ``modelops-receive.lock`` in the repository, and each push first removes quarantines while
it can take that lock exclusively, that is while no receive-pack of ours runs there.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from modelops.errors import ExternalError, InputError
from modelops.git import classify, git, redact, refusal

DEFAULT_BRANCH = "main"
FALLBACK_IDENT = "modelops-gitops <modelops-gitops@users.noreply.invalid>"

# push rejections that mean "someone else pushed first": fetch, re-apply, retry. A ref the
# server may not write ("cannot lock ref ...: Permission denied") or a hook's refusal looks
# alike but no retry can help: those are told apart first (modelops.git.classify).
_RACE = re.compile(r"fetch first|non-fast-forward|stale info|failed to lock|cannot lock ref|"
                   r"failed to update ref|incorrect old value|but expected|"
                   r"unable to create[^\n]*\.lock'?: file exists", re.I)


def is_race(output: str) -> bool:
    """Whether a failed push's output says only that the branch moved meanwhile."""
    return bool(_RACE.search(output)) and refusal(output) is None


class PushRejected(ExternalError):
    """The remote branch moved since we read it (someone else pushed first)."""

    retryable = True


def is_local(url: str) -> bool:
    """True when ``url`` names a repository on this filesystem (a path or file://)."""
    return url.startswith("file://") or "://" not in url and not re.match(r"^[\w.-]+@[\w.-]+:",
                                                                           url)


def local_path(url: str) -> Path:
    return Path(url[len("file://"):] if url.startswith("file://") else url)


def ensure_bare_remote(path: str | Path, branch: str = DEFAULT_BRANCH) -> Path:
    """Create a bare repository at ``path`` on first use (safe when many processes race).

    The repository refuses non-fast-forward pushes and ref deletions, so even a mistaken
    ``--force`` cannot drop history.
    """
    target = Path(path)
    if (target / "HEAD").exists():
        return target
    if target.exists() and any(target.iterdir()):
        raise InputError(f"{target}: exists but is not a git repository",
                         hint="point --gitops-repo at a bare repository or an empty folder")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        git(["init", "--quiet", "--bare", f"--initial-branch={branch}", str(tmp)])
        for key, value in (("receive.denyNonFastForwards", "true"),
                           ("receive.denyDeletes", "true"),
                           ("uploadpack.allowFilter", "true"),
                           ("core.logAllRefUpdates", "true")):
            git(["config", key, value], cwd=tmp)
        try:
            if target.exists():
                target.rmdir()  # an empty folder left for us
            os.rename(tmp, target)
        except OSError:
            if not (target / "HEAD").exists():  # lost the race to someone who failed
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


RECEIVE_LOCK = "modelops-receive.lock"
# Runs `git receive-pack PATH` holding a shared flock on PATH's RECEIVE_LOCK: the lock passes
# to receive-pack through exec and dies with it, however it dies.
_RECEIVE = (
    "import fcntl,os,sys\n"
    "p=sys.argv[1]\n"
    "d=os.path.join(p,'.git') if os.path.isdir(os.path.join(p,'.git')) else p\n"
    "fd=os.open(os.path.join(d,'" + RECEIVE_LOCK + "'),os.O_RDWR|os.O_CREAT,0o644)\n"
    "fcntl.flock(fd,fcntl.LOCK_SH)\n"
    "os.set_inheritable(fd,True)\n"
    "os.execvp('git',['git','receive-pack',p])\n")


def receive_pack_command() -> str:
    """The ``--receive-pack`` program for pushes into a local repository (see module doc)."""
    return f"{shlex.quote(sys.executable)} -S -c {shlex.quote(_RECEIVE)}"


def git_dir(path: Path) -> Path:
    return path / ".git" if (path / ".git").is_dir() else path


def sweep_quarantine(repo: str | Path) -> list[Path]:
    """Remove quarantines of killed pushes from the local repository ``repo`` (only while no
    receive-pack started by this suite runs there); return what was removed."""
    base = git_dir(Path(repo))
    objects = base / "objects"
    leftovers = sorted([*objects.glob("tmp_objdir-incoming-*"), *objects.glob("incoming-*")])
    if not leftovers:
        return []
    try:
        fd = os.open(base / RECEIVE_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        return []
    removed = []
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return []  # a push is under way: its quarantine is alive
        for path in leftovers:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    finally:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
    return removed


@dataclass(frozen=True)
class TreeEntry:
    mode: str
    oid: str


class Clone:
    """A bare, shallow clone of one branch of the GitOps repository, in a temporary folder."""

    def __init__(self, path: Path, url: str, branch: str):
        self.path = path
        self.url = url
        self.branch = branch
        self._format: str | None = None

    # ------------------------------------------------------------------ creation
    @classmethod
    def create(cls, url: str, dest: str | Path, branch: str = DEFAULT_BRANCH,
               depth: int | None = 1) -> Clone:
        dest = Path(dest)
        args = ["clone", "--quiet", "--bare", "--single-branch", "--branch", branch]
        if not is_local(url):  # local clones hardlink objects: cheaper than depth or filters
            args += ["--depth", str(depth)] if depth else ["--filter=blob:none"]
        proc = git([*args, url, str(dest)], check=False)
        if proc.returncode != 0:
            err = proc.stderr.decode("utf-8", "replace")
            low = err.lower()
            if "remote branch" in low and "not found" in low or "empty repository" in low:
                # an empty repository (first publish): start from nothing
                git(["init", "--quiet", "--bare", f"--initial-branch={branch}", str(dest)])
                git(["remote", "add", "origin", url], cwd=dest)
            else:
                retryable, hint = classify(err)
                raise ExternalError(f"cloning the GitOps repository {redact(url)!r} failed: "
                                    f"{redact(err.strip())}", hint=hint, retryable=retryable)
        clone = cls(dest, url, branch)
        # a bare clone maps refs/heads/* 1:1; keep a remote-tracking ref for fetches instead
        git(["config", "remote.origin.fetch",
             f"+refs/heads/{branch}:refs/remotes/origin/{branch}"], cwd=dest)
        head = clone.rev_parse(f"refs/heads/{branch}")
        if head:
            git(["update-ref", f"refs/remotes/origin/{branch}", head], cwd=dest)
        return clone

    def run(self, args: Sequence[str], **kw) -> subprocess.CompletedProcess[bytes]:
        return git(args, cwd=self.path, **kw)

    # ------------------------------------------------------------------ reading
    def rev_parse(self, rev: str) -> str | None:
        proc = self.run(["rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], check=False)
        return proc.stdout.decode().strip() or None if proc.returncode == 0 else None

    def remote_head(self) -> str | None:
        return self.rev_parse(f"refs/remotes/origin/{self.branch}")

    def object_format(self) -> str:
        if self._format is None:
            proc = self.run(["rev-parse", "--show-object-format"], check=False)
            self._format = proc.stdout.decode().strip() or "sha1"
        return self._format

    def blob_id(self, data: bytes) -> str:
        """The object id git gives ``data`` as a blob, computed without calling git."""
        h = hashlib.new(self.object_format())
        h.update(b"blob %d\0" % len(data))
        h.update(data)
        return h.hexdigest()

    def ls_tree(self, commit: str | None, folders: Sequence[str] | None = None
                ) -> dict[str, TreeEntry]:
        """Files under ``folders`` (all when None) at ``commit``: path -> (mode, oid)."""
        if commit is None:
            return {}
        args = ["ls-tree", "-r", "-z", "--full-tree", commit]
        if folders is not None:
            if not folders:
                return {}
            args += ["--", *[f.rstrip("/") + "/" for f in folders]]
        out: dict[str, TreeEntry] = {}
        for rec in self.run(args).stdout.split(b"\0"):
            if not rec:
                continue
            meta, _, path = rec.partition(b"\t")
            mode, _kind, oid = meta.decode().split()
            out[path.decode("utf-8", "surrogateescape")] = TreeEntry(mode, oid)
        return out

    def tree_id(self, commit: str | None, folder: str) -> str | None:
        """The tree id of ``folder`` at ``commit`` (None when absent)."""
        if commit is None:
            return None
        proc = self.run(["rev-parse", "--verify", "--quiet", f"{commit}:{folder}"], check=False)
        return proc.stdout.decode().strip() or None if proc.returncode == 0 else None

    def read_objects(self, names: Sequence[str]) -> list[bytes | None]:
        """Contents of many objects (ids or ``rev:path``) with one ``git cat-file --batch``;
        None for a name that does not exist."""
        if not names:
            return []
        proc = self.run(["cat-file", "--batch"], input=("\n".join(names) + "\n").encode())
        out: list[bytes | None] = []
        data, pos = proc.stdout, 0
        for _name in names:
            nl = data.index(b"\n", pos)
            header = data[pos:nl].decode("utf-8", "replace").split()
            if header[-1] in ("missing", "ambiguous") or len(header) < 3:
                out.append(None)
                pos = nl + 1
                continue
            size = int(header[2])
            out.append(data[nl + 1:nl + 1 + size])
            pos = nl + 1 + size + 1
        return out

    def object_ids(self, names: Sequence[str]) -> list[str | None]:
        """The object id of each name (``rev:path``) with one ``git cat-file --batch-check``;
        None for a name that does not exist."""
        if not names:
            return []
        proc = self.run(["cat-file", "--batch-check=%(objectname)"],
                        input=("\n".join(names) + "\n").encode())
        lines = proc.stdout.decode("utf-8", "replace").splitlines()
        return [None if line.endswith(" missing") or line.endswith(" ambiguous") else line
                for line in lines]

    def read_blobs(self, oids: Sequence[str]) -> list[bytes]:
        """Contents of many blobs; a missing one is an error."""
        out = self.read_objects(oids)
        for oid, data in zip(oids, out, strict=True):
            if data is None:
                raise ExternalError(f"object {oid} is missing from the GitOps clone",
                                    hint="run the command again", retryable=True)
        return out  # type: ignore[return-value]

    def read_folder(self, commit: str | None, folder: str) -> dict[str, bytes]:
        """Files of ``folder`` at ``commit`` as relative name -> bytes."""
        entries = self.ls_tree(commit, [folder])
        names = sorted(entries)
        blobs = self.read_blobs([entries[n].oid for n in names])
        prefix = folder.rstrip("/") + "/"
        return {n[len(prefix):]: b for n, b in zip(names, blobs, strict=True)}

    # ------------------------------------------------------------------ writing
    def fetch(self) -> str | None:
        """Fetch the branch again; return the remote head (None while the remote is empty)."""
        args = ["fetch", "--quiet", "origin",
                f"+refs/heads/{self.branch}:refs/remotes/origin/{self.branch}"]
        if not is_local(self.url) and self.is_shallow():
            args.insert(2, "--depth=1")
        proc = self.run(args, check=False, what="fetching the GitOps repository")
        if proc.returncode != 0:
            err = proc.stderr.decode("utf-8", "replace")
            if "couldn't find remote ref" in err.lower():
                return None
            retryable, hint = classify(err)
            raise ExternalError(f"fetching the GitOps repository failed: {redact(err.strip())}",
                                hint=hint, retryable=retryable)
        return self.remote_head()

    def is_shallow(self) -> bool:
        return (self.path / "shallow").exists()

    def commit_tree(self, parent: str | None, changes: Mapping[str, Mapping[str, bytes] | None],
                    message: str, ref: str = "refs/gitops/new") -> str:
        """Write one commit on top of ``parent`` where each folder in ``changes`` holds exactly
        the given files (None removes the folder). Returns the new commit id.

        Uses ``git fast-import``: it never checks files out, so the cost is the size of the
        change, not the size of the repository.
        """
        ident = self.committer()
        msg = message.encode("utf-8")
        # Blobs first, ordered by file name across folders: fast-import deltas each blob
        # against the one before it, so every rollout.yaml next to the previous one makes a
        # pack about a third of the size (less to push), for the same time.
        files = [(f.strip("/"), name, data) for f, fs in changes.items()
                 for name, data in (fs or {}).items()]
        files.sort(key=lambda item: (item[1], item[0]))
        chunks: list[bytes] = []
        marks: dict[str, int] = {}
        for mark, (folder, name, data) in enumerate(files, 1):
            chunks += [b"blob\nmark :%d\ndata %d\n" % (mark, len(data)), data, b"\n"]
            marks[f"{folder}/{name}"] = mark
        chunks += [f"reset {ref}\n".encode(), f"commit {ref}\n".encode(),
                   b"committer " + ident.encode() + b"\n", b"data %d\n" % len(msg), msg, b"\n"]
        if parent:
            chunks.append(f"from {parent}\n".encode())
        for folder in sorted(changes):
            chunks.append(_quote_path(b"D ", folder.strip("/")))
        for path in sorted(marks):
            chunks.append(_quote_path(b"M 100644 :%d " % marks[path], path))
        chunks.append(b"done\n")
        self.run(["fast-import", "--quiet", "--done", "--force"], input=b"".join(chunks),
                 what="writing the commit (git fast-import)")
        new = self.rev_parse(ref)
        if not new:
            raise ExternalError("git fast-import wrote no commit", retryable=True)
        return new

    def committer(self) -> str:
        """``Name <email> epoch tz`` from git's config or GIT_COMMITTER_*; a CI runner without
        any identity commits as :data:`FALLBACK_IDENT` (set GIT_COMMITTER_NAME/EMAIL to
        choose)."""
        proc = self.run(["var", "GIT_COMMITTER_IDENT"], check=False)
        if proc.returncode == 0 and proc.stdout.strip():
            return proc.stdout.decode().strip()

        return f"{FALLBACK_IDENT} {int(time.time())} +0000"

    def push(self, commit: str, ref: str | None = None) -> None:
        """Push ``commit`` to ``ref`` (the branch by default) without force.

        Raises :class:`PushRejected` when someone else moved the ref first, and a
        non-retryable :class:`ExternalError` for auth errors and refusals by a hook.
        """
        ref = ref or f"refs/heads/{self.branch}"
        args = ["push", "--porcelain", "--quiet"]
        if is_local(self.url):
            sweep_quarantine(local_path(self.url))
            args.append(f"--receive-pack={receive_pack_command()}")
        proc = self.run([*args, "origin", f"{commit}:{ref}"], check=False)
        if proc.returncode == 0:
            return
        out = (proc.stdout + b"\n" + proc.stderr).decode("utf-8", "replace")
        if is_race(out):
            raise PushRejected(f"push to {ref} was rejected: the branch moved meanwhile",
                               hint="fetch, re-apply and retry")
        retryable, hint = classify(out)
        raise ExternalError(f"pushing to the GitOps repository {redact(self.url)!r} failed: "
                            f"{redact(out.strip())}", hint=hint, retryable=retryable)


def _quote_path(prefix: bytes, path: str) -> bytes:
    raw = path.encode("utf-8")
    if any(c in raw for c in (b'"', b"\n", b"\\")) or raw.startswith(b" "):
        raise InputError(f"file name {path!r} cannot be published",
                         hint="use names without quotes, backslashes or newlines")
    return prefix + raw + b"\n"
