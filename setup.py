"""Builds compile the UI's message catalogues (.po → .mo); everything else is pyproject.toml."""

from __future__ import annotations

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

TRANSLATIONS = Path(__file__).parent / "trellis" / "admin_ui" / "translations"


class BuildWithCatalogues(build_py):
    """Compile every ``messages.po`` next to itself before the package is built or installed
    (editable installs too), so no request ever compiles a catalogue."""

    def run(self) -> None:
        """Write each catalogue's ``messages.mo`` beside its ``.po``, then build as usual."""
        from babel.messages.mofile import write_mo
        from babel.messages.pofile import read_po

        for po_path in TRANSLATIONS.glob("*/LC_MESSAGES/messages.po"):
            with po_path.open("rb") as po_file:
                catalog = read_po(po_file)
            with po_path.with_suffix(".mo").open("wb") as mo_file:
                write_mo(mo_file, catalog)
        super().run()


setup(cmdclass={"build_py": BuildWithCatalogues})
