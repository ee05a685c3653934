import os
import stat
import subprocess
import sys

import pytest

from sde_utils.io import LockTimeout, atomic_write, atomic_write_text, build_lock


def test_writes_and_replaces(tmp_path):
    target = tmp_path / "sub" / "a.txt"  # the parent is created
    atomic_write_text(target, "one")
    atomic_write_text(target, "two")
    assert target.read_text() == "two"
    assert atomic_write(tmp_path / "b.bin", lambda fh: fh.write(b"\x00\x01")) == tmp_path / "b.bin"
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"


def test_an_interrupted_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "a.txt"
    atomic_write_text(target, "old")

    def half(fh):
        fh.write("half of the new content")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, half, mode="w")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_mode_is_checked(tmp_path):
    with pytest.raises(ValueError, match="mode must be 'wb' or 'w', got 'a'"):
        atomic_write(tmp_path / "x", lambda fh: None, mode="a")


def test_written_files_get_the_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "a.json", "{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # not mkstemp's private 0600


def test_a_renamed_away_parent_is_not_recreated_when_asked(tmp_path):
    with pytest.raises(FileNotFoundError):
        atomic_write_text(tmp_path / "gone" / "a.txt", "x", make_parents=False)
    assert not (tmp_path / "gone").exists()


def test_build_lock_serialises_two_processes(tmp_path):
    # a second process waits for the first; with a short timeout it gives up by name
    target = tmp_path / "store"
    done = tmp_path / "holder-done"  # written by the holder as the last thing under its lock
    code = (
        "import pathlib, sys, time; from sde_utils.io import build_lock\n"
        f"with build_lock({str(target)!r}):\n"
        "    print('locked', flush=True); time.sleep(3)\n"
        f"    pathlib.Path({str(done)!r}).touch()\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(LockTimeout, match=r"another process has been building .*store"):
            with build_lock(target, timeout=0.2):
                pass
        with build_lock(target, timeout=30):  # waits until the holder is done
            # (not holder.poll(): on a loaded machine the holder can release the lock and
            # still be exiting)
            assert done.exists()
    finally:
        holder.wait(timeout=30)
