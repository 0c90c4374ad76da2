"""What a file roster wrote must hold: an export's file read and checked against its
result (size, sha256, rows, order, range), and an import's rejects report against the
invalid lines of its upload. Plain functions, run in a process pool by the checks."""

import csv
import hashlib
import io
import json
import os
from pathlib import Path

from .settings import FORMULA_STARTS, IMPORT_PREFIX, MTIME_SLACK_SECS


def read_rows(data, fmt):
    """(age, id, name) of every row of an export file, or raises ValueError saying what is
    wrong."""
    text = data.decode("utf-8")
    if fmt == "jsonl":
        rows = []
        for n, line in enumerate(text.split("\n")[:-1] if text else [], 1):
            obj = json.loads(line)
            if not isinstance(obj, dict) or set(obj) != {"id", "name", "age"}:
                raise ValueError(f"line {n} is not {{id, name, age}}: {line[:80]!r}")
            rows.append((obj["age"], obj["id"], obj["name"]))
        if text and not text.endswith("\n"):
            raise ValueError("the last line is not terminated")
        return rows
    if not text.startswith("id,name,age\r\n"):
        raise ValueError(f"header is not id,name,age + CRLF: {text[:40]!r}")
    if text.count("\n") != text.count("\r\n"):
        raise ValueError("a line ends without CRLF")
    records = csv.reader(io.StringIO(text, newline=""), strict=True)
    next(records)
    rows = []
    for n, record in enumerate(records, 2):
        if len(record) != 3:
            raise ValueError(f"record {n} has {len(record)} fields")
        if record[1].startswith(FORMULA_STARTS):
            raise ValueError(f"record {n}: formula not neutralised: {record[1][:40]!r}")
        rows.append((int(record[2]), int(record[0]), record[1]))
    return rows


def verify_file(path, result, params, expected_rows, finished):
    """What is wrong with a succeeded export's file (empty when nothing), and how many
    imported rows it holds. `finished`: when its job ended (epoch seconds);
    `expected_rows`: the seeded students in its range (rows imported meanwhile may be in
    the file or not)."""
    try:
        data = Path(path).read_bytes()
        modified = os.stat(path).st_mtime
    except OSError as e:
        return [f"cannot read {path}: {e}"], 0
    problems = []
    if finished is not None and modified > finished + MTIME_SLACK_SECS:
        problems.append(f"written {modified - finished:.2f}s after its job ended")
    if len(data) != result.get("bytes"):
        problems.append(f"{len(data)} bytes, result says {result.get('bytes')}")
    if hashlib.sha256(data).hexdigest() != result.get("sha256"):
        problems.append("sha256 differs from the result's")
    try:
        rows = read_rows(data, params.get("format", "csv"))
    except (ValueError, TypeError, KeyError) as e:
        return problems + [f"unparsable: {e}"], 0
    low, high = params.get("min_age", 0), params.get("max_age", 150)
    if any(not low <= age <= high for age, _, _ in rows):
        problems.append(f"ages outside {low}..{high}")
    keys = [(age, i) for age, i, _ in rows]
    if any(a >= b for a, b in zip(keys, keys[1:])):
        problems.append("rows not strictly ordered by (age, id)")
    if len({i for _, i, _ in rows}) != len(rows):
        problems.append("duplicate ids")
    seeded = sum(not name.startswith(IMPORT_PREFIX) for _, _, name in rows)
    if len(rows) != result.get("rows") or seeded != expected_rows:
        problems.append(f"{len(rows)} rows ({len(rows) - seeded} imported); result says "
                        f"{result.get('rows')}; {seeded} seeded rows, the database "
                        f"{expected_rows}")
    return problems, len(rows) - seeded


def verify_report(path, upload):
    """What is wrong with an import's rejects report (empty when nothing): it must list
    the line of each invalid row of `upload`, once, and nothing else; with its sha256."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        return [f"cannot read its rejects report {path}: {e}"], None
    try:
        records = list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))
    except (ValueError, csv.Error) as e:
        return [f"rejects report unparsable: {e}"], None
    if not records or records[0] != ["line", "field", "message"]:
        return [f"rejects report header is {records[:1]}, not line,field,message"], None
    try:
        lines = [int(r[0]) for r in records[1:]]
    except (ValueError, IndexError) as e:
        return [f"rejects report has a bad line number: {e}"], None
    problems = []
    if len(lines) != len(set(lines)) or set(lines) != upload.report_lines():
        problems.append(f"rejects report lists lines {sorted(lines)[:10]}, the invalid rows "
                        f"are on {sorted(upload.report_lines())}")
    return problems, hashlib.sha256(data).hexdigest()
