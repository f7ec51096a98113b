"""The lock file of a run folder: one training process per run folder (``docs/run-format.md``).

``<run>/.sift.lock`` is created with ``O_CREAT | O_EXCL`` and holds ``{"pid", "host", "token"}`` of its
owner; it is removed when the owner finishes or fails. A lock left by a killed process (same host, PID
no longer alive) is stale and taken over with a message; a live owner, or one on another host (whose
PID cannot be checked from here), makes the second process stop with one line naming the owner.
"""
from __future__ import annotations

import json
import os
import secrets
import socket
import sys
from pathlib import Path

from .outdir import OutputError, cause, writing

LOCK_NAME = ".sift.lock"


class RunLocked(ValueError):
    """The run folder is in use by another process (or by an owner that cannot be checked)."""


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (POSIX ``kill(pid, 0)``; ``True`` where that
    cannot be asked, so an unknown owner is never taken over)."""
    if os.name != "posix":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


class RunLock:
    """``with RunLock(folder):`` holds ``folder/.sift.lock`` for the block (the folder must exist)."""

    def __init__(self, folder: str | Path):
        self.path = Path(folder) / LOCK_NAME
        self.content = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                   "token": secrets.token_hex(8)})
        self.held = False

    def acquire(self) -> None:
        for _ in range(5):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
            except FileExistsError:
                self._take_over_if_stale()
                continue
            except OSError as exc:
                raise OutputError(f"{self.path}: cannot write in the run folder ({cause(exc)})") from None
            with writing(self.path, "cannot write in the run folder"):
                try:
                    os.write(fd, self.content.encode())
                    os.fsync(fd)
                finally:
                    os.close(fd)
            self.held = True
            return
        raise RunLocked(f"{self.path.parent}: in use by another sift process (lock file {self.path} "
                        f"keeps changing)")

    def _take_over_if_stale(self) -> None:
        """Remove a stale lock; raise ``RunLocked`` for a live or uncheckable owner. Two processes taking
        over at once cannot both win: the stale file is renamed away (atomic, one succeeds) and put back
        if what was renamed turns out to be a newer owner's lock."""
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return  # released meanwhile: try again
        except OSError as exc:
            raise OutputError(f"{self.path}: cannot read the lock file ({exc.strerror})") from None
        try:
            owner = json.loads(text)
            pid, host = int(owner["pid"]), str(owner["host"])
        except (ValueError, KeyError, TypeError):
            raise RunLocked(f"{self.path.parent}: locked by an unreadable lock file {self.path}; delete it "
                            f"if no sift process is using this folder") from None
        if host != socket.gethostname():
            raise RunLocked(f"{self.path.parent}: in use by PID {pid} on host {host} (lock file {self.path}); "
                            f"delete it if that process is gone")
        if pid_alive(pid) or pid == os.getpid():
            raise RunLocked(f"{self.path.parent}: in use by PID {pid} on this host (lock file {self.path}); "
                            f"wait for it to finish or stop it")
        aside = self.path.with_name(f"{LOCK_NAME}.stale.{os.getpid()}")
        try:
            os.replace(self.path, aside)
        except FileNotFoundError:
            return
        if aside.read_text() != text:  # a newer owner's lock: give it back
            try:
                os.link(aside, self.path)
            except OSError:
                pass
            aside.unlink()
            raise RunLocked(f"{self.path.parent}: in use by another sift process (lock file {self.path})")
        aside.unlink()
        print(f"{self.path.parent}: taking over the stale lock of PID {pid} on {host} (that process is gone)",
              file=sys.stderr)

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        try:
            if self.path.read_text() == self.content:
                self.path.unlink()
        except OSError:
            pass

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
