"""Folders written whole or not at all: banks, adapters, exported checkpoints.

A save fills a hidden staging folder beside the target, fsyncs it, then swaps it in. On Linux
the swap is one ``renameat2(RENAME_EXCHANGE)``: the target's name moves from the old folder to
the new one in a single step, so at every instant the path holds a complete bank, and existing
plain-folder banks need no migration (a versioned folder behind a symlink would have needed
one, and turning a folder into a symlink cannot itself be done atomically). Where the kernel,
libc or file system lacks the exchange, the swap is two renames with a crash window between
them; the old folder then waits under a hidden ``-old-`` name, and `recover` (run by the next
save and by `agentmem.bank_io.load_bank`) renames it back.

Every staging, retired or doomed folder is named ``.NAME-{tmp,old,trash}-XXXXXXXX``: hidden, so
nothing lists it as a bank, and each live one is ``flock``-ed by the process that owns it. A
save removes the siblings it can lock: leftovers of crashed saves of the same target, never a
concurrent save's folder (the kernel drops a killed process's locks).
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import functools
import os
import re
import secrets
import shutil
import stat
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

_STAGING, _RETIRED, _DOOMED = "tmp", "old", "trash"
# Eight characters: our own names use hex; tempfile.mkdtemp's (older agentmem) use [a-z0-9_].
# The fixed length keeps bank "b1" from claiming bank "b1-tmp"'s leftovers.
_SUFFIX = r"[a-z0-9_]{8}"
_RENAME_EXCHANGE = 2  # linux/fs.h
_AT_FDCWD = -100
# Errors meaning "this kernel, libc or file system cannot exchange": fall back to two renames.
# ENOENT: the target vanished since we looked; the fallback then simply renames.
_NO_EXCHANGE = {errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOENT}

# Tests switch this off to exercise the two-rename fallback on a file system that can exchange.
_USE_EXCHANGE = True


@contextmanager
def atomic_folder(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yields an empty staging folder beside ``path``; on a clean exit it becomes ``path``.

    The staging folder's files and folders are fsynced, then it is swapped with ``path``
    (atomically where the file system can; see the module docstring), then the parent folder
    is fsynced and the old folder removed. Files end up with mode 0o666 less the umask (0o777
    if the writer made them executable) and folders 0o777 less the umask, as if made by hand,
    whatever mode the writer used. Before the staging folder is made, a ``path`` lost in a
    crash between two renames is restored and leftovers of earlier crashed saves of ``path``
    are removed.

    Args:
        path: The folder to write; its parent is created if missing.

    Yields:
        The staging folder to fill. On an exception inside the ``with`` block it is removed
        and ``path`` is left as it was.

    Raises:
        OSError: If the staging folder cannot be created or the swap fails; ``path`` is then
            left as it was.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    recover(target)
    _remove_leftovers(target)
    staging, lock = _new_sibling(target, _STAGING)
    try:
        yield staging
        _settle_tree(staging)
        _swap_in(staging, target)
    finally:
        os.close(lock)
        if staging.exists():  # an error, or the old folder exchanged into the staging name
            _discard(staging, target)


def recover(path: str | os.PathLike[str]) -> Path:
    """Restores ``path`` if a save was killed between its two renames (the fallback swap).

    Does nothing when ``path`` exists or no retired folder of it is left. A retired folder
    locked by a live save is waited for: that save puts ``path`` back itself.

    Args:
        path: A folder written with `atomic_folder`.

    Returns:
        Where to read the folder: ``path``, or the retired folder when it could not be renamed
        back (a read-only parent).
    """
    target = Path(path)
    while not target.exists():
        retired = _retired_siblings(target)
        if not retired:
            return target
        fd = _open_dir(retired[0])
        if fd is None:
            continue  # removed meanwhile; look again
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fcntl.flock(fd, fcntl.LOCK_EX)  # a live save is mid-swap: wait for it
                continue
            if target.exists() or not _same_file(fd, retired[0]):
                continue
            # Older agentmem retired a folder as .NAME-old-XXXXXXXX/NAME.
            legacy = retired[0] / target.name
            source = legacy if legacy.is_dir() else retired[0]
            try:
                os.rename(source, target)
            except OSError as exc:
                if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
                    return source  # a reader without write access still gets the whole bank
                raise
            if source is legacy:
                with suppress(OSError):
                    os.rmdir(retired[0])
            _fsync_dir(target.parent)
        finally:
            os.close(fd)
    return target


def _swap_in(staging: Path, target: Path) -> None:
    """Puts the fsynced ``staging`` at ``target``; afterwards ``staging``'s name holds the old
    folder, if there was one."""
    if _USE_EXCHANGE and target.exists():
        try:
            _exchange(staging, target)
        except OSError as exc:
            if exc.errno not in _NO_EXCHANGE:
                raise
        else:
            _fsync_dir(target.parent)
            return
    _rename_in(staging, target)
    _fsync_dir(target.parent)


def _rename_in(staging: Path, target: Path) -> None:
    """The fallback swap: ``target`` to a locked ``-old-`` sibling, then ``staging`` to
    ``target``, then the old folder back to the staging name. A crash between the first two
    renames leaves ``target`` missing; `recover` finds the unlocked ``-old-`` folder."""
    while True:
        fd = _open_dir(target)
        if fd is None:
            os.rename(staging, target)  # nothing to retire (rename refuses to put a folder over a file)
            return
        fcntl.flock(fd, fcntl.LOCK_EX)  # holds off `recover` and concurrent fallback saves
        if _same_file(fd, target):
            break
        os.close(fd)  # a concurrent save swapped target while we waited: lock the new one
    try:
        retired = _sibling_name(target, _RETIRED)
        os.rename(target, retired)
        try:
            os.rename(staging, target)
        except BaseException:  # KeyboardInterrupt too: put the old folder back before going
            os.rename(retired, target)
            raise
        os.rename(retired, staging)
    finally:
        os.close(fd)


def _exchange(a: Path, b: Path) -> None:
    """Swaps two paths in one step with Linux's renameat2(RENAME_EXCHANGE)."""
    renameat2 = _renameat2()
    if renameat2 is None:
        raise OSError(errno.ENOSYS, "renameat2 is not in this C library")
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"cannot exchange {a} and {b}: {os.strerror(code)}")


