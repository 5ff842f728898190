#!/usr/bin/env python3
"""Drafts a shared store module from a PostgreSQL/SQLite twin pair (a refactoring aid).

usage: unify_twins.py postgres_x.rs sqlite_x.rs > shared/x.rs

The PostgreSQL file is the base (its statements already use `$n` placeholders, which sqlx's
SQLite driver accepts too). Each `&self.pool` becomes `self.reader()` or `self.writer()` as the
SQLite twin's n-th pool use says; PostgreSQL-only helpers become the shared vocabulary
(`text`, `opt_text`, `json`, `DbRow`, `Backend`). The draft still needs reading: statements
whose dialects differ stay per backend.
"""
import re
import sys

pg, lite = open(sys.argv[1]).read(), open(sys.argv[2]).read()
uses = re.findall(r"&self\.(reader|writer)\b", lite)
pools = len(re.findall(r"&self\.pool\b", pg))
if pools != len(uses):
    sys.exit(f"pool uses differ: postgres {pools}, sqlite {len(uses)}; map them by hand")
it = iter(uses)
out = re.sub(r"&self\.pool\b", lambda _: f"self.{next(it)}()", pg)
for a, b in [
    (r"\bpg_opt_text\(", "opt_text("),
    (r"\bpg_text\(", "text("),
    (r"\bjsonb\(", "json("),
    (r"\bPgRow\b", "DbRow"),
    (r"\bPostgresStore\b", "Backend"),
    (r"crate::postgres::", "super::"),
]:
    out = re.sub(a, b, out)
sys.stdout.write(out)
