"""The plugin is written for Qt 5 and Qt 6 alike (QGIS 3.22 to QGIS 4): a static check that fails on
any construct only Qt 5 / PyQt5 accepts. PyQt5 5.15 (QGIS 3.22's) accepts every replacement checked
for here, and the rest of the suite runs the plugin on it."""
import io
import re
import tokenize
from pathlib import Path

import pytest

PLUGIN = Path(__file__).resolve().parent.parent / "rs_qgis_plugin"
QT5_ONLY = {
    "PyQt5 or PyQt6 imported directly (use qgis.PyQt)": re.compile(r"^\s*(from|import)\s+(PyQt5|PyQt6|sip)\b", re.M),
    "exec_() (use exec())": re.compile(r"\.exec_\("),
    "QRegExp (use QRegularExpression)": re.compile(r"\bQRegExp"),
    "QDesktopWidget (use QScreen)": re.compile(r"\bQDesktopWidget\b"),
    "QAction, QActionGroup or QShortcut from QtWidgets only (Qt 6 has them in QtGui: try qgis.PyQt.QtGui first)":
        re.compile(r"^from qgis\.PyQt\.QtWidgets import [^\n]*\b(QAction|QActionGroup|QShortcut)\b", re.M),
    "QVariant null values (Qt 6 has none; use None)": re.compile(r"\bQVariant\(\)|\bQPyNullVariant\b"),
    "pyqtSignal with a Qt 5 type name (QString)": re.compile(r"pyqtSignal\([^)]*QString"),
    "unscoped enum value (use e.g. Qt.ItemDataRole.UserRole, QDialog.DialogCode.Accepted, Qgis.MessageLevel.Info)":
        None,  # checked by unscoped_enums
}
# Class.Value where Value is an enum value, not a nested enum, class or method: the names a Qt or QGIS
# class holds that start with a capital and are not followed by '.' or '('. Nested enum and class names
# a check could confuse with values are listed as allowed.
ENUM_ACCESS = re.compile(r"\b(Qt|Qgis|Q[A-Z]\w*|Qgs\w+)\.([A-Z]\w*)\b(?!\s*[.(])")


def code_without_strings_and_comments(path: Path) -> str:
    """The file's code with every string and comment blanked (line structure kept)."""
    source = path.read_text(encoding="utf-8")
    lines = source.splitlines(keepends=True)
    for token in reversed(list(tokenize.generate_tokens(io.StringIO(source).readline))):
        if token.type in (tokenize.STRING, tokenize.COMMENT) and token.start[0] == token.end[0]:
            row = token.start[0] - 1
            line = lines[row]
            lines[row] = line[:token.start[1]] + " " * (token.end[1] - token.start[1]) + line[token.end[1]:]
        elif token.type == tokenize.STRING:
            for row in range(token.start[0] - 1, token.end[0]):
                lines[row] = "\n"
    return "".join(lines)


def unscoped_enums(code: str) -> list[str]:
    return [match.group(0) for match in ENUM_ACCESS.finditer(code)]


def qt5_only_constructs(path: Path) -> list[str]:
    code = code_without_strings_and_comments(path)
    found = [f"{name}: {match.group(0).strip()}" for name, pattern in QT5_ONLY.items() if pattern is not None
             for match in pattern.finditer(code)]
    return found + [f"unscoped enum value: {value}" for value in unscoped_enums(code)]


@pytest.mark.parametrize("path", sorted(PLUGIN.rglob("*.py")), ids=lambda path: str(path.relative_to(PLUGIN)))
def test_the_plugin_uses_no_qt5_only_construct(path):
    assert qt5_only_constructs(path) == []


def test_the_check_finds_each_qt5_only_construct(tmp_path):
    sample = tmp_path / "qt5.py"
    sample.write_text(
        "from PyQt5.QtCore import Qt\n"
        "item.setData(Qt.UserRole, 1)\n"
        "dialog.exec_()\n"
        "pattern = QRegExp('x')\n"
        "bar.pushMessage('a', 'b', Qgis.Info)\n"
        "if dialog.result() == QDialog.Accepted: pass\n"
        "ok = Qt.ItemDataRole.UserRole  # scoped: fine\n"
        "text = 'Qt.UserRole in a string is fine'\n"
        "from qgis.PyQt.QtWidgets import QAction, QDialog\n"
        "try:\n    from qgis.PyQt.QtGui import QAction\nexcept ImportError:\n"
        "    from qgis.PyQt.QtWidgets import QAction  # indented: the Qt 5 fallback, fine\n"
    )
    found = qt5_only_constructs(sample)
    assert found == ["PyQt5 or PyQt6 imported directly (use qgis.PyQt): from PyQt5", "exec_() (use exec()): .exec_(",
                     "QRegExp (use QRegularExpression): QRegExp",
                     "QAction, QActionGroup or QShortcut from QtWidgets only (Qt 6 has them in QtGui: try "
                     "qgis.PyQt.QtGui first): from qgis.PyQt.QtWidgets import QAction", "unscoped enum value: Qt.UserRole",
                     "unscoped enum value: Qgis.Info", "unscoped enum value: QDialog.Accepted"]


def test_metadata_declares_qt6_support():
    metadata = (PLUGIN.parent / "metadata.txt").read_text(encoding="utf-8")
    assert re.search(r"^supportsQt6=True$", metadata, re.M)
