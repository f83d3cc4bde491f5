"""utils: the progress bar of the long-running scripts."""
import io
import sys

from utils import progress


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_shows_rate_and_time_left_on_a_terminal_only(monkeypatch):
    monkeypatch.setattr(sys, "stderr", Terminal())
    assert list(progress(iter(range(3)), total=3, desc="demo")) == [0, 1, 2]
    drawn = sys.stderr.getvalue()
    assert "demo" in drawn and "3/3" in drawn and "image/s" in drawn and "<00:00" in drawn
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    with progress(total=2) as bar:
        bar.update(2)
    assert list(progress(range(2))) == [0, 1]
    assert sys.stderr.getvalue() == ""
