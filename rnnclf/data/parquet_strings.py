"""Read a one-column Parquet file of strings (a word list), without pyarrow.

Only what rnnclf's packaged GloVe word list needs (`rnnclf/data/glove_package.py`): one row group,
one string column without nulls, SNAPPY- or un-compressed v1 data pages. parquet-cpp writes such
a column as a dictionary page, data pages of dictionary indices (RLE / bit-packed hybrid), and,
once the dictionary outgrows its size limit, PLAIN data pages for the rest; all three are read
here, in row order. The format: https://parquet.apache.org/docs/file-format/ (page headers are
Thrift compact-protocol structs); SNAPPY: https://github.com/google/snappy/blob/main/format_description.txt.
"""

from __future__ import annotations

import struct

MAGIC = b"PAR1"
DATA_PAGE, DICTIONARY_PAGE = 0, 2  # PageType
CODEC_NONE, CODEC_SNAPPY = 0, 1  # CompressionCodec
PLAIN, PLAIN_DICTIONARY, RLE_DICTIONARY = 0, 2, 8  # Encoding


class ParquetError(ValueError):
    """The bytes are not the kind of Parquet file this reader handles."""


class _Reader:
    """A cursor over bytes with the varint and zigzag reads of Thrift's compact protocol."""

    def __init__(self, data: bytes, position: int = 0) -> None:
        self.data = data
        self.position = position

    def byte(self) -> int:
        if self.position >= len(self.data):
            raise ParquetError("unexpected end of data")
        value = self.data[self.position]
        self.position += 1
        return value

    def take(self, count: int) -> bytes:
        if count < 0 or self.position + count > len(self.data):
            raise ParquetError("unexpected end of data")
        chunk = self.data[self.position:self.position + count]
        self.position += count
        return chunk

    def varint(self) -> int:
        value = shift = 0
        while True:
            byte = self.byte()
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7
            if shift > 63:
                raise ParquetError("varint too long")

    def zigzag(self) -> int:
        value = self.varint()
        return (value >> 1) ^ -(value & 1)


# Thrift compact-protocol type codes.
_TRUE, _FALSE, _BYTE, _I16, _I32, _I64, _DOUBLE, _BINARY, _LIST, _SET, _MAP, _STRUCT = range(1, 13)


def _read_struct(reader: _Reader, depth: int = 0) -> dict[int, object]:
    """A struct as {field id: value}; nested structs become dicts, lists become lists."""
    if depth > 16:
        raise ParquetError("structs nested too deeply")
    fields: dict[int, object] = {}
    field_id = 0
    while True:
        header = reader.byte()
        if header == 0:
            return fields
        delta, kind = header >> 4, header & 0x0F
        field_id = field_id + delta if delta else reader.zigzag()
        fields[field_id] = _read_value(reader, kind, depth)


def _read_value(reader: _Reader, kind: int, depth: int) -> object:
    if kind in (_TRUE, _FALSE):
        return kind == _TRUE
    if kind == _BYTE:
        return reader.byte()
    if kind in (_I16, _I32, _I64):
        return reader.zigzag()
    if kind == _DOUBLE:
        return struct.unpack("<d", reader.take(8))[0]
    if kind == _BINARY:
        return reader.take(reader.varint())
    if kind in (_LIST, _SET):
        header = reader.byte()
        size = header >> 4 if header >> 4 != 15 else reader.varint()
        element = header & 0x0F
        if element in (_TRUE, _FALSE):  # booleans in a list are one byte each
            return [reader.byte() == 1 for _ in range(size)]
        return [_read_value(reader, element, depth + 1) for _ in range(size)]
    if kind == _MAP:
        size = reader.varint()
        if size == 0:
            return {}
        types = reader.byte()
        return {_read_value(reader, types >> 4, depth + 1): _read_value(reader, types & 0x0F,
                                                                          depth + 1)
                for _ in range(size)}
    if kind == _STRUCT:
        return _read_struct(reader, depth + 1)
    raise ParquetError(f"unknown Thrift type {kind}")


