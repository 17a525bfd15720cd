"""Spreadsheets in and out: a CSV or XLSX upload read as a header and rows, an export
written as XLSX.

XLSX is read with python-calamine (Rust) and written with openpyxl's write-only mode:
calamine reads a 100,000-row sheet several times faster than openpyxl's read-only mode
but cannot write (docs/import-export.md has the figures). Cells come out as ``str``,
``int``, ``float`` or ``bool``; a whole float is an ``int`` (spreadsheets keep every
number as a float) and dates are ISO text, so the importer converts one kind of value.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from trellis.exceptions import BadRequest
from trellis.platform.messages import N_

XLSX_MAGIC = b"PK\x03\x04"  # an XLSX file is a zip archive
CSV_DELIMITERS = ",;\t"
CSV_ENCODINGS = ("utf-8-sig", "gb18030")  # Excel saves Chinese CSV files in GB18030
XLSX_MIME = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


class ImportFormat(StrEnum):
    """The formats an import reads and an export writes."""

    CSV = "csv"
    XLSX = "xlsx"


@dataclass(frozen=True)
class Sheet:
    """An upload's header and its data rows, each with its row number in the file (the
    header is row 1); rows left blank are skipped but keep the numbering. A row's cells
    are a tuple: a tuple of text and numbers is left alone by Python's cycle collector,
    so a 100,000-row sheet held through a run adds nothing to its collections."""

    columns: list[str]
    rows: list[tuple[int, tuple[Any, ...]]]


def detect_format(data: bytes) -> ImportFormat:
    """XLSX when the bytes are a zip archive, else CSV (the content decides, not the name)."""
    return ImportFormat.XLSX if data.startswith(XLSX_MAGIC) else ImportFormat.CSV


def read_sheet(data: bytes, max_rows: int) -> tuple[ImportFormat, Sheet]:
    """The first sheet of ``data``; more than ``max_rows`` data rows is refused (400)."""
    if not data:
        raise _unreadable(N_("the file is empty"))
    kind = detect_format(data)
    raw = _xlsx_rows(data) if kind is ImportFormat.XLSX else _csv_rows(data)
    # A CSV cell is always text: stripping it is its whole conversion.
    cells_of = _xlsx_cells if kind is ImportFormat.XLSX else _csv_cells
    header: list[str] | None = None
    rows: list[tuple[int, tuple[Any, ...]]] = []
    for number, values in enumerate(raw, start=1):
        cells = cells_of(values)
        if cells.count("") == len(cells):  # a blank row (0 and False are not blank)
            continue
        if header is None:
            header = _header(list(cells))
            continue
        if len(rows) >= max_rows:
            raise BadRequest(
                N_(
                    "the file holds more than %(limit)s rows; split it or raise the import limit",
                    limit=format(max_rows, ","),
                ),
                [{"field": "file", "message": N_("too many rows")}],
            )
        rows.append((number, cells))
    if header is None:
        raise _unreadable(N_("the file has no header row"))
    return kind, Sheet(header, rows)


def _csv_rows(data: bytes) -> Iterable[list[Any]]:
    for encoding in CSV_ENCODINGS:
        try:
            text = data.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:
        raise _unreadable(N_("the CSV file is neither UTF-8 nor GB18030 text"))
    if "\x00" in text:
        raise _unreadable(N_("the file is not a CSV or XLSX spreadsheet"))
    try:
        dialect: Any = csv.Sniffer().sniff(text[:8192], delimiters=CSV_DELIMITERS)
    except csv.Error:
        dialect = csv.excel
    return _csv_reader(csv.reader(io.StringIO(text, newline=""), dialect))


def _csv_reader(reader: Iterator[list[str]]) -> Iterator[list[str]]:
    """The rows one at a time (each list is dropped once its cells are kept as a tuple)."""
    try:
        yield from reader
    except csv.Error as exc:
        raise _unreadable(
            N_("the CSV file cannot be read: %(problem)s", problem=str(exc))
        ) from None


def _xlsx_rows(data: bytes) -> Iterable[list[Any]]:
    from python_calamine import CalamineError, CalamineWorkbook

    try:
        workbook = CalamineWorkbook.from_filelike(io.BytesIO(data))
        rows: list[list[Any]] = workbook.get_sheet_by_index(0).to_python(skip_empty_area=False)
    except (CalamineError, ValueError, IndexError) as exc:
        raise _unreadable(
            N_("the XLSX file cannot be read: %(problem)s", problem=str(exc))
        ) from None
    return rows


def _csv_cells(values: list[str]) -> tuple[str, ...]:
    return tuple([value.strip() for value in values])


def _xlsx_cells(values: list[Any]) -> tuple[Any, ...]:
    return tuple([_cell(value) for value in values])


def _cell(value: Any) -> Any:
    """One cell as text, a number or a boolean (see the module)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() and abs(value) < 2**53 else value
    if isinstance(value, dt.datetime):
        return value.isoformat() if value.time() != dt.time() else value.date().isoformat()
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return str(value)
    return str(value)


def _header(cells: list[Any]) -> list[str]:
    names = [str(cell) if cell != "" else f"#{i + 1}" for i, cell in enumerate(cells)]
    folded = [name.casefold() for name in names]
    twice = sorted({name for name, key in zip(names, folded, strict=True) if folded.count(key) > 1})
    if twice:
        raise BadRequest(
            N_("the header names a column twice: %(columns)s", columns=", ".join(twice)),
            [{"field": "file", "message": N_("duplicate column names")}],
        )
    return names


def _unreadable(message: str) -> BadRequest:
    return BadRequest(message, [{"field": "file", "message": message}])


def write_xlsx(names: list[str], rows: Iterable[dict[str, Any]]) -> bytes:
    """An export as an XLSX workbook: a header, then a row per record. Text is always
    written as text, so a value such as ``=HYPERLINK(…)`` is never a formula; control
    characters XLSX cannot hold are dropped."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("export")
    sheet.append(names)
    for row in rows:
        line: list[Any] = []
        for name in names:
            value = row.get(name)
            if isinstance(value, list | dict):
                value = json.dumps(value, ensure_ascii=False)
            if isinstance(value, str):
                # XML 1.0 has no place for most control characters: they are left out.
                value = ILLEGAL_CHARACTERS_RE.sub("", value)
            if isinstance(value, str) and value.startswith("="):
                cell = WriteOnlyCell(sheet, value=value)
                cell.data_type = "s"
                line.append(cell)
            else:
                line.append(value)
        sheet.append(line)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


__all__ = ["XLSX_MIME", "ImportFormat", "Sheet", "detect_format", "read_sheet", "write_xlsx"]
