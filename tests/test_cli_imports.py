"""``trellis import`` and ``trellis export``: the importer and the export from the shell."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import openpyxl
import sqlalchemy as sa

from tests.test_cli import EMAIL, PASSWORD, Run, engine_for, environment, sqlite_url, trellis

__all__ = ["environment", "sqlite_url", "trellis"]  # the fixtures this module reuses

# Headers in Chinese labels; the parent is matched by the demo's dealer codes.
DEALERS = """名称,经销商编码,上级经销商,层级,标签
新的经销商甲,D-9001,D-0001,regional,key_account;exclusive
新的经销商乙,D-9002,D-NONE,regional,
"""


def test_import_and_export_from_the_command_line(
    trellis: Run, sqlite_url: str, tmp_path: Path
) -> None:
    trellis("init", "--admin-email", EMAIL, "--admin-password", PASSWORD)
    trellis("pack", "install", "channel_pack", "--demo")
    source = tmp_path / "dealers.csv"
    source.write_text(DEALERS, encoding="utf-8")
    report = tmp_path / "report.csv"

    refused = trellis(
        "import",
        "dealer",
        str(source),
        "--lookup",
        "parent=code",
        "--report",
        str(report),
        ok=False,
    )
    assert refused.exit_code == 1, refused.output
    assert (
        "refused" in refused.stdout
        and "row 3 上级经销商: no dealer with code 'D-NONE'" in refused.stdout
    )
    assert list(csv.reader(io.StringIO(report.read_text())))[1][:2] == ["3", "上级经销商"]

    done = trellis(
        "import",
        "dealer",
        str(source),
        "--lookup",
        "parent=code",
        "--mode",
        "skip_invalid",
        "--user",
        EMAIL,
        ok=False,
    )
    assert "succeeded: 1 of 2 rows imported" in done.stdout, done.output
    with engine_for(sqlite_url).connect() as connection:
        row = connection.execute(
            sa.text(
                "SELECT d.tags, p.code FROM obj_dealer d JOIN obj_dealer p ON p.id = d.parent"
                " WHERE d.code = 'D-9001'"
            )
        ).one()
    assert "exclusive" in row[0] and row[1] == "D-0001"

    out = tmp_path / "out.xlsx"
    exported = trellis(
        "export",
        "dealer",
        "--format",
        "xlsx",
        "--filter",
        '[["code","=","D-9001"]]',
        "--fields",
        "name,code",
        "-o",
        str(out),
    )
    assert "1 record(s)" in exported.stdout
    rows = list(openpyxl.load_workbook(out).active.values)
    assert rows[0] == ("id", "name", "code") and rows[1][1:] == ("新的经销商甲", "D-9001")
    unknown = trellis("import", "nothing", str(source), ok=False)
    assert unknown.exit_code == 2 and "no object named 'nothing'" in unknown.output
