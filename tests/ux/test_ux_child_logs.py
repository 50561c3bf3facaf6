"""What the launcher reads back from its children's logs (point 7 and 1 of issue 13)."""

from __future__ import annotations

import io

from spiral.launch.child_logs import LogTail, Note, last_error_lines, notable
from spiral.launch.local import ChildNotes, stopped_lines
from spiral.learning.budget import Budget
from spiral.learning.run_log import RunSummary
from spiral.progress import RunOutput, TrainProgress

WARNING = "2026-01-01 10:00:00,123 WARNING [42] spiral.data.mnist:87 MNIST: train-images is missing in d: splitting the 10000 t10k images"
RESUMED = "2026-01-01 10:00:01,000 INFO [42] spiral.learning.state:180 resumed from runs/x/checkpoints/latest.pt: 228 updates, 1000 frames"
PLAIN_INFO = "2026-01-01 10:00:02,000 INFO [42] spiral.services.server:10 serving on 127.0.0.1:5000"


def test_warnings_errors_and_the_resume_line_are_notable_other_info_is_not():
    assert notable(WARNING) == Note("WARNING", "MNIST: train-images is missing in d: splitting the 10000 t10k images")
    assert notable(RESUMED).message.startswith("resumed from runs/x")
    assert notable(PLAIN_INFO) is None and notable("Traceback (most recent call last):") is None


def test_log_tail_returns_only_complete_new_lines(tmp_path):
    path = tmp_path / "a.log"
    tail = LogTail(path)
    assert tail.new_lines() == []  # no file yet
    path.write_text("one\ntw")
    assert tail.new_lines() == ["one"]
    with path.open("a") as fh:
        fh.write("o\nthree\n")
    assert tail.new_lines() == ["two", "three"] and tail.new_lines() == []


def test_last_error_lines_prefer_the_last_traceback(tmp_path):
    path = tmp_path / "child.log"
    path.write_text("\n".join([PLAIN_INFO, "Traceback (most recent call last):", '  File "x.py", line 1', "ValueError: old", PLAIN_INFO,
                               "Traceback (most recent call last):", '  File "y.py", line 2', "DatasetError: no MNIST in /nowhere"]) + "\n")
    assert last_error_lines(path) == ["Traceback (most recent call last):", '  File "y.py", line 2', "DatasetError: no MNIST in /nowhere"]
    path.write_text(PLAIN_INFO + "\n2026-01-01 10:00:00,000 ERROR [1] spiral.x:1 boom\n" + PLAIN_INFO + "\n")
    assert last_error_lines(path) == ["2026-01-01 10:00:00,000 ERROR [1] spiral.x:1 boom"]
    assert last_error_lines(tmp_path / "missing.log") == []


class _Cluster:
    def __init__(self, logs_dir):
        self.logs_dir = logs_dir
        self.children = {"policy-learner": None, "actor-0": None, "actor-1": None}


def test_child_notes_show_each_message_once_with_the_child_name(tmp_path):
    for name in ("actor-0", "actor-1", "policy-learner"):
        (tmp_path / f"{name}.log").write_text("\n".join([PLAIN_INFO, WARNING]) + "\n")
    with (tmp_path / "policy-learner.log").open("a") as fh:
        fh.write(RESUMED + "\n")
    stream = io.StringIO()
    progress = TrainProgress(Budget(1, "updates"), output=RunOutput(tmp_path / "train.log", stream))
    notes = ChildNotes(_Cluster(tmp_path), progress)
    notes.show_new()
    notes.show_new()
    lines = stream.getvalue().splitlines()
    assert lines == [
        "[policy-learner] warning: MNIST: train-images is missing in d: splitting the 10000 t10k images",
        "[policy-learner] resumed from runs/x/checkpoints/latest.pt: 228 updates, 1000 frames",
    ]
    assert (tmp_path / "train.log").read_text().splitlines() == lines


def test_after_ctrl_c_the_checkpoint_and_the_resume_command_are_printed(tmp_path):
    lines = stopped_lines(tmp_path, RunSummary(updates=7, frames=112), "spiral train -o runs/x")
    assert lines == [f"stopped after 7 updates, 112 frames; checkpoint: {tmp_path / 'checkpoints'}", "resume with: spiral train -o runs/x"]
