"""Parquet manifests: one part file per shard under ``OUT/manifest/<table>/``.

Parts are named ``part-{shard:05d}.parquet`` and read back in part order. Rows follow the
Arrow schemas of :mod:`samrs.outputs.schema` exactly (documented in ``manifests/README.md``).
Files are zstd-compressed and carry no timestamps: same rows -> same bytes.

Parts written by an older schema version (1.0: nullable vectors as fixed-size lists) are read
with their columns cast to the current types.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from samrs.errors import SamrsError
from samrs.outputs.schema import LEGACY_NAMES, MANIFEST_VERSION, TABLES, VECTOR_SIZE

MANIFEST_DIR = "manifest"

ROW_GROUP_SIZE = 65536
"""Rows per Parquet row group: a shard's part is one group; merged parts stay scannable."""

COMPRESSION = "zstd"
COMPRESSION_LEVEL = 3

# Columns whose values are (nearly) unique: dictionary encoding would only cost time.
_NO_DICTIONARY = {"segmentation", "message", "polygon", "hbox", "bbox", "prompt_box"}


class ManifestError(SamrsError, ValueError):
    """A manifest row that does not fit the schema, or an unknown table."""


def schema_of(table_name: str) -> pa.Schema:
    """The Arrow schema of a manifest table (``images``, ``instances``, ``errors``)."""
    try:
        return TABLES[table_name]
    except KeyError:
        raise ManifestError(
            f"unknown manifest table {table_name!r}; expected one of {', '.join(TABLES)}"
        ) from None


def part_name(shard: int) -> str:
    """File name of a shard's part: ``part-00012.parquet``."""
    return f"part-{int(shard):05d}.parquet"


def part_path(out: str | Path, table_name: str, shard: int) -> Path:
    """``OUT/manifest/<table>/part-<shard>.parquet``."""
    schema_of(table_name)
    return Path(out) / MANIFEST_DIR / table_name / part_name(shard)


def part_paths(out: str | Path, table_name: str) -> list[Path]:
    """The existing parts of a table, in part order (temporary files excluded)."""
    folder = Path(out) / MANIFEST_DIR / table_name
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("part-*.parquet") if p.is_file())


def _check_value(field: pa.Field, value: Any) -> None:
    pa.array([value], type=field.type)


def _vector_size(field: pa.Field) -> int | None:
    """The number of values of a nullable vector column (:data:`VECTOR_SIZE`), else None."""
    size = (field.metadata or {}).get(VECTOR_SIZE)
    return int(size) if size is not None else None


def _check_vector(table_name: str, field: pa.Field, array: pa.Array) -> None:
    size = _vector_size(field)
    if size is None:
        return
    wrong = pc.and_(array.is_valid(), pc.not_equal(pc.list_value_length(array), size))
    if pc.any(wrong).as_py():
        i = pc.index(wrong, True).as_py()
        raise ManifestError(
            f"{table_name} row {i}: column {field.name!r} expects null or {size} "
            f"{field.type.value_type} values, got {array[i].as_py()!r:.80}"
        )


def to_table(table_name: str, rows: Sequence[dict[str, Any]]) -> pa.Table:
    """Rows (dicts keyed by column) as an Arrow table of the manifest schema.

    Missing nullable columns become null. Raises :class:`ManifestError` naming the table, row
    and column of the first bad value (unknown column, null in a required column, wrong type
    or list length).
    """
    schema = schema_of(table_name)
    names = set(schema.names)
    required = [f.name for f in schema if not f.nullable]
    for i, row in enumerate(rows):
        unknown = set(row) - names
        if unknown:
            raise ManifestError(
                f"{table_name} row {i}: unknown column(s) {', '.join(sorted(unknown))}"
            )
        for name in required:
            if row.get(name) is None:
                raise ManifestError(f"{table_name} row {i}: column {name!r} is required (got null)")
    arrays = []
    for field in schema:
        values = [row.get(field.name) for row in rows]
        try:
            arrays.append(pa.array(values, type=field.type))
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError) as exc:
            for i, value in enumerate(values):
                try:
                    _check_value(field, value)
                except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
                    raise ManifestError(
                        f"{table_name} row {i}: column {field.name!r} expects {field.type}, "
                        f"got {value!r:.80}"
                    ) from exc
            raise ManifestError(f"{table_name}: column {field.name!r}: {exc}") from exc
        _check_vector(table_name, field, arrays[-1])
    return pa.Table.from_arrays(arrays, schema=schema)