def snappy_decompress(data: bytes) -> bytes:
    """Decompress one raw (unframed) SNAPPY block."""
    reader = _Reader(data)
    expected = reader.varint()
    out = bytearray()
    while reader.position < len(data):
        tag = reader.byte()
        kind = tag & 3
        if kind == 0:  # literal
            length = tag >> 2
            if length >= 60:
                length = int.from_bytes(reader.take(length - 59), "little")
            out += reader.take(length + 1)
            continue
        if kind == 1:
            length = 4 + ((tag >> 2) & 7)
            offset = ((tag >> 5) << 8) | reader.byte()
        elif kind == 2:
            length = (tag >> 2) + 1
            offset = int.from_bytes(reader.take(2), "little")
        else:
            length = (tag >> 2) + 1
            offset = int.from_bytes(reader.take(4), "little")
        if offset == 0 or offset > len(out):
            raise ParquetError("corrupt SNAPPY data (copy before the start)")
        start = len(out) - offset
        if offset >= length:
            out += out[start:start + length]
        else:  # the copy overlaps what it writes: repeat the last `offset` bytes
            pattern = bytes(out[start:])
            out += (pattern * (length // offset + 1))[:length]
    if len(out) != expected:
        raise ParquetError(f"corrupt SNAPPY data ({len(out)} bytes, header says {expected})")
    return bytes(out)


def _first_column_chunk(data: bytes) -> tuple[dict[int, object], bool]:
    """ColumnMetaData of the first column of the only row group, and whether the column is
    OPTIONAL (its pages then open with definition levels), from the footer."""
    footer_length = struct.unpack("<I", data[-8:-4])[0]
    if footer_length <= 0 or footer_length > len(data) - 12:
        raise ParquetError("bad footer length")
    metadata = _read_struct(_Reader(data[-8 - footer_length:-8]))
    try:
        row_groups = metadata[4]
        if len(row_groups) != 1:
            raise ParquetError(f"{len(row_groups)} row groups; this reader handles one")
        optional = metadata[2][1].get(3, 0) == 1  # schema[1].repetition_type
        return row_groups[0][1][0][3], optional  # RowGroup.columns[0].meta_data
    except (KeyError, IndexError, TypeError) as error:
        raise ParquetError(f"footer lacks the first column's metadata ({error})") from None


def _hybrid_values(reader: _Reader, bit_width: int, count: int) -> list[int]:
    """`count` integers of Parquet's RLE / bit-packed hybrid encoding."""
    values: list[int] = []
    mask = (1 << bit_width) - 1
    value_bytes = (bit_width + 7) // 8
    while len(values) < count:
        header = reader.varint()
        if header & 1:  # bit-packed: groups of 8 values in bit_width bytes, LSB first
            for _ in range(header >> 1):
                group = int.from_bytes(reader.take(bit_width), "little")
                values.extend((group >> (bit_width * i)) & mask for i in range(8))
        else:  # a run of one repeated value
            values.extend([int.from_bytes(reader.take(value_bytes), "little")] * (header >> 1))
    return values[:count]


def _plain_strings(reader: _Reader, count: int) -> list[str]:
    strings = []
    for _ in range(count):
        length = struct.unpack("<I", reader.take(4))[0]
        strings.append(reader.take(length).decode("utf-8"))
    return strings


def read_string_column(data: bytes) -> list[str]:
    """Every value of the file's first (string) column, in row order; no nulls allowed.

    Handles what parquet-cpp writes for a long word list: a dictionary page, data pages of
    dictionary indices, then PLAIN data pages once the dictionary grew past its size limit.
    """
    if len(data) < 12 or data[:4] != MAGIC or data[-4:] != MAGIC:
        raise ParquetError("not a Parquet file (no PAR1 markers)")
    column, optional = _first_column_chunk(data)
    codec, total = int(column[4]), int(column[5])
    if codec not in (CODEC_NONE, CODEC_SNAPPY):
        raise ParquetError(f"compression codec {codec} is not supported (only none and SNAPPY)")
    reader = _Reader(data, int(column.get(11, column[9])))  # dictionary page, else first data page
    dictionary: list[str] = []
    strings: list[str] = []
    while len(strings) < total:
        header = _read_struct(reader)
        page = reader.take(int(header[3]))
        if codec == CODEC_SNAPPY:
            page = snappy_decompress(page)
        if len(page) != int(header[2]):
            raise ParquetError("page size does not match its header")
        body = _Reader(page)
        if header.get(1) == DICTIONARY_PAGE:
            dictionary = _plain_strings(body, int(header[7][1]))
            continue
        if header.get(1) != DATA_PAGE or 5 not in header:
            raise ParquetError(f"page type {header.get(1)} is not supported (only v1 data pages)")
        count, encoding = int(header[5][1]), int(header[5][2])
        if optional:
            levels = _Reader(body.take(struct.unpack("<I", body.take(4))[0]))
            if not all(_hybrid_values(levels, 1, count)):
                raise ParquetError("the column holds nulls")
        if encoding == PLAIN:
            strings.extend(_plain_strings(body, count))
        elif encoding in (PLAIN_DICTIONARY, RLE_DICTIONARY):
            indices = _hybrid_values(body, body.byte(), count)
            if indices and max(indices) >= len(dictionary):
                raise ParquetError("dictionary index out of range")
            strings.extend(dictionary[i] for i in indices)
        else:
            raise ParquetError(f"value encoding {encoding} is not supported")
    if len(strings) != total:
        raise ParquetError(f"read {len(strings)} values, the footer says {total}")
    return strings
