"""kivitendo/install.sh against a real kivitendo source tree (4.1 or newer).

Opt-in: set KIVI_OTRS_KIVITENDO_TREE to a kivitendo checkout or release tree, e.g.
``git --git-dir=<mirror>/repo archive release-4.1.0 | tar -x -C /tmp/kivi``. Each test works
on its own copy of that tree; the tree itself is never changed. Skipped without it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
KIVI = ROOT / "kivitendo"
INSTALL = KIVI / "install.sh"
TEMPLATES = Path("templates/design40_webpages/order/tabs")
LAYOUTS = (TEMPLATES / "_item_input.html", TEMPLATES / "_item_below_input.html")
OUR_FILES = (
    Path("SL/Controller/KiviOtrs.pm"),
    Path("public/js/kivi.KiviOtrs.js"),
    Path("templates/design40_webpages/kivi_otrs/order_button.html"),
)
BUTTON_INCLUDE = "[% PROCESS kivi_otrs/order_button.html"


def source_tree() -> Path:
    value = os.environ.get("KIVI_OTRS_KIVITENDO_TREE", "")
    if not value:
        pytest.skip("set KIVI_OTRS_KIVITENDO_TREE to a kivitendo 4.1+ source tree to run the install tests")
    tree = Path(value)
    if not (tree / "SL" / "Controller" / "Order.pm").is_file():
        pytest.fail(f"KIVI_OTRS_KIVITENDO_TREE={value} is not a kivitendo tree (no SL/Controller/Order.pm)")
    return tree


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A private copy of the kivitendo tree (symlinks kept as links)."""
    copy = tmp_path / "kivitendo-erp"
    shutil.copytree(source_tree(), copy, symlinks=True)
    return copy


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    sh = shutil.which("sh")
    assert sh is not None
    return subprocess.run([sh, str(INSTALL), *map(str, args)], capture_output=True, text=True, timeout=120, check=False)


def snapshot(root: Path) -> dict[str, str]:
    """sha256 of every file (and '<dir>' for every directory) below root."""
    result: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        name = str(path.relative_to(root))
        if path.is_symlink():
            result[name] = "-> " + os.readlink(path)
        elif path.is_dir():
            result[name] = "<dir>"
        else:
            result[name] = hashlib.sha256(path.read_bytes()).hexdigest()
    return result


def test_check_on_a_clean_tree_reports_the_plan_and_changes_nothing(tree: Path) -> None:
    """--check names every file and the insertion line for both layouts, exits 0 and leaves the tree alone."""
    before = snapshot(tree)
    done = run("--check", tree)
    assert done.returncode == 0, done.stdout + done.stderr
    for path in OUR_FILES:
        assert f"{path}: would be copied" in done.stdout
    for layout in LAYOUTS:
        assert f"{layout}: would insert one line after line" in done.stdout
    assert "Check passed" in done.stdout
    assert snapshot(tree) == before


def test_install_puts_the_button_and_script_into_both_layouts(tree: Path) -> None:
    """After install both item-input templates include our template, which holds the button and the script tag."""
    done = run(tree)
    assert done.returncode == 0, done.stdout + done.stderr
    for layout in LAYOUTS:
        text = (tree / layout).read_text()
        assert text.count(BUTTON_INCLUDE) == 1, layout
    assert "KIVI_OTRS_LAYOUT='above'" in (tree / LAYOUTS[0]).read_text()
    assert "KIVI_OTRS_LAYOUT='below'" in (tree / LAYOUTS[1]).read_text()
    for path in OUR_FILES:
        assert (tree / path).read_bytes() == (KIVI / path).read_bytes()
    button = (tree / OUR_FILES[2]).read_text()
    assert "kivi.KiviOtrs.get_tickets()" in button and "Geschlossene Tickets des Vormonats holen" in button
    assert '<script type="text/javascript" src="js/kivi.KiviOtrs.js"></script>' in button
    # the below-the-positions line sits after the input row's closing </tr>, inside the tfoot
    below = (tree / LAYOUTS[1]).read_text().splitlines()
    index = next(i for i, line in enumerate(below) if BUTTON_INCLUDE in line)
    assert below[index - 1].strip() == "</tr>"


def test_reinstall_is_a_no_op(tree: Path) -> None:
    """A second install changes no byte; --check then says everything is in place."""
    assert run(tree).returncode == 0
    installed = snapshot(tree)
    again = run(tree)
    assert again.returncode == 0, again.stdout + again.stderr
    assert snapshot(tree) == installed
    check = run("--check", tree)
    assert check.returncode == 0
    assert "would be" not in check.stdout and "would insert" not in check.stdout
    assert snapshot(tree) == installed


def test_uninstall_restores_every_file_byte_for_byte(tree: Path) -> None:
    """--uninstall after install leaves the same files, directories and sha256 sums as before."""
    before = snapshot(tree)
    assert run(tree).returncode == 0
    assert snapshot(tree) != before
    done = run("--uninstall", tree)
    assert done.returncode == 0, done.stdout + done.stderr
    assert snapshot(tree) == before


def test_install_after_a_kivitendo_update_of_a_template(tree: Path) -> None:
    """A template overwritten by a kivitendo update gets the line again; uninstall then restores the updated file."""
    pristine = (tree / LAYOUTS[0]).read_bytes()
    assert run(tree).returncode == 0
    updated = pristine.replace(b"</caption>", b"</caption><!-- update -->", 1)
    (tree / LAYOUTS[0]).write_bytes(updated)  # what a kivitendo update does: the file without our line
    before_uninstall = snapshot(tree)
    assert run(tree).returncode == 0
    assert BUTTON_INCLUDE in (tree / LAYOUTS[0]).read_text()
    assert run("--uninstall", tree).returncode == 0
    assert (tree / LAYOUTS[0]).read_bytes() == updated
    after = snapshot(tree)
    assert after[str(LAYOUTS[0])] == before_uninstall[str(LAYOUTS[0])]


def test_refuses_a_tree_whose_anchor_is_gone_and_changes_nothing(tree: Path) -> None:
    """If an anchor line is missing, --check and install fail and not a single file changes."""
    layout = tree / LAYOUTS[0]
    layout.write_text(layout.read_text().replace("kivi.Order.open_multi_items_dialog()", "kivi.Order.other()"))
    before = snapshot(tree)
    check = run("--check", tree)
    assert check.returncode == 1 and "CANNOT insert" in check.stdout
    done = run(tree)
    assert done.returncode != 0 and "nothing was changed" in done.stderr
    assert snapshot(tree) == before


def test_refuses_a_tree_that_is_not_kivitendo_4_1(tree: Path) -> None:
    """A tree whose VERSION says 4.0 (or that is no kivitendo at all) is refused before anything changes."""
    (tree / "VERSION").write_text("4.0.0\n")
    before = snapshot(tree)
    done = run(tree)
    assert done.returncode != 0
    assert "needs kivitendo 4.1 or newer" in done.stderr
    assert snapshot(tree) == before
    (tree / "SL" / "Controller" / "Order.pm").unlink()
    assert "is not a kivitendo tree" in run("--check", tree).stderr
