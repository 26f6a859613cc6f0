"""hififace.utils.text: names quoted from files are shown on one line, escaped and cut."""
from __future__ import annotations

from hififace.utils.text import printable, printable_list


def test_control_and_invisible_characters_are_escaped():
    assert printable("\x1b[2J\x1b[1;1HOK") == "\\x1b[2J\\x1b[1;1HOK"  # clear screen + cursor home: shown, not run
    assert printable("a\nb\rc\td") == "a\\x0ab\\x0dc\\x09d"
    assert printable("evil\u202eexe.txt") == "evil\\u202eexe.txt"  # bidi override (shows 'txt.exe' reversed)
    assert printable("zero\u200bwidth \x7f \x9b") == "zero\\u200bwidth \\x7f \\x9b"
    assert printable("généré ✓ 顔") == "généré ✓ 顔"  # printable text stays as it is


def test_long_text_is_cut_with_an_ellipsis():
    assert printable("k" * 10_000_000) == "k" * 79 + "\u2026"
    assert printable("k" * 80) == "k" * 80
    assert len(printable("\x00" * 100, 20)) == 20
    assert printable_list(["b", "a\x1b", "c"], 2) == "b, a\\x1b (+1 more)"


def test_terminal_line_escapes_a_whole_message_once():
    from hififace.utils.text import printable, terminal_line

    name = "evil\x1b[2J\nOK: done\u202e.png"
    line = terminal_line(f"{name}: skipped")
    assert line == "evil\\x1b[2J\\x0aOK: done\\u202e.png: skipped"
    assert terminal_line(line) == line and terminal_line(printable(name)) == printable(name)  # no double escaping
    assert len(terminal_line("x" * 10_000_000)) <= 4001
