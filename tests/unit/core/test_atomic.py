"""Crash-safe folder saves: real save processes killed with SIGKILL at random instants, and the
exception, leftover and permission paths of `atomic_folder`."""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from agentmem.adaptation.adapter import Adapter
from agentmem.atomic import atomic_folder, recover
from agentmem.bank_io import SavedBank, load_bank, save_bank
from agentmem.tools.spec import ToolSpec

FILES = 5
PAYLOAD = 64 * 1024  # bytes per file: enough that writing a folder takes a while


def folder_content(version: str) -> dict[str, bytes]:
    """A folder's files for one version: every file says which version it belongs to."""
    return {f"part{i}.bin": f"{version}:{i}:".encode() * (PAYLOAD // 8) for i in range(FILES)}


def write_folder(path: Path, version: str) -> None:
    with atomic_folder(path) as staging:
        (staging / "sub").mkdir()
        for name, data in folder_content(version).items():
            (staging / "sub" / name).write_bytes(data)


def read_version(path: Path) -> str:
    """The version the folder holds; fails unless every file is there and of one version."""
    assert os.listdir(path) == ["sub"], f"{path} holds {os.listdir(path)}"
    names = sorted(os.listdir(path / "sub"))
    assert names == sorted(folder_content("old")), f"{path} holds {names}"
    for version in ("old", "new"):
        if all((path / "sub" / n).read_bytes() == d for n, d in folder_content(version).items()):
            return version
    raise AssertionError(f"{path} mixes versions or holds a torn file")


def visible(parent: Path) -> list[str]:
    return sorted(n for n in os.listdir(parent) if not n.startswith("."))


# A save process: saves new, old, new, ... over the same folder until killed; says "saved" once
# a save has completed, so that kills land in the middle of the loop, not in its start-up. It
# imports only agentmem.atomic (no torch), so that fifty of them start in seconds.
_FOLDER_SAVER = """
import os
from pathlib import Path
from agentmem import atomic
atomic._USE_EXCHANGE = {exchange!r}
path, i = Path({path!r}), 0
while True:
    version = ("new", "old")[i % 2]
    with atomic.atomic_folder(path) as staging:
        (staging / "sub").mkdir()
        for n in range({files}):
            (staging / "sub" / f"part{{n}}.bin").write_bytes(f"{{version}}:{{n}}:".encode() * ({payload} // 8))
    if i == 0:
        os.write(1, b"saved\\n")
    i += 1
"""


@pytest.mark.parametrize("exchange", [True, False], ids=["exchange", "two-renames"])
def test_killed_folder_saves_leave_old_or_new(tmp_path, exchange):
    """25 save processes per swap method, each SIGKILLed at a random instant of its save loop."""
    path = tmp_path / "bank"
    write_folder(path, "old")
    rng = random.Random(16)
    seen = {"old": 0, "new": 0}
    code = _FOLDER_SAVER.format(exchange=exchange, path=str(path), files=FILES, payload=PAYLOAD)
    for _ in range(25):
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
        try:
            assert proc.stdout.readline() == b"saved\n", "the save process died before saving"
            time.sleep(rng.uniform(0.0, 0.03))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            proc.stdout.close()
        assert proc.returncode == -signal.SIGKILL
        if exchange:
            assert path.is_dir(), "with RENAME_EXCHANGE the path must hold a folder at every instant"
        seen[read_version(recover(path))] += 1
        assert visible(tmp_path) == ["bank"], "a leftover would be listed as a bank"
    assert seen["old"] and seen["new"], f"the kills never left the other version: {seen}"
    write_folder(path, "new")
    assert os.listdir(tmp_path) == ["bank"], "leftovers of killed saves survive the next save"


def tiny_bank(version: int) -> SavedBank:
    """A two-tool bank with an adapter (a nested atomic save) whose every part names ``version``."""
    specs = [
        ToolSpec(name=f"tool_{k}", description=f"version {version}", parameters={"type": "object", "properties": {}})
        for k in range(2)
    ]
    adapter = Adapter(
        lora={"r": 1, "alpha": 1, "dropout": 0.0, "target_modules": ["q_proj"]},
        weights={"lora_A": torch.full((1, 4), float(version))},
        base_name="tiny-llama",
        base_fingerprint="fp",
    )
    return SavedBank(
        backbone_name="tiny-llama",
        fingerprint="fp",
        specs=specs,
        training={},
        rows=torch.full((2, 8), float(version)),
        adapter=adapter,
    )


def bank_version(path: Path) -> int:
    """The version a bank holds; fails unless it loads and every part is of one version."""
    bank = load_bank(path)
    version = int(bank.rows[0, 0])
    assert torch.equal(bank.rows, tiny_bank(version).rows)
    assert {spec.description for spec in bank.specs} == {f"version {version}"}
    assert bank.adapter is not None and bank.adapter.id == tiny_bank(version).adapter.id
    return version


# One process imports torch once (seconds on 2 cores), then forks a save loop per kill: each
# child saves banks 1, 0, 1, ... until SIGKILLed, and says "saved" after its first save.
_BANK_SAVER = """
import os, sys
sys.path.insert(0, {tests!r})
from test_atomic import save_bank, tiny_bank
for _ in sys.stdin:
    pid = os.fork()
    if pid == 0:
        i = 0
        while True:
            save_bank({path!r}, tiny_bank(1 - i % 2))
            if i == 0:
                os.write(1, b"saved\\n")
            i += 1
    os.write(1, b"%d\\n" % pid)
    os.waitpid(pid, 0)
    os.write(1, b"reaped\\n")
"""


def test_killed_bank_saves_load_old_or_new(tmp_path):
    """20 real save_bank processes killed at random instants; the bank always loads whole."""
    path = tmp_path / "bank"
    save_bank(path, tiny_bank(0))
    rng = random.Random(16)
    code = _BANK_SAVER.format(tests=str(Path(__file__).parent), path=str(path))
    server = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    seen, pid = {0: 0, 1: 0}, None
    try:
        for _ in range(20):
            server.stdin.write(b"go\n")
            server.stdin.flush()
            lines = {server.stdout.readline(), server.stdout.readline()}  # the pid and "saved", either order
            assert b"saved\n" in lines, f"the save process died before saving: {lines}"
            (pid,) = (int(line) for line in lines if line != b"saved\n")
            time.sleep(rng.uniform(0.0, 0.03))
            os.kill(pid, signal.SIGKILL)
            assert server.stdout.readline() == b"reaped\n"
            pid = None
            assert path.is_dir(), "with RENAME_EXCHANGE the path must hold a bank at every instant"
            seen[bank_version(path)] += 1
            assert visible(tmp_path) == ["bank"], "a leftover would be listed as a bank"
    finally:
        if pid is not None:  # a failure between fork and kill: stop the orphaned save loop
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        server.kill()
        server.wait()
    assert sum(seen.values()) == 20
    save_bank(path, tiny_bank(0))
    assert os.listdir(tmp_path) == ["bank"], "leftovers of killed saves survive the next save"


def test_error_inside_with_keeps_old_folder_and_leaves_nothing(tmp_path):
    path = tmp_path / "bank"
    write_folder(path, "old")
    with pytest.raises(RuntimeError, match="interrupted"):
        with atomic_folder(path) as staging:
            (staging / "sub").mkdir()
            (staging / "sub" / "part0.bin").write_bytes(b"half a bank")
            raise RuntimeError("interrupted")
    assert read_version(path) == "old"
    assert os.listdir(tmp_path) == ["bank"]


def test_first_save_creates_parents(tmp_path):
    path = tmp_path / "a" / "b" / "bank"
    write_folder(path, "new")
    assert read_version(path) == "new"
    assert os.listdir(path.parent) == ["bank"]


def test_next_save_removes_leftovers_of_crashed_saves_only(tmp_path):
    path = tmp_path / "bank"
    write_folder(path, "old")
    crashed = [".bank-tmp-0a1b2c3d", ".bank-old-4e5f6a7b", ".bank-trash-8c9d0e1f", ".bank-tmp-x_y7z2ab"]
    others = [".bank2-tmp-0a1b2c3d", ".bank-x-tmp-0a1b2c3d", ".bank-tmp-tmp-0a1b2c3d", "bank-tmp-0a1b2c3d"]
    for name in crashed + others:
        (tmp_path / name).mkdir()
        (tmp_path / name / "bank.json").write_text("{}")
    live = tmp_path / ".bank-tmp-feedf00d"  # a concurrent save's staging folder, locked by it
    live.mkdir()
    fd = os.open(live, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        write_folder(path, "new")
    finally:
        os.close(fd)
    assert read_version(path) == "new"
    assert sorted(os.listdir(tmp_path)) == sorted(["bank", live.name, *others])


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_permissions_follow_the_umask(tmp_path, umask):
    """safetensors writes 0600 files; a saved bank still gets the umask's permissions."""
    previous = os.umask(umask)
    try:
        save_bank(tmp_path / "bank", tiny_bank(0))
    finally:
        os.umask(previous)
    for folder, _dirs, files in os.walk(tmp_path / "bank"):
        assert stat.S_IMODE(os.stat(folder).st_mode) == 0o777 & ~umask, folder
        for name in files:
            assert stat.S_IMODE(os.stat(os.path.join(folder, name)).st_mode) == 0o666 & ~umask, name
    assert sorted(os.listdir(tmp_path / "bank")) == ["adapter", "bank.json", "bank.safetensors"]


def test_load_restores_a_bank_killed_between_two_renames(tmp_path):
    """The fallback swap's crash window: the bank only under its -old- name, the new copy
    complete under its staging name. Loading puts the old bank back; saving cleans up."""
    path = tmp_path / "bank"
    save_bank(path, tiny_bank(0))
    save_bank(tmp_path / ".bank-tmp-0a1b2c3d", tiny_bank(1))
    os.rename(path, tmp_path / ".bank-old-4e5f6a7b")
    assert bank_version(path) == 0
    save_bank(path, tiny_bank(1))
    assert bank_version(path) == 1
    assert os.listdir(tmp_path) == ["bank"]


def test_save_restores_a_bank_retired_by_older_agentmem(tmp_path):
    """Older agentmem retired a bank as .NAME-old-XXXXXXXX/NAME (from tempfile.mkdtemp)."""
    path = tmp_path / "bank"
    save_bank(path, tiny_bank(0))
    (tmp_path / ".bank-old-k3_x9q2z").mkdir()
    os.rename(path, tmp_path / ".bank-old-k3_x9q2z" / "bank")
    (tmp_path / ".bank-old-0a1b2c3d").mkdir()  # an emptied shell: nothing to restore from
    assert recover(path) == path
    assert bank_version(path) == 0
    assert sorted(os.listdir(tmp_path)) == [".bank-old-0a1b2c3d", "bank"]
    write_folder(tmp_path / "other", "new")  # another target's save leaves this one's leftovers
    assert sorted(os.listdir(tmp_path)) == [".bank-old-0a1b2c3d", "bank", "other"]
    save_bank(path, tiny_bank(1))
    assert sorted(os.listdir(tmp_path)) == ["bank", "other"]


def test_a_deleted_bank_is_not_brought_back_from_an_empty_shell(tmp_path):
    (tmp_path / ".bank-old-0a1b2c3d").mkdir()
    assert recover(tmp_path / "bank") == tmp_path / "bank"
    assert not (tmp_path / "bank").exists()


def test_recover_reads_in_place_without_a_retired_folder(tmp_path):
    assert recover(tmp_path / "missing") == tmp_path / "missing"
    assert not (tmp_path / "missing").exists()


# A two-rename save that stops right after retiring the old folder (the crash window the
# exchange avoids), so that it can be killed there for certain rather than by chance.
_PAUSED_SAVER = """
import os, time
from pathlib import Path
from agentmem import atomic
atomic._USE_EXCHANGE = False
real_rename = os.rename
def rename(source, destination):
    real_rename(source, destination)
    if "-old-" in os.fspath(destination):
        os.write(1, b"window\\n")
        time.sleep(600)
os.rename = rename
with atomic.atomic_folder(Path({path!r})) as staging:
    (staging / "sub").mkdir()
    for n in range({files}):
        (staging / "sub" / f"part{{n}}.bin").write_bytes(f"new:{{n}}:".encode() * ({payload} // 8))
"""


def test_a_save_killed_between_two_renames_is_waited_for_then_restored(tmp_path):
    path = tmp_path / "bank"
    write_folder(path, "old")
    code = _PAUSED_SAVER.format(path=str(path), files=FILES, payload=PAYLOAD)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline() == b"window\n"
        assert not path.exists()
        restored: list[Path] = []
        reader = threading.Thread(target=lambda: restored.append(recover(path)))
        reader.start()
        reader.join(0.5)
        assert reader.is_alive(), "recover must wait for a live save, not take its old folder"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    reader.join()
    assert restored == [path] and read_version(path) == "old"
    write_folder(path, "new")
    assert os.listdir(tmp_path) == ["bank"]
