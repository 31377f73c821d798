"""The console script's start-up and exit: the paused collector and the exit without teardown lose nothing."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
from pathlib import Path

import pytest

from factscope.gc_control import paused_gc


def _console(code: str, *args: str, cache: Path) -> subprocess.CompletedProcess:
    env = {"FACTSCOPE_CACHE": str(cache), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=180, env=env)


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from factscope.testing import tiny_model

    folder = tmp_path_factory.mktemp("console") / "llama"
    model, tokenizer = tiny_model("llama")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_paused_gc_restores_the_collector_it_found() -> None:
    assert gc.isenabled()
    with paused_gc():
        assert not gc.isenabled()
        with paused_gc():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the inner block found it off and leaves it off
    assert gc.isenabled()
    with pytest.raises(KeyError):
        with paused_gc():
            raise KeyError("x")
    assert gc.isenabled()
    gc.disable()
    try:
        with paused_gc():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_a_library_load_neither_leaves_the_collector_off_nor_freezes(tiny_model_dir: Path, isolated_cache: Path) -> None:
    from factscope.models import load_model

    frozen_before = gc.get_freeze_count()
    load_model(str(tiny_model_dir))
    assert gc.isenabled()
    assert gc.get_freeze_count() == frozen_before


_WATCHED = ("import atexit, gc, sys\n"
            "atexit.register(lambda: print('atexit ran', gc.get_freeze_count() > 0, gc.isenabled()))\n"
            "from factscope.cli import main\n"
            "main()\n")


def test_the_console_script_prints_everything_runs_atexit_and_keeps_the_exit_code(tiny_model_dir: Path,
                                                                                   tmp_path: Path) -> None:
    done = _console(_WATCHED, "predict", "The capital of", "--k", "200", "--json", "--threads", "1",
                    "--model", str(tiny_model_dir), cache=tmp_path / "cache")
    assert done.returncode == 0, done.stderr
    *payload, last = done.stdout.splitlines()
    assert len(json.loads("\n".join(payload))["top"]) == 200  # the whole JSON reached the pipe
    assert last == "atexit ran True True"  # handlers ran; the one-command process froze its start-up objects

    bad = _console(_WATCHED, "predict", "x", "--k", "0", cache=tmp_path / "cache")
    assert bad.returncode == 2
    assert bad.stdout.splitlines() == ["atexit ran True True"]
    assert bad.stderr.startswith("error: ")


def test_a_profiled_command_still_writes_its_profile(tiny_model_dir: Path, tmp_path: Path) -> None:
    profile = tmp_path / "predict.prof"
    env = {"FACTSCOPE_CACHE": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "cProfile", "-o", str(profile), "-m", "factscope", "predict", "ab",
                           "--k", "2", "--model", str(tiny_model_dir)], capture_output=True, text=True, timeout=180, env=env)
    assert done.returncode == 0, done.stderr
    assert profile.stat().st_size > 0


def test_the_exit_waits_for_a_live_thread(tmp_path: Path) -> None:
    code = ("import threading, time\n"
            "from factscope.cli import _exit_now\n"
            "threading.Thread(target=lambda: (time.sleep(0.3), print('thread finished', flush=True))).start()\n"
            "_exit_now(3)\n")
    done = _console(code, cache=tmp_path / "cache")
    assert done.returncode == 3
    assert done.stdout.strip() == "thread finished"