def write_part(path: str | Path, table_name: str, rows: Sequence[dict[str, Any]]) -> None:
    """Validate rows and write them as one Parquet part (an empty list writes an empty part).

    Args:
        path: the file to write (see :func:`part_path`; the caller handles temporary names).
        table_name: ``images``, ``instances`` or ``errors``.
        rows: dicts keyed by column name, in the order they should be read back.
    """
    table = to_table(table_name, rows)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(
        table,
        str(path),
        row_group_size=ROW_GROUP_SIZE,
        compression=COMPRESSION,
        compression_level=COMPRESSION_LEVEL,
        use_dictionary=[n for n in table.schema.names if n not in _NO_DICTIONARY],
        write_statistics=True,
        store_schema=True,
    )


def part_version(path: str | Path) -> str | None:
    """The manifest schema version a part was written with (its Parquet schema metadata)."""
    metadata = pq.read_schema(str(path)).metadata or {}
    version = metadata.get(b"samrs_manifest_version")
    return version.decode() if version is not None else None


@contextlib.contextmanager
def _old_parts_explained(out: str | Path, table_name: str) -> Iterator[None]:
    """Turn pyarrow < 26 failing on a version 1.0 part's null fixed-size lists into a clear
    :class:`ManifestError` naming the part (apache/arrow#35692)."""
    try:
        yield
    except pa.ArrowInvalid as exc:
        if "Expected all lists to be of size" not in str(exc):
            raise
        old = [p for p in part_paths(out, table_name) if part_version(p) != MANIFEST_VERSION]
        if not old:
            raise
        more = f" (and {len(old) - 1} more)" if len(old) > 1 else ""
        raise ManifestError(
            f"{old[0]}{more}: manifest version {part_version(old[0])} stores null vectors as "
            f"fixed-size lists, which pyarrow {pa.__version__} cannot read (apache/arrow#35692, "
            f"fixed in pyarrow 26); read this build with pyarrow>=26 or rebuild it "
            f"(manifest version {MANIFEST_VERSION})"
        ) from exc


def _dataset(out: str | Path, table_name: str) -> tuple[ds.Dataset | None, dict[str, str]]:
    """The parts as one dataset, and ``{current name: stored name}`` for renamed columns.

    Manifests written before a column rename (:data:`LEGACY_NAMES`) are read under the
    current names; this is the one place that maps them.
    """
    schema = schema_of(table_name)
    paths = part_paths(out, table_name)
    if not paths:
        return None, {}
    stored = set(pq.read_schema(paths[0]).names)
    renamed = {
        new: old
        for old, new in LEGACY_NAMES.get(table_name, {}).items()
        if old in stored and new not in stored
    }
    if renamed:
        schema = pa.schema(
            [f.with_name(renamed.get(f.name, f.name)) for f in schema], metadata=schema.metadata
        )
    return ds.dataset([str(p) for p in paths], schema=schema, format="parquet"), renamed


def _columns(
    table_name: str, columns: Sequence[str] | None, renamed: dict[str, str]
) -> list[str] | dict[str, ds.Expression] | None:
    """A scanner's ``columns``: names, or a projection reading renamed columns."""
    if not renamed:
        return list(columns) if columns is not None else None
    names = list(columns) if columns is not None else schema_of(table_name).names
    return {n: ds.field(renamed.get(n, n)) for n in names}


def read_table(
    out: str | Path,
    table_name: str,
    columns: Sequence[str] | None = None,
    filter: ds.Expression | None = None,
) -> pa.Table:
    """A whole manifest table of a build, parts in order (empty with the schema when none).

    Args:
        out: the build folder.
        table_name: ``images``, ``instances`` or ``errors``.
        columns: only these columns.
        filter: a ``pyarrow.compute`` / ``pyarrow.dataset`` expression, e.g.
            ``pc.field("kept") == True``.
    """
    schema = schema_of(table_name)
    dataset, renamed = _dataset(out, table_name)
    if dataset is None:
        table = schema.empty_table()
        return table.select(list(columns)) if columns is not None else table
    with _old_parts_explained(out, table_name):
        table = dataset.to_table(columns=_columns(table_name, columns, renamed), filter=filter)
    return table.cast(schema) if renamed and columns is None else table


def iter_batches(
    out: str | Path,
    table_name: str,
    columns: Sequence[str] | None = None,
    batch_size: int = 4096,
    filter: ds.Expression | None = None,
) -> Iterator[pa.RecordBatch]:
    """Stream a manifest table as record batches, parts and rows in order."""
    schema_of(table_name)
    dataset, renamed = _dataset(out, table_name)
    if dataset is None:
        return
    cols = _columns(table_name, columns, renamed)
    scanner = dataset.scanner(columns=cols, filter=filter, batch_size=batch_size)
    with _old_parts_explained(out, table_name):
        for batch in scanner.to_batches():
            if batch.num_rows:
                yield batch
