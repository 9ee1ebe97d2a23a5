"""Several processes saving into one folder at once (every rank of a training run, two `omni-hf speaker add`): each
save lands whole, one after the other; none crashes; a killed save's staging folder is cleaned up by the next save."""

import json
import multiprocessing
import os
import socket

import pytest

from omni_hf.common.staged_save import INCOMPLETE, MANIFEST, read_manifest, staged_save

ROUNDS = 12


def _writer(directory, writer, barrier, errors):
    """Save a three-file artifact labelled `writer` into `directory`, ROUNDS times, in step with the other writer."""
    try:
        for round_ in range(ROUNDS):
            barrier.wait(timeout=60)
            target = f"{directory}-{round_}"
            with staged_save(target, part="model") as stage:
                for name in ("config.json", "model.safetensors", "sub/extra.txt"):
                    (stage / name).parent.mkdir(exist_ok=True)
                    (stage / name).write_text(f"{writer} {round_} {name}")
    except BaseException as error:  # reported to the test, which fails with it
        errors.put(f"writer {writer}: {type(error).__name__}: {error}")


def _run_two_writers(base):
    context = multiprocessing.get_context("fork")
    barrier, errors = context.Barrier(2), context.Queue()
    workers = [context.Process(target=_writer, args=(str(base), w, barrier, errors)) for w in ("a", "b")]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    found = []
    while not errors.empty():
        found.append(errors.get())
    assert not found, found
    assert all(worker.exitcode == 0 for worker in workers)


def _assert_whole(folder):
    """All three files from one writer, the manifest listing exactly them, no marker, nothing staged beside it."""
    texts = {name: (folder / name).read_text() for name in ("config.json", "model.safetensors", "sub/extra.txt")}
    writers = {text.split()[0] for text in texts.values()}
    assert len(writers) == 1, texts
    assert read_manifest(folder) == {"model": ["config.json", "model.safetensors", "sub/extra.txt"]}
    assert not (folder / INCOMPLETE).exists()
    assert not [p for p in folder.parent.iterdir() if ".staging-" in p.name]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_two_processes_saving_one_new_folder_both_land_whole(tmp_path):
    base = tmp_path / "out"
    _run_two_writers(base)
    for round_ in range(ROUNDS):
        _assert_whole(tmp_path / f"out-{round_}")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_two_processes_saving_over_an_existing_folder_keep_user_files(tmp_path):
    base = tmp_path / "out"
    for round_ in range(ROUNDS):  # an earlier save of ours plus a user's file in each folder
        with staged_save(f"{base}-{round_}", part="model") as stage:
            (stage / "config.json").write_text("old")
            (stage / "stale.bin").write_text("old")
        (tmp_path / f"out-{round_}" / "notes.txt").write_text("the user's")
    _run_two_writers(base)
    for round_ in range(ROUNDS):
        folder = tmp_path / f"out-{round_}"
        _assert_whole(folder)
        assert (folder / "notes.txt").read_text() == "the user's"
        assert not (folder / "stale.bin").exists()
        assert json.loads((folder / MANIFEST).read_text())["parts"].keys() == {"model"}


def test_a_killed_saves_staging_folder_is_removed_by_the_next_save(tmp_path):
    host = socket.gethostname().replace("-", "_")
    context = multiprocessing.get_context("spawn" if not hasattr(os, "fork") else "fork")
    finished = context.Process(target=os.getpid)
    finished.start()
    finished.join()  # its pid no longer runs: a save it was making was killed
    dead = tmp_path / f".model.staging-{host}-{finished.pid}-abc123"
    alive = tmp_path / f".model.staging-{host}-{os.getpid()}-def456"  # a save still running in this process
    elsewhere = tmp_path / f".model.staging-otherhost-{finished.pid}-ghi789"  # another host's: cannot be checked
    for folder in (dead, alive, elsewhere):
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"x" * 1000)
    with staged_save(tmp_path / "model", part="model") as stage:
        (stage / "config.json").write_text("{}")
    assert not dead.exists()
    assert alive.is_dir() and elsewhere.is_dir()
    assert (tmp_path / "model" / "config.json").read_text() == "{}"


def test_a_save_inside_a_held_folder_does_not_deadlock(tmp_path):
    from omni_hf.common.staged_save import exclusive_folder

    with exclusive_folder(tmp_path), exclusive_folder(tmp_path):  # re-entrant in one thread
        with staged_save(tmp_path / "model", part="model") as stage:  # its commit locks tmp_path again
            (stage / "config.json").write_text("{}")
    assert (tmp_path / "model" / "config.json").is_file()
