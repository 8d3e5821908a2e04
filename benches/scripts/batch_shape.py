"""Records per batch in a topic: how the producer that wrote it batched its records.

Speaks the Kafka Fetch API (v4) over a plain socket, so it sees record-batch boundaries, which
client libraries hide. Reads each partition from its start to its end and prints, per partition,
the batch count, records per batch (mean, median, max) and the share of one-record batches.
Not a test; used for docs/performance.md (why Tansu serves the ingest's topic slowly).

    python3 benches/scripts/batch_shape.py 127.0.0.1:9092 engagement-events [PARTITIONS]
"""
import socket
import statistics
import struct
import sys


def string(s):
    b = s.encode()
    return struct.pack(">h", len(b)) + b


class Conn:
    def __init__(self, bootstrap):
        host, port = bootstrap.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)))
        self.correlation = 0

    def request(self, api_key, version, body):
        self.correlation += 1
        header = struct.pack(">hhi", api_key, version, self.correlation) + string("batch-shape")
        msg = header + body
        self.sock.sendall(struct.pack(">i", len(msg)) + msg)
        size = struct.unpack(">i", self.read(4))[0]
        resp = self.read(size)
        assert struct.unpack(">i", resp[:4])[0] == self.correlation
        return resp[4:]

    def read(self, n):
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("broker closed the connection")
            buf += chunk
        return bytes(buf)


def fetch(conn, topic, partition, offset, max_bytes=1 << 20):
    """One Fetch v4 for one partition: (high watermark, [(base offset, records), ...])."""
    body = struct.pack(">iiiib", -1, 100, 1, max_bytes, 0)
    body += struct.pack(">i", 1) + string(topic)
    body += struct.pack(">i", 1) + struct.pack(">iqi", partition, offset, max_bytes)
    resp = conn.request(1, 4, body)
    pos = 4  # throttle_time_ms
    (topics,) = struct.unpack_from(">i", resp, pos)
    pos += 4
    assert topics == 1
    (n,) = struct.unpack_from(">h", resp, pos)
    pos += 2 + n
    (parts,) = struct.unpack_from(">i", resp, pos)
    pos += 4
    assert parts == 1
    _p, error, high, _lso = struct.unpack_from(">ihqq", resp, pos)
    pos += 22
    if error:
        raise RuntimeError(f"fetch error {error} for partition {partition} at offset {offset}")
    (aborted,) = struct.unpack_from(">i", resp, pos)
    pos += 4 + max(aborted, 0) * 16
    (size,) = struct.unpack_from(">i", resp, pos)
    pos += 4
    records = resp[pos:pos + max(size, 0)]
    batches, at = [], 0
    while at + 61 <= len(records):
        base, length = struct.unpack_from(">qi", records, at)
        if at + 12 + length > len(records):
            break  # a partial batch at the end of the response
        (count,) = struct.unpack_from(">i", records, at + 57)
        batches.append((base, count))
        at += 12 + length
    return high, batches


def main():
    bootstrap, topic = sys.argv[1], sys.argv[2]
    partitions = int(sys.argv[3]) if len(sys.argv) > 3 else 4
    conn = Conn(bootstrap)
    print("| partition | records | batches | records a batch: mean / median / max | one-record batches |")
    print("|---|---|---|---|---|")
    for p in range(partitions):
        offset, sizes = 0, []
        while True:
            high, batches = fetch(conn, topic, p, offset)
            if not batches:
                if offset >= high:
                    break
                raise RuntimeError(f"no batch returned at offset {offset} below high watermark {high}")
            for base, count in batches:
                if base + count > offset:
                    sizes.append(count)
                    offset = base + count
        if not sizes:
            print(f"| {p} | 0 | 0 | - | - |")
            continue
        ones = sum(1 for s in sizes if s == 1)
        print(f"| {p} | {sum(sizes)} | {len(sizes)} | {statistics.mean(sizes):.1f} / "
              f"{statistics.median(sizes):.0f} / {max(sizes)} | {100 * ones / len(sizes):.1f}% |")


if __name__ == "__main__":
    main()
