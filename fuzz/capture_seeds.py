#!/usr/bin/env python3
"""Captures real backend bytes from a PostgreSQL server into the fuzz seeds.

Speaks just enough of the v3 protocol (trust auth only) to record what the
server sends back for a few requests, and writes:

  corpus/seed/decode_message/<name>             raw backend byte streams
  corpus/seed/decode_message_persistent/<name>  chunking prefix + stream
  corpus/seed/decode_message_bounded/<name>     cap byte + stream
  corpus/seed/decode_pg_types/<name>            type index + binary value

Usage: python3 fuzz/capture_seeds.py [host] [port] [user] [database]
(defaults: $PGTEST_HOST, $PGTEST_PORT as scripts/lib/cluster.sh exports them,
trust_user, pgtest). Nothing is left behind on the
server: extension types (hstore, ltree) are created inside a transaction
that is rolled back.
"""

import os
import socket
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SEED = os.path.join(HERE, "corpus", "seed")

# Must match TYPES in fuzz/src/lib.rs (index = first input byte).
TYPE_INDEX = {
    "bool": 0, "int2": 1, "int4": 2, "int8": 3, "float4": 4, "float8": 5,
    "text": 6, "varchar": 7, "bpchar": 8, "name": 9, "bytea": 10, "oid": 11,
    "char": 12, "numeric": 13, "json": 14, "jsonb": 15, "date": 16,
    "time": 17, "timestamp": 18, "timestamptz": 19, "uuid": 20, "inet": 21,
    "int4[]": 22, "text[]": 23, "int8[]": 24, "bytea[]": 25, "bool[]": 26,
    "float8[]": 27, "hstore": 28, "pg_lsn": 29, "timestamp[]": 30,
    "varbit": 31, "point": 32, "box": 33, "path": 34, "int4range": 35,
    "ltree": 36, "cidr": 37, "interval": 38, "macaddr": 39,
}


def msg(tag, body=b""):
    return tag + struct.pack("!I", len(body) + 4) + body


def cstr(s):
    return s.encode() + b"\0"


class Conn:
    def __init__(self, host, port, user, db):
        self.s = socket.create_connection((host, port))
        body = struct.pack("!I", 196608) + cstr("user") + cstr(user)
        body += cstr("database") + cstr(db) + cstr("application_name")
        body += cstr("fuzz-seed") + b"\0"
        self.s.sendall(struct.pack("!I", len(body) + 4) + body)
        self.startup = self.until_ready()

    def read_exact(self, n):
        out = b""
        while len(out) < n:
            chunk = self.s.recv(n - len(out))
            if not chunk:
                raise EOFError("server closed the connection")
            out += chunk
        return out

    def read_message(self):
        header = self.read_exact(5)
        (length,) = struct.unpack("!I", header[1:])
        return header + self.read_exact(length - 4)

    def until_ready(self):
        """All bytes up to and including the next ReadyForQuery."""
        raw = b""
        while True:
            m = self.read_message()
            raw += m
            if m[:1] == b"Z":
                return raw

    def simple(self, sql):
        self.s.sendall(msg(b"Q", cstr(sql)))
        return self.until_ready()

    def extended(self, sql, params=(), binary_results=True):
        """Parse/Bind/Describe(statement+portal)/Execute/Sync."""
        out = msg(b"P", cstr("") + cstr(sql) + struct.pack("!H", 0))
        bind = cstr("") + cstr("") + struct.pack("!H", 0)  # all params text
        bind += struct.pack("!H", len(params))
        for p in params:
            if p is None:
                bind += struct.pack("!i", -1)
            else:
                bind += struct.pack("!i", len(p)) + p
        bind += struct.pack("!HH", 1, 1 if binary_results else 0)
        out += msg(b"B", bind)
        out += msg(b"D", b"S" + cstr(""))
        out += msg(b"D", b"P" + cstr(""))
        out += msg(b"E", cstr("") + struct.pack("!I", 0))
        out += msg(b"S")
        self.s.sendall(out)
        return self.until_ready()

    def close(self):
        self.s.sendall(msg(b"X"))
        self.s.close()


def messages(raw):
    i = 0
    while i < len(raw):
        (length,) = struct.unpack("!I", raw[i + 1:i + 5])
        yield raw[i:i + 1], raw[i + 5:i + 1 + length]
        i += 1 + length


def first_value(raw):
    """The first column of the first DataRow in `raw`."""
    for tag, body in messages(raw):
        if tag == b"D":
            (n,) = struct.unpack("!i", body[2:6])
            return None if n < 0 else body[6:6 + n]
    raise ValueError("no DataRow in %r" % raw[:200])


