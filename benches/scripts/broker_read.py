"""How fast a Tansu broker (memory storage) serves a topic back, by topic size and batch shape.

Starts its own broker on a loopback port, writes N records of about 200 bytes to a 4-partition
topic, then reads them all back with one consumer per `max.partition.fetch.bytes` given.
Used for docs/performance.md ("A replay of 2.6 million records"); not a test.

    pip install confluent-kafka
    source deploy/lib.sh && ensure_tansu && export TANSU_BIN
    LINGER=0 BATCH=20000 KEYS=1 IDEM=true python3 benches/scripts/broker_read.py 1000000 1048576

LINGER / BATCH: the producer's linger.ms and batch.size (BATCH=300 puts one record in a batch);
KEYS=1 gives records 200,000 distinct keys; IDEM=true uses the idempotent producer, as ingest does;
RATE=40000 writes at most that many records a second; TAIL=1 runs a consumer group member that
reads at the topic's end and commits every 0.5 s while the records are written (as a processor
does during a load run; joining the group takes Tansu a few seconds, so give it a longer run).
The docs' row with a tailing consumer: TAIL=1 RATE=40000 KEYS=1 IDEM=true LINGER=5, 2600000 records.
"""
import os
import subprocess
import sys
import threading
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

PORT = int(os.environ.get("PORT", "39092"))


def main():
    n = int(sys.argv[1])
    fetch_sizes = sys.argv[2:] or ["1048576"]
    bootstrap = f"127.0.0.1:{PORT}"
    broker = subprocess.Popen(
        [os.environ["TANSU_BIN"], "broker", "--listener-url", f"tcp://{bootstrap}",
         "--advertised-listener-url", f"tcp://{bootstrap}", "--storage-engine", "memory://tansu/"],
        env={**os.environ, "RUST_LOG": os.environ.get("TANSU_LOG", "warn")},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(2)
        admin = AdminClient({"bootstrap.servers": bootstrap})
        admin.create_topics([NewTopic("t", 4, 1)])["t"].result()
        producer = Producer({
            "bootstrap.servers": bootstrap,
            "linger.ms": int(os.environ.get("LINGER", "20")),
            "batch.size": int(os.environ.get("BATCH", "1000000")),
            "enable.idempotence": os.environ.get("IDEM", "false"),
            "acks": "all",
            "queue.buffering.max.messages": 1000000,
        })
        payload = b'{"x":' + b"1" * 190 + b"}"
        stop = threading.Event()

        def tail():
            c = Consumer({"bootstrap.servers": bootstrap, "group.id": "tail", "enable.auto.commit": False,
                          "fetch.wait.max.ms": 100, "auto.offset.reset": "earliest"})
            c.subscribe(["t"])
            last, seen = time.time(), 0
            while not stop.is_set():
                ms = c.consume(10000, 0.2)
                seen += len(ms)
                if time.time() - last > 0.5 and ms:
                    c.commit(asynchronous=True)
                    last = time.time()
            print(f"the tailing consumer read {seen} records while they were written", flush=True)
            c.close()

        tailer = threading.Thread(target=tail) if os.environ.get("TAIL") == "1" else None
        if tailer:
            tailer.start()
        rate = int(os.environ.get("RATE", "0"))
        keys = os.environ.get("KEYS") == "1"
        started = time.time()
        for i in range(n):
            while True:
                try:
                    producer.produce("t", payload, key=(b"m%d" % (i % 200000)) if keys else None, partition=i % 4)
                    break
                except BufferError:
                    producer.poll(0.05)
            if i % 10000 == 0:
                producer.poll(0)
                if rate:
                    ahead = i / rate - (time.time() - started)
                    if ahead > 0:
                        time.sleep(ahead)
        producer.flush()
        stop.set()
        if tailer:
            tailer.join()
        print(f"produced {n} records in {time.time() - started:.1f} s", flush=True)
        for size in fetch_sizes:
            consumer = Consumer({
                "bootstrap.servers": bootstrap,
                "group.id": f"read-{size}-{time.time()}",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 100,
                "max.partition.fetch.bytes": size,
            })
            consumer.assign([TopicPartition("t", p, 0) for p in range(4)])
            got, started = 0, time.time()
            while got < n and time.time() - started < 120:
                got += sum(1 for m in consumer.consume(10000, 1.0) if m.error() is None)
            elapsed = time.time() - started
            print(f"max.partition.fetch.bytes={size}: {got} records in {elapsed:.1f} s = {got / elapsed:.0f} records/s",
                  flush=True)
            consumer.close()
    finally:
        broker.kill()


if __name__ == "__main__":
    main()