@functools.cache
def _renameat2() -> Any:
    function = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)  # glibc >= 2.28
    if function is not None:
        function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
        function.restype = ctypes.c_int
    return function


def _new_sibling(target: Path, kind: str) -> tuple[Path, int]:
    """Creates and locks an empty hidden folder beside ``target``; returns it and the lock's fd."""
    while True:
        folder = _sibling_name(target, kind)
        try:
            os.mkdir(folder, 0o777)  # the umask applies, as for any folder the user makes
        except FileExistsError:
            continue
        fd = _open_dir(folder)
        if fd is None:
            continue
        fcntl.flock(fd, fcntl.LOCK_EX)
        # A cleaner may have taken the lock between mkdir and flock and removed the folder.
        if _same_file(fd, folder):
            return folder, fd
        os.close(fd)


def _sibling_name(target: Path, kind: str) -> Path:
    return target.with_name(f".{target.name}-{kind}-{secrets.token_hex(4)}")


def _siblings(target: Path, kinds: tuple[str, ...]) -> list[Path]:
    pattern = re.compile(rf"\.{re.escape(target.name)}-({'|'.join(kinds)})-{_SUFFIX}")
    try:
        names = os.listdir(target.parent)
    except FileNotFoundError:
        return []
    return [target.parent / n for n in names if pattern.fullmatch(n) and _is_real_dir(target.parent / n)]


def _is_real_dir(path: Path) -> bool:
    try:
        return stat.S_ISDIR(path.lstat().st_mode)
    except FileNotFoundError:
        return False


def _retired_siblings(target: Path) -> list[Path]:
    """The ``-old-`` folders of ``target``, most recently renamed first; empty ones (an older
    agentmem's shell, emptied by a restore) hold nothing to restore."""
    found = []
    for folder in _siblings(target, (_RETIRED,)):
        with suppress(FileNotFoundError, NotADirectoryError):
            if os.listdir(folder):
                found.append((folder.lstat().st_ctime_ns, folder))
    return [folder for _, folder in sorted(found, reverse=True)]


def _remove_leftovers(target: Path) -> None:
    """Removes the hidden siblings of ``target`` that no live process holds locked."""
    for folder in _siblings(target, (_STAGING, _RETIRED, _DOOMED)):
        fd = _open_dir(folder)
        if fd is None:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a concurrent save's folder
            if _same_file(fd, folder):
                shutil.rmtree(folder, ignore_errors=True)
        finally:
            os.close(fd)


def _discard(folder: Path, target: Path) -> None:
    """Removes a folder, first renaming it to a ``-trash-`` name so that a crash during the
    removal never leaves a half-deleted folder under a name `recover` would restore."""
    doomed = _sibling_name(target, _DOOMED)
    try:
        os.rename(folder, doomed)
    except OSError:
        doomed = folder
    shutil.rmtree(doomed, ignore_errors=True)


def _settle_tree(root: Path) -> None:
    """Gives every file and folder under ``root`` the umask's permissions, then fsyncs every
    file and every folder bottom-up, so that the data is on disk before the swap.

    Writers such as safetensors create their files 0600 (they write through a temporary file),
    which would make a bank unreadable to the other users a shared bank is for. ``root`` was
    made by ``mkdir(0o777)``, so its mode is what the umask allows, read without ``os.umask``
    (which is process-wide and racy under threads).
    """
    folder_mode = stat.S_IMODE(root.stat().st_mode)
    for folder, _, files in os.walk(root, topdown=False):
        for name in files:
            path = os.path.join(folder, name)
            info = os.lstat(path)
            if not stat.S_ISREG(info.st_mode):
                continue  # a link's target is not ours to change or sync
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                executable = info.st_mode & 0o111
                os.fchmod(fd, folder_mode if executable else folder_mode & 0o666)
                os.fsync(fd)
            finally:
                os.close(fd)
        os.chmod(folder, folder_mode)
        _fsync_dir(Path(folder))


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _open_dir(folder: Path) -> int | None:
    """An fd to lock ``folder`` by, or None if it is gone (or is not a folder)."""
    try:
        return os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # a symlink: not one of ours
            return None
        raise


def _same_file(fd: int, path: Path) -> bool:
    """Whether ``path`` still names the folder ``fd`` was opened on."""
    try:
        st = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (held.st_dev, held.st_ino) == (st.st_dev, st.st_ino)