def write(target, name, data):
    d = os.path.join(SEED, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def main():
    args = sys.argv[1:] + [None] * 4
    host = args[0] or os.environ.get("PGTEST_HOST", "127.0.0.1")
    port = args[1] or os.environ.get("PGTEST_PORT")
    if port is None:
        sys.exit("give the port, or start a cluster with scripts/lib/cluster.sh (PGTEST_PORT)")
    port = int(port)
    user = args[2] or "trust_user"
    db = args[3] or "pgtest"

    c = Conn(host, port, user, db)
    streams = {
        "startup": c.startup,
        "simple_select": c.simple("SELECT 1::int4 AS a, 'x'::text AS b, NULL AS c"),
        "error": c.simple("SELECT * FROM fuzz_no_such_table"),
        "notice": c.simple("DO $$ BEGIN RAISE NOTICE 'hello %', 42; END $$"),
        "empty_query": c.simple(""),
        "multi_statement": c.simple("SELECT 1; SELECT 'a', 2.5::float8; SET LOCAL x.y = 1"),
        "extended_binary": c.extended(
            "SELECT $1::int4 + 1 AS n, $2::text AS t, ARRAY[1, NULL, 3]::int4[] AS a",
            params=(b"41", b"hi"),
        ),
        "extended_error": c.extended("SELECT 1/0"),
        "copy_out": c.simple("COPY (SELECT g, 'row ' || g FROM generate_series(1, 3) g) TO STDOUT"),
    }
    c.simple("LISTEN fuzz_channel")
    streams["notification"] = c.simple("NOTIFY fuzz_channel, 'payload'")
    c.close()

    # Binary values, one per type of the decode_pg_types list.
    c = Conn(host, port, user, db)
    c.simple("BEGIN")
    c.simple("CREATE EXTENSION IF NOT EXISTS hstore")
    c.simple("CREATE EXTENSION IF NOT EXISTS ltree")
    values = {
        "bool": "true", "int2": "-2::int2", "int4": "2147483647::int4",
        "int8": "'-9223372036854775808'::int8", "float4": "'NaN'::float4",
        "float8": "-1.5e300::float8", "text": "'héllo'::text",
        "varchar": "'v'::varchar", "bpchar": "'ab'::char(4)",
        "name": "'pg_class'::name", "bytea": "'\\x00ff'::bytea",
        "oid": "'pg_class'::regclass::oid", "char": "'z'::\"char\"",
        "numeric": "-12345.678900::numeric", "json": "'{\"a\": [1, null]}'::json",
        "jsonb": "'{\"a\": [1, null]}'::jsonb", "date": "'1999-12-31'::date",
        "time": "'23:59:59.999999'::time",
        "timestamp": "'1960-01-01 00:00:00'::timestamp",
        "timestamptz": "'2024-02-29 12:00:00+00'::timestamptz",
        "uuid": "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid",
        "inet": "'2001:db8::1/64'::inet", "int4[]": "ARRAY[1, NULL, 3]::int4[]",
        "text[]": "ARRAY[['a', NULL], ['c', 'd']]::text[]",
        "int8[]": "'[0:1]={5,6}'::int8[]", "bytea[]": "ARRAY['\\x01'::bytea]",
        "bool[]": "ARRAY[]::bool[]", "float8[]": "ARRAY['Infinity', 1]::float8[]",
        "hstore": "'a=>1, b=>NULL'::hstore", "pg_lsn": "'16/B374D848'::pg_lsn",
        "timestamp[]": "ARRAY['infinity', '2000-01-01']::timestamp[]",
        "varbit": "B'10110'::varbit", "point": "point(1.5, -2)",
        "box": "box(point(0, 0), point(1, 1))",
        "path": "'[(0,0),(1,1),(2,0)]'::path",
        "int4range": "int4range(1, 10)", "ltree": "'a.b.c'::ltree",
        "cidr": "'10.0.0.0/8'::cidr", "interval": "'1 day 2 hours'::interval",
        "macaddr": "'08:00:2b:01:02:03'::macaddr",
    }
    for name, expr in values.items():
        value = first_value(c.extended("SELECT " + expr))
        fname = name.replace("[]", "_array")
        write("decode_pg_types", fname, bytes([TYPE_INDEX[name]]) + value)
    c.simple("ROLLBACK")
    c.close()

    for name, raw in streams.items():
        write("decode_message", name, raw)
        # Chunking: one size byte (count = 1), chunks of 1 + 6 = 7 bytes.
        write("decode_message_persistent", name, bytes([0, 6]) + raw)
        # Cap byte 0xff = 4096, so these all frame.
        write("decode_message_bounded", name, b"\xff" + raw)
    # A small cap (byte 0 = 4 bytes): everything over it must be refused.
    write("decode_message_bounded", "startup_cap4", b"\x00" + streams["startup"])
    write("decode_message_persistent", "startup_bytewise", bytes([1, 0, 2]) + streams["startup"])


if __name__ == "__main__":
    main()
